//! The training loss and its gradients, derived by hand (docs/training.md, "Loss" and "Straight-through
//! estimators").
//!
//! Why not burn's autodiff: the model is two matrix products and a handful of elementwise ops, and
//! the straight-through estimators are not derivatives of the forward pass anyway. Written out,
//! the backward pass is five matrix products plus a few masked reductions, with no graph to record
//! and no `detach` tricks that would cost extra passes over the `[batch, d_sae]` activations (the
//! memory-bound part of a step). The golden tests check every gradient against PyTorch autograd.
//!
//! Forward, for a batch `x [B, d_in]` and its target y (`x` itself for an SAE; the second
//! site for a transcoder):
//! ```text
//! x_in = x - b_dec            (pre-encoder bias, optional; never for transcoders)
//! z    = x_in W_enc + b_enc
//! f    = z · H(z - θ)
//! x̂    = f W_dec + b_dec (+ x W_skip for a skip-transcoder)
//! loss = mean_b Σ_j (x̂ - y)² + λ · sparsity (+ pre-activation loss on dead features)
//! ```
//! The skip enters every form of the step the same way: its term is taken off the target
//! first (y − x W_skip), so that the rest of the step sees a plain dictionary, and ∂L/∂W_skip
//! = xᵀ ∂L/∂x̂ is added at the end.
//! STE gradients with rect(u) = 1 for |u| < 1/2, bandwidth ε, upstream g:
//! JumpReLU gives `H(z-θ) g` to z and `-(θ/ε) rect((z-θ)/ε) g` to θ; Step gives 0 to z and
//! `-(1/ε) rect((z-θ)/ε) g` to θ; θ-gradients are summed over the batch, and for `log θ` the
//! chain rule multiplies by θ.

use crate::sae::kernels::host_fused::HostFused;
use crate::sae::kernels::tensor_ops::TensorOps;
use crate::sae::kernels::{
    Backward, Elementwise, ElementwiseInputs, Encoded, Kernels, LossSettings,
};
use crate::sae::model::{Sae, ThresholdParam};
use crate::sae::perturb;
use crate::sae::sparse;
#[cfg(feature = "tch")]
use crate::sae::sparse_libtorch;
use burn::tensor::{Bool, Tensor};

/// Gradients, one per parameter, same shapes.
#[derive(Debug, Clone)]
pub struct Grads {
    /// ∂L/∂W_enc
    pub w_enc: Tensor<2>,
    /// ∂L/∂b_enc
    pub b_enc: Tensor<1>,
    /// ∂L/∂W_dec
    pub w_dec: Tensor<2>,
    /// ∂L/∂b_dec
    pub b_dec: Tensor<1>,
    /// ∂L/∂(log θ) or ∂L/∂θ.
    pub theta_param: Tensor<1>,
    /// ∂L/∂W_skip (skip-transcoders).
    pub w_skip: Option<Tensor<2>>,
}

/// Scalar parts of the loss and per-feature firing counts, still on the device.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// `[5]`: loss, mse, sparsity, l0, pre-activation loss.
    pub parts: Tensor<1>,
    /// `[d_sae]`: tokens of the batch on which each feature fired.
    pub fire_counts: Tensor<1>,
    /// `[B, d_out]`: x̂ − y, for metrics.
    pub residual: Tensor<2>,
    /// Whether the step ran sparse (`sae::sparse`) after the encoder product.
    pub sparse: bool,
    /// `[1]` BatchTopK: the smallest activation kept in this batch (+∞ when none was kept).
    pub kept_min: Option<Tensor<1>>,
    /// `[K]` Matryoshka: Σ‖x̂_w − y‖² over the batch for each inner width w (the reconstruction
    /// from the first w features alone), in the order of the widths.
    pub inner_sq: Option<Tensor<1>>,
}

/// Loss parts read back to the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParts {
    /// Total loss.
    pub loss: f64,
    /// Σ_j (x̂ − x)², batch mean.
    pub mse: f64,
    /// The sparsity penalty before λ.
    pub sparsity: f64,
    /// Mean active features per token.
    pub l0: f64,
    /// The pre-activation loss before its coefficient.
    pub pre_act: f64,
}

