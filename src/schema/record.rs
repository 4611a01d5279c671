//! The run log's schema: every line of `RUN_DIR/metrics.jsonl` is one [`Record`], tagged by its
//! `type`. The trainer writes them (and hands the same values to its sink), `watch` and the tests
//! read them back through this type, and the one-line text a person sees for each is
//! [`Record::summary`].

use crate::eval::Evaluation;
use crate::lmeval::LmScores;
use crate::metrics::stats::Histogram;
use crate::sae::model::{Architecture, Kind};
use crate::schema::health::Kind as HealthKind;
use crate::schema::memory::MemoryEstimate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Who changed a run's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EditSource {
    /// A key on the screen.
    Key,
    /// A save of the run's `config.toml` (by hand, or by `watch` in another process; or an
    /// edit of a stopped run's, applied when it is resumed).
    File,
    /// `train --resume RUN --set key=value`.
    Set,
    /// A source written by a newer version.
    #[serde(other)]
    Other,
}

impl std::fmt::Display for EditSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EditSource::Key => "key",
            EditSource::File => "file",
            EditSource::Set => "set",
            EditSource::Other => "other",
        })
    }
}

/// One line of metrics.jsonl. Every kind carries `step` (steps completed) and `tokens` (tokens
/// trained on) at the moment it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// A new run is about to take its first step.
    Start {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// Input width.
        d_in: usize,
        /// Dictionary size.
        d_sae: usize,
        /// The SAE's architecture (absent from logs of versions before there was a choice).
        #[serde(default)]
        architecture: Architecture,
        /// What it reconstructs (absent for SAEs and from logs of earlier versions).
        #[serde(default, skip_serializing_if = "Kind::is_sae")]
        kind: Kind,
        /// A transcoder's output width (absent for SAEs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_out: Option<usize>,
        /// Input scale C.
        scale: f64,
        /// The device label.
        device: String,
        /// The store file's attributes (model, hook, …), also written into exported metadata
        /// (absent from logs of versions before they were recorded).
        #[serde(default)]
        store_attributes: BTreeMap<String, String>,
        /// The memory the run was estimated to need, by part (`train::memory`; absent from logs
        /// of versions before it was estimated).
        #[serde(default)]
        memory_estimate: Option<MemoryEstimate>,
        /// Bytes the device had free when the run started (host RAM for CPU devices; absent
        /// where it could not be checked, as on CUDA).
        #[serde(default)]
        memory_available: Option<u64>,
    },
    /// A run continues from a checkpoint in a new process.
    Resume {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The checkpoint it continues from.
        checkpoint: PathBuf,
        /// Input width.
        d_in: usize,
        /// Dictionary size.
        d_sae: usize,
        /// The SAE's architecture (absent from logs of versions before there was a choice).
        #[serde(default)]
        architecture: Architecture,
        /// What it reconstructs (absent for SAEs and from logs of earlier versions).
        #[serde(default, skip_serializing_if = "Kind::is_sae")]
        kind: Kind,
        /// A transcoder's output width (absent for SAEs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        d_out: Option<usize>,
        /// Input scale C.
        scale: f64,
        /// The device label.
        device: String,
        /// As in `start`.
        #[serde(default)]
        memory_estimate: Option<MemoryEstimate>,
        /// As in `start`.
        #[serde(default)]
        memory_available: Option<u64>,
    },
    /// A metrics report (every `log_every` steps).
    Metrics(Box<MetricsRecord>),
    /// L0, MSE and FVU on the held-out rows (raw activation space).
    Eval {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The report.
        eval: Evaluation,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// Its directory.
        path: PathBuf,
    },
    /// The store was exhausted and reshuffled: a new data epoch began.
    Epoch {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The new epoch (0-based).
        epoch: u64,
    },
    /// Hyperparameters changed; they apply from this step on.
    Hyper {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// Who changed them.
        source: EditSource,
        /// Each changed hyperparameter by name.
        changes: BTreeMap<String, Change>,
    },
    /// Stepping paused.
    Pause {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
    },
    /// Stepping resumed after a pause.
    ResumeSteps {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
    },
    /// A step's loss was NaN or infinite; training stops.
    NonfiniteLoss {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The 0-based step whose loss was not finite.
        at_step: u64,
    },
    /// Stopped on request, with a checkpoint.
    Stop {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The checkpoint written.
        checkpoint: PathBuf,
    },
    /// All steps done; the SAE was exported.
    Finish {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The exported SAELens directory.
        sae: PathBuf,
    },
    /// A health rule noticed something wrong (`health`): raised once while it lasts.
    Warning {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// Which rule.
        kind: HealthKind,
        /// What was seen, with the numbers.
        message: String,
        /// What to change.
        hint: String,
        /// The numbers the rule compared, by name.
        values: BTreeMap<String, f64>,
    },
    /// A warning's condition has been gone for `health.clear_after_reports` reports.
    WarningCleared {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// Which rule.
        kind: HealthKind,
    },
    /// The SAE of `step` spliced into the model (`[lm_eval]` live, or `jumpscope lm-eval`).
    LmEval(Box<LmEvalRecord>),
    /// An evaluation was due but the previous one was still running: skipped.
    LmEvalSkipped {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The step whose evaluation is still running.
        running: u64,
    },
    /// The model companion failed (to start, to load, or while evaluating); training goes on
    /// without evaluations.
    LmEvalFailed {
        /// Steps completed.
        step: u64,
        /// Tokens trained on.
        tokens: u64,
        /// The one-line reason.
        message: String,
    },
}

