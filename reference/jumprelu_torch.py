#!/usr/bin/env python3
"""jumpscope's own PyTorch reference for the JumpReLU training step (the algorithm of the spec:
forward pass, straight-through estimators, the three sparsity losses, the recipe's schedules,
Adam with the unit-norm decoder), and through baselines_torch.py for TopK, BatchTopK and ReLU,
used three ways:

  golden [--out DIR]         write the golden cases (float64) that tests/it/golden.rs checks our
                             float32 training against; DIR defaults to tests/golden/
  check  [--golden DIR]      regenerate every case into a temporary directory and compare it with
                             DIR (default tests/golden/) to 1e-12: the committed data is what this
                             file computes (run by .ci/run)
  bench  [--l0 N] ...        time the same step with PyTorch eager on the CPU, the peer
                             `jumpscope bench` is measured against (scripts/bench_vs_torch.py)

Needs torch (numpy and h5py only for `bench --store`). Nothing in the Rust build imports it.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from baselines_torch import CLASSES, matryoshka_mse  # noqa: E402
DEFAULT_GOLDEN = os.path.join(HERE, "..", "tests", "golden")

# The recipe's defaults (Gemma Scope); each case below overrides a few of them.
RECIPE = {
    "pre_encoder_bias": True,
    "threshold_param": "log",
    "bandwidth": 0.001,
    "sparsity_loss": "l0",
    "sparsity_coefficient": 1e-3,
    "tanh_scale": 4.0,
    "target_l0": None,
    "lr": 7e-5,
    "lr_warmup_steps": 1000,
    "sparsity_warmup_steps": 10000,
    "adam_beta1": 0.0,
    "adam_beta2": 0.999,
    "adam_eps": 1e-8,
    "unit_norm_decoder": True,
}


def window(z, theta, eps):
    """rect((z - θ)/ε): 1 strictly inside the straight-through window, else 0."""
    u = (z - theta) / eps
    return ((u > -0.5) & (u < 0.5)).to(z.dtype)


class JumpReLUSte(torch.autograd.Function):
    """f = z·H(z − θ). Backward: H(z − θ)·g to z; −(θ/ε)·rect((z − θ)/ε)·g, summed over the
    batch, to θ."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        on = (z > theta).to(z.dtype)
        ctx.save_for_backward(z, theta, on)
        ctx.eps = eps
        return z * on

    @staticmethod
    def backward(ctx, g):
        z, theta, on = ctx.saved_tensors
        d_theta = (window(z, theta, ctx.eps) * g).sum(0) * (-theta / ctx.eps)
        return on * g, d_theta, None