impl LossParts {
    /// Read the `[5]` parts tensor.
    pub fn from_tensor(t: &Tensor<1>) -> Self {
        let v = crate::sae::model::download(t);
        Self {
            loss: v[0] as f64,
            mse: v[1] as f64,
            sparsity: v[2] as f64,
            l0: v[3] as f64,
            pre_act: v[4] as f64,
        }
    }
}

/// Forward and backward pass on one batch `x` with target `y` (`None`: the SAE's own input).
/// `dead` marks the features the pre-activation loss applies to (ignored when its coefficient
/// is 0). With the fused host kernels, the step after the encoder product runs sparse
/// (`sae::sparse`) when few entries are touched.
pub fn loss_and_grads(
    sae: &Sae,
    x: Tensor<2>,
    y: Option<Tensor<2>>,
    s: &LossSettings,
    dead: Option<&Tensor<1, Bool>>,
) -> (StepOutput, Grads) {
    let device = x.device();
    let start = Start::new(sae, x, y, s, dead);
    let x_in = start.x_in.clone();
    let (mut out, mut grads) = match s.kernels {
        Kernels::TensorOps => {
            let z = start.z(sae);
            let (mut enc, saved) = TensorOps.encode(z, &start.inputs, s);
            let kept_min = enc.kept_min.take();
            let (mut out, grads) = tensor_ops_rest(sae, s, start, enc, saved);
            out.kept_min = kept_min;
            (out, grads)
        }
        Kernels::HostFused => {
            let z = start.z(sae);
            let (mut enc, saved) = HostFused.encode(z, &start.inputs, s);
            let kept_min = enc.kept_min.take();
            let (mut out, grads) = if sparse::touched_fraction(&saved, &start, s) <= s.sparse_below
            {
                sparse::rest(sae, s, start, enc, saved)
            } else {
                dense_rest(&HostFused, sae, s, start, enc, saved)
            };
            out.kept_min = kept_min;
            (out, grads)
        }
    };
    if let Some(dead) = dead
        && s.architecture.is_topk()
        && s.aux_coefficient > 0.0
    {
        crate::sae::auxk::add(sae, s, &x_in, dead, &mut out, &mut grads);
    }
    perturb::apply(&mut grads, &device, s.kernels);
    (out, grads)
}

/// The rest of a step after the tensor-op encode: sparse on LibTorch when few entries fire,
/// else dense.
fn tensor_ops_rest(
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    enc: Encoded,
    saved: <TensorOps as Elementwise>::Saved,
) -> (StepOutput, Grads) {
    #[cfg(feature = "tch")]
    if sparse_libtorch::applies(&start.x)
        && sparse_libtorch::active_fraction(&enc, start.x.dims()[0]) <= s.sparse_below
    {
        return sparse_libtorch::rest(sae, s, start, enc, saved);
    }
    dense_rest(&TensorOps, sae, s, start, enc, saved)
}

/// What every step computes before the encoder product.
pub(crate) struct Start {
    /// The batch `[B, d_in]`.
    pub x: Tensor<2>,
    /// `x − b_dec` (pre-encoder bias) or `x`.
    pub x_in: Tensor<2>,
    /// What `f W_dec + b_dec` reconstructs `[B, d_out]`: the target, less the skip's
    /// `x W_skip` for a skip-transcoder (`x` for an SAE).
    pub target: Tensor<2>,
    /// θ.
    pub theta: Tensor<1>,
    /// What the elementwise kernels need.
    pub inputs: ElementwiseInputs,
}

impl Start {
    fn new(
        sae: &Sae,
        x: Tensor<2>,
        y: Option<Tensor<2>>,
        s: &LossSettings,
        dead: Option<&Tensor<1, Bool>>,
    ) -> Self {
        let (_, m) = sae.dims();
        let y = y.unwrap_or_else(|| x.clone());
        let target = match &sae.w_skip {
            Some(w) => y - x.clone().matmul(w.clone()),
            None => y,
        };
        let x_in = if s.pre_encoder_bias {
            x.clone() - sae.b_dec.clone().unsqueeze_dim::<2>(0)
        } else {
            x.clone()
        };
        let theta = sae.theta();
        let norms = || sae.w_dec.clone().square().sum_dim(1).sqrt().reshape([m]);
        let penalty = s.penalty.map_norms(|()| norms());
        // the pre-activation loss weighs dead features by the same norms
        let pre_act_weights = match (s.pre_act_coefficient > 0.0, dead) {
            (true, Some(dead)) => {
                let n = penalty.norms().cloned().unwrap_or_else(norms);
                Some(n.mask_fill(dead.clone().bool_not(), 0.0))
            }
            _ => None,
        };
        let inputs = ElementwiseInputs {
            b_enc: sae.b_enc.clone(),
            theta: theta.clone(),
            penalty,
            pre_act_weights,
        };
        Self {
            x,
            x_in,
            target,
            theta,
            inputs,
        }
    }

