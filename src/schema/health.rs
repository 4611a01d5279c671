//! The health rules' vocabulary, shared by the run log, the configuration and the rules: the
//! kinds of warning ([`Kind`], with the hint each gives) and the `[health]` table
//! ([`HealthConfig`]). The rules themselves are `crate::health`.

use crate::sae::model::Architecture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// θ barely moves while L0 is far from where it should go.
    ThresholdFrozen,
    /// Dead features climb.
    DeadRising,
    /// Almost nothing fires.
    L0Collapse,
    /// Far too much fires.
    L0Runaway,
    /// The loss jumped.
    LossSpike,
    /// Held-out reconstruction falls behind training after several epochs.
    Overfitting,
    /// The trainer waits for data.
    DataBound,
    /// The sparsity penalty dwarfs the reconstruction.
    SparsityDominates,
}

impl Kind {
    /// Every kind, in the order they are checked and listed.
    pub const ALL: [Kind; 8] = [
        Kind::ThresholdFrozen,
        Kind::DeadRising,
        Kind::L0Collapse,
        Kind::L0Runaway,
        Kind::LossSpike,
        Kind::Overfitting,
        Kind::DataBound,
        Kind::SparsityDominates,
    ];

    /// The kind's name in logs and config keys.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ThresholdFrozen => "threshold-frozen",
            Kind::DeadRising => "dead-rising",
            Kind::L0Collapse => "l0-collapse",
            Kind::L0Runaway => "l0-runaway",
            Kind::LossSpike => "loss-spike",
            Kind::Overfitting => "overfitting",
            Kind::DataBound => "data-bound",
            Kind::SparsityDominates => "sparsity-dominates",
        }
    }

    /// What to change, in the keys of `arch`.
    pub fn hint(self, arch: Architecture) -> String {
        use crate::schema::keys::{
            AUX_COEFFICIENT as AUX, BANDWIDTH, K, LR, PRE_ACT_COEFFICIENT as PRE_ACT,
            SHUFFLE_BUFFER_TOKENS, SPARSITY_COEFFICIENT as LAMBDA, SPARSITY_WARMUP_STEPS as WARMUP,
        };
        match (self, arch.is_topk()) {
            (Kind::DeadRising, true) => {
                return format!(
                    "raise {AUX} (AuxK) or lower {LR}; a dictionary far wider than the data needs keeps latents dead"
                );
            }
            (Kind::L0Collapse, true) => return format!("too few latents kept: raise {K}"),
            (Kind::L0Runaway, true) => return format!("{K} is above d_sae / 10: lower {K}"),
            (Kind::DeadRising, false) if arch == Architecture::Relu => {
                return format!("lower λ ({LAMBDA}) or {LR}, or shorten {WARMUP}");
            }
            _ => {}
        }
        match self {
            Kind::ThresholdFrozen => format!(
                "the STE window is too narrow for the pre-activations: raise {BANDWIDTH}, or {LR} (θ's learning rate too)"
            ),
            Kind::DeadRising => {
                format!("enable {PRE_ACT}, lower λ ({LAMBDA}) or {LR}, or shorten {WARMUP}")
            }
            Kind::L0Collapse => format!("λ too high: lower {LAMBDA}"),
            Kind::L0Runaway => {
                format!("λ too low or the warm-up too long: raise {LAMBDA} or shorten {WARMUP}")
            }
            Kind::LossSpike => format!(
                "lower the lr ({LR}); check the store for outliers (jumpscope store info --scan)"
            ),
            Kind::Overfitting => "more tokens: the store is too small for this many steps".into(),
            Kind::DataBound => format!(
                "the reader is the bottleneck: uncompressed or LZF stores, float16, a larger {SHUFFLE_BUFFER_TOKENS}"
            ),
            Kind::SparsityDominates => {
                format!("λ far too high for this input scale: lower {LAMBDA}")
            }
        }
    }

    /// Whether the rule looks at θ (skipped for architectures without one).
    pub fn needs_theta(self) -> bool {
        self == Kind::ThresholdFrozen
    }
}

/// Thresholds and switches of the rules (the `[health]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// All rules on or off.
    pub enabled: bool,
    /// Rules switched off one by one, by kind name.
    pub disabled: BTreeSet<Kind>,
    /// Reports in a row without the condition before a warning clears.
    pub clear_after_reports: usize,
    /// `threshold-frozen`: median relative θ change per 1,000 steps below this.
    pub theta_change_per_1k_steps: f64,
    /// `threshold-frozen`: L0 above this multiple of its target …
    pub l0_over_target: f64,
    /// … or below this one.
    pub l0_under_target: f64,
    /// `dead-rising`: dead fraction above this …
    pub dead_fraction: f64,
    /// … and rising over this many reports.
    pub dead_reports: usize,
    /// `l0-collapse`: L0 below this.
    pub l0_min: f64,
    /// `l0-runaway`: L0 above d_sae divided by this.
    pub l0_max_divisor: f64,
    /// `loss-spike`: loss above this multiple of the median …
    pub spike_factor: f64,
    /// … of this many previous reports.
    pub spike_window: usize,
    /// `overfitting`: from this epoch (0-based) on …
    pub overfit_epoch: u64,
    /// … held-out FVU minus training FVU above this.
    pub overfit_gap: f64,
    /// `data-bound`: data wait fraction above this …
    pub data_wait: f64,
    /// … for this many reports in a row.
    pub data_wait_reports: usize,
    /// `sparsity-dominates`: λ · sparsity above this multiple of the MSE.
    pub sparsity_over_mse: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            disabled: BTreeSet::new(),
            clear_after_reports: 5,
            theta_change_per_1k_steps: 1e-3,
            l0_over_target: 1.5,
            l0_under_target: 0.67,
            dead_fraction: 0.10,
            dead_reports: 5,
            l0_min: 1.0,
            l0_max_divisor: 10.0,
            spike_factor: 3.0,
            spike_window: 20,
            overfit_epoch: 2,
            overfit_gap: 0.1,
            data_wait: 0.3,
            data_wait_reports: 3,
            sparsity_over_mse: 10.0,
        }
    }
}
