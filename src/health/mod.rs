//! Training health: the rules that notice a run going wrong from the statistics every report
//! already carries, and say what to change. [`Monitor`] takes the reports (and held-out
//! evaluations) in order and answers with warnings raised and cleared; a warning is raised once
//! while its condition lasts, and cleared after the condition has been absent for
//! [`HealthConfig::clear_after_reports`] reports in a row.
//!
//! The rules and their defaults (issue "Training health"):
//!
//! | kind | condition |
//! |---|---|
//! | `threshold-frozen` | after warm-up, median relative change of θ (live features) per 1,000 steps < 1e-3 while L0 is > 1.5× or < 0.67× its target (without a target: L0 still falling), and L0 has not collapsed |
//! | `dead-rising` | dead fraction > 10 % and higher than 4 reports ago (rising over the last 5) |
//! | `l0-collapse` | L0 < 1 after warm-up |
//! | `l0-runaway` | L0 > d_sae / 10 after warm-up |
//! | `loss-spike` | loss > 3× the median of the previous 20 reports |
//! | `overfitting` | epoch ≥ 2 (0-based: the third) and held-out FVU − training FVU (the median of the last 5 reports when the evaluation ran) > 0.1 |
//! | `data-bound` | data wait fraction > 0.3 for 3 reports in a row |
//! | `sparsity-dominates` | λ · sparsity > 10 × MSE after warm-up |

pub mod doctor;

use crate::sae::model::Architecture;
use crate::train::record::MetricsRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    pub fn hint(self, arch: Architecture) -> &'static str {
        match (self, arch.is_topk()) {
            (Kind::DeadRising, true) => {
                return "raise train.aux_coefficient (AuxK) or lower train.lr; a dictionary far wider than the data needs keeps latents dead";
            }
            (Kind::L0Collapse, true) => return "too few latents kept: raise sae.k",
            (Kind::L0Runaway, true) => return "sae.k is above d_sae / 10: lower sae.k",
            (Kind::DeadRising, false) if arch == Architecture::Relu => {
                return "lower λ (train.sparsity_coefficient) or train.lr, or shorten train.sparsity_warmup_steps";
            }
            _ => {}
        }
        match self {
            Kind::ThresholdFrozen => {
                "the STE window is too narrow for the pre-activations: raise sae.bandwidth, or train.lr (θ's learning rate too)"
            }
            Kind::DeadRising => {
                "enable train.pre_act_coefficient, lower λ (train.sparsity_coefficient) or train.lr, or shorten train.sparsity_warmup_steps"
            }
            Kind::L0Collapse => "λ too high: lower train.sparsity_coefficient",
            Kind::L0Runaway => {
                "λ too low or the warm-up too long: raise train.sparsity_coefficient or shorten train.sparsity_warmup_steps"
            }
            Kind::LossSpike => {
                "lower the lr (train.lr); check the store for outliers (jumpscope store info --scan)"
            }
            Kind::Overfitting => "more tokens: the store is too small for this many steps",
            Kind::DataBound => {
                "the reader is the bottleneck: uncompressed or LZF stores, float16, a larger data.shuffle_buffer_tokens"
            }
            Kind::SparsityDominates => {
                "λ far too high for this input scale: lower train.sparsity_coefficient"
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

/// What the rules need to know about the run besides its reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFacts {
    /// Dictionary size.
    pub d_sae: usize,
    /// Steps of λ warm-up (the rules about sparsity wait for it).
    pub sparsity_warmup_steps: u64,
    /// L* of the `l0_target` penalty, if any.
    pub target_l0: Option<f64>,
    /// The architecture (the θ rule needs a trained threshold; hints name its keys).
    pub architecture: Architecture,
}

/// A warning raised: the `warning` record's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// Which rule.
    pub kind: Kind,
    /// What was seen, in words with the numbers.
    pub message: String,
    /// What to change.
    pub hint: String,
    /// The numbers the rule compared, by name.
    pub values: BTreeMap<String, f64>,
}

/// What one report (or evaluation) changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A condition appeared.
    Raised(Warning),
    /// A condition has been gone for `clear_after_reports` reports.
    Cleared(Kind),
}