    /// The encoder product `x_in W_enc` (b_enc is added inside the encode step).
    fn z(&self, sae: &Sae) -> Tensor<2> {
        self.x_in.clone().matmul(sae.w_enc.clone())
    }
}

/// The rest of the step with dense matrix products, after kernels `k` encoded.
fn dense_rest<K: Elementwise>(
    k: &K,
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    enc: Encoded,
    saved: K::Saved,
) -> (StepOutput, Grads) {
    let [b, _] = start.x.dims();
    let bf = b as f64;
    let (_, m) = sae.dims();
    let base = sae.b_dec.clone().unsqueeze_dim::<2>(0) - start.target.clone();
    let (residual, upstream, g_f, g_w_dec, inner_sq) = if s.matryoshka.is_empty() {
        let residual = enc.f.clone().matmul(sae.w_dec.clone()) + base;
        // ∂mse/∂x̂ = 2 (x̂ − y) / B
        let d_xhat = residual.clone() * (2.0 / bf);
        let g_w_dec = enc.f.clone().transpose().matmul(d_xhat.clone());
        let g_f = d_xhat.matmul(sae.w_dec.clone().transpose());
        (residual.clone(), residual, g_f, g_w_dec, None)
    } else {
        // segment j holds features [w_j, w_{j+1}); the prefix reconstruction of width w_k sums
        // the segments below k; a feature of segment j takes part in every prefix above it and
        // in the whole, so its upstream is D_j = r + Σ_{k > j} r_k
        let bounds: Vec<usize> = std::iter::once(0)
            .chain(s.matryoshka.iter().copied())
            .chain(std::iter::once(m))
            .collect();
        let seg = |t: &Tensor<2>, dim: usize, j: usize| {
            t.clone().narrow(dim, bounds[j], bounds[j + 1] - bounds[j])
        };
        let mut acc = base;
        let mut prefixes = Vec::new();
        for j in 0..bounds.len() - 1 {
            acc = acc + seg(&enc.f, 1, j).matmul(seg(&sae.w_dec, 0, j));
            if j + 1 < bounds.len() - 1 {
                prefixes.push(acc.clone());
            }
        }
        let residual = acc;
        let inner_sq = Tensor::cat(
            prefixes.iter().map(|r| r.clone().square().sum()).collect(),
            0,
        );
        let mut ups = vec![residual.clone()];
        for r in prefixes.iter().rev() {
            let next = ups[ups.len() - 1].clone() + r.clone();
            ups.push(next);
        }
        ups.reverse();
        let (mut g_f, mut g_w_dec) = (Vec::new(), Vec::new());
        for (j, d) in ups.iter().enumerate() {
            let d = d.clone() * (2.0 / bf);
            g_f.push(d.clone().matmul(seg(&sae.w_dec, 0, j).transpose()));
            g_w_dec.push(seg(&enc.f, 1, j).transpose().matmul(d));
        }
        let upstream = ups.swap_remove(0);
        (
            residual,
            upstream,
            Tensor::cat(g_f, 1),
            Tensor::cat(g_w_dec, 0),
            Some(inner_sq),
        )
    };
    let mse = residual.clone().square().sum() / bf;
    let g_b_dec = upstream.clone().sum_dim(0).squeeze_dim::<1>(0) * (2.0 / bf);
    let Backward {
        g_z,
        g_theta,
        g_b_enc,
        g_norms,
    } = k.backward(g_f, saved, &start.inputs, s);
    let g_w_enc = start.x_in.clone().transpose().matmul(g_z);
    let stats = (enc.fire_counts, enc.sparsity, enc.pre_act);
    let rest = Rest {
        residual,
        upstream,
        inner_sq,
        mse,
        g_w_dec,
        g_b_dec,
        g_w_enc,
        g_theta,
        g_b_enc,
        g_norms,
    };
    let (mut out, grads) = finish(sae, s, start, stats, rest);
    out.sparse = false;
    (out, grads)
}