class HeavisideSte(torch.autograd.Function):
    """H(z − θ). Backward: nothing to z; −(1/ε)·rect((z − θ)/ε)·g, summed over the batch, to θ."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        return None, (window(z, theta, ctx.eps) * g).sum(0) / -ctx.eps, None


def lr_schedule(cfg, t):
    """Cosine warm-up from 0.1·lr to lr over lr_warmup_steps (t: the 0-based step), then lr."""
    w = cfg["lr_warmup_steps"]
    if w <= 0 or t >= w:
        return cfg["lr"]
    return cfg["lr"] * (0.1 + 0.45 * (1.0 - math.cos(math.pi * t / w)))


def lambda_schedule(cfg, t):
    """Linear warm-up of λ from 0 over sparsity_warmup_steps (no λ for TopK and BatchTopK)."""
    if "sparsity_coefficient" not in cfg:
        return 0.0
    w = cfg["sparsity_warmup_steps"]
    return cfg["sparsity_coefficient"] * (1.0 if w <= 0 else min(1.0, t / w))


class JumpReluSae(torch.nn.Module):
    """The trained parameters, named as PyTorch reports their gradients in the golden files:
    W_enc, b_enc, W_dec, b_dec, and log_threshold (log θ) or threshold (raw θ)."""

    def __init__(self, params, cfg):
        super().__init__()
        self.cfg = cfg
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            setattr(self, name, torch.nn.Parameter(params[name].clone()))
        add_skip(self, params)
        theta = params["threshold"].clone()
        self.log_space = cfg["threshold_param"] == "log"
        if self.log_space:
            self.log_threshold = torch.nn.Parameter(theta.log())
        else:
            self.threshold = torch.nn.Parameter(theta)

    def theta(self):
        return self.log_threshold.exp() if self.log_space else self.threshold

    def pre_acts(self, x):
        if self.cfg["pre_encoder_bias"]:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def loss_parts(self, x, lam, y=None):
        """(loss, mse, sparsity, l0) of one batch, each a batch mean of per-token sums; `y` is
        a transcoder's target (None: x itself)."""
        cfg = self.cfg
        eps = cfg["bandwidth"]
        y = x if y is None else y
        z = self.pre_acts(x)
        theta = self.theta()
        f = JumpReLUSte.apply(z, theta, eps)
        x_hat = decode(self, f, x)
        mse = (x_hat - y).pow(2).sum(dim=1).mean()
        kind = cfg["sparsity_loss"]
        if kind == "l0":
            sparsity = HeavisideSte.apply(z, theta, eps).sum(dim=1).mean()
        elif kind == "l0_target":
            target = cfg["target_l0"]
            active = HeavisideSte.apply(z, theta, eps).sum(dim=1)
            sparsity = (2.0 / target * (active - target).pow(2)).mean()
        elif kind == "tanh":
            scaled = f * self.W_dec.norm(dim=1) * cfg["tanh_scale"]
            sparsity = scaled.tanh().sum(dim=1).mean()
        else:
            raise ValueError(f"unknown sparsity_loss {kind!r}")
        l0 = (z > theta).to(x.dtype).sum(dim=1).mean()
        # Matryoshka: every inner width's prefix reconstruction joins the loss, unweighted (the
        # skip, where there is one, belongs to each as to the whole)
        base = y if self.W_skip is None else y - x @ self.W_skip
        inner = matryoshka_mse(f, self.W_dec, self.b_dec, base, cfg.get("matryoshka_widths"))
        return mse + lam * sparsity + sum(inner.values()), mse, sparsity, l0


def adam(sae, cfg):
    return torch.optim.Adam(sae.parameters(), lr=cfg["lr"], betas=(cfg["adam_beta1"], cfg["adam_beta2"]),
                            eps=cfg["adam_eps"])


def train(sae, opt, batches, cfg, log=None, targets=None):
    """One Adam step per batch, t counting from 0; with unit_norm_decoder the decoder rows' gradient
    loses its component along the row before the step, and the rows are renormalised after it.
    `targets`: a transcoder's target of each batch."""
    for t, x in enumerate(batches):
        y = None if targets is None else targets[t]
        lr, lam = lr_schedule(cfg, t), lambda_schedule(cfg, t)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss, mse, sparsity, l0 = sae.loss_parts(x, lam, y)
        loss.backward()
        if cfg["unit_norm_decoder"]:
            with torch.no_grad():
                w, g = sae.W_dec, sae.W_dec.grad
                g.sub_((g * w).sum(dim=1, keepdim=True) * w)
        opt.step()
        if cfg["unit_norm_decoder"]:
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))
        if hasattr(sae, "after_step"):
            sae.after_step(t)
        if log is not None:
            log.append({"step": t, "lr": lr, "sparsity_coefficient": lam, "loss": loss.item(), "mse": mse.item(),
                        "sparsity": sparsity.item(), "l0": l0.item()})


def gemma_scope_init(d_in, d_sae, gen, dtype):
    """Decoder rows He-uniform then unit norm, W_enc = W_decᵀ, zero biases."""
    limit = math.sqrt(6.0 / d_in)
    w_dec = torch.rand(d_sae, d_in, generator=gen, dtype=dtype).mul(2).sub(1).mul(limit)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    return {"W_enc": w_dec.t().clone(), "b_enc": torch.zeros(d_sae, dtype=dtype), "W_dec": w_dec,
            "b_dec": torch.zeros(d_in, dtype=dtype)}


def as_list(t):
    return t.detach().cpu().tolist()


