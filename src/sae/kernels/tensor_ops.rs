//! The elementwise parts of a step written with burn tensor ops, so that they run on any device
//! (about fifteen passes over the `[batch, d_sae]` activations; `host_fused` does the same in two).

use super::{Backward, Elementwise, ElementwiseInputs, Encoded, LossSettings, Penalty};
use crate::sae::model::Architecture;
use burn::tensor::{Bool, Tensor};

/// Which entries of the biased pre-activations `z` are active, and u (z − θ for a threshold,
/// ±1 for the top-k rules, where no entry is ever inside a straight-through window), with the
/// smallest kept activation for BatchTopK. Ties at the k-th value keep every tied entry.
fn select(
    z: &Tensor<2>,
    inp: &ElementwiseInputs,
    s: &LossSettings,
) -> (Tensor<2>, Tensor<2, Bool>, Option<Tensor<1>>) {
    let [b, m] = z.dims();
    let by_rank = |r: Tensor<2>, kth: Tensor<2>| {
        let active = r
            .clone()
            .greater_equal(kth)
            .bool_and(r.clone().greater_elem(0.0));
        let u = active.clone().float() * 2.0 - 1.0;
        (u, active)
    };
    match s.architecture {
        Architecture::JumpRelu | Architecture::Relu => {
            let u = z.clone() - inp.theta.clone().unsqueeze_dim::<2>(0).expand([b, m]);
            let active = u.clone().greater_elem(0.0);
            (u, active, None)
        }
        Architecture::TopK => {
            let k = s.k.clamp(1, m);
            let r = z.clone().clamp_min(0.0);
            let kth = r.clone().topk(k, 1).narrow(1, k - 1, 1).expand([b, m]);
            let (u, active) = by_rank(r, kth);
            (u, active, None)
        }
        Architecture::BatchTopK => {
            let kb = (s.k * b).clamp(1, b * m);
            let r = z.clone().clamp_min(0.0);
            let kth = r
                .clone()
                .reshape([b * m])
                .topk(kb, 0)
                .narrow(0, kb - 1, 1)
                .reshape([1, 1])
                .expand([b, m]);
            let (u, active) = by_rank(r.clone(), kth);
            let kept_min = r
                .mask_fill(active.clone().bool_not(), f32::INFINITY)
                .min()
                .reshape([1]);
            (u, active, Some(kept_min))
        }
    }
}

/// The tensor-op implementation of [`Elementwise`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TensorOps;

/// Device tensors saved by `encode` for `backward`.
#[derive(Debug)]
pub struct Saved {
    /// z − θ.
    pub(crate) u: Tensor<2>,
    /// z ≤ θ.
    pub(crate) inactive: Tensor<2, Bool>,
    /// H(z − θ) as 0/1.
    pub(crate) active_f: Tensor<2>,
    /// f.
    pub(crate) f: Tensor<2>,
}

impl Elementwise for TensorOps {
    type Saved = Saved;

    /// z (without bias) → f, firing counts, penalty values.
    fn encode(&self, z: Tensor<2>, inp: &ElementwiseInputs, s: &LossSettings) -> (Encoded, Saved) {
        let [b, _] = z.dims();
        let bf = b as f64;
        let z = z + inp.b_enc.clone().unsqueeze_dim::<2>(0);
        let (u, active, kept_min) = select(&z, inp, s);
        let inactive = active.clone().bool_not();
        let f = z.mask_fill(inactive.clone(), 0.0);
        let active_f = active.float();
        let fire_counts = active_f.clone().sum_dim(0).squeeze_dim::<1>(0);
        let sparsity = match &inp.penalty {
            Penalty::L0 => fire_counts.clone().sum() / bf,
            Penalty::L0Target { target } => {
                let t = *target;
                (active_f.clone().sum_dim(1) - t).square().sum() * (2.0 / t / bf)
            }
            Penalty::Tanh { scale, norms } => {
                (f.clone() * norms.clone().unsqueeze_dim::<2>(0) * *scale)
                    .tanh()
                    .sum()
                    / bf
            }
            Penalty::L1 { norms } => (f.clone() * norms.clone().unsqueeze_dim::<2>(0)).sum() / bf,
            Penalty::None => Tensor::<1>::zeros([1], &f.device()),
        };
        // Pre-activation loss (Anthropic, Jan 2025) on dead features only:
        //   P = mean_b Σ_i w_i relu(θ_i − z_bi), w_i = ‖W_dec[i]‖ for dead features, else 0,
        // with θ and ‖W_dec[i]‖ held constant: it only pulls dead features' pre-activations up.
        let pre_act = match &inp.pre_act_weights {
            Some(w) => {
                (u.clone().neg().clamp_min(0.0) * w.clone().unsqueeze_dim::<2>(0)).sum() / bf
            }
            None => Tensor::<1>::zeros([1], &f.device()),
        };
        let encoded = Encoded {
            f: f.clone(),
            fire_counts,
            sparsity,
            pre_act,
            kept_min,
        };
        (
            encoded,
            Saved {
                u,
                inactive,
                active_f,
                f,
            },
        )
    }

