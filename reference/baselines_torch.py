"""jumpscope's own PyTorch reference for the baseline architectures beside JumpReLU: TopK
(Gao et al. 2024), BatchTopK (Bussmann et al. 2024) and ReLU with the decoder-norm-weighted L1
penalty (Anthropic, April 2024 update), with the AuxK loss of TopK and BatchTopK. Imported by
jumprelu_torch.py, whose `golden` command writes their cases too; every formula here is the one
src/sae/ implements:

  z      = (x − b_dec) W_enc + b_enc        (pre-encoder bias optional, as for JumpReLU)
  topk   f = each row's k largest relu(z), the rest 0
  batchtopk f = the k·B largest relu(z) of the batch; after each step t (0-based)
           θ ← θ + (v − θ)/(t + 1), v the smallest kept activation: θ is the running mean that
           inference uses as every feature's threshold (θ stays unchanged when nothing was kept)
  relu   f = relu(z), sparsity = mean_b Σ_i f_bi ‖W_dec,i‖, loss = mse + λ·sparsity
  AuxK   e = x − x̂ (held constant), a = each row's k_aux largest relu(z) among the dead
         latents (k_aux capped at their number), ê = a W_dec (no b_dec),
         aux = Σ_b ‖ê_b − e_b‖² / Σ_b ‖e_b − ē‖² (the error normalised by the residual's batch
         variance, `normalized_mse` of the paper's code, openai/sparse_autoencoder),
         loss += α·aux  (Gao et al. 2024, section 2.4)
  Matryoshka  with cfg["matryoshka_widths"] = [w1 < w2 < … < d_sae]: the features are chosen
         as above over the whole dictionary, and for every inner width w < d_sae the loss adds
         the MSE of the reconstruction from the first w features alone,
         x̂_w = f[:, :w] W_dec[:w] + b_dec, mse_w = mean_b Σ_j (x̂_w − x)²
         (Bussmann et al. 2025, arXiv 2503.17547; SAELens 6.54's
         MatryoshkaBatchTopKTrainingSAE adds the same terms, checked by check_saelens.py)
"""
import torch


def scatter_topk(r, k, dim):
    """r with all but its k largest entries along `dim` set to 0 (r ≥ 0)."""
    vals, idx = r.topk(k, dim=dim)
    return torch.zeros_like(r).scatter(dim, idx, vals)


class BaselineSae(torch.nn.Module):
    """W_enc, b_enc, W_dec, b_dec trained; θ a buffer (0, or BatchTopK's running estimate)."""

    def __init__(self, params, cfg, dead=None):
        super().__init__()
        self.cfg = cfg
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            setattr(self, name, torch.nn.Parameter(params[name].clone()))
        # a skip-transcoder's W_skip [d_in, d_out] (transcoders_torch.py)
        self.W_skip = torch.nn.Parameter(params["W_skip"].clone()) if "W_skip" in params else None
        self.register_buffer("threshold", params["threshold"].clone())
        self.dead = None if dead is None else torch.tensor(dead, dtype=torch.bool)
        self.kept_min = None

    def theta(self):
        return self.threshold

    def pre_acts(self, x):
        if self.cfg["pre_encoder_bias"]:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, z):
        raise NotImplementedError

    def sparsity(self, f):
        return torch.zeros((), dtype=f.dtype)

    def aux_loss(self, z, x, x_hat):
        cfg = self.cfg
        if not cfg.get("aux_coefficient") or self.dead is None or not bool(self.dead.any()):
            return torch.zeros((), dtype=x.dtype)
        idx = self.dead.nonzero().flatten()
        e = (x - x_hat).detach()
        a = scatter_topk(torch.relu(z[:, idx]), min(cfg["aux_k"], len(idx)), 1)
        e_hat = a @ self.W_dec[idx]
        energy = (e - e.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
        return (e_hat - e).pow(2).sum() / energy

    def loss_parts(self, x, lam, y=None):
        """(loss, mse, sparsity, l0) of one batch, each a batch mean of per-token sums; `y` is
        a transcoder's target (None: x itself)."""
        target = x if y is None else y
        z = self.pre_acts(x)
        f = self.encode(z)
        x_hat = f @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            x_hat = x_hat + x @ self.W_skip
        mse = (x_hat - target).pow(2).sum(dim=1).mean()
        sparsity = self.sparsity(f)
        aux = self.aux_loss(z, target, x_hat)
        l0 = (f > 0).to(x.dtype).sum(dim=1).mean()
        loss = mse + lam * sparsity + self.cfg.get("aux_coefficient", 0.0) * aux
        # a skip-transcoder's skip belongs to every inner reconstruction as to the whole one
        base = target if self.W_skip is None else target - x @ self.W_skip
        self.inner_mse = matryoshka_mse(f, self.W_dec, self.b_dec, base, self.cfg.get("matryoshka_widths"))
        for inner in self.inner_mse.values():
            loss = loss + inner
        return loss, mse, sparsity, l0

    def after_step(self, t):
        pass


def matryoshka_mse(f, W_dec, b_dec, x, widths):
    """{w: mse_w} for every inner width w (< d_sae) of `widths` (none without widths)."""
    out = {}
    for w in widths or []:
        if w >= f.shape[1]:
            continue
        x_hat = f[:, :w] @ W_dec[:w] + b_dec
        out[w] = (x_hat - x).pow(2).sum(dim=1).mean()
    return out


class TopKSae(BaselineSae):
    def encode(self, z):
        return scatter_topk(torch.relu(z), self.cfg["k"], 1)


class BatchTopKSae(BaselineSae):
    def encode(self, z):
        b, m = z.shape
        kept = scatter_topk(torch.relu(z).flatten(), min(self.cfg["k"] * b, b * m), 0)
        positive = kept.detach()[kept.detach() > 0]
        self.kept_min = positive.min() if len(positive) else None
        return kept.view(b, m)

    def after_step(self, t):
        if self.kept_min is not None:
            with torch.no_grad():
                self.threshold.add_((self.kept_min - self.threshold) / (t + 1))


class ReluSae(BaselineSae):
    def encode(self, z):
        return torch.relu(z)

    def sparsity(self, f):
        return (f * self.W_dec.norm(dim=1)).sum(dim=1).mean()


CLASSES = {"topk": TopKSae, "batchtopk": BatchTopKSae, "relu": ReluSae}
