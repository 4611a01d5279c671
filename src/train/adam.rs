//! Adam, written to PyTorch's update rule so that results match the reference step for step,
//! with the decoder's unit-norm constraint (gradient projection before, renormalisation after).
//!
//! Why not `burn::optim::Adam`: it works on autodiff `Module`s and their gradient maps, which this
//! crate does not build (see `sae::loss`), its ε sits inside the bias correction differently from
//! PyTorch, and its state is not exposed for our checkpoint format.

use crate::sae::loss::Grads;
use crate::sae::model::Sae;
use burn::tensor::Tensor;

/// First and second moments of every parameter, and the number of steps taken.
#[derive(Debug, Clone)]
pub struct AdamState {
    /// Steps taken so far (PyTorch's `step`).
    pub steps: u64,
    /// Moments (m, v) of W_enc, b_enc, W_dec, b_dec, θ-parameter in that order.
    pub m: Moments,
    /// Second moments.
    pub v: Moments,
}

/// One tensor per parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    /// W_enc
    pub w_enc: Tensor<2>,
    /// b_enc
    pub b_enc: Tensor<1>,
    /// W_dec
    pub w_dec: Tensor<2>,
    /// b_dec
    pub b_dec: Tensor<1>,
    /// θ-parameter
    pub theta_param: Tensor<1>,
    /// W_skip (skip-transcoders)
    pub w_skip: Option<Tensor<2>>,
}

impl Moments {
    /// Zeros shaped like the parameters.
    pub fn zeros_like(sae: &Sae) -> Self {
        Self {
            w_enc: sae.w_enc.zeros_like(),
            b_enc: sae.b_enc.zeros_like(),
            w_dec: sae.w_dec.zeros_like(),
            b_dec: sae.b_dec.zeros_like(),
            theta_param: sae.theta_param.zeros_like(),
            w_skip: sae.w_skip.as_ref().map(Tensor::zeros_like),
        }
    }
}

/// The Adam coefficients for one step.
#[derive(Debug, Clone, Copy)]
pub struct AdamSettings {
    /// Learning rate of this step.
    pub lr: f64,
    /// β1
    pub beta1: f64,
    /// β2
    pub beta2: f64,
    /// ε
    pub eps: f64,
}

/// The constants of one Adam step.
pub(super) struct Coeffs {
    pub(super) beta1: f64,
    pub(super) beta2: f64,
    pub(super) eps: f64,
    /// lr / (1 − β1^t).
    pub(super) step_size: f64,
    /// √(1 − β2^t).
    pub(super) bc2_sqrt: f64,
}

fn update<const D: usize>(
    p: Tensor<D>,
    g: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    c: &Coeffs,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    let m = if c.beta1 == 0.0 {
        g.clone()
    } else {
        m * c.beta1 + g.clone() * (1.0 - c.beta1)
    };
    let v = v * c.beta2 + g.square() * (1.0 - c.beta2);
    // denom = sqrt(v) / sqrt(bc2) + eps;  p -= (lr / bc1) · m / denom
    let denom = v.clone().sqrt() / c.bc2_sqrt + c.eps;
    let p = p - m.clone() / denom * c.step_size;
    (p, m, v)
}

impl AdamState {
    /// Count a step and return its constants.
    pub(super) fn next_coeffs(&mut self, a: AdamSettings) -> Coeffs {
        self.steps += 1;
        let t = self.steps as i32;
        let bc1 = 1.0 - a.beta1.powi(t);
        let bc2 = 1.0 - a.beta2.powi(t);
        Coeffs {
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            step_size: a.lr / bc1,
            bc2_sqrt: bc2.sqrt(),
        }
    }

    /// Fresh state for these parameters.
    pub fn new(sae: &Sae) -> Self {
        Self {
            steps: 0,
            m: Moments::zeros_like(sae),
            v: Moments::zeros_like(sae),
        }
    }

    /// One optimizer step. With `unit_norm_decoder`, each decoder row's gradient loses its
    /// component along the row first, and the rows are renormalised after.
    pub fn step(&mut self, sae: &mut Sae, mut g: Grads, a: AdamSettings, unit_norm_decoder: bool) {
        if unit_norm_decoder {
            let along = (g.w_dec.clone() * sae.w_dec.clone()).sum_dim(1);
            g.w_dec = g.w_dec - sae.w_dec.clone() * along;
        }
        let c = self.next_coeffs(a);
        macro_rules! upd {
            ($f:ident) => {{
                let (p, m, v) = update(
                    sae.$f.clone(),
                    g.$f,
                    self.m.$f.clone(),
                    self.v.$f.clone(),
                    &c,
                );
                sae.$f = p;
                self.m.$f = m;
                self.v.$f = v;
            }};
        }
        upd!(w_enc);
        upd!(b_enc);
        upd!(w_dec);
        upd!(b_dec);
        upd!(theta_param);
        if let (Some(p), Some(g), Some(m), Some(v)) = (
            &mut sae.w_skip,
            g.w_skip,
            &mut self.m.w_skip,
            &mut self.v.w_skip,
        ) {
            let (np, nm, nv) = update(p.clone(), g, m.clone(), v.clone(), &c);
            (*p, *m, *v) = (np, nm, nv);
        }
        if unit_norm_decoder {
            let norms = sae.w_dec.clone().square().sum_dim(1).sqrt();
            sae.w_dec = sae.w_dec.clone() / norms;
        }
    }
}
