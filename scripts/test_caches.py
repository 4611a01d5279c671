#!/usr/bin/env python3
"""Tests of reading SAELens activation caches in place, no network (run by
`scripts/dev.sh test-caches`, which CI calls):

  - SAELens's own `CacheActivationsRunner` (its model loader swapped for a tiny random
    HookedTransformer, its text a tokenized in-memory dataset) writes float32 and float16
    caches of several shards. On each: `jumpscope store info` describes it; `eval` of an SAE
    on the cache equals sae-lens's own reconstruction of the rows `datasets` reads (every row
    read in its place, with its value); a 20-step shuffled training runs; `inspect --vocab
    tokenizer.json` shows contexts whose ids are the cache's token_ids at those positions, whose
    strings are the tokenizer's, and whose activations sae-lens computes from the same rows;
  - a cache with several hook columns, written with `datasets` in the same Features layout:
    each hook trains when named, and naming none is one line listing them;
  - refusals, one line and exit 2 each: a directory that is not a cache, a missing hook column
    (the present ones listed), an unsupported column type (float64).

    python3 scripts/test_caches.py --bin target/release/jumpscope
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import datasets
import numpy as np
import torch

CTX, D = 16, 16
WORDS = ("the cat dog sat ran on under a mat log quickly slowly red blue big small and then it was "
         "happy sad home tree river over").split()
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def tokenizer(path):
    """A word-level tokenizer over WORDS, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tk = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tk.save(path)
    return tk


def token_windows(tk, n_seq):
    rng = np.random.default_rng(0)
    ids = []
    while len(ids) < n_seq * CTX:
        ids += tk.encode(" ".join(rng.choice(WORDS, size=12))).ids
    return np.array(ids[:n_seq * CTX]).reshape(n_seq, CTX)


