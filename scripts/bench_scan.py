#!/usr/bin/env python3
"""`jumpscope store info --scan` (every row read once, checked for NaN/Inf, norms summed) against
h5py's plain sequential read of the same file (`ds[i:i+32768]`, nothing computed), alternating
the two with the file in the page cache, and printing the medians.

Without --store it writes a 1.5M x 128 float32 store (768 MB, contiguous) into a temporary
directory first. Needs h5py and a release build.
Usage: python3 scripts/bench_scan.py [--store FILE] [--repeats 5]
"""
import argparse, json, os, platform, statistics, subprocess, tempfile, time

import h5py
import numpy as np


def h5py_read(path):
    with h5py.File(path, "r") as f:
        ds = f["activations"]
        n, d = ds.shape
        t0 = time.perf_counter()
        for i in range(0, n, 32768):
            ds[i:i + 32768]
        return n * d * 4 / 1e9 / (time.perf_counter() - t0)


def scan(binary, path):
    out = subprocess.run([binary, "store", "info", path, "--scan", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["scan"]["mb_per_s_f32"] / 1e3


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="an existing store (dataset `activations`)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = a.store
        if path is None:
            path = os.path.join(tmp, "scan.h5")
            rng = np.random.default_rng(0)
            with h5py.File(path, "w") as f:
                ds = f.create_dataset("activations", shape=(1_500_000, 128), dtype="f4")
                for i in range(0, 1_500_000, 100_000):
                    ds[i:i + 100_000] = rng.standard_normal((100_000, 128), dtype=np.float32)
        h5py_read(path)  # into the page cache
        theirs, ours = [], []
        for _ in range(a.repeats):
            theirs.append(h5py_read(path))
            ours.append(scan(a.bin, path))
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
        print(f"machine: {cpu}, {os.cpu_count()} cores; {a.repeats} alternating runs, medians (GB/s as f32)")
        print(f"h5py sequential {statistics.median(theirs):.2f}  (runs {', '.join(f'{x:.2f}' for x in theirs)})")
        print(f"store info --scan {statistics.median(ours):.2f}  (runs {', '.join(f'{x:.2f}' for x in ours)})")
        print(f"ratio {statistics.median(ours) / statistics.median(theirs):.2f}x")


if __name__ == "__main__":
    main()
