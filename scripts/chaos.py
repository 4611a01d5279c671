#!/usr/bin/env python3
"""Chaos run: kill -9 `jumpscope train` and `jumpscope sweep` at random moments, resume, and
check that the SAE each finally saves is byte for byte the one an uninterrupted run saves.

Each kill lands anywhere: while the store is opened, between steps, inside a checkpoint write,
before the first checkpoint (the directory then starts afresh), during the final export. After a
kill the job is resumed with `--resume` (a run or sweep with no complete checkpoint starts again
from step 0 by itself); when a job finishes before the next kill, a new job starts and the count
goes on. Any exit other than 0 (finished) or SIGKILL (ours) fails the run, as does any final SAE
that differs from the uninterrupted one.

    scripts/chaos.py --kills 50                  # 50 kills of train, then 50 of sweep
    scripts/chaos.py --kind train --kills 5      # what CI runs (with --kind sweep too)

Needs only Python 3 and a built binary (`cargo build --release`, or --bin).
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUN = """[data]
stores = ["{store}"]
batch_size = 256
[sae]
d_sae = 512
[train]
steps = 300
checkpoint_every = 15
keep_checkpoints = 2
log_every = 10
[run]
out = "{out}"
"""

SWEEP = RUN + """[sweep]
vary = {{ "train.lr" = [1e-3, 3e-4] }}
"""


def saes(out: Path, kind: str) -> dict:
    """The saved weights of the run (or of each sweep member), by name."""
    if kind == "train":
        return {"run": (out / "sae" / "sae_weights.safetensors").read_bytes()}
    found = {}
    for member in sorted(out.iterdir()):
        w = member / "sae" / "sae_weights.safetensors"
        if w.is_file():
            found[member.name] = w.read_bytes()
    return found


def start_args(kind: str, cfg: Path) -> list:
    return [kind, "--config", str(cfg), "--headless"]


def resume_args(kind: str, out: Path) -> list:
    return [kind, "--resume", str(out), "--headless"]


def launch(binary: Path, args: list, log) -> subprocess.Popen:
    return subprocess.Popen([str(binary), *args], stdout=log, stderr=subprocess.STDOUT)


def uninterrupted(binary: Path, kind: str, work: Path, store: Path):
    """The reference: the job run once without a kill. Returns its SAEs and its wall time."""
    out = work / f"{kind}-reference"
    cfg = work / f"{kind}-reference.toml"
    cfg.write_text((RUN if kind == "train" else SWEEP).format(store=store, out=out))
    t0 = time.monotonic()
    with open(work / f"{kind}-reference.log", "w") as log:
        code = launch(binary, start_args(kind, cfg), log).wait()
    took = time.monotonic() - t0
    if code != 0:
        sys.exit(f"chaos: the uninterrupted {kind} failed (exit {code}); see {log.name}")
    return saes(out, kind), took


def chaos(binary: Path, kind: str, work: Path, store: Path, kills: int, rng, reference, span):
    """Kill jobs of `kind` until `kills` kills have landed; check every finished job."""
    landed = jobs = resumes = 0
    while landed < kills:
        jobs += 1
        out = work / f"{kind}-{jobs}"
        cfg = work / f"{kind}-{jobs}.toml"
        cfg.write_text((RUN if kind == "train" else SWEEP).format(store=store, out=out))
        log_path = work / f"{kind}-{jobs}.log"
        args = start_args(kind, cfg)
        with open(log_path, "a") as log:
            while True:
                p = launch(binary, args, log)
                try:
                    code = p.wait(timeout=rng.uniform(0.0, span))
                except subprocess.TimeoutExpired:
                    if landed < kills:
                        p.send_signal(signal.SIGKILL)
                        code = p.wait()
                        landed += 1
                    else:
                        code = p.wait()
                if code == -signal.SIGKILL:
                    # killed before it wrote its configuration: nothing to resume, start again
                    marker = out / ("config.toml" if kind == "train" else "sweep.toml")
                    if marker.is_file():
                        args = resume_args(kind, out)
                        resumes += 1
                    else:
                        args = start_args(kind, cfg)
                    continue
                if code != 0:
                    sys.exit(
                        f"chaos: {kind} job {jobs} exited {code} after {landed} kills; see {log_path}"
                    )
                break
        got = saes(out, kind)
        if got != reference:
            differ = sorted(k for k in reference if got.get(k) != reference[k])
            sys.exit(
                f"chaos: {kind} job {jobs}: the final SAE of {differ} differs from the uninterrupted run's; see {log_path}"
            )
        print(
            f"chaos: {kind} job {jobs}: {landed}/{kills} kills so far, final SAE identical",
            flush=True,
        )
    return jobs, resumes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="kills of each kind (default 50)")
    ap.add_argument("--kind", choices=["train", "sweep", "both"], default="both")
    ap.add_argument("--bin", type=Path, default=None, help="the jumpscope binary (default: target/release/jumpscope)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill times (default: random, printed)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = a.bin or target / "release" / "jumpscope"
    if not binary.is_file():
        sys.exit(f"chaos: {binary}: no binary (build it with `cargo build --release`, or pass --bin)")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="jumpscope-chaos-"))
    print(f"chaos: seed {seed}, work directory {work}", flush=True)
    store = work / "store.h5"
    subprocess.run(
        [str(binary), "store", "synth", str(store), "--d-in", "64", "--tokens", "40000", "--seed", "3"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    kinds = ["train", "sweep"] if a.kind == "both" else [a.kind]
    for kind in kinds:
        reference, took = uninterrupted(binary, kind, work, store)
        t0 = time.monotonic()
        jobs, resumes = chaos(binary, kind, work, store, a.kills, rng, reference, took * 1.2)
        print(
            f"chaos: {kind}: {a.kills} kill -9 over {jobs} jobs ({resumes} resumes, "
            f"{time.monotonic() - t0:.0f} s; an uninterrupted job takes {took:.1f} s): "
            "every final SAE byte-identical to the uninterrupted one",
            flush=True,
        )
    if not a.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
