//! A debug hook that adds a constant to one gradient in every step run on one device with one
//! kind of kernels: how `selftest`'s tests show that a wrong gradient makes it fail
//! (`jumpscope selftest --perturb-gradient`, hidden from `--help`). Unset, it costs one atomic
//! load per step.

use crate::sae::kernels::Kernels;
use crate::sae::loss::Grads;
use burn::tensor::Device;
use std::sync::OnceLock;

/// Which gradient the hook changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GradName {
    /// ∂L/∂W_enc.
    #[value(name = "W_enc")]
    WEnc,
    /// ∂L/∂b_enc.
    #[value(name = "b_enc")]
    BEnc,
    /// ∂L/∂W_dec.
    #[value(name = "W_dec")]
    WDec,
    /// ∂L/∂b_dec.
    #[value(name = "b_dec")]
    BDec,
    /// ∂L/∂θ (or log θ).
    #[value(name = "theta")]
    Theta,
}

impl GradName {
    /// The name `--perturb-gradient` takes.
    pub fn name(self) -> &'static str {
        match self {
            GradName::WEnc => "W_enc",
            GradName::BEnc => "b_enc",
            GradName::WDec => "W_dec",
            GradName::BDec => "b_dec",
            GradName::Theta => "theta",
        }
    }
}

struct Perturbation {
    grad: GradName,
    device: Device,
    kernels: Kernels,
    by: f32,
}

static HOOK: OnceLock<Perturbation> = OnceLock::new();

/// From now on, add `by` to every entry of `grad` in steps on `device` with `kernels` (once per
/// process; a second call is ignored).
pub fn set(grad: GradName, device: &Device, kernels: Kernels, by: f32) {
    let _ = HOOK.set(Perturbation {
        grad,
        device: device.clone(),
        kernels,
        by,
    });
}

/// Apply the hook, if set and it names this device and kernels.
pub(crate) fn apply(g: &mut Grads, device: &Device, kernels: Kernels) {
    let Some(p) = HOOK.get() else { return };
    if p.kernels != kernels || p.device != *device {
        return;
    }
    match p.grad {
        GradName::WEnc => g.w_enc = g.w_enc.clone() + p.by,
        GradName::BEnc => g.b_enc = g.b_enc.clone() + p.by,
        GradName::WDec => g.w_dec = g.w_dec.clone() + p.by,
        GradName::BDec => g.b_dec = g.b_dec.clone() + p.by,
        GradName::Theta => g.theta_param = g.theta_param.clone() + p.by,
    }
}