/// The rules' memory of a run: recent reports, θ's recent change, the last held-out FVU, and
/// which warnings are active.
#[derive(Debug, Clone)]
pub struct Monitor {
    cfg: HealthConfig,
    facts: RunFacts,
    recent: VecDeque<MetricsRecord>,
    theta_change: Option<f64>,
    /// The latest held-out FVU and the training FVU at the time it was measured.
    heldout_fvu: Option<(f64, f64)>,
    /// Reports up to this step measured a differently defined loss (see [`Monitor::loss_redefined`]).
    loss_from: u64,
    /// Active kinds and how many reports in a row their condition has been absent.
    active: BTreeMap<Kind, usize>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Monitor {
    /// A monitor with these rules for a run with these facts.
    pub fn new(cfg: HealthConfig, facts: RunFacts) -> Self {
        Self {
            cfg,
            facts,
            recent: VecDeque::new(),
            theta_change: None,
            heldout_fvu: None,
            loss_from: 0,
            active: BTreeMap::new(),
        }
    }

    /// New thresholds (a live edit); active warnings stay until their conditions clear.
    pub fn set_config(&mut self, cfg: HealthConfig) {
        self.cfg = cfg;
    }

    /// The rules in force.
    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// The kinds whose warnings are active.
    pub fn active(&self) -> Vec<Kind> {
        self.active.keys().copied().collect()
    }

    /// The kinds this run checks (on, and applicable to its architecture).
    pub fn checked(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.cfg.enabled && !self.cfg.disabled.contains(k))
            .filter(|k| self.facts.architecture.trains_theta() || !k.needs_theta())
            .collect()
    }

    /// The median relative change of θ per 1,000 steps since the previous report (the trainer
    /// measures it when it reads θ for the report's histogram).
    pub fn observe_theta_change(&mut self, per_1k_steps: f64) {
        self.theta_change = Some(per_1k_steps);
    }

    /// A live edit changed what the loss sums (λ, the sparsity penalty, the pre-activation
    /// term) after step `step`: `loss-spike` compares later losses only with each other, so that
    /// the user's own edit does not read as a spike.
    pub fn loss_redefined(&mut self, step: u64) {
        self.loss_from = step;
    }

    /// The FVU of a held-out evaluation just made. It is compared with the training FVU of the
    /// same moment, the median over the last (up to 5) reports' batches: one batch is noisy,
    /// and a held-out FVU from an evaluation long ago against today's training FVU would call
    /// progress in training overfitting. Before the first report there is nothing to compare.
    pub fn observe_heldout_fvu(&mut self, fvu: f64) {
        let n = self.recent.len().min(5);
        if n == 0 {
            return;
        }
        let mut train: Vec<f64> = self
            .recent
            .iter()
            .skip(self.recent.len() - n)
            .map(|r| 1.0 - r.explained_variance)
            .collect();
        self.heldout_fvu = Some((fvu, median(&mut train)));
    }

    /// A metrics report: check every rule, and answer with what was raised or cleared.
    pub fn observe(&mut self, m: &MetricsRecord) -> Vec<Event> {
        let keep = self
            .cfg
            .spike_window
            .max(self.cfg.dead_reports)
            .max(self.cfg.data_wait_reports)
            + 1;
        self.recent.push_back(m.clone());
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
        let mut events = Vec::new();
        let checked = self.checked();
        for kind in Kind::ALL {
            let found = if checked.contains(&kind) {
                self.check(kind, m)
            } else {
                None
            };
            match (found, self.active.get_mut(&kind)) {
                (Some(_), Some(absent)) => *absent = 0,
                (Some(w), None) => {
                    self.active.insert(kind, 0);
                    events.push(Event::Raised(w));
                }
                (None, Some(absent)) => {
                    *absent += 1;
                    // a rule switched off clears at once
                    if *absent >= self.cfg.clear_after_reports || !checked.contains(&kind) {
                        self.active.remove(&kind);
                        events.push(Event::Cleared(kind));
                    }
                }
                (None, None) => {}
            }
        }
        events
    }

