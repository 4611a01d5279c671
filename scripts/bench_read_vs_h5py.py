#!/usr/bin/env python3
"""Read throughput: jumpscope's training data path (`jumpscope store bench`: HDF5 read, shuffle,
batching, prefetch thread) against h5py's plain sequential read of the same file, alternating
the two and printing medians as a Markdown table.

It writes float32 and float16 stores (chunked 1024 rows, uncompressed and gzip) into a temporary
directory first. Needs h5py and a release build.
Usage: python3 scripts/bench_read_vs_h5py.py [--rows 131072] [--d-in 512] [--repeats 3] [--passes 3]
"""
import argparse, json, os, statistics, subprocess, tempfile, time

import h5py
import numpy as np


def h5py_read(path, passes, chunk=4096):
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        ds = f["activations"]
        for _ in range(passes):
            for i in range(0, ds.shape[0], chunk):
                x = ds[i:i + chunk]
    dt = time.perf_counter() - t0
    return passes * ds.shape[0] / dt


def ours(binary, path, shuffle, passes):
    cmd = [binary, "store", "bench", path, "--json", "--passes", str(passes)] + ([] if shuffle else ["--no-shuffle"])
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["rows_per_s"]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=131072)
    p.add_argument("--d-in", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--passes", type=int, default=3, help="passes over the file per measurement, both sides")
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    a = p.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.rows, a.d_in), dtype=np.float32)
    print(f"{a.rows} rows x d_in {a.d_in}, {a.passes} passes per run; {a.repeats} alternating runs each, median rows/s\n")
    print("| store | h5py sequential | jumpscope file order | jumpscope shuffled | shuffled / h5py |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (np.float32, np.float16):
            for comp in (None, "gzip"):
                name = f"{np.dtype(dtype).name}{'-gzip' if comp else ''}"
                path = os.path.join(tmp, name + ".h5")
                with h5py.File(path, "w") as f:
                    f.create_dataset("activations", data=x.astype(dtype), chunks=(1024, a.d_in), compression=comp)
                h, seq, shuf = [], [], []
                for _ in range(a.repeats):
                    h.append(h5py_read(path, a.passes))
                    seq.append(ours(a.bin, path, False, a.passes))
                    shuf.append(ours(a.bin, path, True, a.passes))
                hm, sm, fm = statistics.median(h), statistics.median(seq), statistics.median(shuf)
                print(f"| {name} | {hm:.0f} | {sm:.0f} | {fm:.0f} | {fm / hm:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
