"""jumpscope's PyTorch reference for transcoders and skip-transcoders (inference form): an SAE
that reads one site and reconstructs another, typically an MLP's input (`mlp_in`) and its output
(`mlp_out`). Every formula here is the one jumpscope's transcoders are to implement:

  z      = x W_enc + b_enc                  (no pre-encoder bias: b_dec has the target's width)
  f      = the architecture's encoder on z  (jumprelu: z·H(z − θ), strict; relu: relu(z);
                                             topk: each row's k largest relu(z); batchtopk at
                                             inference: relu(z)·H(z − θ), θ its global threshold)
  ŷ      = f W_dec + b_dec                  (W_dec [d_sae, d_out], b_dec [d_out])
  skip   ŷ += x W_skip                      (W_skip [d_in, d_out], trained, initialised at 0;
                                             SAELens stores its transpose, [d_out, d_in])
  mse    = mean_b Σ_j (ŷ − y)²              (the loss is on the target y, not on x)

check_saelens.py `transcoders` checks these against SAELens 6.54's inference classes
(`Transcoder`, `SkipTranscoder`, `JumpReLUTranscoder`, `JumpReLUSkipTranscoder`) in float64.
"""
import torch

from baselines_torch import scatter_topk


def encode(z, arch, theta=None, k=None):
    """Feature activations of pre-activations `z` [B, d_sae] for `arch`."""
    if arch == "jumprelu":
        return z * (z > theta).to(z.dtype)
    if arch == "relu":
        return torch.relu(z)
    if arch == "topk":
        return scatter_topk(torch.relu(z), k, 1)
    if arch == "batchtopk":
        return torch.relu(z) * (z > theta).to(z.dtype)
    raise ValueError(f"unknown architecture {arch}")


def forward(p, x, arch, skip=False, k=None):
    """(f, ŷ) of a transcoder with parameters `p` (W_enc, b_enc, W_dec, b_dec, threshold, and
    W_skip [d_in, d_out] when `skip`) on inputs `x` [B, d_in]."""
    z = x @ p["W_enc"] + p["b_enc"]
    f = encode(z, arch, p.get("threshold"), k)
    y_hat = f @ p["W_dec"] + p["b_dec"]
    if skip:
        y_hat = y_hat + x @ p["W_skip"]
    return f, y_hat


def mse(y_hat, y):
    """The loss's reconstruction part, on the target."""
    return (y_hat - y).pow(2).sum(dim=1).mean()


def random_params(d_in, d_out, d_sae, seed, dtype=torch.float64, skip=False):
    """Weights for a check: thresholds where about half the pre-activations pass."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    p = {
        "W_enc": r(d_in, d_sae) / d_in ** 0.5,
        "b_enc": r(d_sae) * 0.1,
        "W_dec": r(d_sae, d_out) / d_sae ** 0.5,
        "b_dec": r(d_out) * 0.1,
        "threshold": r(d_sae).abs() * 0.5,
    }
    if skip:
        p["W_skip"] = r(d_in, d_out) / d_in ** 0.5
    return p
