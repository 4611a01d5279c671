#!/usr/bin/env python3
"""Side-by-side training throughput: `jumpscope bench` vs the PyTorch eager reference
(reference/jumprelu_torch.py bench, or another with --reference), alternating runs of each so
that both see the same machine load, and printing the medians per size as a Markdown table.

With --l0 N both sides start θ at the (1 - N/d_sae) quantile of each feature's pre-activations on
the first batch, so that about N features fire per token (a trained SAE's sparsity); without it
θ = 1e-3, where about half the features fire. The table also shows the L0 each side reached and
jumpscope's `limit_ratio` (a step's time over the dense encoder product's alone).

Needs torch (`pip install torch==2.9.0`, or PYTHONPATH=~/.cache/jumpscope/torch-2.9.0) and a
release build (`cargo build --release`; for `--device tch-cpu`, `scripts/dev.sh build-tch`).
Usage: python3 scripts/bench_vs_torch.py [--repeats 3] [--l0 64] [--device cpu|tch-cpu] [--sizes 512x4096x4096,768x16384x4096]
"""
import argparse, json, os, platform, statistics, subprocess, sys

# d_in, d_sae, batch, timed steps
SIZES = {"512x4096x4096": (512, 4096, 4096, 5), "768x16384x4096": (768, 16384, 4096, 3),
         "256x2048x1024": (256, 2048, 1024, 20)}


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--l0", type=float, default=0.0, help="about this many active features per token (0: the dense start, θ = 1e-3)")
    p.add_argument("--sizes", default="512x4096x4096,768x16384x4096", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    p.add_argument("--device", default="cpu", help="jumpscope's device: cpu (flex) or tch-cpu (LibTorch)")
    p.add_argument("--reference", default=os.path.join(root, "reference", "jumprelu_torch.py"),
                   help="the PyTorch reference whose `bench` mode is the peer (default: the repository's own)")
    a = p.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("torch is not installed: pip install torch==2.9.0 (or PYTHONPATH=~/.cache/jumpscope/torch-2.9.0)")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    l0 = ["--l0", str(a.l0)] if a.l0 else []
    print(f"machine: {cpu}, {os.cpu_count()} cores; {a.repeats} alternating runs each, median shown; "
          f"{'--l0 ' + str(a.l0) if a.l0 else 'dense start (theta = 1e-3)'}\n")
    print(f"| d_in | d_sae | batch | PyTorch eager (tokens/s) | L0 | jumpscope {a.device} (tokens/s) | L0 | ratio | limit_ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in a.sizes.split(","):
        d, m, b, steps = SIZES[name]
        sizes = ["--d-in", str(d), "--d-sae", str(m), "--batch", str(b), "--steps", str(steps)]
        theirs, ours = [], []
        for _ in range(a.repeats):
            theirs.append(run([sys.executable, a.reference, "bench"] + sizes + l0))
            ours.append(run([a.bin, "bench"] + sizes + l0 + ["--device", a.device, "--json"]))
        med = lambda runs, k: statistics.median(r[k] for r in runs)
        t, o = med(theirs, "tokens_per_s"), med(ours, "tokens_per_s")
        print(f"| {d} | {m} | {b} | {t:.0f} | {med(theirs, 'l0'):.1f} | {o:.0f} | {med(ours, 'l0'):.1f} | {o / t:.2f}x | "
              f"{med(ours, 'limit_ratio'):.2f} |", flush=True)


if __name__ == "__main__":
    main()
