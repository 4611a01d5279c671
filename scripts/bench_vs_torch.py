#!/usr/bin/env python3
"""Side-by-side training throughput: `jumpscope bench` vs the PyTorch eager reference
(reference/jumprelu_torch.py bench, or another with --reference), alternating runs of each so that both see the same
machine load, and printing the median tokens/s per size as a Markdown table.

Needs torch (`pip install torch==2.9.0`) and a release build (`cargo build --release`; for
`--device tch-cpu`, `scripts/dev.sh build-tch`).
Usage: python3 scripts/bench_vs_torch.py [--repeats 3] [--device cpu|tch-cpu] [--bin target/release/jumpscope]
"""
import argparse, json, os, platform, statistics, subprocess, sys

SIZES = [(512, 4096, 4096, 5), (256, 2048, 1024, 20)]


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    p.add_argument("--device", default="cpu", help="jumpscope's device: cpu (flex) or tch-cpu (LibTorch)")
    p.add_argument("--reference", default=os.path.join(root, "reference", "jumprelu_torch.py"),
                   help="the PyTorch reference whose `bench` mode is the peer (default: the repository's own)")
    a = p.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("torch is not installed: pip install torch==2.9.0")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores; {a.repeats} alternating runs each, median shown\n")
    print(f"| d_in | d_sae | batch | PyTorch eager (tokens/s) | jumpscope {a.device} (tokens/s) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for d, m, b, steps in SIZES:
        torch_runs, ours = [], []
        for _ in range(a.repeats):
            torch_runs.append(run([sys.executable, a.reference, "bench", "--d-in", str(d), "--d-sae", str(m), "--batch", str(b), "--steps", str(steps)]))
            ours.append(run([a.bin, "bench", "--d-in", str(d), "--d-sae", str(m), "--batch", str(b), "--steps", str(steps), "--device", a.device, "--json"]))
        t, o = statistics.median(torch_runs), statistics.median(ours)
        print(f"| {d} | {m} | {b} | {t:.0f} | {o:.0f} | {o / t:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
