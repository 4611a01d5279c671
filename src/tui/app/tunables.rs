//! The hyperparameters the screen's keys step and edit: their keys, labels, formats and steps.

use crate::config::Hyper;

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

/// The keyboard-tunable hyperparameters, in pane order.
pub const TUNABLES: [Tunable; 6] = [
    Tunable {
        key: "train.sparsity_coefficient",
        label: "λ (sparsity coef.)",
        integer: false,
    },
    Tunable {
        key: "train.target_l0",
        label: "target L0",
        integer: false,
    },
    Tunable {
        key: "train.lr",
        label: "learning rate",
        integer: false,
    },
    Tunable {
        key: "sae.bandwidth",
        label: "bandwidth ε",
        integer: false,
    },
    Tunable {
        key: "train.log_every",
        label: "log every",
        integer: true,
    },
    Tunable {
        key: "train.checkpoint_every",
        label: "checkpoint every",
        integer: true,
    },
];

impl Tunable {
    /// Its current value (`None`: unset, e.g. target L0 without the l0_target penalty).
    pub fn get(&self, h: &Hyper) -> Option<f64> {
        match self.key {
            "train.sparsity_coefficient" => Some(h.sparsity_coefficient),
            "train.target_l0" => h.target_l0,
            "train.lr" => Some(h.lr),
            "sae.bandwidth" => Some(h.bandwidth),
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
