//! One optimizer step: the schedules at step t, forward + backward, and the Adam update.

use crate::config::{Hyper, SaeConfig};
use crate::sae::kernels::{Kernels, LossSettings, Penalty};
use crate::sae::loss::{StepOutput, loss_and_grads};
use crate::sae::model::Sae;
use crate::train::adam::{AdamSettings, AdamState};
use crate::train::schedule::{lambda_at, lr_at};
use burn::tensor::{Bool, Tensor};

/// The loss settings at step `t` under these hyperparameters (tensor-op kernels).
pub fn loss_settings(t: u64, h: &Hyper, sae_cfg: &SaeConfig) -> LossSettings {
    let architecture = sae_cfg.architecture;
    LossSettings {
        architecture,
        k: h.k,
        aux_k: h.aux_k,
        aux_coefficient: h.aux_coefficient,
        penalty: Penalty::of(
            architecture,
            h.sparsity_loss,
            h.tanh_scale,
            h.target_l0.unwrap_or(1.0),
        ),
        lambda: lambda_at(t, h),
        bandwidth: h.bandwidth,
        pre_act_coefficient: h.pre_act_coefficient,
        pre_encoder_bias: sae_cfg.pre_encoder_bias,
        kernels: Kernels::TensorOps,
        sparse_below: crate::sae::sparse::switch_density(Kernels::TensorOps),
        matryoshka: Vec::new(),
    }
}

/// Where a step stands in its run and the settings in force.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan<'a> {
    /// 0-based step index.
    pub t: u64,
    /// Steps of the whole run (for lr decay).
    pub total_steps: u64,
    /// Hyperparameters in force.
    pub hyper: &'a Hyper,
    /// Structural model settings.
    pub sae: &'a SaeConfig,
    /// The elementwise kernels (chosen once per run: `Kernels::for_device`).
    pub kernels: Kernels,
    /// The touched-entry density below which the step runs sparse (`LossSettings::sparse_below`).
    pub sparse_below: f64,
}

/// Train on one batch `x` with its target `y` (`None`: an SAE's own input); returns the
/// (pre-update) loss parts and statistics.
pub fn train_step(
    sae: &mut Sae,
    adam: &mut AdamState,
    (x, y): (Tensor<2>, Option<Tensor<2>>),
    plan: StepPlan<'_>,
    dead: Option<&Tensor<1, Bool>>,
) -> StepOutput {
    let StepPlan {
        t,
        total_steps,
        hyper: h,
        sae: sae_cfg,
        kernels,
        sparse_below,
    } = plan;
    let settings = LossSettings {
        kernels,
        sparse_below,
        matryoshka: sae_cfg.inner_widths(sae.dims().1),
        ..loss_settings(t, h, sae_cfg)
    };
    let (out, grads) = loss_and_grads(sae, x, y, &settings, dead);
    let a = AdamSettings {
        lr: lr_at(t, h, total_steps),
        beta1: h.adam_beta1,
        beta2: h.adam_beta2,
        eps: h.adam_eps,
    };
    match kernels {
        Kernels::HostFused => adam.step_host(sae, grads, a, sae_cfg.unit_norm_decoder),
        Kernels::TensorOps => adam.step(sae, grads, a, sae_cfg.unit_norm_decoder),
    }
    if let Some(v) = &out.kept_min {
        running_threshold(sae, v, t);
    }
    out
}

/// BatchTopK's inference threshold, the mean over steps 0..=t of the smallest kept activation
/// `v`: θ ← θ + (v − θ)/(t + 1), every feature alike (a batch that kept nothing leaves θ).
fn running_threshold(sae: &mut Sae, v: &Tensor<1>, t: u64) {
    let [m] = sae.theta_param.dims();
    let v = v.clone().expand([m]);
    let theta = sae.theta_param.clone();
    let next = theta.clone() + (v.clone() - theta.clone()) / (t + 1) as f64;
    sae.theta_param = theta.mask_where(v.lower_elem(f32::INFINITY), next);
}
