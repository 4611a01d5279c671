#!/usr/bin/env python3
"""Tests of the model companion on the repository's causal LM, no network (run by
`scripts/dev.sh test-lm`, which CI calls):

  - a run of sample_data/tinylm.toml with the model in the loop: `lm-eval` records at the steps
    `lm_eval.every` makes due (or `lm-eval-skipped`), the final step evaluated before `finish`;
  - `jumpscope lm-eval` on that run gives the final record's numbers again, and appends a record;
  - ce_clean and ce_ablated against transformers' own loss of the same ids (ablation by a hook
    of this test's own);
  - `--texts` tokenizes as harvest.py does: on a float32 store harvested from the same text,
    `jumpscope eval` gives the L0 and FVU that lm-eval measured at the site (the splice is the SAE
    as eval applies it);
  - a skip-transcoder trained on harvest's mlp_in/mlp_out pair splices in as the MLP: its output
    replaces the MLP's, read from the MLP's input on the same pass; its CE equals this test's own
    transformers splice of the exported SAELens weights, ce_ablated is the zeroed MLP's, and L0
    and FVU equal `jumpscope eval --target-store`'s on the harvested pair;
  - bad input is one line and exit 2: a missing model, a layer or site the model lacks, an SAE of
    another width, ids outside the vocabulary, a Python without torch, an [lm_eval] table
    without a key, a transcoder without a target site and an SAE with one.

    python3 scripts/test_lm_eval.py --bin target/release/jumpscope
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "sample_data", "tinylm")
IDS = os.path.join(MODEL, "heldout_ids.npy")
TEXT = os.path.join(MODEL, "heldout.txt")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(b), 1e-12)


def records(run, kind):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]


def transcoder_ce(ids, sae_dir):
    """Mean next-token CE with blocks.0's MLP replaced by the transcoder saved in `sae_dir` (its
    SAELens weights, applied here by hand: JumpReLU on x W_enc + b_enc, then f W_dec + b_dec +
    x W_skipᵀ), or with the MLP's output zeroed when `sae_dir` is None."""
    from safetensors.torch import load_file
    model = transformers.GPT2LMHeadModel.from_pretrained(MODEL).eval()
    mlp = model.transformer.h[0].mlp
    seen = {}
    pre = mlp.register_forward_pre_hook(lambda _m, args: seen.__setitem__("x", args[0]))
    if sae_dir is None:
        post = mlp.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    else:
        w = load_file(os.path.join(sae_dir, "sae_weights.safetensors"))

        def replace(_m, _i, out):
            x = seen["x"]
            z = x @ w["W_enc"] + w["b_enc"]
            f = z * (z > w["threshold"])
            return f @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T
        post = mlp.register_forward_hook(replace)
    with torch.no_grad():
        x = torch.from_numpy(ids.astype(np.int64))
        loss = model(input_ids=x, labels=x).loss.item()
    pre.remove()
    post.remove()
    return loss


