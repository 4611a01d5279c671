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

use crate::sae::model::Architecture;
use crate::schema::health::{HealthConfig, Kind};
use crate::schema::record::MetricsRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

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
            hint: kind.hint(self.facts.architecture),
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
                (warmed && penalty > c.sparsity_over_mse * m.mse_scaled).then_some(())?;
                self.warn(
                    kind,
                    format!(
                        "λ · sparsity = {penalty:.4} is {:.0}× the MSE {:.4} (training-scaled)",
                        penalty / m.mse_scaled.max(f64::MIN_POSITIVE),
                        m.mse_scaled
                    ),
                    &[("penalty", penalty), ("mse_scaled", m.mse_scaled)],
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
