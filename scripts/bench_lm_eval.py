#!/usr/bin/env python3
"""What the model in the loop costs (docs/performance.md, "The model in the loop"):

  1. the companion's spliced pass on the sample model, in tokens/s (`jumpscope lm-eval` on
     `--tokens` tokens of sample_data/tinylm/heldout.txt, its own timing from the reply);
  2. what live evaluation costs the trainer: sample_data/tinylm.toml for `--steps` steps with
     `[lm_eval]` every tenth of the run, alternated with the same run without `[lm_eval]`,
     `--repeats` times each; the trainer's tokens/s (tokens / elapsed seconds of its last
     report), medians.

    python3 scripts/bench_lm_eval.py --bin target/release/jumpscope --python VENV/bin/python
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rate(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    last = [r for r in recs if r["type"] == "metrics"][-1]
    return last["tokens"] / last["elapsed_s"], sum(r["type"] == "lm-eval" for r in recs), \
        sum(r["type"] == "lm-eval-skipped" for r in recs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokens", type=int, default=16384)
    a = p.parse_args()
    env = {**os.environ, "JUMPSCOPE_PYTHON": a.python}
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--headless", "--set", f"train.steps={a.steps}", "--set", "train.eval_every=0",
                "--set", "train.checkpoint_every=0", "--set", "train.log_every=100"]
        on, off, evals = [], [], []
        for i in range(a.repeats):
            for live in (True, False):
                run = os.path.join(tmp, f"{'on' if live else 'off'}{i}")
                cfg = os.path.join(ROOT, "sample_data", "tinylm.toml")
                extra = ["--set", f"lm_eval.every={a.steps // 10}"] if live else []
                if not live:
                    # the same recipe without its [lm_eval] table
                    with open(cfg) as f:
                        text = f.read().split("[lm_eval]")[0] + '[run]\nout = "runs/tinylm"\n'
                    cfg = os.path.join(tmp, "off.toml")
                    with open(cfg, "w") as f:
                        f.write(text)
                subprocess.run([a.bin, "train", "--config", cfg, *base, *extra, "--set", f"run.out=\"{run}\""],
                               cwd=ROOT, env=env, check=True, capture_output=True)
                r, n, skipped = rate(run)
                (on if live else off).append(r)
                if live:
                    evals.append((n, skipped))
                print(f"{'with' if live else 'without'} [lm_eval]: {r:,.0f} tokens/s"
                      + (f" ({n} evaluations, {skipped} skipped)" if live else ""), file=sys.stderr)
        sae = os.path.join(tmp, "on0", "sae")
        t0 = time.time()
        out = subprocess.run([a.bin, "lm-eval", sae, "--model", "sample_data/tinylm", "--layer", "0", "--texts",
                              "sample_data/tinylm/heldout.txt", "--tokens", str(a.tokens), "--seq-len", "64",
                              "--json", "--no-record"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        wall = time.time() - t0
        n_tok = json.loads(out.stdout)[0]["tokens"]
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(json.dumps({
        "trainer_tokens_per_s_with_lm_eval": round(m_on), "trainer_tokens_per_s_without": round(m_off),
        "slowdown": round(1 - m_on / m_off, 4), "evaluations_and_skipped": evals,
        "lm_eval_command_wall_s": round(wall, 2), "lm_eval_tokens": n_tok, "steps": a.steps,
        "repeats": a.repeats}, indent=1))


if __name__ == "__main__":
    main()
