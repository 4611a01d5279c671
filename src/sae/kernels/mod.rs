//! The elementwise heart of a training step, behind one trait ([`Elementwise`]): the JumpReLU
//! forward with the sparsity and pre-activation penalties (`encode`), and the straight-through
//! backward that turns ∂L/∂f into ∂L/∂z and ∂L/∂θ (`backward`). Two implementations compute the
//! same up to float rounding (tested): [`tensor_ops::TensorOps`], burn tensor ops that run on
//! any device, and [`host_fused::HostFused`], two fused loops over host memory for the CPU
//! backend. [`Kernels`] names the choice, made once per run from the device.
//!
//! This module holds what both share and imports neither; `sae::loss` builds the rest of the
//! step around whichever is chosen.

pub mod host_fused;
pub mod tensor_ops;

use crate::sae::model::Architecture;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// JumpReLU's sparsity penalty as the configuration names it (`train.sparsity_loss`;
/// docs/training.md, "Loss"). What a step computes is a [`Penalty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparsityLoss {
    /// Σ H(z − θ), the paper's L0 penalty.
    L0,
    /// Σ tanh(c · f · ‖W_dec‖), Anthropic's January 2025 variant.
    Tanh,
    /// (2/L*) (Σ H(z − θ) − L*)², Gemma Scope 2's target-L0 penalty.
    L0Target,
}

/// The sparsity penalty a step computes, with its settings, as the architecture (and for
/// JumpReLU `train.sparsity_loss`) decides it. The penalties weighted by the decoder's row norms
/// carry them: `N` is `()` in the settings, and the norms ‖W_dec[i]‖ once a step has computed
/// them (a tensor, or host floats in the fused kernels), so no kernel has to ask whether they
/// are there.
#[derive(Debug, Clone, PartialEq)]
pub enum Penalty<N = ()> {
    /// Σ H(z − θ), the paper's L0 penalty.
    L0,
    /// (2/L*) (Σ H(z − θ) − L*)².
    L0Target {
        /// L*.
        target: f64,
    },
    /// Σ tanh(c · f · ‖W_dec‖).
    Tanh {
        /// c.
        scale: f64,
        /// ‖W_dec[i]‖.
        norms: N,
    },
    /// Σ f · ‖W_dec‖, ReLU's decoder-norm-weighted L1.
    L1 {
        /// ‖W_dec[i]‖.
        norms: N,
    },
    /// None: TopK and BatchTopK are sparse by construction.
    None,
}

impl Penalty {
    /// The penalty of `arch`: JumpReLU's `loss` (with c and L*), ReLU's L1, none for the top-k
    /// architectures.
    pub fn of(arch: Architecture, loss: SparsityLoss, tanh_scale: f64, target_l0: f64) -> Self {
        match (arch, loss) {
            (Architecture::JumpRelu, SparsityLoss::L0) => Penalty::L0,
            (Architecture::JumpRelu, SparsityLoss::Tanh) => Penalty::Tanh {
                scale: tanh_scale,
                norms: (),
            },
            (Architecture::JumpRelu, SparsityLoss::L0Target) => {
                Penalty::L0Target { target: target_l0 }
            }
            (Architecture::Relu, _) => Penalty::L1 { norms: () },
            (Architecture::TopK | Architecture::BatchTopK, _) => Penalty::None,
        }
    }
}

impl<N> Penalty<N> {
    /// Whether it weighs by the decoder's row norms.
    pub fn weighted(&self) -> bool {
        matches!(self, Penalty::Tanh { .. } | Penalty::L1 { .. })
    }

    /// The same penalty carrying `f(norms)` instead of its norms.
    pub fn map_norms<M>(&self, f: impl FnOnce(&N) -> M) -> Penalty<M> {
        match self {
            Penalty::L0 => Penalty::L0,
            Penalty::L0Target { target } => Penalty::L0Target { target: *target },
            Penalty::Tanh { scale, norms } => Penalty::Tanh {
                scale: *scale,
                norms: f(norms),
            },
            Penalty::L1 { norms } => Penalty::L1 { norms: f(norms) },
            Penalty::None => Penalty::None,
        }
    }

    /// Its norms, where it weighs by them.
    pub fn norms(&self) -> Option<&N> {
        match self {
            Penalty::Tanh { norms, .. } | Penalty::L1 { norms } => Some(norms),
            _ => None,
        }
    }
}

/// A norm-weighted penalty's factors on the host: the norms ‖W_dec[i]‖, with tanh's c and λc/B
/// (none: L1, whose factor is λ/B).
pub(crate) type HostWeights<'a> = Option<(&'a [f32], Option<(f32, f32)>)>;

/// What the penalty adds to a host step's gradients at batch size `bf` and λ `lam`: its weights
/// ([`HostWeights`]), and l0_target's L*.
pub(crate) fn host_penalty(
    p: &Penalty<Vec<f32>>,
    lam: f64,
    bf: f64,
) -> (HostWeights<'_>, Option<f64>) {
    match p {
        Penalty::Tanh { scale, norms } => (
            Some((
                norms.as_slice(),
                Some((*scale as f32, (lam * scale / bf) as f32)),
            )),
            None,
        ),
        Penalty::L1 { norms } => (Some((norms.as_slice(), None)), None),
        Penalty::L0Target { target } => (None, Some(*target)),
        Penalty::L0 | Penalty::None => (None, None),
    }
}

