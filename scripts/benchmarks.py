#!/usr/bin/env python3
"""Regenerates BENCHMARKS.md and benchmarks.svg from a real run on this machine.

It runs `convnet peak` and `convnet bench --json` (every algorithm but the reference, every
pass, 1 and 2 threads) on the named suite and, when PyTorch is importable, times PyTorch's
conv2d / conv_transpose2d on the same shapes, passes and thread counts in the same run, noting
the backend PyTorch picked (oneDNN, or where it falls back to its own, oneDNN called directly
for the forward pass). PyTorch is never a dependency of the crates; on Debian get it with

    apt-get install python3-torch
    /usr/bin/python3 scripts/benchmarks.py            # the python3 that has torch

Usage: scripts/benchmarks.py [--suite direct] [--threads 1,2] [--passes fwd,bwd_data,bwd_weight]
                             [--rounds 3] [--out BENCHMARKS.md] [--svg benchmarks.svg]
The sweeps of convnet and of PyTorch alternate, `--rounds` times each, and every cell is the
median over the rounds: on a shared host whose speed changes from one minute to the next
(other tenants' memory traffic), one sweep of each would compare them in different
conditions. Each round also times the direct kernel alone, forward and backward-data, packing
its weights per call and through a prepared plan (`convnet bench --prepared`), for the table
of the two, and, on the first thread count, the direct kernel and PyTorch with the caches
evicted before every call (`convnet bench --cold`), for the table of warm against cold. The
default suite (`direct`: 15 shapes from real networks, one per shape family) takes about 3.5
minutes per round on 1 thread (with the cold sweeps) and 2.5 on 2, on 2 cores: 5 rounds of
both, about 25 minutes; `--suite all` (every distinct convolution of the zoo's models, 107
shapes) takes proportionally longer. PyTorch's backward passes are
timed alone: one forward pass builds the autograd graph, then each timed step computes only
the requested gradient.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = "direct,im2col,winograd_f2,winograd_f4,winograd_f6,auto"
# glibc's malloc gives each block of 128 KiB or more fresh pages from mmap and unmaps them on
# free, so every PyTorch call pays a page fault per 4 KiB of its new output; on a KVM guest
# with DAMON reclaiming (2026-12-06) that halved PyTorch's ResNet-50 stem forward (45 GFLOP/s
# against 103-110 with the heap kept). convnet's bench reuses its buffers, so PyTorch runs
# with glibc's heap kept too: the script re-executes itself with these tunables (the mmap
# threshold at 32 MiB, the most glibc accepts on 64-bit hosts: some releases ignore more).
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "8000000000",
    "MALLOC_TOP_PAD_": "100000000",
}


def convnet(*args):
    """Runs the release convnet binary; returns its JSON lines."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, env=env, check=True)
    exe = os.path.join(ROOT, "target", "release", "convnet")
    out = subprocess.run([exe, *args, "--json"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def torch_backend(torch, x, w, stride, padding, dilation, transposed, output_padding, groups):
    """The backend PyTorch's convolution picks for these operands (on the current thread
    count), lower-case: "mkldnn" is oneDNN; None where this PyTorch cannot say."""
    try:
        b = torch._C._select_conv_backend(x, w, None, list(stride), list(padding), list(dilation),
                                          transposed, list(output_padding), groups)
    except (AttributeError, RuntimeError, TypeError):
        return None
    return str(b).rsplit(".", 1)[-1].lower()


def evict_bytes():
    """Bytes `convnet bench --cold` reads to evict the caches: four times the last-level cache
    (64 MiB to 1 GiB; 256 MiB when sysfs does not say)."""
    try:
        s = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip()
        n = int(s[:-1]) << {"K": 10, "M": 20, "G": 30}[s[-1]] if s[-1] in "KMG" else int(s)
        return min(max(4 * n, 64 << 20), 1 << 30)
    except (OSError, ValueError, IndexError, KeyError):
        return 256 << 20


def torch_times(rows, threads, passes, cold=False):
    """PyTorch on each (shape id, pass): `{(id, pass): (median ms, backend)}`, or {} without
    torch. The backend is the one `conv2d` / `conv_transpose2d` picked ("mkldnn" is oneDNN);
    where that is not oneDNN and the pass is a normal forward, oneDNN is timed too, called
    directly, as `(id, "fwd_onednn")`. Each timed call follows the same call (untimed once,
    then timed ones); `cold`, each follows an eviction of the caches instead, as in
    `convnet bench --cold` (a read of a buffer of `evict_bytes()` on every thread).

    PyTorch 1.13 leaves oneDNN for its own im2col path (Slow2d) on a 1x1 layer at a batch
    under 16 on one thread, and always for transposed convolutions (SlowTranspose2d); Debian's
    build runs those on a generic BLAS at 3-5 GFLOP/s, which is no oneDNN yardstick. Its
    backward passes reselect the backend the same way (also after `mkldnn_convolution`), so
    only the forward pass can be forced onto oneDNN."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("PyTorch not found: install python3-torch and run with /usr/bin/python3 to compare", file=sys.stderr)
        return {}
    torch.set_num_threads(threads)
    evict = torch.ones(evict_bytes(), dtype=torch.uint8) if cold else None
    results = {}
    shapes = {r["id"]: r["params"] for r in rows}
    for shape_id, g in sorted(shapes.items()):
        x = torch.randn(g["n"], g["c"], g["h"], g["w"])
        pt, pb, pl, pr = g["pad"]
        sym = pt == pb and pl == pr
        stride, dilation = tuple(g["stride"]), tuple(g["dilation"])
        onednn = None
        if g["transposed"]:
            w = torch.randn(g["c"], g["k"] // g["groups"], g["r"], g["s"])
            backend = torch_backend(torch, x, w, stride, (pt, pl), dilation, True, g["output_padding"], g["groups"])

            def fwd(x, w):
                return F.conv_transpose2d(x, w, None, stride, (pt, pl), tuple(g["output_padding"]), g["groups"], dilation)
        else:
            w = torch.randn(g["k"], g["c"] // g["groups"], g["r"], g["s"])
            # Asymmetric padding goes in an explicit pad, timed with the convolution.
            pad = (pt, pl) if sym else (0, 0)

            def padded(x):
                return x if sym else F.pad(x, (pl, pr, pt, pb))

            backend = torch_backend(torch, padded(x), w, stride, pad, dilation, False, (0, 0), g["groups"])

            def fwd(x, w):
                return F.conv2d(padded(x), w, None, stride, pad, dilation, g["groups"])

            if backend != "mkldnn" and hasattr(torch, "mkldnn_convolution"):
                def onednn():
                    with torch.no_grad():
                        torch.mkldnn_convolution(padded(x), w, None, list(pad), list(stride), list(dilation), g["groups"])
        with torch.no_grad():
            y = fwd(x, w)
        gy = torch.randn_like(y)
        timed = list(passes) + (["fwd_onednn"] if "fwd" in passes and onednn else [])
        for p in timed:
            if p == "fwd_onednn":
                step = onednn
            elif p == "fwd":
                def step():
                    with torch.no_grad():
                        fwd(x, w)
            else:
                # One forward pass builds the graph; each step then runs only the backward
                # pass for the requested gradient (timing forward + backward and subtracting
                # a separately timed forward lets the host's noise into the difference).
                xi = x.detach().requires_grad_(p == "bwd_data")
                wi = w.detach().requires_grad_(p == "bwd_weight")
                out = fwd(xi, wi)
                wrt = xi if p == "bwd_data" else wi

                def step(out=out, wrt=wrt):
                    torch.autograd.grad(out, wrt, gy, retain_graph=True)
            step()
            times = []
            start = time.perf_counter()
            while len(times) < 7 or (time.perf_counter() - start < 0.5 and len(times) < 200):
                if evict is not None:
                    evict.sum()
                t0 = time.perf_counter()
                step()
                times.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(times)
            results[(shape_id, p)] = (ms, "mkldnn" if p == "fwd_onednn" else backend)
    return results


def svg_plot(rows, path, threads):
    """A grouped bar chart of forward GFLOP/s per shape and algorithm, hand-written SVG."""
    fwd = [r for r in rows if r["pass"] == "fwd" and r["threads"] == threads and r["algo"] != "auto"]
    shapes = list(dict.fromkeys(r["shape"] for r in fwd))
    algos = list(dict.fromkeys(r["algo"] for r in fwd)) + (["pytorch"] if any("torch_gflops" in r for r in fwd) else [])
    colors = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]
    val = {}
    for r in fwd:
        val[(r["shape"], r["algo"])] = r["gflops"]
        y = yardstick(r)
        if y and y[2]:
            val[(r["shape"], "pytorch")] = y[0]
    top = max(val.values()) if val else 1
    bw, gap, h, left, bottom = 7, 14, 320, 60, 150
    width = left + len(shapes) * (len(algos) * bw + gap) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + bottom + 40}" font-family="sans-serif" font-size="10">',
           f'<text x="{left}" y="14" font-size="13">Forward GFLOP/s per shape and algorithm, {threads} thread(s)</text>']
    for i in range(6):
        y = 20 + h - h * i / 5
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 3:.1f}" text-anchor="end">{top * i / 5:.0f}</text>')
    for si, s in enumerate(shapes):
        x0 = left + si * (len(algos) * bw + gap)
        for ai, a in enumerate(algos):
            v = val.get((s, a))
            if v is None:
                continue
            bh = h * v / top
            out.append(f'<rect x="{x0 + ai * bw}" y="{20 + h - bh:.1f}" width="{bw - 1}" height="{bh:.1f}" fill="{colors[ai % len(colors)]}"><title>{s} {a}: {v:.1f}</title></rect>')
        cx = x0 + len(algos) * bw / 2
        out.append(f'<text transform="translate({cx:.1f},{20 + h + 8}) rotate(60)">{s}</text>')
    for ai, a in enumerate(algos):
        out.append(f'<rect x="{left + ai * 110}" y="{h + bottom + 15}" width="10" height="10" fill="{colors[ai % len(colors)]}"/>')
        out.append(f'<text x="{left + ai * 110 + 14}" y="{h + bottom + 24}">{a}</text>')
    out.append("</svg>")
    write_atomically(path, "\n".join(out) + "\n")


def write_atomically(path, text):
    """Writes `text` to `path` through a temporary file renamed over it: never half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def yardstick(r):
    """`(GFLOP/s, cell, is_onednn)` of PyTorch for a convnet row, or None: oneDNN as PyTorch
    picked it; oneDNN called directly where PyTorch picked another backend (forward only,
    marked [d], with what `conv2d` itself ran beside it); else PyTorch's own backend, named."""
    tg, backend = r.get("torch_gflops"), r.get("torch_backend")
    if not tg:
        return None
    if backend in ("mkldnn", None):
        return tg, f"{tg:.1f}", True
    if r.get("onednn_gflops"):
        dg = r["onednn_gflops"]
        return dg, f"{dg:.1f} [d] (conv2d: {tg:.1f} {backend})", True
    return tg, f"{tg:.1f} [{backend}]", False


def prepared_table(prep_rounds):
    """The direct kernel with its weights prepared once in a plan (as inference runs it) against
    the same kernel packing them in every call (as a training step runs it), both timed alone."""
    if not prep_rounds:
        return []
    lines = ["", "## direct through a prepared plan", "",
             "The direct kernel's forward and backward-data passes packing their weights in every call (as a training step "
             "runs them) and through a `ConvPlan` whose weights were packed once (`convnet bench --prepared`, as inference "
             "runs them). Each is a sweep of the direct kernel alone; both sweeps run in every round, and each cell is the "
             "median over the rounds. The gap is the weight packing, largest where the weights outweigh the input (the 14x14 and 7x7 "
             "layers).", "",
             "| shape | pass | threads | per call | prepared | prepared / per call |", "| --- | --- | --- | --- | --- | --- |"]

    def cell(rds, key):
        first = rds[0][key]
        ms = statistics.median(rd[key]["ms"] for rd in rds if key in rd)
        scale = first["ms"] / ms
        return first["gflops"] * scale, first["pct_peak"] * scale

    for t, rds in prep_rounds.items():
        for (sid, p, mode), first in rds[0].items():
            if mode != "per_call" or (sid, p, "prepared") not in rds[0]:
                continue
            (g1, p1), (g2, p2) = cell(rds, (sid, p, "per_call")), cell(rds, (sid, p, "prepared"))
            lines.append(f"| {first['shape']} | {p} | {t} | {g1:.1f} ({p1:.0f}%) | {g2:.1f} ({p2:.0f}%) | {g2 / g1:.2f} |")
    return lines


def cold_table(cold_rounds, rows):
    """The direct kernel with the caches evicted before every call (`convnet bench --cold`, as
    a layer in a network meets them) beside its warm time from the tables above, and PyTorch's
    pick timed the same two ways."""
    if not cold_rounds:
        return []
    t = cold_rounds[0]["threads"]
    lines = ["", f"## direct with cold caches, {t} thread(s)", "",
             "Each call of the direct kernel (packing its weights per call) after an eviction of the caches: every thread "
             "reads a buffer of four times the last-level cache, which also leaves the kernel's buffers out of the TLB, as "
             "a layer in a network meets them after the other layers ran (`convnet bench --cold`). Warm is the direct "
             "column of the tables above, where each timed call follows a call of the same kernel. PyTorch's backend is "
             "timed the same two ways (oneDNN; a bracketed backend is PyTorch's own). Medians over the rounds.", "",
             "| shape | pass | direct warm | direct cold | cold / warm | pytorch warm | pytorch cold | cold / warm "
             "| direct / pytorch, cold |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    warm = {(r["id"], r["pass"]): r for r in rows if r["threads"] == t and r["algo"] == "direct"}
    for (sid, p), first in cold_rounds[0]["convnet"].items():
        w = warm.get((sid, p))
        if w is None:
            continue
        ms = statistics.median(rd["convnet"][sid, p]["ms"] for rd in cold_rounds if (sid, p) in rd["convnet"])
        g = first["gflops"] * first["ms"] / ms
        pct = first["pct_peak"] * first["ms"] / ms
        cells = [first["shape"], p, f"{w['gflops']:.1f} ({w['pct_peak']:.0f}%)", f"{g:.1f} ({pct:.0f}%)",
                 f"{g / w['gflops']:.2f}"]
        tms = [rd["torch"][sid, p] for rd in cold_rounds if (sid, p) in rd["torch"]]
        if tms and w.get("torch_ms"):
            cold_ms, backend = statistics.median(x for x, _ in tms), tms[0][1]
            flops = w["gflops"] * w["ms"]
            tw, tc = flops / w["torch_ms"], flops / cold_ms
            tag = "" if backend in ("mkldnn", None) else f" [{backend}]"
            ratio = f"{g / tc:.2f}" if not tag else f"({g / tc:.2f})"
            cells += [f"{tw:.1f}{tag}", f"{tc:.1f}{tag}", f"{tc / tw:.2f}", ratio]
        else:
            cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def scaling_table(rows, threads, passes):
    """The direct kernel's speed on the most threads over its speed on one, per pass and shape
    (issue 4 asks for >= 1.8x on shapes with >= 64 channels), beside PyTorch's."""
    if 1 not in threads or max(threads) == 1:
        return []
    many = max(threads)
    lines = ["", f"## {many} threads over 1, direct", "",
             f"The direct kernel's GFLOP/s on {many} threads over its GFLOP/s on 1 (each the median cell above), and PyTorch's "
             "ratio on the same shape. Both move by 10-20% between runs on this shared host: read them together.", "",
             "| shape | pass | 1 thread | " + f"{many} threads | ratio | pytorch ratio |", "| --- | --- | --- | --- | --- | --- |"]
    by = {(r["shape"], r["pass"], r["threads"]): r for r in rows if r["algo"] == "direct"}
    for p in passes:
        for shape in dict.fromkeys(r["shape"] for r in rows if r["pass"] == p and r["algo"] == "direct"):
            one, more = by.get((shape, p, 1)), by.get((shape, p, many))
            if not one or not more:
                continue
            torch = "-"
            if one.get("torch_ms") and more.get("torch_ms"):
                ratio = one["torch_ms"] / more["torch_ms"]
                b1, b2 = one.get("torch_backend"), more.get("torch_backend")
                if b1 == b2 and b1 in ("mkldnn", None):
                    torch = f"{ratio:.2f}"
                elif b2 == "mkldnn" and one.get("onednn_ms"):
                    # oneDNN called directly on 1 thread, picked by PyTorch on more.
                    torch = f"{one['onednn_ms'] / more['torch_ms']:.2f} [d]"
                else:
                    # Not oneDNN, or a different backend on each thread count.
                    torch = f"({ratio:.2f}: {b1} / {b2})" if b1 != b2 else f"({ratio:.2f} {b1})"
            lines.append(f"| {shape} | {p} | {one['gflops']:.1f} | {more['gflops']:.1f} | {more['gflops'] / one['gflops']:.2f} | {torch} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="direct")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--passes", default="fwd,bwd_data,bwd_weight")
    ap.add_argument("--rounds", type=int, default=3, help="alternating sweeps of convnet and PyTorch; cells are medians over them")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--svg", default=os.path.join(ROOT, "benchmarks.svg"))
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    threads = [int(t) for t in args.threads.split(",")]
    passes = args.passes.split(",")
    # The peak is a best-of (like `convnet peak` itself): measured at the start and again after
    # each thread count's sweeps, so one noisy moment on a shared host cannot understate it.
    peaks = {}

    def measure_peaks():
        for p in convnet("peak"):
            key = (p["isa"], p["threads"])
            peaks[key] = max(peaks.get(key, 0.0), p["gflops"])

    measure_peaks()
    peak_runs = 1
    rows = []
    # The direct kernel alone, per call and through a prepared plan (forward and backward-data;
    # backward-weight has no operand to prepare): thread count -> per round,
    # (shape id, pass, "per_call" or "prepared") -> convnet's row.
    prep_passes = [p for p in passes if p in ("fwd", "bwd_data")]
    prep_rounds = {}
    # The direct kernel and PyTorch with cold caches, on the first thread count: per round,
    # {"threads", "convnet": (shape id, pass) -> row, "torch": (shape id, pass) -> (ms, backend)}.
    cold_rounds = []
    for t in threads:
        # Per round: (shape id, algo, pass) -> convnet's row, and (shape id, pass) -> PyTorch's ms.
        rounds, torch_rounds = [], []
        for k in range(args.rounds):
            print(f"round {k + 1}/{args.rounds}: convnet bench --suite {args.suite} --threads {t} (per call, then prepared), then PyTorch ...", file=sys.stderr)
            sweep = convnet("bench", "--suite", args.suite, "--algos", ALGOS, "--pass", args.passes, "--threads", str(t))
            rounds.append({(r["id"], r["algo"], r["pass"]): r for r in sweep})
            if prep_passes:
                # The direct kernel alone, packing per call and then prepared: both sweeps time
                # it after its own calls (in the sweep above it follows the other algorithms'),
                # so their ratio is the packing's cost, not a change of company.
                alone = {}
                for mode in ("per_call", "prepared"):
                    sweep_args = ["bench", "--suite", args.suite, "--algos", "direct", "--pass", ",".join(prep_passes),
                                  "--threads", str(t)] + (["--prepared"] if mode == "prepared" else [])
                    for r in convnet(*sweep_args):
                        if r.get("prepared", False) == (mode == "prepared"):
                            alone[r["id"], r["pass"], mode] = r
                prep_rounds.setdefault(t, []).append(alone)
            torch_rounds.append(torch_times(sweep, t, passes))
            if t == threads[0]:
                cold = convnet("bench", "--suite", args.suite, "--algos", "direct", "--pass", args.passes,
                               "--threads", str(t), "--cold")
                cold_rounds.append({"threads": t, "convnet": {(r["id"], r["pass"]): r for r in cold},
                                    "torch": torch_times(cold, t, passes, cold=True)})
        for key, first in rounds[0].items():
            ms = statistics.median(rd[key]["ms"] for rd in rounds if key in rd)
            scale = first["ms"] / ms
            r = dict(first, ms=ms, gflops=first["gflops"] * scale, pct_peak=first["pct_peak"] * scale)
            tms = [tr[key[0], key[2]] for tr in torch_rounds if (key[0], key[2]) in tr]
            if tms:
                r["torch_ms"] = statistics.median(t for t, _ in tms)
                r["torch_gflops"] = r["gflops"] * ms / r["torch_ms"]
                r["torch_backend"] = tms[0][1]
            # oneDNN called directly, where PyTorch's own pick was not oneDNN.
            dms = [tr[key[0], "fwd_onednn"] for tr in torch_rounds if key[2] == "fwd" and (key[0], "fwd_onednn") in tr]
            if dms:
                r["onednn_ms"] = statistics.median(t for t, _ in dms)
                r["onednn_gflops"] = r["gflops"] * ms / r["onednn_ms"]
            rows.append(r)
        measure_peaks()
        peak_runs += 1
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `scripts/benchmarks.py` on {time.strftime('%Y-%m-%d')}: {cpu}, {os.cpu_count()} cores, "
        "a shared, noisy machine, so read the ratios more than the absolute numbers. "
        f"Each cell is the median over {args.rounds} alternating sweeps of convnet and PyTorch (each sweep's time the median "
        "of its timed calls; convnet's sweep runs the algorithms in interleaved rounds, each algorithm once untimed and then "
        "three timed calls, so that, as in PyTorch's loop, every timed call follows a call of the same kernel); GFLOP/s use the direct-convolution FLOP count "
        "for every algorithm (Winograd's are effective rates); % peak is against the peak `convnet bench` measures in its own run (the table below is the best of "
        f"{peak_runs} runs of `convnet peak`, at the start and after each thread count's sweeps).",
        "",
        "PyTorch is the yardstick for oneDNN, but PyTorch 1.13 leaves oneDNN for its own im2col path on a 1x1 layer at a "
        "batch under 16 on one thread, and for every transposed convolution (col2im); Debian's build runs those on a "
        "generic BLAS at 3-5 GFLOP/s. There a forward cell times oneDNN called directly (`torch.mkldnn_convolution`, NCHW "
        "in and out, marked [d], with what `conv2d` ran beside it); a backward pass cannot be forced onto oneDNN, so its "
        "cell names the backend PyTorch ran, and the ratio, in parentheses, is no oneDNN comparison. PyTorch runs with "
        "glibc's heap kept (`MALLOC_MMAP_THRESHOLD_` and friends), so that, like convnet's reused buffers, its fresh "
        "outputs cost no page faults.",
        "",
        "| ISA | threads | peak GFLOP/s |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {isa} | {t} | {g:.1f} |" for (isa, t), g in sorted(peaks.items())]
    for t in threads:
        for p in passes:
            sel = [r for r in rows if r["threads"] == t and r["pass"] == p]
            if not sel:
                continue
            algos = [a for a in dict.fromkeys(r["algo"] for r in sel) if a != "auto"]
            have_torch = any("torch_gflops" in r for r in sel)
            lines += ["", f"## {p}, {t} thread(s)", "",
                      "GFLOP/s (and % of peak) per algorithm; the winner in bold; what Auto chose and its ratio to the winner"
                      + ("; PyTorch's oneDNN on the same shape (see the note above on [d] and bracketed backends), "
                         "and the winner's speed relative to it." if have_torch else "."), ""]
            head = ["shape"] + algos + ["auto", "auto / best"] + (["pytorch", "best / pytorch"] if have_torch else [])
            lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
            for shape in dict.fromkeys(r["shape"] for r in sel):
                by = {r["algo"]: r for r in sel if r["shape"] == shape}
                best = max((by[a] for a in algos if a in by), key=lambda r: r["gflops"])
                cells = [shape]
                for a in algos:
                    if a not in by:
                        cells.append("-")
                        continue
                    c = f"{by[a]['gflops']:.1f} ({by[a]['pct_peak']:.0f}%)"
                    cells.append(f"**{c}**" if by[a] is best else c)
                auto = by.get("auto")
                cells.append(auto["kernel"] if auto else "-")
                cells.append(f"{auto['gflops'] / best['gflops']:.2f}" if auto else "-")
                if have_torch:
                    y = yardstick(best)
                    if y is None:
                        cells += ["-", "-"]
                    else:
                        ratio = f"{best['gflops'] / y[0]:.2f}"
                        cells += [y[1], ratio if y[2] else f"({ratio})"]
                lines.append("| " + " | ".join(cells) + " |")
    lines += prepared_table(prep_rounds)
    lines += cold_table(cold_rounds, rows)
    lines += scaling_table(rows, threads, passes)
    lines += ["", f"![forward GFLOP/s per shape and algorithm]({os.path.basename(args.svg)})", ""]
    write_atomically(args.out, "\n".join(lines))
    svg_plot(rows, args.svg, threads[0])
    print(f"wrote {args.out} and {args.svg}", file=sys.stderr)


if __name__ == "__main__":
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    main()