/// One evaluation with the model in the loop (docs/lm-eval.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmEvalRecord {
    /// The step whose parameters were evaluated.
    pub step: u64,
    /// Tokens trained on by then (as in every record; the tokens evaluated are `eval_tokens`).
    pub tokens: u64,
    /// The scores (ce_clean, ce_spliced, ce_ablated, delta_lm_loss, ce_recovered, kl, l0, fvu).
    #[serde(flatten)]
    pub scores: LmScores,
    /// Positions evaluated.
    pub eval_tokens: u64,
    /// The model, layer and site.
    pub model: String,
    /// The layer.
    pub layer: usize,
    /// The site.
    pub site: String,
    /// A transcoder's target site, whose activation its output replaced (absent for SAEs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_site: Option<String>,
}

/// One hyperparameter's change in a [`Record::Hyper`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The value before (`null` if unset).
    pub old: serde_json::Value,
    /// The value after (`null` if unset).
    pub new: serde_json::Value,
}

/// One metrics report, written to metrics.jsonl and handed to the sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// Steps completed.
    pub step: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Loss of the last step (before its update).
    pub loss: f64,
    /// Its reconstruction part, mean ‖x − x̂‖² in training-scaled space (x / C, so that
    /// E‖x‖² ≈ 1). `mse` in earlier versions.
    #[serde(alias = "mse")]
    pub mse_scaled: f64,
    /// Normalised MSE of the last batch: Σ‖x − x̂‖² / Σ‖x‖², free of scale, the same quantity
    /// `eval` reports as `mse_norm` (`null` in logs of earlier versions).
    #[serde(
        default = "crate::metrics::nullable::nan",
        with = "crate::metrics::nullable"
    )]
    pub mse_norm: f64,
    /// Its sparsity part, before λ.
    pub sparsity: f64,
    /// Its pre-activation part, before its coefficient.
    pub pre_act: f64,
    /// Mean active features per token on the last batch.
    pub l0: f64,
    /// 1 − FVU on the last batch.
    pub explained_variance: f64,
    /// Features that have not fired in the last `dead_window_tokens` training tokens.
    pub dead: u64,
    /// `dead / d_sae`.
    pub dead_fraction: f64,
    /// The window `dead` is counted over, in tokens (`train.dead_window_tokens`; 0 in logs of
    /// earlier versions). Until that many tokens are trained on, no feature can be dead.
    #[serde(default)]
    pub dead_window_tokens: u64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// λ of the last step.
    pub sparsity_coefficient: f64,
    /// Training throughput since the previous report.
    pub tokens_per_s: f64,
    /// Rows dropped for NaN/Inf so far.
    pub skipped_rows: u64,
    /// Current data epoch.
    pub epoch: u64,
    /// Fraction of the wall time since the previous report spent waiting for data.
    pub data_wait_fraction: f64,
    /// Fraction of the steps since the previous report that ran sparse after the encoder
    /// product (`sae::sparse`; absent in logs of earlier versions).
    #[serde(default)]
    pub sparse_fraction: f64,
    /// Histogram of log10(firing frequency + 1e-10) over features, frequency over the window
    /// since the previous report; range [-10, 0].
    pub firing_hist: Histogram,
    /// What stands in for a threshold, log10 in raw activation units: θ per feature (JumpReLU,
    /// BatchTopK), each token's k-th largest pre-activation in the last batch (TopK), each
    /// feature's mean non-zero activation in the last batch (ReLU).
    pub theta_hist: Histogram,
    /// BatchTopK's global inference threshold (raw units); `null` for the other architectures.
    #[serde(default)]
    pub global_threshold: Option<f64>,
    /// Matryoshka: the FVU on the last batch of the reconstruction from each inner width's first
    /// features alone, narrowest first (absent without `sae.matryoshka_widths`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matryoshka_fvu: Vec<WidthFvu>,
    /// Seconds since the run (or resume) started.
    pub elapsed_s: f64,
}