def saelens_cache(out, dtype, windows, vocab_size):
    """A cache written by sae-lens's CacheActivationsRunner, 8 buffers → 8 Arrow files."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    import sae_lens.cache_activations_runner as car
    from sae_lens.config import CacheActivationsRunnerConfig
    cfg = HookedTransformerConfig(n_layers=2, d_model=D, d_head=4, n_heads=4, d_mlp=32, d_vocab=vocab_size,
                                  n_ctx=CTX, act_fn="gelu", seed=0)
    model = HookedTransformer(cfg)
    car.load_model = lambda **_: model  # no hub: the runner's own code does everything else
    n_seq = len(windows)
    c = CacheActivationsRunnerConfig(
        dataset_path="in-memory", model_name="tiny", model_batch_size=8, hook_name="blocks.1.hook_resid_post",
        d_in=D, training_tokens=n_seq * CTX, context_size=CTX, new_cached_activations_path=out, shuffle=False,
        dtype=dtype, device="cpu", prepend_bos=False,
        # one buffer = 8 sequences: the cache comes in n_seq / 8 shards
        buffer_size_gb=8 * CTX * D * np.dtype(dtype).itemsize / 1e9)
    ds = datasets.Dataset.from_dict({"input_ids": windows.tolist()})
    car.CacheActivationsRunner(c, override_dataset=ds).run()
    return "blocks.1.hook_resid_post"


def cache_rows(cache, hook):
    ds = datasets.Dataset.load_from_disk(cache).with_format("numpy")
    x = np.asarray(ds[hook], dtype=np.float32)
    return x.reshape(-1, x.shape[-1]), np.asarray(ds["token_ids"]).reshape(-1)


def train(binary, tmp, name, cache, hook, steps=20):
    out = os.path.join(tmp, f"run-{name}")
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'[data]\nstores = ["{cache}"]\ndataset = "{hook}"\nbatch_size = 64\n[sae]\nd_sae = 64\n'
                f'threshold_init = 0.05\n[train]\nsteps = {steps}\nlog_every = 5\n[run]\nout = "{out}"\n')
    t = run(binary, "train", "--config", cfg, "--headless")
    check(t.returncode == 0 and os.path.isdir(os.path.join(out, "sae")),
          f"{name}: {steps} shuffled training steps run from the cache")
    if t.returncode != 0:
        print(t.stderr)
    return os.path.join(out, "sae")


def saelens_cache_checks(binary, tmp, dtype, tk, tok_path):
    name = f"sae-lens {dtype}"
    cache = os.path.join(tmp, f"cache-{dtype}")
    windows = token_windows(tk, 64)
    hook = saelens_cache(cache, dtype, windows, tk.get_vocab_size())
    files = sorted(f for f in os.listdir(cache) if f.endswith(".arrow"))
    info = run(binary, "store", "info", cache)
    check(info.returncode == 0 and f"column       {hook} [64, {CTX}, {D}] {dtype}" in info.stdout
          and f"({len(files)} Arrow files)" in info.stdout and len(files) == 8,
          f"{name}: store info describes the cache ({len(files)} files)")
    if info.returncode != 0:
        print(info.stderr)
        return
    x, ids = cache_rows(cache, hook)
    check(np.array_equal(ids, windows.reshape(-1)), f"{name}: the cache's token ids are the text's")
    sae_dir = train(binary, tmp, f"saelens-{dtype}", cache, hook)
    if not os.path.isdir(sae_dir):
        return
    from sae_lens import SAE
    sae = SAE.load_from_disk(sae_dir, device="cpu")
    with torch.no_grad():
        xt = torch.from_numpy(x)
        f = sae.encode(xt)
        resid = (sae.decode(f) - xt).double()
    fvu = (resid.pow(2).sum() / (xt.double() - xt.double().mean(0)).pow(2).sum()).item()
    l0 = (f > 0).sum(1).double().mean().item()
    ev = run(binary, "eval", sae_dir, "--store", cache, "--json")
    got = json.loads(ev.stdout) if ev.returncode == 0 else {}
    check(got.get("n_tokens") == len(x) and abs(got.get("fvu", -1) - fvu) <= 1e-4 * abs(fvu)
          and abs(got.get("l0", -1) - l0) <= 1e-3,
          f"{name}: eval on the cache (FVU {got.get('fvu')}, L0 {got.get('l0')}) equals sae-lens on the rows "
          f"datasets reads (FVU {fvu:.6f}, L0 {l0:.4f})")
    ins = run(binary, "inspect", sae_dir, "--store", cache, "--json", "--top-k", "3", "--context", "3",
              "--vocab", tok_path)
    check(ins.returncode == 0, f"{name}: inspect runs on the cache")
    if ins.returncode != 0:
        print(ins.stderr)
        return
    r = json.loads(ins.stdout)
    vocab = {i: t for t, i in tk.get_vocab().items()}
    tops = [(feat["index"], t) for feat in r["features"] for t in feat["top"] if t.get("context")]
    good_ids = all(t["context"]["ids"] == ids[t["context"]["start"]:t["context"]["start"] + len(t["context"]["ids"])]
                   .tolist() for _, t in tops)
    good_strs = all(t["context"]["tokens"] == [vocab[i] for i in t["context"]["ids"]] for _, t in tops)
    # a context never crosses a sequence boundary
    inside = all(t["context"]["start"] // CTX == (t["context"]["start"] + len(t["context"]["ids"]) - 1) // CTX
                 for _, t in tops)
    acts = all(abs(t["activation"] - f[t["position"], k].item()) <= 1e-4 * max(1.0, abs(t["activation"]))
               for k, t in tops)
    check(bool(tops) and good_ids and good_strs and inside and acts,
          f"{name}: inspect's {len(tops)} contexts hold the cache's ids, the tokenizer's strings, stay inside "
          f"their sequence, and their activations are sae-lens's")


def several_hooks(binary, tmp):
    cache = os.path.join(tmp, "several")
    rng = np.random.default_rng(1)
    n = 24
    feats = datasets.Features({
        "blocks.0.hook_resid_post": datasets.Array2D(shape=(CTX, D), dtype="float32"),
        "blocks.0.hook_mlp_out": datasets.Array2D(shape=(CTX, 24), dtype="float16"),
        "token_ids": datasets.Sequence(datasets.Value("int32"), length=CTX),
    })
    datasets.Dataset.from_dict({
        "blocks.0.hook_resid_post": rng.normal(size=(n, CTX, D)).astype(np.float32),
        "blocks.0.hook_mlp_out": rng.normal(size=(n, CTX, 24)).astype(np.float16),
        "token_ids": rng.integers(0, 30, size=(n, CTX)).astype(np.int32),
    }, features=feats).save_to_disk(cache, num_shards=3)
    none = run(binary, "store", "info", cache)
    check(none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1
          and "blocks.0.hook_resid_post" in none.stderr and "blocks.0.hook_mlp_out" in none.stderr,
          f"several hooks, none named: one line listing them: {none.stderr.strip()}")
    for hook, d in (("blocks.0.hook_resid_post", D), ("blocks.0.hook_mlp_out", 24)):
        info = run(binary, "store", "info", cache, "--dataset", hook)
        check(info.returncode == 0 and f"tokens       {n * CTX} x d_in {d}" in info.stdout
              and "(3 Arrow files)" in info.stdout, f"several hooks: store info on {hook} (d_in {d}, 3 files)")
        train(binary, tmp, f"several-{hook}", cache, hook, steps=10)


def refusals(binary, tmp):
    empty = os.path.join(tmp, "not-a-cache")
    os.makedirs(empty)
    r = run(binary, "store", "info", empty)
    check(r.returncode == 2 and "not a SAELens activation cache" in r.stderr
          and len(r.stderr.strip().splitlines()) == 1, f"not a cache: {r.stderr.strip()}")
    r = run(binary, "store", "info", os.path.join(tmp, "several"), "--dataset", "blocks.9.hook_resid_post")
    check(r.returncode == 2 and "no column `blocks.9.hook_resid_post`" in r.stderr
          and "blocks.0.hook_mlp_out" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          f"missing hook: {r.stderr.strip()}")
    f64 = os.path.join(tmp, "float64")
    feats = datasets.Features({"blocks.0.hook_resid_post": datasets.Array2D(shape=(CTX, D), dtype="float64")})
    datasets.Dataset.from_dict({"blocks.0.hook_resid_post": np.zeros((4, CTX, D))}, features=feats).save_to_disk(f64)
    r = run(binary, "store", "info", f64, "--dataset", "blocks.0.hook_resid_post")
    check(r.returncode == 2 and "float32 or float16" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          f"float64 column: {r.stderr.strip()}")
    cfg = os.path.join(tmp, "bad.toml")
    with open(cfg, "w") as fh:
        fh.write(f'[data]\nstores = ["{empty}"]\n[sae]\nd_sae = 8\n[train]\nsteps = 1\n[run]\nout = "{tmp}/bad"\n')
    r = run(binary, "train", "--config", cfg, "--headless")
    check(r.returncode == 2 and "not a SAELens activation cache" in r.stderr and "panicked" not in r.stderr,
          f"train on a directory that is not a cache: {r.stderr.strip()}")


def main():
    import warnings
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    binary = os.path.abspath(p.parse_args().bin)
    datasets.disable_progress_bars()
    import logging
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "tokenizer.json")
        tk = tokenizer(tok_path)
        for dtype in ("float32", "float16"):
            saelens_cache_checks(binary, tmp, dtype, tk, tok_path)
        several_hooks(binary, tmp)
        refusals(binary, tmp)
    if failures:
        print(f"{len(failures)} failed")
        sys.exit(1)
    print("all cache checks passed")


if __name__ == "__main__":
    main()