/// What the middle of a step (dense or sparse) hands to [`finish`].
pub(crate) struct Rest {
    /// `[B, d_out]` x̂ − y.
    pub residual: Tensor<2>,
    /// `[B, d_out]` the sum of every reconstruction's residual: x̂ − y, plus each Matryoshka
    /// prefix's (what the skip and b_dec take their gradient from, before 2/B).
    pub upstream: Tensor<2>,
    /// `[K]` Σ‖x̂_w − y‖² of each Matryoshka inner width (none without them).
    pub inner_sq: Option<Tensor<1>>,
    /// `[1]` Σ_j (x̂ − x)², batch mean.
    pub mse: Tensor<1>,
    /// ∂mse/∂W_dec (the tanh penalty's share is added in `finish`).
    pub g_w_dec: Tensor<2>,
    /// Σ_b ∂mse/∂x̂ (the pre-encoder bias share is added in `finish`).
    pub g_b_dec: Tensor<1>,
    /// ∂L/∂W_enc.
    pub g_w_enc: Tensor<2>,
    /// `[d_sae]` ∂L/∂θ.
    pub g_theta: Tensor<1>,
    /// `[d_sae]` ∂L/∂b_enc.
    pub g_b_enc: Tensor<1>,
    /// `[d_sae]` ∂L/∂‖W_dec[i]‖ (tanh penalty only).
    pub g_norms: Option<Tensor<1>>,
}

/// The end every step shares: the tanh and pre-encoder-bias shares of the decoder gradients, θ's
/// parameter gradient, and the loss parts.
pub(crate) fn finish(
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    (fire_counts, sparsity, pre_act): (Tensor<1>, Tensor<1>, Tensor<1>),
    rest: Rest,
) -> (StepOutput, Grads) {
    let [b, d_in] = start.x.dims();
    let (_, m) = sae.dims();
    let bf = b as f64;
    let Rest {
        residual,
        upstream,
        inner_sq,
        mse,
        mut g_w_dec,
        mut g_b_dec,
        g_w_enc,
        g_theta,
        g_b_enc,
        g_norms,
    } = rest;
    if let (Some(g_n), Some(n)) = (g_norms, start.inputs.penalty.norms()) {
        // ‖W_dec[i]‖ depends on the row: ∂‖w‖/∂w = w / ‖w‖
        g_w_dec = g_w_dec + sae.w_dec.clone() * (g_n / n.clone()).reshape([m, 1]);
    }
    if s.pre_encoder_bias {
        // x_in = x − b_dec ⇒ ∂L/∂b_dec −= W_enc · Σ_b ∂L/∂z
        let into_bias = sae
            .w_enc
            .clone()
            .matmul(g_b_enc.clone().reshape([m, 1]))
            .reshape([d_in]);
        g_b_dec = g_b_dec - into_bias;
    }
    let g_theta_param = match sae.threshold_param {
        ThresholdParam::Log => g_theta * start.theta,
        ThresholdParam::Raw => {
            g_theta.mask_fill(sae.theta_param.clone().lower_equal_elem(0.0), 0.0)
        }
    };
    // x̂ = … + x W_skip ⇒ ∂L/∂W_skip = xᵀ ∂L/∂x̂
    let g_w_skip = sae
        .w_skip
        .as_ref()
        .map(|_| start.x.clone().transpose().matmul(upstream) * (2.0 / bf));
    let l0 = fire_counts.clone().sum() / bf;
    let mut loss =
        mse.clone() + sparsity.clone() * s.lambda + pre_act.clone() * s.pre_act_coefficient;
    if let Some(inner) = &inner_sq {
        // every inner width's reconstruction MSE joins the loss, unweighted
        loss = loss + inner.clone().sum() / bf;
    }
    let parts = Tensor::cat(vec![loss, mse, sparsity, l0, pre_act], 0);
    (
        StepOutput {
            parts,
            fire_counts,
            residual,
            sparse: true,
            kept_min: None,
            inner_sq,
        },
        Grads {
            w_enc: g_w_enc,
            b_enc: g_b_enc,
            w_dec: g_w_dec,
            b_dec: g_b_dec,
            theta_param: g_theta_param,
            w_skip: g_w_skip,
        },
    )
}
