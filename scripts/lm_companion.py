#!/usr/bin/env python3
"""The model companion of `jumpscope lm-eval` and of `[lm_eval]` in train and sweep: a Hugging Face
causal LM kept loaded, which measures what an SAE spliced in at one site does to the model's
next-token loss. jumpscope starts it (the binary carries this file and lm_sites.py) and talks to
it in JSON lines: requests on stdin, replies on stdout, one object per line.

    {"op": "open", "model": M, "layer": L, "site": S, "device": D, "dtype": "float32",
     "token_ids": "ids.npy" | "texts": F, "tokens": N, "seq_len": S, "batch_size": B,
     "target_site": T (transcoders only)}
        -> {"progress": ..., "done": k, "total": n} ..., then
           {"ok": "open", "d_site", "d_target" (with target_site), "vocab_size", "n_seq", "seq_len",
            "positions", "predicted", "ce_clean", "ce_ablated", "secs"}
    {"op": "eval", "saes": ["sae.safetensors", ...]}
        -> progress ..., then {"ok": "eval", "results": [{"ce_spliced", "kl", "l0", "fvu"}, ...],
           "secs", "tokens_per_s"}
    {"op": "quit"}

Any failure is {"error": one line, "user": true|false}; a user error (a missing model, a layer
the model lacks, ids outside the vocabulary, ...) leaves the companion waiting for the next
request, anything else ends it.

Definitions (the same as SAELens's get_recons_loss): cross-entropy is the mean over every
predicted position (each sequence's positions 0..S-2 predicting tokens 1..S-1, all sequences);
KL(clean || spliced) is summed over the vocabulary and averaged over all S positions of every
sequence. An SAE file holds the inference form jumpscope writes (W_enc [d, m], b_enc [m],
W_dec [m, d], b_dec [d], threshold [m], metadata topk), applied to the raw activation exactly as
`jumpscope eval` does: z = x W_enc + b_enc; f = z where z > threshold and z > 0 (or, with topk,
the k largest of relu(z) per position); x_hat = f W_dec + b_dec. L0 and FVU are over the site's
activations at every position.

With "target_site" the session splices transcoders: each reads the site's activation and its
output (f W_dec + b_dec, + x W_skip with a skip, the file's W_skip [d_in, d_out]) replaces the
target site's, on the same forward pass; ce_ablated zero-ablates the target site, and FVU is of
the target site's activations.
"""
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lm_sites import UserError, check_sites, documents, hook_site, load_model, plan_sites, token_stream  # noqa: E402

# clean log-probabilities are kept between evaluations when they take at most this many bytes
CACHE_BYTES = int(os.environ.get("JUMPSCOPE_LM_CACHE_BYTES", str(1 << 30)))


