//! The training loss and its gradients, derived by hand (spec, "Loss" and "Straight-through
//! estimators").
//!
//! Why not burn's autodiff: the model is two matrix products and a handful of elementwise ops, and
//! the straight-through estimators are not derivatives of the forward pass anyway. Written out,
//! the backward pass is five matrix products plus a few masked reductions, with no graph to record
//! and no `detach` tricks that would cost extra passes over the `[batch, d_sae]` activations (the
//! memory-bound part of a step). The golden tests check every gradient against PyTorch autograd.
//!
//! Forward, for a batch `x [B, d_in]`:
//! ```text
//! x_in = x - b_dec            (pre-encoder bias, optional)
//! z    = x_in W_enc + b_enc
//! f    = z · H(z - θ)
//! x̂    = f W_dec + b_dec
//! loss = mean_b Σ_j (x̂ - x)² + λ · sparsity (+ pre-activation loss on dead features)
//! ```
//! STE gradients with rect(u) = 1 for |u| < 1/2, bandwidth ε, upstream g:
//! JumpReLU gives `H(z-θ) g` to z and `-(θ/ε) rect((z-θ)/ε) g` to θ; Step gives 0 to z and
//! `-(1/ε) rect((z-θ)/ε) g` to θ; θ-gradients are summed over the batch, and for `log θ` the
//! chain rule multiplies by θ.

use crate::config::{SparsityLoss, ThresholdParam};
use crate::sae::model::Sae;
use burn::tensor::{Bool, Tensor};

/// The loss settings in force for one step (λ already warmed up).
#[derive(Debug, Clone)]
pub struct LossSettings {
    /// Which sparsity penalty.
    pub sparsity_loss: SparsityLoss,
    /// λ_t.
    pub lambda: f64,
    /// STE bandwidth ε.
    pub bandwidth: f64,
    /// c of the tanh penalty.
    pub tanh_scale: f64,
    /// L* of the l0_target penalty.
    pub target_l0: f64,
    /// Coefficient of the pre-activation loss (0 = off).
    pub pre_act_coefficient: f64,
    /// Subtract b_dec before encoding.
    pub pre_encoder_bias: bool,
}

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
}

/// Scalar parts of the loss and per-feature firing counts, still on the device.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// `[5]`: loss, mse, sparsity, l0, pre-activation loss.
    pub parts: Tensor<1>,
    /// `[d_sae]`: tokens of the batch on which each feature fired.
    pub fire_counts: Tensor<1>,
    /// `[B, d_in]`: x̂ − x, for metrics.
    pub residual: Tensor<2>,
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

