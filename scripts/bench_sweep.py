#!/usr/bin/env python3
"""A 4-member sweep against the same 4 runs trained one after another: wall time, and the rows
each reads from the store. The README's sweep row comes from here.

    python3 scripts/bench_sweep.py [--bin target/release/jumpscope] [--repeats 3]

Store: `jumpscope store synth` (d_in 256, 2048 true features, 400k tokens, float32). Members:
JumpReLU 8x (d_sae 2048), batches of 1024, 600 steps, target L0 64 (`train.sparsity_loss =
"l0_target"`), λ varied over 4 values (the separate runs are the sweep's own members'
config.toml files, so both sides train exactly the same SAEs). Runs alternate (sweep, then the 4
separate runs) and the medians are reported; rows read are the sweep's `rows_read` and the sum of
the separate runs' tokens.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = """
[data]
stores = ["{store}"]
batch_size = 1024
eval_tokens = 8192
[sae]
d_sae = 2048
[train]
steps = {steps}
sparsity_loss = "l0_target"
target_l0 = 64
log_every = 100
checkpoint_every = 0
eval_every = 0
[run]
out = "{out}"
[sweep]
vary = {{ "train.sparsity_coefficient" = [0.3, 1.0, 3.0, 10.0] }}
"""


def timed(cmd):
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return secs


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/jumpscope"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=600)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "s.h5")
        subprocess.run([a.bin, "store", "synth", store, "--d-in", "256", "--features", "2048",
                        "--mean-active", "32", "--tokens", "400000"], check=True, capture_output=True)
        sweep_s, separate_s, rows = [], [], None
        for r in range(a.repeats):
            out = os.path.join(tmp, f"sweep{r}")
            cfg = os.path.join(tmp, f"sweep{r}.toml")
            with open(cfg, "w") as f:
                f.write(SWEEP.format(store=store, out=out, steps=a.steps))
            sweep_s.append(timed([a.bin, "sweep", "--config", cfg, "--headless"]))
            with open(os.path.join(out, "sweep.jsonl")) as f:
                finish = [json.loads(line) for line in f][-1]
            members = sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)))
            total = 0.0
            for m in members:
                total += timed([a.bin, "train", "--config", os.path.join(out, m, "config.toml"),
                                "--out", os.path.join(tmp, f"alone{r}-{m}"), "--headless"])
            separate_s.append(total)
            rows = (finish["rows_read"], a.steps * 1024 * len(members))
            print(f"repeat {r + 1}: sweep {sweep_s[-1]:.1f} s, 4 separate runs {total:.1f} s", flush=True)
        ms, mp = statistics.median(sweep_s), statistics.median(separate_s)
        tokens = a.steps * 1024
        print(f"\nmachine: {cpu_name()}, {os.cpu_count()} cores")
        print(f"command: python3 scripts/bench_sweep.py --repeats {a.repeats} --steps {a.steps}")
        print(f"4-member sweep:      {ms:.1f} s median ({4 * tokens / ms:,.0f} member-tokens/s), "
              f"rows read {rows[0]:,}")
        print(f"4 separate runs:     {mp:.1f} s median ({4 * tokens / mp:,.0f} member-tokens/s), "
              f"rows read {rows[1]:,}")
        print(f"sweep / separate:    {ms / mp:.3f}")


if __name__ == "__main__":
    main()