class Session:
    def __init__(self, send):
        self.send = send
        self.model = None
        self.how_t = None

    # ---- open ------------------------------------------------------------------------------

    def open(self, req):
        import numpy as np
        import torch
        start = time.time()
        site = req.get("site", "resid_post")
        check_sites([site], "site")
        target_site = req.get("target_site")
        if target_site:
            check_sites([target_site], "target_site")
        layer = int(req["layer"])
        self.device = req.get("device") or "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {self.device}: this torch ({torch.__version__}) sees no CUDA device")
        tok, model = load_model(req["model"], req.get("revision"), req.get("dtype", "float32"), self.device,
                                causal=True)
        vocab_size = model.get_output_embeddings().weight.shape[0]
        if req.get("token_ids"):
            path = req["token_ids"]
            try:
                ids = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise UserError(f"{path}: cannot read it as a .npy array ({str(e).splitlines()[0]})")
            if ids.ndim != 2 or ids.dtype.kind not in "iu":
                raise UserError(f"{path}: a {ids.dtype} array of shape {list(ids.shape)}: expected integer "
                                "token ids [n_seq, seq_len]")
            if ids.shape[1] < 2 or ids.shape[0] < 1:
                raise UserError(f"{path}: shape {list(ids.shape)}: expected at least one sequence of 2 tokens")
            bad = np.argwhere((ids < 0) | (ids >= vocab_size))
            if len(bad):
                at = tuple(int(i) for i in bad[0])
                raise UserError(f"{path}: token id {int(ids[at])} at {list(at)} is outside the model's "
                                f"vocabulary (0 to {vocab_size - 1}); {len(bad)} such id(s)")
        elif req.get("texts"):
            docs, _ = documents(req["texts"], req.get("text_field", "text"), "line")
            if not docs:
                raise UserError(f"{req['texts']}: no text")
            bos = tok.bos_token_id is not None or tok.cls_token_id is not None
            ids = token_stream(tok, docs, int(req.get("seq_len", 128)), bos, int(req.get("tokens", 0)))
        else:
            raise UserError("no tokens: give token_ids or texts")
        n_ctx = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
        if n_ctx and ids.shape[1] > n_ctx:
            raise UserError(f"sequences of {ids.shape[1]} tokens: the model takes at most {n_ctx} (seq_len)")
        plans = plan_sites(model, [layer], [site] + ([target_site] if target_site else []), [], "layer", "site")
        self.model, self.how = model, plans[0][2]
        # a transcoder's: it reads the site and writes the target site
        self.how_t = plans[1][2] if target_site else None
        self.ids = torch.from_numpy(ids.astype(np.int64))
        self.batch = max(1, int(req.get("batch_size", 8)))
        n_seq, seq_len = self.ids.shape
        cache = n_seq * seq_len * vocab_size * 4 <= CACHE_BYTES
        self.clean = [] if cache else None
        width = {}
        ce_clean = ce_ablated = 0.0
        total = 2 * n_seq
        for b in range(0, n_seq, self.batch):
            x = self.ids[b:b + self.batch].to(self.device)
            hooks = [(self.how, lambda act: width.setdefault("d", act.shape[-1]) and None)]
            if self.how_t:
                hooks.append((self.how_t, lambda act: width.setdefault("t", act.shape[-1]) and None))
            logits = self.forward(x, hooks)
            ce_clean += self.ce_sum(logits, x)
            if cache:
                self.clean.append(torch.log_softmax(logits.float(), -1))
            # the site an SAE (or the target site a transcoder) replaces, zeroed
            logits = self.forward(x, [(self.how_t or self.how, torch.zeros_like)])
            ce_ablated += self.ce_sum(logits, x)
            self.progress("clean and ablated", 2 * min(n_seq, b + self.batch), total)
        predicted = n_seq * (seq_len - 1)
        self.predicted = predicted
        self.d_site = width["d"]
        self.d_target = width.get("t")
        self.send({"ok": "open", "d_site": self.d_site, "d_target": self.d_target,
                   "vocab_size": int(vocab_size), "n_seq": n_seq,
                   "seq_len": seq_len, "positions": n_seq * seq_len, "predicted": predicted,
                   "ce_clean": ce_clean / predicted, "ce_ablated": ce_ablated / predicted,
                   "secs": time.time() - start})

    def forward(self, ids, hooks):
        """The logits of `ids` with each (site, fn) of `hooks` hooked in (hook_site)."""
        import torch
        handles = [hook_site(self.model, how, fn) for how, fn in hooks]
        try:
            with torch.no_grad():
                return self.model(input_ids=ids).logits
        finally:
            for h in handles:
                h.remove()

    @staticmethod
    def ce_sum(logits, ids):
        import torch
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        return -lp.gather(-1, ids[:, 1:, None]).sum().item()

    def progress(self, what, done, total):
        self.send({"progress": what, "done": done, "total": total})

    # ---- eval ------------------------------------------------------------------------------

    def eval(self, req):
        import torch
        if self.model is None:
            raise UserError("eval before open")
        start = time.time()
        saes = [self.load_sae(p) for p in req["saes"]]
        n_seq, seq_len = self.ids.shape
        sums = [{"ce": 0.0, "kl": 0.0, "active": 0.0, "err": 0.0, "sq": 0.0, "sum": None} for _ in saes]
        for i, b in enumerate(range(0, n_seq, self.batch)):
            x = self.ids[b:b + self.batch].to(self.device)
            if self.clean is not None:
                clean = self.clean[i]
            else:
                clean = torch.log_softmax(self.forward(x, []).float(), -1)
            for sae, s in zip(saes, sums):
                if self.how_t is None:
                    hooks = [(self.how, lambda act, sae=sae, s=s: self.splice(act, act, sae, s))]
                else:
                    # the transcoder reads the site, then its output replaces the target site's
                    seen = {}
                    hooks = [(self.how, lambda act, seen=seen: seen.__setitem__("x", act)),
                             (self.how_t, lambda act, sae=sae, s=s, seen=seen: self.splice(seen["x"], act, sae, s))]
                logits = self.forward(x, hooks)
                s["ce"] += self.ce_sum(logits, x)
                lp = torch.log_softmax(logits.float(), -1)
                s["kl"] += (clean.exp() * (clean - lp)).sum().item()
            self.progress("spliced", min(n_seq, b + self.batch), n_seq)
        positions = n_seq * seq_len
        results = []
        for s in sums:
            mean = s["sum"] / positions
            variance = s["sq"] - positions * float((mean * mean).sum())
            results.append({"ce_spliced": s["ce"] / self.predicted, "kl": s["kl"] / positions,
                            "l0": s["active"] / positions, "fvu": s["err"] / variance})
        secs = time.time() - start
        self.send({"ok": "eval", "results": results, "secs": secs,
                   "tokens_per_s": positions * len(saes) / max(secs, 1e-9)})

    def load_sae(self, path):
        import torch
        from safetensors import safe_open
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                names = ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"]
                if "W_skip" in f.keys():
                    names.append("W_skip")
                t = {k: f.get_tensor(k).to(self.device, torch.float32) for k in names}
        except Exception as e:  # noqa: BLE001 - any unreadable file is the caller's mistake
            raise UserError(f"{path}: not an SAE file jumpscope wrote ({str(e).splitlines()[0]})")
        d = t["W_enc"].shape[0]
        if d != self.d_site:
            raise UserError(f"the SAE's d_in is {d}, but the model's {self.how[1]} ({self.how[0]}) is "
                            f"{self.d_site} wide")
        out = t["W_dec"].shape[1]
        want = self.d_target if self.how_t else self.d_site
        if out != want:
            where = self.how_t or self.how
            raise UserError(f"the SAE's output is {out} wide, but the model's {where[1]} ({where[0]}) is "
                            f"{want} wide")
        t["topk"] = int(meta["topk"]) if meta.get("topk") else None
        return t

    @staticmethod
    def splice(act, target, sae, s):
        """The reconstruction of `target` (the site's activation itself for an SAE, the target
        site's for a transcoder) from the site's activation `act`, with the sums for L0 and FVU."""
        import torch
        x = act.reshape(-1, act.shape[-1]).float()
        y = target.reshape(-1, target.shape[-1]).float()
        z = x @ sae["W_enc"] + sae["b_enc"]
        if sae["topk"]:
            z = z.clamp_min(0)
            top = z.topk(sae["topk"], dim=-1)
            f = torch.zeros_like(z).scatter_(-1, top.indices, top.values)
        else:
            f = z * ((z > sae["threshold"]) & (z > 0))
        x_hat = f @ sae["W_dec"] + sae["b_dec"]
        if "W_skip" in sae:
            x_hat = x_hat + x @ sae["W_skip"]
        xd = y.double()
        s["active"] += (f > 0).sum().item()
        s["err"] += (xd - x_hat.double()).pow(2).sum().item()
        s["sq"] += xd.pow(2).sum().item()
        col = xd.sum(0)
        s["sum"] = col if s["sum"] is None else s["sum"] + col
        return x_hat.to(target.dtype).reshape(target.shape)


