#!/usr/bin/env python3
"""What `jumpscope inspect`'s pass costs over encoding the store alone: the same SAE, store and
device, `inspect --encode-only` (read, encode on the device, nothing kept) alternated with the
full pass (`inspect --json`, everything but the token contexts, which the synthetic store has
none of), printing the median seconds of each and their ratio as a Markdown table.

The store comes from `jumpscope store synth`; the SAE is a Gemma Scope params.npz written here
with numpy (random unit decoder rows, encoder = decoder transposed, thresholds set so that about
`--l0` features fire per token).

Needs numpy and a release build (`cargo build --release`).
Usage: python3 scripts/bench_inspect.py [--repeats 3] [--d-in 256] [--d-sae 8192]
       [--tokens 65536] [--l0 40] [--device cpu] [--bin target/release/jumpscope]
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time

import numpy as np


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--d-sae", type=int, default=8192)
    p.add_argument("--tokens", type=int, default=65536)
    p.add_argument("--l0", type=float, default=40.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "jumpscope"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "s.h5")
        subprocess.run([a.bin, "store", "synth", store, "--d-in", str(a.d_in), "--features", str(4 * a.d_in),
                        "--tokens", str(a.tokens), "--noise", "0.05"], check=True, stdout=subprocess.DEVNULL)
        rng = np.random.default_rng(0)
        w_dec = rng.standard_normal((a.d_sae, a.d_in)).astype(np.float32)
        w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
        w_enc = np.ascontiguousarray(w_dec.T)
        # thresholds at the pre-activation quantile that leaves about l0 active per token
        import h5py
        with h5py.File(store) as f:
            sample = f["activations"][:4096].astype(np.float32)
        z = sample @ w_enc
        theta = np.quantile(z, 1.0 - a.l0 / a.d_sae, axis=0).clip(1e-3).astype(np.float32)
        sae = os.path.join(tmp, "params.npz")
        np.savez(sae, W_enc=w_enc, W_dec=w_dec, b_enc=np.zeros(a.d_sae, np.float32),
                 b_dec=np.zeros(a.d_in, np.float32), threshold=theta)
        base = [a.bin, "inspect", sae, "--store", store, "--device", a.device]
        runs = {"encode": [], "inspect": []}
        l0 = None
        for i in range(a.repeats):
            for kind in (["encode", "inspect"] if i % 2 == 0 else ["inspect", "encode"]):
                t0 = time.perf_counter()
                if kind == "encode":
                    subprocess.run(base + ["--encode-only"], check=True, stdout=subprocess.DEVNULL)
                else:
                    out = subprocess.run(base + ["--json"], check=True, capture_output=True, text=True).stdout
                    l0 = json.loads(out)["l0"]
                dt = time.perf_counter() - t0
                runs[kind].append(dt)
                print(f"  {kind:7} run {i + 1}: {dt:.2f} s", file=sys.stderr)
    e, s = statistics.median(runs["encode"]), statistics.median(runs["inspect"])
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; d_in {a.d_in}, "
          f"d_sae {a.d_sae}, {a.tokens} tokens, L0 {l0:.1f}, device {a.device}, median of {a.repeats} "
          f"(whole process, start-up included)\n")
    print("| pass | seconds |")
    print("|---|---:|")
    print(f"| encode only | {e:.2f} |")
    print(f"| inspect (stats, histograms, top-k, FVU) | {s:.2f} |")
    print(f"| ratio | {s / e:.2f}x |")


if __name__ == "__main__":
    main()