/// One Matryoshka width's FVU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WidthFvu {
    /// The width: the reconstruction uses features `0..width`.
    pub width: usize,
    /// Its fraction of variance unexplained.
    pub fvu: f64,
}

impl MetricsRecord {
    /// The dead features, as every screen shows them.
    pub fn inactive(&self) -> crate::metrics::stats::Inactive {
        crate::metrics::stats::Inactive {
            measure: crate::metrics::stats::Measure::Dead,
            count: self.dead,
            fraction: self.dead_fraction,
            tokens: self.dead_window_tokens,
        }
    }
}

/// `, memory ~1.20 GiB of 20.00 GiB free` for the opening records' summaries.
fn memory_phrase(need: &Option<MemoryEstimate>, free: &Option<u64>) -> String {
    use crate::schema::memory::gib;
    match (need, free) {
        (Some(n), Some(f)) => format!(", memory ~{} of {} free", gib(n.total), gib(*f)),
        (Some(n), None) => format!(", memory ~{} (free memory not checked)", gib(n.total)),
        _ => String::new(),
    }
}

impl Record {
    /// Every `type` a record can have, in the order of the enum.
    pub const KINDS: [&'static str; 17] = [
        "start",
        "resume",
        "metrics",
        "eval",
        "checkpoint",
        "epoch",
        "hyper",
        "pause",
        "resume-steps",
        "nonfinite-loss",
        "stop",
        "finish",
        "warning",
        "warning-cleared",
        "lm-eval",
        "lm-eval-skipped",
        "lm-eval-failed",
    ];