def main():
    # beside a training job the companion yields the CPU to the trainer (which must never wait
    # for it): jumpscope asks for a lower priority
    nice = int(os.environ.get("JUMPSCOPE_LM_NICE", "0"))
    if nice > 0:
        os.nice(nice)
        try:
            # Linux: run only on CPU time nothing else wants
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            pass
    # the protocol owns the real stdout; anything a library prints goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        send({"error": f"{sys.executable} cannot import {e.name}: install torch and transformers into it "
                       "(pip install torch transformers), or name another Python with --python, lm_eval.python "
                       "or JUMPSCOPE_PYTHON", "user": True, "missing": e.name})
        return 2
    if nice > 0:
        # one thread, and no spinning waits for more: the trainer keeps the cores
        torch.set_num_threads(1)
    session = Session(send)
    send({"ready": True, "python": sys.executable, "torch": torch.__version__,
          "transformers": transformers.__version__})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                return 0
            if op not in ("open", "eval"):
                raise UserError(f"unknown op {op!r}")
            getattr(session, op)(req)
        except UserError as e:
            send({"error": str(e), "user": True})
        except KeyError as e:
            send({"error": f"request without {e}", "user": False})
        except Exception as e:  # noqa: BLE001 - reported to jumpscope as one line, details on stderr
            traceback.print_exc(file=sys.stderr)
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            send({"error": f"{type(e).__name__}: {msg}", "user": False})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
