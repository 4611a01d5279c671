//! The hyperparameters the screen's keys step and edit: their keys, labels, formats and steps.

use crate::config::{Architecture, Hyper};
use crate::schema::keys::{self, Key};

/// A hyperparameter that can be changed from the keyboard.
#[derive(Debug, Clone, Copy)]
pub struct Tunable {
    /// Its config key (the key table gives its name and the pane's label).
    pub key: &'static Key,
    /// Whether it is an integer (steps up/down double/halve it).
    pub integer: bool,
    /// Its current value (`None`: unset, e.g. target L0 without the l0_target penalty).
    value: fn(&Hyper) -> Option<f64>,
}

impl PartialEq for Tunable {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Tunable {}

const fn real(key: &'static Key, value: fn(&Hyper) -> Option<f64>) -> Tunable {
    Tunable {
        key,
        integer: false,
        value,
    }
}

const fn whole(key: &'static Key, value: fn(&Hyper) -> Option<f64>) -> Tunable {
    Tunable {
        key,
        integer: true,
        value,
    }
}

const LAMBDA: Tunable = real(&keys::SPARSITY_COEFFICIENT, |h| {
    Some(h.sparsity_coefficient)
});
const TARGET_L0: Tunable = real(&keys::TARGET_L0, |h| h.target_l0);
const LR: Tunable = real(&keys::LR, |h| Some(h.lr));
const BANDWIDTH: Tunable = real(&keys::BANDWIDTH, |h| Some(h.bandwidth));
const K: Tunable = whole(&keys::K, |h| Some(h.k as f64));
const AUX_COEFFICIENT: Tunable = real(&keys::AUX_COEFFICIENT, |h| Some(h.aux_coefficient));
const AUX_K: Tunable = whole(&keys::AUX_K, |h| Some(h.aux_k as f64));
const LOG_EVERY: Tunable = whole(&keys::LOG_EVERY, |h| Some(h.log_every as f64));
const CHECKPOINT_EVERY: Tunable =
    whole(&keys::CHECKPOINT_EVERY, |h| Some(h.checkpoint_every as f64));

/// JumpReLU's keyboard-tunable hyperparameters, in pane order.
pub const TUNABLES: [Tunable; 6] = [
    LAMBDA,
    TARGET_L0,
    LR,
    BANDWIDTH,
    LOG_EVERY,
    CHECKPOINT_EVERY,
];

/// TopK's and BatchTopK's, in pane order.
const TOPK_TUNABLES: [Tunable; 6] = [K, LR, AUX_COEFFICIENT, AUX_K, LOG_EVERY, CHECKPOINT_EVERY];

/// ReLU's, in pane order.
const RELU_TUNABLES: [Tunable; 4] = [LAMBDA, LR, LOG_EVERY, CHECKPOINT_EVERY];

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
        (self.value)(h)
    }

    /// How the pane names it.
    pub fn label(&self) -> &'static str {
        self.key.label.unwrap_or(self.key.name)
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

    /// The next value up or down: integers double or halve, the others move by 25 %, rounded
    /// to three significant digits (so the value in force is the one shown: 0.000313, not
    /// 0.0003125 shown as 0.0003125 and held as 0.00031250000000000006).
    pub(super) fn stepped(&self, v: f64, up: bool) -> f64 {
        let three = |x: f64| format!("{x:.2e}").parse().unwrap_or(x);
        match (self.integer, up) {
            (true, true) => (v * 2.0).max(1.0),
            (true, false) => (v / 2.0).floor(),
            (false, true) => three(v * 1.25),
            (false, false) => three(v / 1.25),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepped_values_keep_three_significant_digits() {
        let lr = tunables(Architecture::JumpRelu)
            .iter()
            .find(|t| t.key.name == "lr")
            .copied()
            .expect("lr is tunable");
        let mut v = 0.0002;
        let mut seen = Vec::new();
        for _ in 0..6 {
            v = lr.stepped(v, true);
            seen.push(lr.format(v));
        }
        assert_eq!(
            seen,
            [
                "0.00025", "0.000313", "0.000391", "0.000489", "0.000611", "0.000764"
            ]
        );
        // what is shown is what is held
        assert_eq!(lr.format(v).parse::<f64>().unwrap(), v);
        assert_eq!(lr.format(lr.stepped(0.00025, false)), "0.0002");
    }
}