    /// Its `type`.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[match self {
            Record::Start { .. } => 0,
            Record::Resume { .. } => 1,
            Record::Metrics(_) => 2,
            Record::Eval { .. } => 3,
            Record::Checkpoint { .. } => 4,
            Record::Epoch { .. } => 5,
            Record::Hyper { .. } => 6,
            Record::Pause { .. } => 7,
            Record::ResumeSteps { .. } => 8,
            Record::NonfiniteLoss { .. } => 9,
            Record::Stop { .. } => 10,
            Record::Finish { .. } => 11,
            Record::Warning { .. } => 12,
            Record::WarningCleared { .. } => 13,
            Record::LmEval(_) => 14,
            Record::LmEvalSkipped { .. } => 15,
            Record::LmEvalFailed { .. } => 16,
        }]
    }

    /// Steps completed when it was written.
    pub fn step(&self) -> u64 {
        self.stamp().0
    }

    /// Tokens trained on when it was written (every record carries them).
    pub fn tokens(&self) -> u64 {
        self.stamp().1
    }

    /// (steps, tokens): the point of the run every record is stamped with.
    fn stamp(&self) -> (u64, u64) {
        match self {
            Record::Metrics(m) => (m.step, m.tokens),
            Record::LmEval(r) => (r.step, r.tokens),
            Record::Start { step, tokens, .. }
            | Record::Resume { step, tokens, .. }
            | Record::Eval { step, tokens, .. }
            | Record::Checkpoint { step, tokens, .. }
            | Record::Epoch { step, tokens, .. }
            | Record::Hyper { step, tokens, .. }
            | Record::Pause { step, tokens, .. }
            | Record::ResumeSteps { step, tokens, .. }
            | Record::NonfiniteLoss { step, tokens, .. }
            | Record::Stop { step, tokens, .. }
            | Record::Finish { step, tokens, .. }
            | Record::Warning { step, tokens, .. }
            | Record::WarningCleared { step, tokens, .. }
            | Record::LmEvalSkipped { step, tokens, .. }
            | Record::LmEvalFailed { step, tokens, .. } => (*step, *tokens),
        }
    }

    /// The line a person reads for it, beside its step (the screen's event log, headless
    /// output); `None` for metrics reports, which go to charts and progress lines instead.
    pub fn summary(&self) -> Option<String> {
        Some(match self {
            Record::Metrics(_) => return None,
            Record::Start {
                d_in,
                d_sae,
                architecture,
                kind,
                d_out,
                scale,
                device,
                memory_estimate,
                memory_available,
                ..
            } => format!(
                "started: {architecture} {}, d_in {d_in}{}, d_sae {d_sae}, input scale C = {scale:.4}, device {device}{}",
                if kind.has_target() {
                    kind.name()
                } else {
                    "SAE"
                },
                d_out.map(|d| format!(", d_out {d}")).unwrap_or_default(),
                memory_phrase(memory_estimate, memory_available),
                architecture = architecture.name(),
            ),
            Record::Resume {
                checkpoint,
                d_in,
                d_sae,
                scale,
                device,
                memory_estimate,
                memory_available,
                ..
            } => format!(
                "resumed from {}: d_in {d_in}, d_sae {d_sae}, input scale C = {scale:.4}, device {device}{}",
                checkpoint.display(),
                memory_phrase(memory_estimate, memory_available)
            ),
            Record::Eval { eval, .. } => format!(
                "held-out ({} tokens): L0 {:.2}, FVU {:.4}, normalised MSE {:.4}, silent {} ({:.1}%)",
                eval.n_tokens,
                eval.l0,
                eval.fvu,
                eval.mse_norm,
                eval.silent,
                eval.silent_fraction * 100.0
            ),
            Record::Checkpoint { path, .. } => format!("checkpoint {}", path.display()),
            Record::Epoch { epoch, .. } => {
                format!("data epoch {epoch} begins (reshuffled)")
            }
            Record::Hyper {
                source, changes, ..
            } => format!(
                "[{source}] {}",
                changes
                    .iter()
                    .map(|(k, c)| format!("{k}: {} -> {}", c.old, c.new))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Record::Pause { .. } => "paused".into(),
            Record::ResumeSteps { .. } => "resumed".into(),
            Record::NonfiniteLoss { at_step, .. } => format!("non-finite loss at step {at_step}"),
            Record::Stop { step, .. } => format!("stopped at step {step} with a checkpoint"),
            Record::Finish { sae, .. } => format!("done: SAE in {}", sae.display()),
            Record::Warning {
                kind,
                message,
                hint,
                ..
            } => format!("warning {}: {message}; {hint}", kind.name()),
            Record::WarningCleared { kind, .. } => {
                format!("cleared {}: the condition is gone", kind.name())
            }
            // the step beside it is the step of the SAE evaluated
            Record::LmEval(r) => format!(
                "lm-eval: ΔLM loss {:+.4}, CE recovered {:.3}, KL {:.4} (CE {:.4} clean, {:.4} ablated; L0 {:.1}, FVU {:.4})",
                r.scores.delta_lm_loss,
                r.scores.ce_recovered,
                r.scores.kl,
                r.scores.ce_clean,
                r.scores.ce_ablated,
                r.scores.l0,
                r.scores.fvu
            ),
            Record::LmEvalSkipped { running, .. } => {
                format!("lm-eval skipped: the one of step {running} is still running")
            }
            Record::LmEvalFailed { message, .. } => {
                format!("lm-eval failed, training goes on without it: {message}")
            }
        })
    }

    /// Whether it reports something wrong (shown as an alarm).
    pub fn is_alarm(&self) -> bool {
        matches!(
            self,
            Record::NonfiniteLoss { .. } | Record::Warning { .. } | Record::LmEvalFailed { .. }
        )
    }

    /// One line of metrics.jsonl. `Ok(None)` for a record of a `type` this version does not
    /// know (written by a newer jumpscope), which readers skip.
    pub fn parse(line: &[u8]) -> Result<Option<Record>, serde_json::Error> {
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                let v: serde_json::Value = serde_json::from_slice(line)?;
                match v["type"].as_str() {
                    Some(t) if !Self::KINDS.contains(&t) => Ok(None),
                    _ => Err(e),
                }
            }
        }
    }
}

