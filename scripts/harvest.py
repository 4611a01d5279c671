#!/usr/bin/env python3
"""Harvest a Hugging Face model's activations into HDF5 stores that `jumpscope train` reads
without options.

    python3 scripts/harvest.py --model google/gemma-2-2b --layers 6,12 --site resid_post \\
        --texts corpus.jsonl --tokens 50_000_000 --seq-len 1024 --dtype bfloat16 --device cuda --out acts/
    jumpscope train --config run.toml   # data.stores = ["acts/gemma-2-2b/layer12_resid_post/*.h5"]

Layers and sites follow the TransformerLens/SAELens hook names: `resid_post` of layer L is the
output of block L (`hidden_states[L+1]` in transformers, except after the last block, where
transformers applies the final norm first and we do not), `resid_pre` its input
(`hidden_states[L]`); `mlp_out` and `attn_out` are the outputs of block L's MLP and attention
modules, `mlp_in` what the MLP module receives (after the block's norm; TransformerLens's
`blocks.L.ln2.hook_normalized`); `--module NAME` takes any module by its name in
`model.named_modules()`. All are read with forward hooks, every requested layer and site in one
forward pass, so `--site mlp_in,mlp_out` writes a transcoder's input and target with their rows
aligned (the same tokens, in the same order and shards).

Text: a `.txt` file (one document per line, or with `--txt-docs blank` separated by blank lines),
a `.jsonl` file (`--text-field`, default `text`), a directory of those, or a Hugging Face
dataset saved with `save_to_disk`. Documents are tokenized without special tokens, joined with
the tokenizer's separator (EOS, else SEP) and cut into `--seq-len` windows; with `--bos` (the
default when the tokenizer has one) each window starts with BOS (or CLS).

Output, per site: OUT/<model>/<site>/shard-NNNNN.h5, each with `activations`
[n_seq, seq_len, d_in] (float16, float32, or bfloat16 as uint16 with attribute
dtype = "bfloat16"), chunked one sequence per chunk, optionally gzip or LZF; `token_ids`
[n_seq, seq_len] int32; `vocab` (one string per token id); with `--exclude-special` a `mask`
[n_seq, seq_len] uint8, 0 at special tokens' positions (BOS, PAD, SEP, …), which jumpscope leaves
out of training, validation and the input scale; and attributes model, revision,
layer, site, hook, dtype, seq_len, tokenizer, text_source, command and version. A shard is
written as `shard-NNNNN.h5.partial` and renamed when complete, so a stopped harvest leaves no half
shard under a real name; `--resume` continues after the last complete shard, with the same token
stream (the same arguments give the same windows).

Needs torch, transformers, h5py, numpy and tqdm (scripts/harvest-requirements.txt). Bad input is
one line on stderr and exit code 2.
"""
import argparse
import glob
import os
import re
import shlex
import sys
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lm_sites import SITES, UserError, check_sites, documents, hook_site, load_model, plan_sites, token_stream  # noqa: E402


def version():
    try:
        with open(os.path.join(HERE, "..", "Cargo.toml")) as f:
            m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
        return f"jumpscope {m.group(1)} harvest" if m else "jumpscope harvest"
    except OSError:
        return "jumpscope harvest"


# ---- shards ----------------------------------------------------------------------------------

def complete_shards(site_dir):
    return sorted(glob.glob(os.path.join(site_dir, "shard-*.h5")))


def write_attrs(f, attrs):
    for k, v in attrs.items():
        f.attrs[k] = v


def open_shard(path, n_seq, seq_len, d, store_dtype, compression, vocab, attrs, masked):
    import h5py
    import numpy as np
    f = h5py.File(path, "w")
    kind = {"float16": "f2", "float32": "f4", "bfloat16": "u2"}[store_dtype]
    opts = {}
    if compression == "gzip":
        opts = {"compression": "gzip", "compression_opts": 4}
    elif compression == "lzf":
        opts = {"compression": "lzf"}
    ds = f.create_dataset("activations", shape=(n_seq, seq_len, d), dtype=kind, chunks=(1, seq_len, d), **opts)
    if store_dtype == "bfloat16":
        ds.attrs["dtype"] = "bfloat16"
    f.create_dataset("token_ids", shape=(n_seq, seq_len), dtype="i4")
    if masked:
        f.create_dataset("mask", shape=(n_seq, seq_len), dtype="u1")
    f.create_dataset("vocab", data=np.array(vocab, dtype=object), dtype=h5py.string_dtype())
    write_attrs(f, attrs)
    return f


def to_store(t, store_dtype):
    """A [.., d] float tensor as the stored numpy array."""
    import torch
    if store_dtype == "bfloat16":
        return t.to(torch.bfloat16).contiguous().view(torch.int16).cpu().numpy().view("u2")
    return t.to(torch.float16 if store_dtype == "float16" else torch.float32).cpu().numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face id or local directory")
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="the model's dtype for the forward passes")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--layers", default="", help="comma-separated layer numbers (TransformerLens numbering)")
    p.add_argument("--site", default="resid_post", help=f"comma-separated sites: {', '.join(SITES)}")
    p.add_argument("--module", action="append", default=[], help="also any module by name (repeatable)")
    p.add_argument("--texts", required=True, help=".txt, .jsonl, a directory of them, or a saved HF dataset")
    p.add_argument("--text-field", default="text", help="the text field of .jsonl records and datasets")
    p.add_argument("--txt-docs", default="line", choices=["line", "blank"],
                   help=".txt documents: one per line, or separated by blank lines")
    p.add_argument("--tokens", type=lambda s: int(s.replace("_", "")), default=0,
                   help="tokens to harvest (0: all the text gives)")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--bos", dest="bos", action="store_true", default=None, help="start each window with BOS")
    p.add_argument("--no-bos", dest="bos", action="store_false")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--store-dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--compression", default="none", choices=["none", "gzip", "lzf"])
    p.add_argument("--shard-tokens", type=lambda s: int(s.replace("_", "")), default=1_000_000,
                   help="tokens per shard (rounded down to whole sequences)")
    p.add_argument("--exclude-special", action="store_true",
                   help="leave BOS, PAD, SEP and the other special tokens' positions out of training "
                        "(a `mask` dataset, 0 there, that jumpscope's reader honours)")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue after the last complete shard")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args()
    try:
        run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("harvest: interrupted; complete shards are kept, `--resume` continues", file=sys.stderr)
        sys.exit(130)


