#!/usr/bin/env python3
"""Times one LeNet-5 training step (batch 64: forward, backward, SGD update) in PyTorch and
in convnet, on the same machine and thread count, and prints both and their ratio.

PyTorch is Debian's `python3-torch` (run with /usr/bin/python3); it is never a dependency of
the Rust crates. The PyTorch model is the same network as `src/models/lenet5.rs`: C1 5x5 conv,
ReLU, S2 trainable subsampling (2x2 average times a per-map weight plus a per-map bias), ReLU,
C3 5x5 conv, ReLU, S4 2x2 max pool, C5 5x5 conv, ReLU, F6 120->84, ReLU, 84->10, softmax
cross-entropy, SGD (Nesterov momentum 0.9, weight decay 5e-4). convnet's step time is the
training time of `convnet train lenet5` over a fixed number of MNIST batches (its data
pipeline included), from its `--json` output.

Usage: /usr/bin/python3 scripts/lenet5_step_vs_pytorch.py [--threads 2] [--steps 200]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from torch import nn

BATCH = 64


class Subsample(nn.Module):
    """LeNet-5's S2: avgpool2x2(x) * weight[c] + bias[c]."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(x) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def lenet5():
    features = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), Subsample(6), nn.ReLU(),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(),
    )
    classifier = nn.Sequential(nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    return nn.Sequential(features, nn.Flatten(), classifier)


def pytorch_ms_per_step(threads, steps):
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = lenet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(BATCH, 1, 32, 32)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000.0 * (time.perf_counter() - start) / steps


def convnet_ms_per_step(threads, steps):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["cargo", "run", "--release", "-q", "--", "train", "lenet5", "--epochs", "1",
           "--limit", str(steps * BATCH), "--batch", str(BATCH), "--threads", str(threads), "--json"]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    epoch = json.loads(out.strip().splitlines()[-1])
    return 1000.0 * epoch["train_seconds"] / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    ours = convnet_ms_per_step(args.threads, args.steps)
    theirs = pytorch_ms_per_step(args.threads, args.steps)
    print(json.dumps({
        "threads": args.threads,
        "batch": BATCH,
        "convnet_ms_per_step": round(ours, 3),
        "pytorch_ms_per_step": round(theirs, 3),
        "pytorch_version": torch.__version__,
        "ratio": round(ours / theirs, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