    fn warn(&self, kind: Kind, message: String, values: &[(&str, f64)]) -> Option<Warning> {
        Some(Warning {
            kind,
            message,
            hint: kind.hint(self.facts.architecture).to_string(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        })
    }

    /// The last `n` reports (oldest first), if there are that many.
    fn last(&self, n: usize) -> Option<Vec<&MetricsRecord>> {
        (self.recent.len() >= n).then(|| self.recent.iter().skip(self.recent.len() - n).collect())
    }

    fn check(&self, kind: Kind, m: &MetricsRecord) -> Option<Warning> {
        let c = &self.cfg;
        let warmed = m.step >= self.facts.sparsity_warmup_steps;
        match kind {
            Kind::ThresholdFrozen => {
                let change = self.theta_change?;
                // a collapsed L0 leaves θ without gradient too; that is l0-collapse's warning
                if !warmed || change >= c.theta_change_per_1k_steps || m.l0 < c.l0_min {
                    return None;
                }
                let off = match self.facts.target_l0 {
                    Some(t) => m.l0 > c.l0_over_target * t || m.l0 < c.l0_under_target * t,
                    // still falling: below the L0 of the report c.dead_reports back
                    None => self
                        .last(c.dead_reports)
                        .is_some_and(|r| m.l0 < 0.99 * r[0].l0),
                };
                off.then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "θ moved {change:.1e} (median relative change per 1,000 steps) while L0 is {:.1}{}",
                        m.l0,
                        self.facts
                            .target_l0
                            .map_or(" and still falling".to_string(), |t| format!(
                                ", target {t}"
                            ))
                    ),
                    &[("theta_change_per_1k_steps", change), ("l0", m.l0)],
                )
            }
            Kind::DeadRising => {
                // rising = higher than `dead_reports - 1` reports ago; a step-by-step rise
                // would let one noisy report clear the warning and raise it again
                let r = self.last(c.dead_reports.max(2))?;
                let rising = m.dead_fraction > r[0].dead_fraction;
                (m.dead_fraction > c.dead_fraction && rising).then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "{:.1} % of the features are dead, up from {:.1} % {} reports ago",
                        m.dead_fraction * 100.0,
                        r[0].dead_fraction * 100.0,
                        r.len() - 1
                    ),
                    &[
                        ("dead_fraction", m.dead_fraction),
                        ("from", r[0].dead_fraction),
                    ],
                )
            }
            Kind::L0Collapse => {
                (warmed && m.l0 < c.l0_min).then_some(())?;
                self.warn(
                    kind,
                    format!("L0 is {:.2}: almost no feature fires", m.l0),
                    &[("l0", m.l0)],
                )
            }
            Kind::L0Runaway => {
                let max = self.facts.d_sae as f64 / c.l0_max_divisor;
                (warmed && m.l0 > max).then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "L0 is {:.1}, above d_sae / {} = {max:.1}",
                        m.l0, c.l0_max_divisor
                    ),
                    &[("l0", m.l0), ("limit", max)],
                )
            }
            Kind::LossSpike => {
                // the previous reports (up to spike_window of them, at least 5) of the same
                // loss definition, not this one
                let n = self.recent.len() - 1;
                let same: Vec<f64> = self
                    .recent
                    .iter()
                    .take(n)
                    .filter(|r| r.step > self.loss_from)
                    .map(|r| r.loss)
                    .collect();
                if same.len() < 5 {
                    return None;
                }
                let mut prev = same[same.len().saturating_sub(c.spike_window)..].to_vec();
                let med = median(&mut prev);
                (m.loss > c.spike_factor * med).then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "the loss is {:.4}, {:.1}× the median {med:.4} of the previous {} reports",
                        m.loss,
                        m.loss / med,
                        prev.len()
                    ),
                    &[("loss", m.loss), ("median", med)],
                )
            }
            Kind::Overfitting => {
                let (held, train) = self.heldout_fvu?;
                (m.epoch >= c.overfit_epoch && held - train > c.overfit_gap).then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "held-out FVU {held:.3} against {train:.3} in training, epoch {}",
                        m.epoch + 1
                    ),
                    &[("heldout_fvu", held), ("training_fvu", train)],
                )
            }
            Kind::DataBound => {
                let r = self.last(c.data_wait_reports.max(1))?;
                r.iter()
                    .all(|r| r.data_wait_fraction > c.data_wait)
                    .then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "the trainer waited for data {:.0} % of the time for {} reports",
                        m.data_wait_fraction * 100.0,
                        r.len()
                    ),
                    &[("data_wait_fraction", m.data_wait_fraction)],
                )
            }
            Kind::SparsityDominates => {
                let penalty = m.sparsity_coefficient * m.sparsity;
                (warmed && penalty > c.sparsity_over_mse * m.mse).then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "λ · sparsity = {penalty:.4} is {:.0}× the MSE {:.4}",
                        penalty / m.mse.max(f64::MIN_POSITIVE),
                        m.mse
                    ),
                    &[("penalty", penalty), ("mse", m.mse)],
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