def snapshot(sae):
    out = {n: as_list(getattr(sae, n)) for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    out["threshold"] = as_list(sae.theta())
    if getattr(sae, "W_skip", None) is not None:
        out["W_skip"] = as_list(sae.W_skip)
    return out


# ---- golden cases ----------------------------------------------------------------------------

HAND = {  # a case small enough to check by hand: d_in 2, d_sae 3, two tokens, one forward
    "W_enc": [[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]],
    "b_enc": [0.0, 0.1, -0.05],
    "W_dec": [[0.6, 0.8], [-0.8, 0.6], [1.0, 0.0]],
    "b_dec": [0.05, -0.05],
    "threshold": [0.16, 0.40, 0.25],
    "x": [[0.5, -0.2], [0.1, 0.4]],
}

SMALL = dict(RECIPE, bandwidth=0.05, sparsity_coefficient=0.05, lr=1e-3, lr_warmup_steps=3, sparsity_warmup_steps=4)

# name, config, d_in, d_sae, batch, steps, seed (None: the hand case)
CASES = [
    ("hand_2x3", dict(RECIPE, bandwidth=0.1, sparsity_coefficient=0.01), 2, 3, 2, 1, None),
    ("gdm_l0_log", SMALL, 16, 64, 32, 6, 1),
    ("raw_threshold_free_decoder", dict(SMALL, threshold_param="raw", unit_norm_decoder=False, pre_encoder_bias=False),
     16, 64, 32, 6, 2),
    ("tanh", dict(SMALL, sparsity_loss="tanh", bandwidth=0.2, adam_beta1=0.9, unit_norm_decoder=False), 12, 48, 24, 5, 3),
    ("l0_target", dict(SMALL, sparsity_loss="l0_target", target_l0=8.0), 16, 64, 32, 6, 4),
]

# The baselines: the recipe's keys that apply to them, plus their own; `dead` marks the latents
# the AuxK loss uses at every step (every 5th / 7th here, so that it runs).
BASE = {k: SMALL[k] for k in ("pre_encoder_bias", "lr", "lr_warmup_steps", "adam_beta1", "adam_beta2", "adam_eps",
                              "unit_norm_decoder")}
TOPK = dict(BASE, architecture="topk", k=6, aux_k=8, aux_coefficient=1.0 / 32.0)
CASES += [
    ("topk_auxk", dict(TOPK, dead_every=5), 16, 64, 32, 6, 5),
    ("topk_free_decoder", dict(TOPK, k=3, aux_coefficient=0.0, pre_encoder_bias=False, unit_norm_decoder=False,
                               adam_beta1=0.9), 12, 48, 24, 5, 6),
    ("batchtopk_auxk", dict(TOPK, architecture="batchtopk", k=5, aux_k=6, dead_every=7), 16, 64, 32, 6, 7),
    ("relu_l1", dict(BASE, architecture="relu", sparsity_coefficient=0.05, sparsity_warmup_steps=4), 16, 64, 32, 6, 8),
]

# Transcoders: d_out (the target's width) follows the seed; no pre-encoder bias (b_dec has the
# target's width). A skip-transcoder's W_skip starts random here, so that its forward matters
# from the first step (training starts it at 0).
TRANSCODER = dict(SMALL, kind="transcoder", pre_encoder_bias=False)
CASES += [
    ("transcoder_jumprelu", TRANSCODER, 12, 48, 24, 5, 9, 20),
    ("skip_transcoder_l0_target", dict(TRANSCODER, kind="skip-transcoder", sparsity_loss="l0_target", target_l0=6.0,
                                       threshold_param="raw", unit_norm_decoder=False), 16, 48, 24, 5, 10, 8),
    ("skip_transcoder_batchtopk_auxk", dict(TOPK, kind="skip-transcoder", architecture="batchtopk", k=4, aux_k=6,
                                            dead_every=7, pre_encoder_bias=False), 12, 48, 24, 5, 11, 16),
    ("transcoder_relu", dict(BASE, kind="transcoder", architecture="relu", sparsity_coefficient=0.05,
                             sparsity_warmup_steps=4, pre_encoder_bias=False), 12, 40, 24, 5, 12, 12),
]

# Matryoshka: nested widths (the last is d_sae) whose prefix reconstructions join the loss, on
# JumpReLU (Gemma Scope 2's form), BatchTopK with AuxK (the published method), and a TopK
# skip-transcoder.
CASES += [
    ("matryoshka_jumprelu", dict(SMALL, matryoshka_widths=[8, 24, 64]), 16, 64, 32, 6, 13),
    ("matryoshka_batchtopk_auxk", dict(TOPK, architecture="batchtopk", k=5, aux_k=6, dead_every=7,
                                       matryoshka_widths=[4, 16, 40, 64]), 16, 64, 32, 6, 14),
    ("matryoshka_skip_transcoder_topk", dict(TOPK, kind="skip-transcoder", k=4, aux_coefficient=0.0,
                                             pre_encoder_bias=False, matryoshka_widths=[12, 48]),
     12, 48, 24, 5, 15, 16),
]


def add_skip(sae, params):
    """A skip-transcoder's W_skip [d_in, d_out] as a trained parameter (none for other kinds)."""
    sae.W_skip = torch.nn.Parameter(params["W_skip"].clone()) if "W_skip" in params else None


def decode(sae, f, x):
    """x̂ = f W_dec + b_dec, plus x W_skip for a skip-transcoder."""
    x_hat = f @ sae.W_dec + sae.b_dec
    if sae.W_skip is not None:
        x_hat = x_hat + x @ sae.W_skip
    return x_hat


def model(params, cfg):
    """The reference model of the case's architecture."""
    arch = cfg.get("architecture", "jumprelu")
    if arch == "jumprelu":
        return JumpReluSae(params, cfg)
    every = cfg.get("dead_every")
    dead = None if every is None else [i % every == 0 for i in range(params["W_enc"].shape[1])]
    return CLASSES[arch](params, cfg, dead)


def case_data(d_in, d_sae, batch, steps, seed, dtype):
    """Initial parameters and batches. The draws come in a fixed order from one generator seeded
    with `seed`: the decoder, b_enc, b_dec, θ, then the batches (biases and thresholds are
    perturbed so that every code path runs)."""
    if seed is None:
        params = {k: torch.tensor(v, dtype=dtype) for k, v in HAND.items() if k != "x"}
        return params, [torch.tensor(HAND["x"], dtype=dtype)]
    gen = torch.Generator().manual_seed(seed)
    params = gemma_scope_init(d_in, d_sae, gen, dtype)
    params["b_enc"] = torch.randn(d_sae, generator=gen, dtype=dtype) * 0.1
    params["b_dec"] = torch.randn(d_in, generator=gen, dtype=dtype) * 0.1
    params["threshold"] = torch.rand(d_sae, generator=gen, dtype=dtype) * 0.3 + 0.05
    batches = [torch.randn(batch, d_in, generator=gen, dtype=dtype) * (1.5 / math.sqrt(d_in)) for _ in range(steps)]
    return params, batches


def transcoder_data(d_in, d_out, d_sae, batch, steps, seed, dtype, skip):
    """A transcoder case's initial parameters, inputs and targets, drawn in a fixed order from one
    generator: the decoder over d_out (unit rows), the encoder over d_in (unit columns, drawn
    apart from the decoder: the input is another space), b_enc, b_dec, θ, W_skip (when `skip`),
    then each batch's inputs x and targets y = tanh(x A) + noise, A one fixed [d_in, d_out]
    draw, so that the target depends on the input as an MLP's output does on its input."""
    gen = torch.Generator().manual_seed(seed)
    params = gemma_scope_init(d_out, d_sae, gen, dtype)
    params["W_enc"] = gemma_scope_init(d_in, d_sae, gen, dtype)["W_enc"]
    params["b_enc"] = torch.randn(d_sae, generator=gen, dtype=dtype) * 0.1
    params["b_dec"] = torch.randn(d_out, generator=gen, dtype=dtype) * 0.1
    params["threshold"] = torch.rand(d_sae, generator=gen, dtype=dtype) * 0.3 + 0.05
    if skip:
        params["W_skip"] = torch.randn(d_in, d_out, generator=gen, dtype=dtype) * (0.3 / math.sqrt(d_in))
    a = torch.randn(d_in, d_out, generator=gen, dtype=dtype) * (1.0 / math.sqrt(d_in))
    xs, ys = [], []
    for _ in range(steps):
        x = torch.randn(batch, d_in, generator=gen, dtype=dtype) * (1.5 / math.sqrt(d_in))
        noise = torch.randn(batch, d_out, generator=gen, dtype=dtype) * (0.1 / math.sqrt(d_out))
        xs.append(x)
        ys.append(torch.tanh(x @ a) + noise)
    return params, xs, ys


def make_case(name, cfg, d_in, d_sae, batch, steps, seed, d_out=None):
    dt = torch.float64
    targets = None
    if d_out is None:
        params, batches = case_data(d_in, d_sae, batch, steps, seed, dt)
    else:
        skip = cfg["kind"] == "skip-transcoder"
        params, batches, targets = transcoder_data(d_in, d_out, d_sae, batch, steps, seed, dt, skip)
    if cfg.get("architecture", "jumprelu") != "jumprelu":
        params["threshold"] = torch.zeros_like(params["threshold"])  # θ = 0: no trained threshold
    sae = model(params, cfg)
    # one forward and backward at the initial point with the full λ (no warm-up)
    y0 = None if targets is None else targets[0]
    loss, mse, sparsity, l0 = sae.loss_parts(batches[0], cfg.get("sparsity_coefficient", 0.0), y0)
    loss.backward()
    case = {
        "name": name, "config": cfg, "d_in": params["W_enc"].shape[0], "d_sae": params["W_enc"].shape[1],
        "initial": {k: as_list(v) for k, v in params.items()},
        "batches": [as_list(x) for x in batches],
        "first_forward": {"loss": loss.item(), "mse": mse.item(), "sparsity": sparsity.item(), "l0": l0.item(),
                          "gradients": {n: as_list(p.grad) for n, p in sae.named_parameters()}},
    }
    if targets is not None:
        case["d_out"] = d_out
        case["targets"] = [as_list(y) for y in targets]
    if seed is None:
        return case
    sae.zero_grad(set_to_none=True)
    case["steps"] = []
    train(sae, adam(sae, cfg), batches, cfg, case["steps"], targets)
    case["final"] = snapshot(sae)
    # the same run in float32: how far honest float32 arithmetic drifts from the float64 answer
    sae32 = model({k: v.float() for k, v in params.items()}, cfg)
    targets32 = None if targets is None else [y.float() for y in targets]
    train(sae32, adam(sae32, cfg), [x.float() for x in batches], cfg, None, targets32)
    final32 = snapshot(sae32)
    case["float32_drift"] = max(
        (torch.tensor(final32[k], dtype=dt) - torch.tensor(case["final"][k], dtype=dt)).abs().max().item()
        for k in final32)
    return case


def cmd_golden(args):
    os.makedirs(args.out, exist_ok=True)
    for name, cfg, *sizes in CASES:
        case = make_case(name, cfg, *sizes)
        with open(os.path.join(args.out, name + ".json"), "w") as fh:
            json.dump(case, fh)
        print(f"{name}: d_in {case['d_in']}, d_sae {case['d_sae']}, first loss {case['first_forward']['loss']:.6f}, "
              f"float32 drift {case.get('float32_drift', 0.0):.1e}")


def differences(a, b, path="", tol=1e-12):
    """Where two JSON values differ: numbers by more than tol (absolute, or relative to their size)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return [] if abs(a - b) <= tol * max(1.0, abs(a), abs(b)) else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}", tol)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", tol)]
    return [f"{path}: {type(a).__name__} != {type(b).__name__}"]


def cmd_check(args):
    names = sorted(f[:-5] for f in os.listdir(args.golden) if f.endswith(".json"))
    expected = sorted(c[0] for c in CASES)
    if names != expected:
        sys.exit(f"{args.golden}: holds cases {names}, expected {expected}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        cmd_golden(argparse.Namespace(out=tmp))
        for name in names:
            with open(os.path.join(args.golden, name + ".json")) as fh:
                committed = json.load(fh)
            with open(os.path.join(tmp, name + ".json")) as fh:
                fresh = json.load(fh)
            # the float32 drift depends on the machine's float32 kernels: only its size is checked
            drift = fresh.pop("float32_drift", None), committed.pop("float32_drift", None)
            diffs = differences(fresh, committed, name)
            if drift[0] is not None and not drift[0] < 1e-5:
                diffs.append(f"{name}.float32_drift: {drift[0]} (expected < 1e-5)")
            for d in diffs[:5]:
                print("DIFFERS", d)
            failed += bool(diffs)
            print(f"{name}: {'matches' if not diffs else f'{len(diffs)} values differ'}")
    print(f"{len(names) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


# ---- bench ------------------------------------------------------------------------------------

def cmd_bench(args):
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    d_in, d_sae, bs = args.d_in, args.d_sae, args.batch
    cfg = dict(RECIPE)
    params = gemma_scope_init(d_in, d_sae, torch.Generator().manual_seed(0), torch.float32)
    params["threshold"] = torch.full((d_sae,), 1e-3)
    sae = JumpReluSae(params, cfg)
    opt = adam(sae, cfg)
    if args.store:
        import h5py
        import numpy as np
        with h5py.File(args.store, "r") as fh:
            rows = np.asarray(fh[args.dataset][: bs * 8], dtype=np.float32).reshape(-1, d_in)
        data = torch.from_numpy(rows)
        batches = [data[i * bs:(i + 1) * bs] for i in range(len(data) // bs)]
    else:
        batches = [torch.randn(bs, d_in) / math.sqrt(d_in) for _ in range(8)]
    if args.l0:
        # realistic sparsity: θ_j = the (1 − L0/d_sae) quantile of feature j's pre-activations on
        # the first batch, floored at 1e-6, so that about L0 features fire per token
        with torch.no_grad():
            q = torch.quantile(sae.pre_acts(batches[0]), 1.0 - args.l0 / d_sae, dim=0).clamp_min(1e-6)
            sae.log_threshold.copy_(q.log())

    def steps(n):
        for t in range(n):
            train(sae, opt, [batches[t % len(batches)]], cfg)

    steps(args.warmup)
    start = time.perf_counter()
    steps(args.steps)
    secs = time.perf_counter() - start
    tok_s = bs * args.steps / secs
    with torch.no_grad():
        l0 = (sae.pre_acts(batches[0]) > sae.theta()).float().sum(dim=1).mean().item()
    print(json.dumps({"impl": "torch-eager-cpu", "reference": os.path.relpath(__file__), "threads": torch.get_num_threads(),
                      "d_in": d_in, "d_sae": d_sae, "batch": bs, "steps": args.steps,
                      "tokens_per_s": round(tok_s, 1), "ms_per_step": round(secs * 1e3 / args.steps, 2),
                      "matmul_gflops": round(6.0 * d_in * d_sae * tok_s / 1e9, 2), "l0": round(l0, 2)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("golden", help="write the golden cases")
    g.add_argument("--out", default=DEFAULT_GOLDEN)
    c = sub.add_parser("check", help="regenerate the golden cases and compare them with a directory")
    c.add_argument("--golden", default=DEFAULT_GOLDEN)
    b = sub.add_parser("bench", help="time the training step with PyTorch eager")
    b.add_argument("--d-in", type=int, default=512)
    b.add_argument("--d-sae", type=int, default=4096)
    b.add_argument("--batch", type=int, default=4096)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    b.add_argument("--store", help="read the batches from this HDF5 file instead of random rows")
    b.add_argument("--dataset", default="activations")
    b.add_argument("--l0", type=float, default=0.0,
                   help="set θ so that about this many features fire per token (0: θ = 1e-3 everywhere)")
    args = p.parse_args()
    {"golden": cmd_golden, "check": cmd_check, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    main()