    /// ∂L/∂f (from the decoder) → ∂L/∂z, ∂L/∂θ, ∂L/∂b_enc, ∂L/∂‖W_dec‖, by the STE table of docs/training.md.
    fn backward(
        &self,
        mut g_f: Tensor<2>,
        c: Saved,
        inp: &ElementwiseInputs,
        s: &LossSettings,
    ) -> Backward {
        let [b, m] = g_f.dims();
        let bf = b as f64;
        let eps = s.bandwidth;
        let lam = s.lambda;
        // rect((z − θ)/ε) = 1 ⇔ |z − θ| < ε/2
        let not_near = c.u.clone().abs().lower_elem(eps / 2.0).bool_not();

        // the Step inside l0 / l0_target sends its upstream gradient to θ only
        let mut g_norms = None;
        let step_theta = match &inp.penalty {
            Penalty::L0 => {
                // upstream λ/B everywhere → −(1/ε)(λ/B) Σ_b rect
                let near = not_near
                    .clone()
                    .bool_not()
                    .float()
                    .sum_dim(0)
                    .squeeze_dim::<1>(0);
                Some(near * (-lam / (eps * bf)))
            }
            Penalty::L0Target { target } => {
                // ∂/∂l0_b of λ(2/L*)(l0_b − L*)²/B = λ(4/L*)(l0_b − L*)/B, for every feature of row b
                let t = *target;
                let g_b = (c.active_f.sum_dim(1) - t) * (lam * 4.0 / t / bf);
                let g = g_b
                    .expand([b, m])
                    .mask_fill(not_near.clone(), 0.0)
                    .sum_dim(0)
                    .squeeze_dim::<1>(0);
                Some(g * (-1.0 / eps))
            }
            Penalty::Tanh { scale, norms } => {
                // ∂/∂f_bi = λ c n_i sech²/B;  ∂/∂n_i = λ c Σ_b f_bi sech²/B
                let sc = *scale;
                let n = norms.clone().unsqueeze_dim::<2>(0);
                let th = (c.f.clone() * n.clone() * sc).tanh();
                let sech2 = th.square().neg() + 1.0;
                let k = lam * sc / bf;
                g_norms = Some((c.f * sech2.clone()).sum_dim(0).squeeze_dim::<1>(0) * k);
                g_f = g_f + sech2 * n * k;
                None
            }
            Penalty::L1 { norms } => {
                // ∂/∂f_bi = λ n_i/B;  ∂/∂n_i = λ Σ_b f_bi/B
                let n = norms.clone().unsqueeze_dim::<2>(0);
                let k = lam / bf;
                g_norms = Some(c.f.sum_dim(0).squeeze_dim::<1>(0) * k);
                g_f = g_f + n.expand([b, m]) * k;
                None
            }
            Penalty::None => None,
        };
        // JumpReLU: −(θ/ε) Σ_b rect · ∂L/∂f towards θ, H(z − θ) · ∂L/∂f towards z
        let jump = g_f
            .clone()
            .mask_fill(not_near, 0.0)
            .sum_dim(0)
            .squeeze_dim::<1>(0);
        let mut g_theta = jump * inp.theta.clone() * (-1.0 / eps);
        if let Some(g) = step_theta {
            g_theta = g_theta + g;
        }
        let mut g_z = g_f.mask_fill(c.inactive, 0.0);
        if let Some(w) = &inp.pre_act_weights {
            // ∂/∂z of w_i relu(θ_i − z) = −w_i where z < θ
            let per = (w.clone() * (-s.pre_act_coefficient / bf))
                .unsqueeze_dim::<2>(0)
                .expand([b, m]);
            g_z = g_z.mask_where(c.u.lower_elem(0.0), per);
        }
        let g_b_enc = g_z.clone().sum_dim(0).squeeze_dim::<1>(0);
        Backward {
            g_z,
            g_theta,
            g_b_enc,
            g_norms,
        }
    }
}