def run(args):
    layers = [int(x) for x in args.layers.split(",") if x.strip()] if args.layers else []
    sites = [s.strip() for s in args.site.split(",") if s.strip()]
    check_sites(sites)
    if not layers and not args.module:
        raise UserError("nothing to harvest: give --layers (with --site) or --module")
    if args.seq_len < 2:
        raise UserError(f"--seq-len {args.seq_len}: expected at least 2")
    import numpy as np
    import torch
    from tqdm import tqdm
    docs, source = documents(args.texts, args.text_field, args.txt_docs)
    if not docs:
        raise UserError(f"{args.texts}: no text (--texts)")
    tok, model = load_model(args.model, args.revision, args.dtype, args.device)
    bos = args.bos if args.bos is not None else (tok.bos_token_id is not None or tok.cls_token_id is not None)
    windows = token_stream(tok, docs, args.seq_len, bos, args.tokens)
    n_seq, seq_len = windows.shape
    plans = plan_sites(model, layers, sites, args.module)
    name = os.path.basename(os.path.normpath(args.model))
    dirs = [os.path.join(args.out, name, d) for d, _, _ in plans]
    per_shard = max(1, args.shard_tokens // seq_len)
    n_shards = -(-n_seq // per_shard)
    done = min(len(complete_shards(d)) for d in dirs) if all(os.path.isdir(d) for d in dirs) else 0
    if done and not args.resume:
        raise UserError(f"{dirs[0]}: holds {done} shard(s) already: --resume continues, or choose another --out")
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        for leftover in glob.glob(os.path.join(d, "*.partial")):
            os.remove(leftover)
    special = np.asarray(sorted(set(tok.all_special_ids)), dtype=np.int32)
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    vocab = [v if v is not None else "" for v in vocab]
    common = {
        "model": args.model, "revision": args.revision or "", "dtype": args.store_dtype, "seq_len": str(seq_len),
        "tokenizer": getattr(tok, "name_or_path", args.model), "text_source": source,
        "command": " ".join(shlex.quote(a) for a in ["python3", "scripts/harvest.py"] + sys.argv[1:]),
        "version": version(), "model_dtype": args.dtype,
    }
    captured = {}
    hooks = [hook_site(model, how, lambda act, key=how: captured.__setitem__(key, act)) for _, _, how in plans]
    start = time.time()
    total_tokens = (n_seq - done * per_shard) * seq_len
    bar = tqdm(total=max(total_tokens, 0), unit="tok", unit_scale=True, disable=args.quiet, desc="harvest")
    written = 0
    for shard in range(done, n_shards):
        lo, hi = shard * per_shard, min(n_seq, (shard + 1) * per_shard)
        files = []
        for d, (_, attrs, _) in zip(dirs, plans):
            path = os.path.join(d, f"shard-{shard:05d}.h5.partial")
            files.append((path, None, attrs))
        for b in range(lo, hi, args.batch_size):
            ids = torch.from_numpy(windows[b:min(hi, b + args.batch_size)]).long().to(args.device)
            with torch.no_grad():
                model(input_ids=ids)
            for k, ((path, f, attrs), (_, _, how)) in enumerate(zip(files, plans)):
                acts = captured[how]
                if f is None:
                    f = open_shard(path, hi - lo, seq_len, acts.shape[-1], args.store_dtype, args.compression,
                                   vocab, {**common, **attrs}, args.exclude_special)
                    files[k] = (path, f, attrs)
                f["activations"][b - lo:b - lo + ids.shape[0]] = to_store(acts, args.store_dtype)
                f["token_ids"][b - lo:b - lo + ids.shape[0]] = windows[b:b + ids.shape[0]]
                if args.exclude_special:
                    f["mask"][b - lo:b - lo + ids.shape[0]] = ~np.isin(windows[b:b + ids.shape[0]], special)
            bar.update(ids.shape[0] * seq_len)
        for path, f, _ in files:
            f.close()
            os.replace(path, path[: -len(".partial")])
            written += os.path.getsize(path[: -len(".partial")])
    bar.close()
    for h in hooks:
        h.remove()
    secs = time.time() - start
    print(f"harvest: {total_tokens:,} tokens ({n_seq - done * per_shard} sequences of {seq_len}) into "
          f"{n_shards - done} shard(s) per site for {len(plans)} site(s) under {os.path.join(args.out, name)}, "
          f"{written / 1e6:.1f} MB in {secs:.1f} s ({total_tokens / max(secs, 1e-9):,.0f} tokens/s)"
          + (f"; {done} shard(s) were already complete" if done else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
