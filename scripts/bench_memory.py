#!/usr/bin/env python3
"""Peak resident memory of a training run as `top` and RSS-accounting schedulers see it: `train
--headless` for 200 steps of 4096 rows from contiguous float32 stores of 1.5M and 3M rows x 128
(768 MB and 1.5 GB, read through the memory map), under `/usr/bin/time -v` ("Maximum resident set
size"). The peak should not grow with the store.

Needs h5py, GNU time (/usr/bin/time) and a release build.
Usage: python3 scripts/bench_memory.py [--rows 1500000,3000000] [--steps 200]
"""
import argparse, os, platform, re, subprocess, tempfile

import h5py
import numpy as np


def write_store(path, rows, d):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("activations", shape=(rows, d), dtype="f4")
        for i in range(0, rows, 100_000):
            n = min(100_000, rows - i)
            ds[i:i + n] = rng.standard_normal((n, d), dtype=np.float32)


def peak_rss_mb(binary, store, steps, out):
    cfg = os.path.join(os.path.dirname(out), "run.toml")
    with open(cfg, "w") as f:
        f.write(f'[data]\nstores = ["{store}"]\nbatch_size = 4096\n[train]\nsteps = {steps}\nlog_every = 50\ncheckpoint_every = 0\n')
    r = subprocess.run(["/usr/bin/time", "-v", binary, "train", "--config", cfg, "--out", out, "--headless"],
                       capture_output=True, text=True, check=True)
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return kb / 1024


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="1500000,3000000")
    p.add_argument("--d-in", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    a = p.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores; train --headless, {a.steps} steps x 4096 rows\n")
    print("| store (float32, contiguous) | size | peak RSS |")
    print("|---|---:|---:|")
    for rows in (int(r) for r in a.rows.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            store = os.path.join(tmp, "store.h5")
            write_store(store, rows, a.d_in)
            mb = peak_rss_mb(a.bin, store, a.steps, os.path.join(tmp, "run"))
            print(f"| {rows} x {a.d_in} | {rows * a.d_in * 4 / 1e6:.0f} MB | {mb:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
