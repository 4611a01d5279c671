//! `jumpscope doctor`: what a run's log says about its health, read after the fact (or while
//! it trains): every warning with the step it was raised and cleared at, and the rules that were
//! checked and stayed quiet.

use crate::config::load;
use crate::schema::health::Kind;
use crate::schema::record::{LogError, Record, read_log_noting};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One warning as the log tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    /// Which rule.
    pub kind: Kind,
    /// The step it was raised at.
    pub raised_at: u64,
    /// The step it cleared at (`None`: still active at the end of the log).
    pub cleared_at: Option<u64>,
    /// What was seen.
    pub message: String,
    /// What to change.
    pub hint: String,
}

/// A run's health from its log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The run directory.
    pub run: PathBuf,
    /// Steps completed at the last record.
    pub steps: u64,
    /// Whether the log ends with the run finished or stopped (else it may still be training).
    pub ended: bool,
    /// Every warning, in the order raised.
    pub episodes: Vec<Episode>,
    /// Rules the run checked (from its `config.toml`).
    pub checked: Vec<Kind>,
    /// Rules its architecture skips (the θ rule without a trained threshold).
    pub skipped: Vec<Kind>,
    /// The run's architecture.
    pub architecture: crate::sae::model::Architecture,
    /// Checked rules that never fired.
    pub healthy: Vec<Kind>,
    /// What the model in the loop said (`lm-eval` records), when it was in the loop.
    pub lm_eval: Option<LmSummary>,
    /// A broken last line of the log that was skipped (a write cut short), said once.
    pub log_note: Option<String>,
}

/// The run's evaluations with the model in the loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmSummary {
    /// Evaluations recorded.
    pub evaluations: usize,
    /// The newest (of the latest step).
    pub newest: Option<crate::schema::record::LmEvalRecord>,
    /// Due evaluations skipped because the previous one was still running.
    pub skipped: usize,
    /// Why the companion failed, each time it did.
    pub failures: Vec<String>,
}

/// Why a directory could not be diagnosed.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// Neither a run directory nor a directory of runs.
    #[error(
        "{0}: not a run directory (no metrics.jsonl), and no run directory inside it: pass the --out of a `jumpscope train` run"
    )]
    NotARun(PathBuf),
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The run directories `dir` holds: itself if it has a metrics.jsonl, else its subdirectories
/// that do (a sweep's members), in name order.
pub fn runs_in(dir: &Path) -> Result<Vec<PathBuf>, DoctorError> {
    if dir.join("metrics.jsonl").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| DoctorError::NotARun(dir.to_path_buf()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("metrics.jsonl").is_file())
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(DoctorError::NotARun(dir.to_path_buf()));
    }
    Ok(runs)
}

/// Diagnose the run in `run`.
pub fn diagnose(run: &Path) -> Result<Diagnosis, DoctorError> {
    let (records, log_note) = read_log_noting(&run.join("metrics.jsonl"))?;
    // the rules the run was configured with (all, if its config cannot be read)
    let config = load(&run.join("config.toml"), &[])
        .ok()
        .and_then(|f| f.validate("config.toml").ok());
    let architecture = config
        .as_ref()
        .map(|c| c.sae.architecture)
        .unwrap_or_default();
    let health = config.map(|c| c.hyper.health).unwrap_or_default();
    let skipped: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| k.needs_theta() && !architecture.trains_theta())
        .collect();
    let checked: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| health.enabled && !health.disabled.contains(k) && !skipped.contains(k))
        .collect();
    let mut episodes: Vec<Episode> = Vec::new();
    let mut lm = LmSummary {
        evaluations: 0,
        newest: None,
        skipped: 0,
        failures: Vec::new(),
    };
    let mut steps = 0;
    let mut ended = false;
    let open = |e: &Episode| e.cleared_at.is_none();
    for r in &records {
        steps = steps.max(r.step());
        match r {
            Record::Warning {
                step,
                kind,
                message,
                hint,
                ..
            } => episodes.push(Episode {
                kind: *kind,
                raised_at: *step,
                cleared_at: None,
                message: message.clone(),
                hint: hint.clone(),
            }),
            Record::WarningCleared { step, kind, .. } => {
                if let Some(e) = episodes
                    .iter_mut()
                    .rev()
                    .find(|e| e.kind == *kind && open(e))
                {
                    e.cleared_at = Some(*step);
                }
            }
            // a new process starts its rules afresh: what was active is no longer followed
            Record::Resume { step, .. } => {
                for e in episodes.iter_mut().filter(|e| open(e)) {
                    e.cleared_at = Some(*step);
                }
                ended = false;
            }
            Record::Stop { .. } | Record::Finish { .. } | Record::NonfiniteLoss { .. } => {
                ended = true
            }
            Record::LmEval(e) => {
                lm.evaluations += 1;
                if lm.newest.as_ref().is_none_or(|n| e.step >= n.step) {
                    lm.newest = Some((**e).clone());
                }
            }
            Record::LmEvalSkipped { .. } => lm.skipped += 1,
            Record::LmEvalFailed { message, .. } => lm.failures.push(message.clone()),
            _ => {}
        }
    }
    let healthy = checked
        .iter()
        .copied()
        .filter(|k| !episodes.iter().any(|e| e.kind == *k))
        .collect();
    let in_loop = lm.evaluations + lm.skipped + lm.failures.len() > 0;
    Ok(Diagnosis {
        lm_eval: in_loop.then_some(lm),
        log_note,
        run: run.to_path_buf(),
        steps,
        ended,
        episodes,
        checked,
        healthy,
        skipped,
        architecture,
    })
}

impl Diagnosis {
    /// The report as text: a heading, one block per warning, one line per quiet rule.
    pub fn render(&self) -> String {
        let state = if self.ended {
            "ended"
        } else {
            "still training, or stopped without a record"
        };
        let mut s = format!(
            "{}: {} steps ({state}); {} warning(s)\n",
            self.run.display(),
            self.steps,
            self.episodes.len()
        );
        if let Some(n) = &self.log_note {
            s += &format!("  note: {n}\n");
        }
        for e in &self.episodes {
            let until = match e.cleared_at {
                Some(c) => format!("cleared at step {c}"),
                None => "still active".to_string(),
            };
            s += &format!(
                "  warning {} at step {} ({until}): {}\n    → {}\n",
                e.kind.name(),
                e.raised_at,
                e.message,
                e.hint
            );
        }
        for k in &self.healthy {
            s += &format!("  ok {}: checked, never fired\n", k.name());
        }
        if let Some(lm) = &self.lm_eval {
            s += &format!(
                "  model in the loop: {} evaluation(s), {} skipped",
                lm.evaluations, lm.skipped
            );
            if let Some(n) = &lm.newest {
                s += &format!(
                    "; newest of step {}: ΔLM loss {:+.4}, CE recovered {:.3}, KL {:.4}",
                    n.step, n.scores.delta_lm_loss, n.scores.ce_recovered, n.scores.kl
                );
            }
            s.push('\n');
            for f in &lm.failures {
                s += &format!("  lm-eval failed: {f}\n");
            }
        }
        for k in &self.skipped {
            s += &format!(
                "  skip {}: not checked ({} has no trained threshold θ)\n",
                k.name(),
                self.architecture.name()
            );
        }
        for k in Kind::ALL
            .iter()
            .filter(|k| !self.checked.contains(k) && !self.skipped.contains(k))
        {
            s += &format!(
                "  off {}: not checked (switched off in [health])\n",
                k.name()
            );
        }
        s
    }
}