/// Forward and backward pass on one batch. `dead` marks the features the pre-activation loss
/// applies to (ignored when its coefficient is 0).
pub fn loss_and_grads(
    sae: &Sae,
    x: Tensor<2>,
    s: &LossSettings,
    dead: Option<&Tensor<1, Bool>>,
) -> (StepOutput, Grads) {
    let [b, d_in] = x.dims();
    let (_, m) = sae.dims();
    let bf = b as f64;
    let eps = s.bandwidth;

    let x_in = if s.pre_encoder_bias {
        x.clone() - sae.b_dec.clone().unsqueeze_dim::<2>(0)
    } else {
        x.clone()
    };
    let z = x_in.clone().matmul(sae.w_enc.clone()) + sae.b_enc.clone().unsqueeze_dim::<2>(0);
    let theta = sae.theta();
    let u = z.clone() - theta.clone().unsqueeze_dim::<2>(0).expand([b, m]);
    let active = u.clone().greater_elem(0.0);
    let inactive = active.clone().bool_not();
    let f = z.mask_fill(inactive.clone(), 0.0);
    let x_hat = f.clone().matmul(sae.w_dec.clone()) + sae.b_dec.clone().unsqueeze_dim::<2>(0);
    let residual = x_hat - x;
    let mse = residual.clone().square().sum() / bf;

    let active_f = active.float();
    let fire_counts = active_f.clone().sum_dim(0).squeeze_dim::<1>(0);
    let l0 = fire_counts.clone().sum() / bf;

    // ∂mse/∂x̂ = 2 (x̂ − x) / B
    let d_xhat = residual.clone() * (2.0 / bf);
    let mut g_w_dec = f.clone().transpose().matmul(d_xhat.clone());
    let mut g_b_dec = d_xhat.clone().sum_dim(0).squeeze_dim::<1>(0);
    let mut g_f = d_xhat.matmul(sae.w_dec.clone().transpose());

    // rect((z − θ)/ε) = 1 ⇔ |z − θ| < ε/2
    let near = u.clone().abs().lower_elem(eps / 2.0);
    let not_near = near.clone().bool_not();

    // The sparsity penalty: its value, and the upstream gradient that its Step sends towards θ
    // (summed over the batch), or, for tanh, what it adds to ∂L/∂f and ∂L/∂W_dec.
    let lam = s.lambda;
    let (sparsity, step_theta_grad) = match s.sparsity_loss {
        SparsityLoss::L0 => {
            // Step upstream g = λ/B everywhere → θ-grad −(1/ε)·(λ/B)·Σ_b rect
            let count_near = near.clone().float().sum_dim(0).squeeze_dim::<1>(0);
            (l0.clone(), Some(count_near * (-lam / (eps * bf))))
        }
        SparsityLoss::L0Target => {
            let target = s.target_l0;
            let l0_b = active_f.sum_dim(1); // [B,1]
            let dev = l0_b - target;
            let sparsity = dev.clone().square().sum() * (2.0 / target / bf);
            // ∂/∂l0_b of λ·(2/L*)(l0_b − L*)²/B = λ·(4/L*)(l0_b − L*)/B
            let g_b = dev * (lam * 4.0 / target / bf);
            let g = g_b
                .expand([b, m])
                .mask_fill(not_near.clone(), 0.0)
                .sum_dim(0)
                .squeeze_dim::<1>(0);
            (sparsity, Some(g * (-1.0 / eps)))
        }
        SparsityLoss::Tanh => {
            let c = s.tanh_scale;
            let norms = sae.w_dec.clone().square().sum_dim(1); // [m,1]
            let norms = norms.sqrt();
            let norms_row = norms.clone().reshape([1, m]);
            let th = (f.clone() * norms_row.clone() * c).tanh();
            let sparsity = th.clone().sum() / bf;
            let sech2 = th.square().neg() + 1.0;
            // ∂/∂f_bi = λ c n_i sech² / B;   ∂/∂n_i = λ c Σ_b f_bi sech² / B
            let g_n = (f.clone() * sech2.clone()).sum_dim(0) * (lam * c / bf); // [1,m]
            g_f = g_f + sech2 * norms_row * (lam * c / bf);
            g_w_dec = g_w_dec + sae.w_dec.clone() * (g_n.reshape([m, 1]) / norms);
            (sparsity, None)
        }
    };

    // θ-gradient of JumpReLU: −(θ/ε) Σ_b rect · ∂L/∂f
    let jump_sum = g_f
        .clone()
        .mask_fill(not_near, 0.0)
        .sum_dim(0)
        .squeeze_dim::<1>(0);
    let mut g_theta = jump_sum * theta.clone() * (-1.0 / eps);
    if let Some(g) = step_theta_grad {
        g_theta = g_theta + g;
    }

    let mut g_z = g_f.mask_fill(inactive, 0.0);

    // Pre-activation loss (Anthropic, Jan 2025) on dead features only:
    //   P = mean_b Σ_{i dead} relu(θ_i − z_bi) ‖W_dec[i]‖, with θ and ‖W_dec[i]‖ held constant,
    // so it only pulls the pre-activations of dead features up towards their thresholds.
    let pre_act = match (s.pre_act_coefficient > 0.0, dead) {
        (true, Some(dead)) => {
            let norms = sae.w_dec.clone().square().sum_dim(1).sqrt().reshape([m]);
            let w = norms.mask_fill(dead.clone().bool_not(), 0.0); // [m]
            let below = u.clone().lower_elem(0.0);
            let gap = u.neg().clamp_min(0.0); // relu(θ − z)
            let value = (gap * w.clone().unsqueeze_dim::<2>(0)).sum() / bf;
            let per = (w * (-s.pre_act_coefficient / bf))
                .unsqueeze_dim::<2>(0)
                .expand([b, m]);
            g_z = g_z.mask_where(below, per);
            value
        }
        _ => Tensor::<1>::zeros([1], &x_in.device()),
    };

    let g_w_enc = x_in.transpose().matmul(g_z.clone());
    let g_b_enc = g_z.sum_dim(0).squeeze_dim::<1>(0);
    if s.pre_encoder_bias {
        // x_in = x − b_dec ⇒ ∂L/∂b_dec −= W_enc · Σ_b ∂L/∂z
        let back = sae
            .w_enc
            .clone()
            .matmul(g_b_enc.clone().reshape([m, 1]))
            .reshape([d_in]);
        g_b_dec = g_b_dec - back;
    }
    let g_theta_param = match sae.threshold_param {
        ThresholdParam::Log => g_theta * theta,
        ThresholdParam::Raw => {
            g_theta.mask_fill(sae.theta_param.clone().lower_equal_elem(0.0), 0.0)
        }
    };

    let loss = mse.clone() + sparsity.clone() * lam + pre_act.clone() * s.pre_act_coefficient;
    let parts = Tensor::cat(vec![loss, mse, sparsity, l0, pre_act], 0);
    (
        StepOutput {
            parts,
            fire_counts,
            residual,
        },
        Grads {
            w_enc: g_w_enc,
            b_enc: g_b_enc,
            w_dec: g_w_dec,
            b_dec: g_b_dec,
            theta_param: g_theta_param,
        },
    )
}
