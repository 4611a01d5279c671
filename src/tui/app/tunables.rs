//! The hyperparameters the screen's keys step and edit: their keys, labels, formats and steps.

use crate::config::{Architecture, Hyper};

/// A hyperparameter that can be changed from the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunable {
    /// Its config key.
    pub key: &'static str,
    /// How the pane names it.
    pub label: &'static str,
    /// Whether it is an integer (steps up/down double/halve it).
    pub integer: bool,
}

const fn real(key: &'static str, label: &'static str) -> Tunable {
    Tunable {
        key,
        label,
        integer: false,
    }
}

const fn whole(key: &'static str, label: &'static str) -> Tunable {
    Tunable {
        key,
        label,
        integer: true,
    }
}

/// JumpReLU's keyboard-tunable hyperparameters, in pane order.
pub const TUNABLES: [Tunable; 6] = [
    real("train.sparsity_coefficient", "λ (sparsity coef.)"),
    real("train.target_l0", "target L0"),
    real("train.lr", "learning rate"),
    real("sae.bandwidth", "bandwidth ε"),
    whole("train.log_every", "log every"),
    whole("train.checkpoint_every", "checkpoint every"),
];

/// TopK's and BatchTopK's, in pane order.
const TOPK_TUNABLES: [Tunable; 6] = [
    whole("sae.k", "k (kept per token)"),
    real("train.lr", "learning rate"),
    real("train.aux_coefficient", "AuxK coef. α"),
    whole("train.aux_k", "AuxK k_aux"),
    whole("train.log_every", "log every"),
    whole("train.checkpoint_every", "checkpoint every"),
];

/// ReLU's, in pane order.
const RELU_TUNABLES: [Tunable; 4] = [
    real("train.sparsity_coefficient", "λ (sparsity coef.)"),
    real("train.lr", "learning rate"),
    whole("train.log_every", "log every"),
    whole("train.checkpoint_every", "checkpoint every"),
];

/// The keyboard-tunable hyperparameters of `arch`, in pane order (at most [`TUNABLES`]' length).
pub fn tunables(arch: Architecture) -> &'static [Tunable] {
    match arch {
        Architecture::JumpRelu => &TUNABLES,
        Architecture::TopK | Architecture::BatchTopK => &TOPK_TUNABLES,
        Architecture::Relu => &RELU_TUNABLES,
    }
}

impl Tunable {
    /// Its current value (`None`: unset, e.g. target L0 without the l0_target penalty).
    pub fn get(&self, h: &Hyper) -> Option<f64> {
        match self.key {
            "train.sparsity_coefficient" => Some(h.sparsity_coefficient),
            "train.target_l0" => h.target_l0,
            "train.lr" => Some(h.lr),
            "sae.bandwidth" => Some(h.bandwidth),
            "sae.k" => Some(h.k as f64),
            "train.aux_coefficient" => Some(h.aux_coefficient),
            "train.aux_k" => Some(h.aux_k as f64),
            "train.log_every" => Some(h.log_every as f64),
            "train.checkpoint_every" => Some(h.checkpoint_every as f64),
            _ => None,
        }
    }

    /// A value as the config file would hold it.
    pub fn format(&self, v: f64) -> String {
        if self.integer {
            format!("{}", v.round() as u64)
        } else {
            // four significant digits, written so that TOML reads it back as a float
            let r: f64 = format!("{v:.3e}").parse().unwrap_or(v);
            let text = format!("{r}");
            if text.contains('.') || text.contains('e') || !r.is_finite() {
                text
            } else {
                format!("{text}.0")
            }
        }
    }

    /// The next value up or down: integers double or halve, the others move by 25 %.
    pub(super) fn stepped(&self, v: f64, up: bool) -> f64 {
        match (self.integer, up) {
            (true, true) => (v * 2.0).max(1.0),
            (true, false) => (v / 2.0).floor(),
            (false, true) => v * 1.25,
            (false, false) => v / 1.25,
        }
    }
}