def transformers_ce(ids, ablate):
    """Mean next-token CE of the model on ids, with blocks.0's output zeroed if `ablate`."""
    model = transformers.GPT2LMHeadModel.from_pretrained(MODEL).eval()
    handle = None
    if ablate:
        handle = model.transformer.h[0].register_forward_hook(
            lambda _m, _i, out: (torch.zeros_like(out[0]),) + tuple(out[1:]) if isinstance(out, tuple)
            else torch.zeros_like(out))
    with torch.no_grad():
        x = torch.from_numpy(ids.astype(np.int64))
        loss = model(input_ids=x, labels=x).loss.item()
    if handle:
        handle.remove()
    return loss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    args = p.parse_args()
    args.bin = os.path.abspath(args.bin)
    py = sys.executable
    env = {**os.environ, "JUMPSCOPE_PYTHON": py}

    def js(*a, expect=0, cwd=ROOT):
        done = subprocess.run([args.bin, *a], cwd=cwd, capture_output=True, text=True, env=env)
        if done.returncode != expect:
            print(done.stdout, done.stderr)
        return done

    with tempfile.TemporaryDirectory() as tmp:
        # ---- live, during training
        run = os.path.join(tmp, "run")
        t = js("train", "--config", "sample_data/tinylm.toml", "--headless", "--set", f"run.out=\"{run}\"",
               "--set", "train.steps=400", "--set", "lm_eval.every=100")
        check(t.returncode == 0, "a run with [lm_eval] finishes")
        lm = records(run, "lm-eval")
        skipped = {r["step"] for r in records(run, "lm-eval-skipped")}
        check(all(s in {r["step"] for r in lm} or s in skipped for s in (100, 200, 300)),
              f"every due step is evaluated or skipped: {[r['step'] for r in lm]}, skipped {sorted(skipped)}")
        check(bool(lm) and lm[-1]["step"] == 400, "the final step is evaluated")
        with open(os.path.join(run, "metrics.jsonl")) as f:
            kinds = [json.loads(line)["type"] for line in f]
        check(kinds.index("finish") > max(i for i, k in enumerate(kinds) if k == "lm-eval"),
              "the final evaluation is recorded before finish")
        check(not records(run, "lm-eval-failed"), "no failure")
        final = lm[-1]
        check(all(np.isfinite(final[k]) for k in ("ce_clean", "ce_spliced", "ce_ablated", "kl", "l0", "fvu")),
              "finite numbers")
        check(final["ce_clean"] < final["ce_spliced"] < final["ce_ablated"] and 0 < final["ce_recovered"] < 1,
              f"clean < spliced < ablated: {final['ce_clean']:.4f} {final['ce_spliced']:.4f} {final['ce_ablated']:.4f}")

        # ---- the command, on the same run and ids
        c = js("lm-eval", run, "--model", MODEL, "--layer", "0", "--site", "resid_post", "--token-ids", IDS, "--json")
        out = json.loads(c.stdout)[0] if c.returncode == 0 else {}
        check(all(close(out.get(k, np.nan), final[k], 1e-6) for k in ("ce_spliced", "kl", "l0", "fvu")),
              "lm-eval on the finished run gives the live final numbers")
        check(len(records(run, "lm-eval")) == len(lm) + 1, "lm-eval appends its record to the run")
        # the binary carries the companion: it runs from any directory, the repository's not needed
        elsewhere = js("lm-eval", os.path.join(run, "sae"), "--model", MODEL, "--layer", "0", "--token-ids", IDS,
                       "--json", cwd=tmp)
        check(elsewhere.returncode == 0 and close(json.loads(elsewhere.stdout)[0]["kl"], out["kl"], 1e-9),
              "lm-eval from another directory gives the same numbers")
        ids = np.load(IDS)
        check(close(out.get("ce_clean", np.nan), transformers_ce(ids, False), 1e-5),
              f"ce_clean is transformers' loss of the ids ({out.get('ce_clean')})")
        check(close(out.get("ce_ablated", np.nan), transformers_ce(ids, True), 1e-5), "ce_ablated is the zeroed block's")
        check(out.get("tokens") == ids.size, "tokens: every position of the ids")
        check(close(out["delta_lm_loss"], out["ce_spliced"] - out["ce_clean"], 1e-12)
              and close(out["ce_recovered"], (out["ce_ablated"] - out["ce_spliced"])
                        / (out["ce_ablated"] - out["ce_clean"]), 1e-12), "ΔLM loss and CE recovered as defined")

        # ---- --texts is harvest's tokenization; the splice is eval's SAE
        h = subprocess.run([py, os.path.join(HERE, "harvest.py"), "--model", MODEL, "--layers", "0", "--site",
                            "resid_post", "--texts", TEXT, "--tokens", "4096", "--seq-len", "64", "--store-dtype",
                            "float32", "--out", os.path.join(tmp, "acts"), "--quiet"], capture_output=True, text=True)
        check(h.returncode == 0, "harvest of the same text")
        store = os.path.join(tmp, "acts", "tinylm", "layer0_resid_post", "shard-00000.h5")
        e = js("eval", os.path.join(run, "sae"), "--store", store, "--json")
        ev = json.loads(e.stdout) if e.returncode == 0 else {}
        c = js("lm-eval", os.path.join(run, "sae"), "--model", MODEL, "--layer", "0", "--texts", TEXT,
               "--tokens", "4096", "--seq-len", "64", "--json")
        tx = json.loads(c.stdout)[0] if c.returncode == 0 else {}
        check(tx.get("tokens") == ev.get("n_tokens") == 4096, "the same 4096 tokens")
        check(close(tx.get("l0", np.nan), ev.get("l0", 0), 1e-5) and close(tx.get("fvu", np.nan), ev.get("fvu", 0), 1e-4),
              f"L0 and FVU at the site equal eval's on the harvested store: {tx.get('l0')} {ev.get('l0')}, "
              f"{tx.get('fvu')} {ev.get('fvu')}")

        # ---- a transcoder spliced in as the MLP
        h = subprocess.run([py, os.path.join(HERE, "harvest.py"), "--model", MODEL, "--layers", "0", "--site",
                            "mlp_in,mlp_out", "--texts", TEXT, "--tokens", "4096", "--seq-len", "64", "--store-dtype",
                            "float32", "--out", os.path.join(tmp, "pair"), "--quiet"], capture_output=True, text=True)
        check(h.returncode == 0, "harvest of the MLP's input and output")
        pair = os.path.join(tmp, "pair", "tinylm")
        x_store = os.path.join(pair, "layer0_mlp_in", "shard-00000.h5")
        y_store = os.path.join(pair, "layer0_mlp_out", "shard-00000.h5")
        tc_cfg = os.path.join(tmp, "tc.toml")
        with open(tc_cfg, "w") as f:
            f.write(f'[data]\nstores = ["{x_store}"]\ntarget_stores = ["{y_store}"]\nbatch_size = 256\n'
                    '[sae]\nkind = "skip-transcoder"\nd_sae = 256\nthreshold_init = 0.05\nbandwidth = 0.05\n'
                    '[train]\nsteps = 200\nlr = 2e-3\nlr_warmup_steps = 20\nsparsity_coefficient = 0.01\n'
                    f'sparsity_warmup_steps = 50\nlog_every = 50\n[run]\nout = "{tmp}/tc"\n')
        check(js("train", "--config", tc_cfg, "--headless").returncode == 0, "a skip-transcoder trains on the pair")
        tc = os.path.join(tmp, "tc", "sae")
        e = js("eval", tc, "--store", x_store, "--target-store", y_store, "--json")
        ev = json.loads(e.stdout) if e.returncode == 0 else {}
        c = js("lm-eval", tc, "--model", MODEL, "--layer", "0", "--site", "mlp_in", "--target-site", "mlp_out",
               "--texts", TEXT, "--tokens", "4096", "--seq-len", "64", "--json")
        out = json.loads(c.stdout)[0] if c.returncode == 0 else {}
        check(c.returncode == 0 and close(out.get("l0", np.nan), ev.get("l0", 0), 1e-5)
              and close(out.get("fvu", np.nan), ev.get("fvu", 0), 1e-4),
              f"the transcoder's L0 and FVU at the MLP equal eval's on the pair: {out.get('l0')} {ev.get('l0')}, "
              f"{out.get('fvu')} {ev.get('fvu')}")
        c = js("lm-eval", tc, "--model", MODEL, "--layer", "0", "--site", "mlp_in", "--target-site", "mlp_out",
               "--token-ids", IDS, "--json")
        out = json.loads(c.stdout)[0] if c.returncode == 0 else {}
        ids = np.load(IDS)
        check(close(out.get("ce_spliced", np.nan), transcoder_ce(ids, tc), 1e-5),
              f"ce_spliced is the model's with the transcoder as its MLP: {out.get('ce_spliced')}")
        check(close(out.get("ce_ablated", np.nan), transcoder_ce(ids, None), 1e-5),
              "ce_ablated is the model's with the MLP's output zeroed")
        check(0 < out.get("ce_recovered", -1) <= 1.0, f"CE recovered in (0, 1]: {out.get('ce_recovered')}")

        # ---- bad input
        demo = os.path.join(tmp, "demo")
        js("train", "--config", "sample_data/demo.toml", "--headless", "--set", "train.steps=20",
           "--set", f"run.out=\"{demo}\"")
        bad = np.load(IDS)
        bad[3, 17] = 100_000
        np.save(os.path.join(tmp, "bad.npy"), bad)
        no_torch = os.path.join(tmp, "python-without-torch")
        with open(no_torch, "w") as f:
            f.write("#!/bin/sh\nexec env -u PYTHONPATH python3 -I -S \"$@\"\n")
        os.chmod(no_torch, 0o755)
        no_layer = os.path.join(tmp, "no-layer.toml")
        with open(os.path.join(ROOT, "sample_data", "tinylm.toml")) as f:
            text = f.read()
        with open(no_layer, "w") as f:
            f.write(text.replace("\nlayer = 0\n", "\n").replace('out = "runs/tinylm"', f'out = "{tmp}/nl"'))
        sae = os.path.join(run, "sae")
        common = ["--layer", "0", "--token-ids", IDS]
        for argv, needle in [
            (["lm-eval", sae, "--model", os.path.join(tmp, "no-model"), *common], "no such directory"),
            (["lm-eval", sae, "--model", MODEL, "--layer", "5", "--token-ids", IDS], "the model has 2 layers"),
            (["lm-eval", sae, "--model", MODEL, "--site", "resid_mid", *common], "unknown site"),
            (["lm-eval", os.path.join(demo, "sae"), "--model", MODEL, *common], "the SAE's d_in is 64, but"),
            (["lm-eval", sae, "--model", MODEL, "--layer", "0", "--token-ids", os.path.join(tmp, "bad.npy")],
             "token id 100000 at [3, 17] is outside the model's vocabulary"),
            (["lm-eval", sae, "--model", MODEL, *common, "--python", no_torch], "cannot import torch"),
            (["train", "--config", no_layer, "--headless"], "lm_eval.layer = (missing)"),
            (["lm-eval", tc, "--model", MODEL, "--site", "mlp_in", *common], "--target-site"),
            (["lm-eval", sae, "--model", MODEL, "--target-site", "mlp_out", *common], "leave out the target site"),
        ]:
            d = js(*argv, expect=2)
            lines = [line for line in d.stderr.splitlines() if line.strip()]
            check(d.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in d.stderr,
                  f"bad input is one line: {lines[-1] if lines else '(nothing)'}")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("lm-eval: all checks passed")


if __name__ == "__main__":
    main()