/// Why a run log could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A complete line is not a record.
    #[error("{path}: line {line}: not a metrics.jsonl record: {source}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// Every record of a run log. Only complete lines count: a run that is still writing may have a
/// last line without its newline yet. A broken last line (a write cut short) is skipped; see
/// [`read_log_noting`] for the note that says so.
pub fn read_log(path: &Path) -> Result<Vec<Record>, LogError> {
    read_log_noting(path).map(|(records, _)| records)
}

/// [`read_log`], with a one-line note when a broken last line was skipped. A broken line before
/// the last is an error.
pub fn read_log_noting(path: &Path) -> Result<(Vec<Record>, Option<String>), LogError> {
    let mut tail = LogTail::new(path);
    let mut lines = tail.poll()?;
    let mut note = None;
    if let Some(Err(LogError::Line { line, .. })) = lines.last() {
        note = Some(format!(
            "{}: line {line}, the last, is not a whole record (a write cut short?): skipped",
            path.display()
        ));
        lines.pop();
    }
    let records = lines
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok((records, note))
}

impl crate::schema::tail::Line for Record {
    fn parse(line: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        Record::parse(line)
    }
}

/// A reader of a run log that is still being appended to (`watch`).
pub type LogTail = crate::schema::tail::Tail<Record>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_keeps_its_type_first() {
        let r = Record::Checkpoint {
            step: 7,
            tokens: 700,
            path: "run/checkpoints/step-7".into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.starts_with(r#"{"type":"checkpoint","step":7,"tokens":700"#),
            "{line}"
        );
        assert_eq!(Record::parse(line.as_bytes()).unwrap(), Some(r));
    }

    #[test]
    fn unknown_kinds_are_skipped_and_broken_known_kinds_are_errors() {
        assert_eq!(
            Record::parse(br#"{"type":"from-the-future","step":1}"#).unwrap(),
            None
        );
        assert!(Record::parse(br#"{"type":"checkpoint","step":1}"#).is_err());
        assert!(Record::parse(b"{not json").is_err());
    }

    #[test]
    fn the_tail_waits_for_a_line_to_be_complete_and_counts_lines() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("metrics.jsonl");
        let pause = r#"{"type":"pause","step":1,"tokens":2}"#;
        std::fs::write(&path, format!("{pause}\n\n{{\"type\":\"resume-st")).unwrap();
        let mut tail = LogTail::new(&path);
        let first = tail.poll().unwrap();
        assert_eq!(first.len(), 1);
        assert!(matches!(first[0], Ok(Some(Record::Pause { step: 1, .. }))));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        writeln!(f, "eps\",\"step\":3,\"tokens\":4}}\nbroken").unwrap();
        writeln!(f).unwrap();
        let next = tail.poll().unwrap();
        assert!(matches!(
            next[0],
            Ok(Some(Record::ResumeSteps { step: 3, .. }))
        ));
        match &next[1] {
            Err(LogError::Line { line, .. }) => assert_eq!(*line, 4),
            other => panic!("{other:?}"),
        }
        writeln!(f, "{pause}").unwrap();
        assert!(
            read_log(&path).is_err(),
            "a broken line before the last fails the whole read"
        );
        // a broken last line is skipped, with a note
        std::fs::write(&path, format!("{pause}\n{{\"type\":\"pau\n")).unwrap();
        let (recs, note) = read_log_noting(&path).unwrap();
        assert_eq!(recs.len(), 1);
        assert!(note.unwrap().contains("line 2, the last"));
        assert!(matches!(
            read_log(&d.path().join("missing.jsonl")),
            Err(LogError::Io { .. })
        ));
    }
}
