#!/usr/bin/env python3
"""Exports torchvision models for convnet's weight-loading checks.

PyTorch is Debian's `python3-torch` / `python3-torchvision` (run with /usr/bin/python3); it
is never a dependency of the Rust crates. Safetensors files are written by hand (the format
is an 8-byte little-endian header length, a JSON header, then the raw tensors), so no
`safetensors` Python package is needed.

Two commands:

  names OUT.json
      The state_dict keys and shapes of every full-size model of convnet's zoo (alexnet,
      vgg11, vgg16, googlenet without auxiliary heads, resnet18, resnet34, resnet50,
      densenet121), one model per line: {"model": ..., "params": N, "tensors": [[key, shape],
      ...]}. The committed tests/data/torchvision_state_dicts.jsonl comes from this; the test
      `tests/model_zoo.rs` checks that convnet's models have exactly these names and shapes.

  weights OUT_DIR [--models m1,m2,...] [--size S] [--seed N]
      For each model: OUT_DIR/MODEL.safetensors, its state_dict (float32; the integer
      `num_batches_tracked` stored as float32, as convnet keeps it), and
      OUT_DIR/MODEL.io.safetensors with one random input `input` [1, 3, S, S] and the model's
      output `output` [1, 1000] in evaluation mode. Weights are torchvision's random
      initialization under torch.manual_seed(N); batch-norm scales and shifts are then
      redrawn at random and the running statistics measured on random images, so that every
      tensor of the file matters and the logits stay near unit scale. The same seed gives
      the same files. `cargo test --release --test torchvision_weights --
      --ignored` loads them through convnet's checkpoint reader and compares the outputs.

Usage:
  /usr/bin/python3 scripts/export_torchvision.py names tests/data/torchvision_state_dicts.jsonl
  /usr/bin/python3 scripts/export_torchvision.py weights target/torchvision
"""

import argparse
import json
import os
import struct
import sys

import torch
import torchvision

MODELS = ["alexnet", "vgg11", "vgg16", "googlenet", "resnet18", "resnet34", "resnet50", "densenet121"]


def build(name):
    """The torchvision model `name` with random weights (no download)."""
    if name == "googlenet":
        # convnet's googlenet has no auxiliary classifiers and no input transform.
        return torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False,
                                            init_weights=True)
    return getattr(torchvision.models, name)(weights=None)


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: float32 tensor} in the safetensors format."""
    header = {}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def names(out):
    lines = []
    for name in MODELS:
        model = build(name)
        tensors = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        params = sum(p.numel() for p in model.parameters())
        lines.append(json.dumps({"model": name, "params": params, "tensors": tensors}, separators=(",", ":")))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(lines)} models")


def randomize_batch_norm(model, gen, size):
    """Redraws every batch norm's scale and shift, then sets its running statistics from two
    training-mode passes over random images (a cumulative average), so that in evaluation
    the activations keep a unit scale through any depth and every tensor of the file
    matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.reset_running_stats()
                m.momentum = None
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, size, size, generator=gen))
        model.eval()


def weights(out_dir, models, size, seed):
    os.makedirs(out_dir, exist_ok=True)
    for name in models:
        torch.manual_seed(seed)
        model = build(name)
        gen = torch.Generator().manual_seed(seed + 1)
        randomize_batch_norm(model, gen, size)
        x = torch.randn(1, 3, size, size, generator=gen)
        with torch.no_grad():
            y = model(x)
        meta = {"model": name, "seed": str(seed), "torch": torch.__version__,
                "torchvision": torchvision.__version__}
        write_safetensors(os.path.join(out_dir, f"{name}.safetensors"), model.state_dict(), meta)
        write_safetensors(os.path.join(out_dir, f"{name}.io.safetensors"), {"input": x, "output": y}, meta)
        print(f"{name}: input {list(x.shape)}, output {list(y.shape)}, max |output| {y.abs().max().item():.4g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    n = sub.add_parser("names", help="state_dict keys and shapes of every full-size model")
    n.add_argument("out")
    w = sub.add_parser("weights", help="weights, one input and its output per model")
    w.add_argument("out_dir")
    w.add_argument("--models", default=",".join(MODELS))
    w.add_argument("--size", type=int, default=224)
    w.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.command == "names":
        names(args.out)
    else:
        unknown = [m for m in args.models.split(",") if m not in MODELS]
        if unknown:
            sys.exit(f"unknown models {unknown}; known: {MODELS}")
        weights(args.out_dir, args.models.split(","), args.size, args.seed)


if __name__ == "__main__":
    main()