/// Which implementation of [`Elementwise`] a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// [`tensor_ops::TensorOps`]: any device.
    TensorOps,
    /// [`host_fused::HostFused`]: devices whose tensors live in host memory.
    HostFused,
}

impl Kernels {
    /// The fused host kernels where the device keeps tensors in host memory (burn's flex
    /// backend) and the `JUMPSCOPE_NO_FUSED` seam does not ask for the tensor-op path, else
    /// tensor ops. Called once per run.
    pub fn for_device(device: &Device) -> Self {
        if *device == Device::flex() && !crate::seams::no_fused() {
            Kernels::HostFused
        } else {
            Kernels::TensorOps
        }
    }
}

/// The loss settings in force for one step (λ already warmed up).
#[derive(Debug, Clone)]
pub struct LossSettings {
    /// What the encoder does with z (JumpReLU and ReLU: a threshold, θ = 0 for ReLU; TopK and
    /// BatchTopK: the k largest per token / k·B largest per batch).
    pub architecture: Architecture,
    /// k of TopK and BatchTopK.
    pub k: usize,
    /// k_aux of the AuxK loss (TopK, BatchTopK).
    pub aux_k: usize,
    /// α of the AuxK loss (0 = off).
    pub aux_coefficient: f64,
    /// The sparsity penalty, with c and L* where it has them.
    pub penalty: Penalty,
    /// λ_t.
    pub lambda: f64,
    /// STE bandwidth ε.
    pub bandwidth: f64,
    /// Coefficient of the pre-activation loss (0 = off).
    pub pre_act_coefficient: f64,
    /// Subtract b_dec before encoding.
    pub pre_encoder_bias: bool,
    /// Which implementation computes the elementwise parts.
    pub kernels: Kernels,
    /// Run the rest of the step sparse when at most this fraction of the `[B, d_sae]` entries
    /// is touched (fused host kernels) or fires (tensor ops on LibTorch); no sparse form exists
    /// for tensor ops on other backends. `sae::sparse::switch_density` by default; 0: never,
    /// `f64::INFINITY`: always.
    pub sparse_below: f64,
    /// Matryoshka: the inner widths w1 < w2 < … < d_sae whose prefix reconstructions (from the
    /// first w features alone) join the loss; empty for a plain dictionary.
    pub matryoshka: Vec<usize>,
}

/// What the elementwise parts of a step need besides the activations.
#[derive(Debug, Clone)]
pub struct ElementwiseInputs {
    /// `[d_sae]` encoder bias.
    pub b_enc: Tensor<1>,
    /// `[d_sae]` θ.
    pub theta: Tensor<1>,
    /// The step's penalty, carrying the `[d_sae]` norms ‖W_dec[i]‖ where it weighs by them.
    pub penalty: Penalty<Tensor<1>>,
    /// `[d_sae]` weight of each feature in the pre-activation loss: ‖W_dec[i]‖ if dead, else 0.
    pub pre_act_weights: Option<Tensor<1>>,
}

/// The encode step's results, still on the device.
#[derive(Debug)]
pub struct Encoded {
    /// `[B, d_sae]` feature activations f = z · H(z − θ).
    pub f: Tensor<2>,
    /// `[d_sae]` tokens on which each feature fired.
    pub fire_counts: Tensor<1>,
    /// `[1]` the sparsity penalty (before λ).
    pub sparsity: Tensor<1>,
    /// `[1]` the pre-activation loss (before its coefficient; 0 when off).
    pub pre_act: Tensor<1>,
    /// `[1]` BatchTopK: the smallest activation kept in this batch (+∞ when none was kept).
    pub kept_min: Option<Tensor<1>>,
}

/// The backward step's results.
#[derive(Debug)]
pub struct Backward {
    /// `[B, d_sae]` ∂L/∂z.
    pub g_z: Tensor<2>,
    /// `[d_sae]` ∂L/∂θ.
    pub g_theta: Tensor<1>,
    /// `[d_sae]` ∂L/∂b_enc = Σ_b ∂L/∂z.
    pub g_b_enc: Tensor<1>,
    /// `[d_sae]` ∂L/∂‖W_dec[i]‖ (tanh penalty only).
    pub g_norms: Option<Tensor<1>>,
}

/// The elementwise parts of a step.
pub trait Elementwise {
    /// What `encode` keeps for `backward`.
    type Saved;

    /// z (the encoder product, without bias) → f, firing counts, penalty values.
    fn encode(
        &self,
        z: Tensor<2>,
        inp: &ElementwiseInputs,
        s: &LossSettings,
    ) -> (Encoded, Self::Saved);

    /// ∂L/∂f (from the decoder) → ∂L/∂z, ∂L/∂θ, ∂L/∂b_enc, ∂L/∂‖W_dec‖, by the STE table of
    /// docs/training.md.
    fn backward(
        &self,
        g_f: Tensor<2>,
        saved: Self::Saved,
        inp: &ElementwiseInputs,
        s: &LossSettings,
    ) -> Backward;
}
