"""What harvest.py and the model companion (lm_companion.py) share: reading text into token
windows, loading a Hugging Face model, and finding a layer's site (`resid_post`, `resid_pre`,
`mlp_in`, `mlp_out`, `attn_out`, or any module by name) in it, named as TransformerLens and
SAELens name hooks (`blocks.L.hook_resid_post`). `mlp_in` is what the block's MLP module receives,
after its layer norm: TransformerLens's `blocks.L.ln2.hook_normalized` (its own `hook_mlp_in` is
before the norm), the input a transcoder reads to reconstruct `mlp_out`. Both read and replace activations through the forward hooks
planned here, so a store harvested at a site and an SAE spliced in at that site see the same
values.

Needs numpy; torch and transformers where a model is loaded.
"""
import glob
import json
import os
import re

SITES = ("resid_post", "resid_pre", "mlp_in", "mlp_out", "attn_out")


class UserError(Exception):
    """A mistake in the arguments or inputs: one line, exit 2."""


# ---- text ------------------------------------------------------------------------------------

def documents(source, text_field, txt_docs):
    """The documents of `source`, in a fixed order, and a description of where they came from."""
    if not os.path.exists(source):
        raise UserError(f"{source}: no such file or directory (--texts)")
    if os.path.isdir(source):
        if os.path.exists(os.path.join(source, "dataset_info.json")) or os.path.exists(
                os.path.join(source, "state.json")):
            try:
                import datasets
            except ImportError as e:
                raise UserError(f"{source}: a Hugging Face dataset, but `datasets` is not installed ({e})")
            ds = datasets.load_from_disk(source)
            if text_field not in ds.column_names:
                raise UserError(f"{source}: no column {text_field!r} (--text-field); columns: "
                                f"{', '.join(ds.column_names)}")
            return [t for t in ds[text_field] if t], f"{source} (Hugging Face dataset, column {text_field})"
        files = sorted(glob.glob(os.path.join(source, "**", "*.txt"), recursive=True)
                       + glob.glob(os.path.join(source, "**", "*.jsonl"), recursive=True))
        if not files:
            raise UserError(f"{source}: no .txt or .jsonl files in the directory (--texts)")
        docs = []
        for f in files:
            docs += documents(f, text_field, txt_docs)[0]
        return docs, f"{source} ({len(files)} files)"
    if source.endswith(".jsonl"):
        docs = []
        with open(source, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{source}: line {n}: not JSON ({e})")
                if text_field not in rec:
                    raise UserError(f"{source}: line {n}: no field {text_field!r} (--text-field)")
                if rec[text_field]:
                    docs.append(str(rec[text_field]))
        return docs, f"{source} (jsonl, field {text_field})"
    with open(source, encoding="utf-8") as f:
        text = f.read()
    if txt_docs == "blank":
        docs = [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
        return docs, f"{source} (text, documents separated by blank lines)"
    return [d for d in text.splitlines() if d.strip()], f"{source} (text, one document per line)"


def token_stream(tok, docs, seq_len, bos, limit):
    """The windows of `seq_len` token ids (numpy int32 [n_seq, seq_len]) from the documents joined
    with the separator; at most `limit` tokens."""
    import numpy as np
    sep = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    if bos and bos_id is None:
        raise UserError("--bos: the tokenizer has no BOS or CLS token; use --no-bos")
    body = seq_len - 1 if bos else seq_len
    want = limit // seq_len * body if limit else None
    ids = []
    for d in docs:
        ids += tok(d, add_special_tokens=False)["input_ids"]
        if sep is not None:
            ids.append(sep)
        if want is not None and len(ids) >= want:
            break
    n_seq = len(ids) // body
    if limit:
        n_seq = min(n_seq, limit // seq_len)
    if n_seq == 0:
        raise UserError(f"the text gives {len(ids)} tokens: too few for one sequence of {seq_len} (--seq-len)")
    windows = np.asarray(ids[: n_seq * body], dtype=np.int32).reshape(n_seq, body)
    if bos:
        windows = np.concatenate([np.full((n_seq, 1), bos_id, dtype=np.int32), windows], axis=1)
    return windows


# ---- model and sites -------------------------------------------------------------------------

def blocks_of(model, n_layers):
    """The model's list of transformer blocks (the ModuleList with one entry per layer)."""
    import torch
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers:
            return name, m
    raise UserError("cannot find the model's list of blocks; use --module NAME")


def child_named(block, names):
    for n in names:
        if hasattr(block, n) and isinstance(getattr(block, n), __import__("torch").nn.Module):
            return n
    return None


def plan_sites(model, layers, sites, modules, layer_flag="--layers", site_flag="--site"):
    """[(dir name, attributes, how)]: how is ("module", name) for a module's output or
    ("input", name) for its input."""
    cfg = model.config
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    plans = []
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise UserError(f"{layer_flag} {layer}: the model has {n_layers} layers (0 to {n_layers - 1})")
        for site in sites:
            attrs = {"layer": str(layer), "site": site, "hook": f"blocks.{layer}.hook_{site}"}
            prefix, blocks = blocks_of(model, n_layers)
            if site == "resid_post":
                how = ("module", f"{prefix}.{layer}")
            elif site == "resid_pre":
                how = ("input", f"{prefix}.{layer}")
            else:
                mlp = site in ("mlp_in", "mlp_out")
                names = ("mlp", "feed_forward", "ffn") if mlp else ("attn", "self_attn", "attention")
                child = child_named(blocks[layer], names)
                if child is None:
                    raise UserError(f"{site_flag} {site}: block {layer} ({prefix}.{layer}) has no module named "
                                    f"{' or '.join(names)}; name one with --module")
                # the MLP's input (after the block's norm) or a module's output
                how = ("input" if site == "mlp_in" else "module", f"{prefix}.{layer}.{child}")
                if site == "mlp_in":
                    attrs["hook"] = f"blocks.{layer}.ln2.hook_normalized"
            plans.append((f"layer{layer}_{site}", attrs, how))
    known = dict(model.named_modules())
    for name in modules:
        if name not in known:
            close = [n for n in known if name.split(".")[-1] in n][:5]
            raise UserError(f"--module {name}: no such module" + (f" (similar: {', '.join(close)})" if close else ""))
        plans.append((f"module_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}", {"site": "module", "hook": name},
                      ("module", name)))
    return plans




def check_sites(sites, site_flag="--site"):
    for s in sites:
        if s not in SITES:
            raise UserError(f"{site_flag} {s}: unknown site: expected {', '.join(SITES)}")


def load_model(name, revision=None, dtype="float32", device="cpu", causal=False):
    """(tokenizer, model) from a local directory or a Hugging Face id, in eval mode on `device`;
    a model that cannot be loaded is a UserError naming it."""
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # a Hugging Face id is `name` or `org/name`; anything else is a local directory
    local = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if local and not os.path.isdir(name):
        raise UserError(f"--model {name}: no such directory (a local model, or a Hugging Face id like org/name)")
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    try:
        tok = transformers.AutoTokenizer.from_pretrained(name, revision=revision)
        model = auto.from_pretrained(name, revision=revision, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as e:
        where = "" if local or os.path.isdir(name) else "no such directory, and from the Hugging Face hub: "
        raise UserError(f"--model {name}: cannot load it ({where}{str(e).splitlines()[0]})")
    try:
        model.to(device).eval()
    except (RuntimeError, AssertionError) as e:
        raise UserError(f"--device {device}: {str(e).splitlines()[0]}")
    return tok, model


def hook_site(model, how, fn):
    """Call fn(activation) at a planned site on every forward pass; where it returns a tensor,
    that tensor replaces the activation downstream. Returns the hook's handle."""
    kind, what = how
    module = dict(model.named_modules())[what]
    if kind == "module":
        def on_output(_m, _i, out):
            act = out[0] if isinstance(out, tuple) else out
            new = fn(act)
            if new is None:
                return None
            return (new,) + tuple(out[1:]) if isinstance(out, tuple) else new
        return module.register_forward_hook(on_output)

    def on_input(_m, args, kwargs):
        act = args[0] if args else kwargs["hidden_states"]
        new = fn(act)
        if new is None:
            return None
        if args:
            return (new,) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}
    return module.register_forward_pre_hook(on_input, with_kwargs=True)
