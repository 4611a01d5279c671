//! What flows between the trainer and whoever drives it: [`Control`] in, [`TrainEvent`] out.

use crate::config::Hyper;
use crate::metrics::stats::Histogram;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A command to the running trainer.
#[derive(Debug, Clone)]
pub enum Control {
    /// Replace the live hyperparameters (already validated); `source` says who changed them.
    SetHyper(Box<Hyper>, String),
    /// Stop stepping until `Resume`.
    Pause,
    /// Continue after `Pause`.
    Resume,
    /// Write a checkpoint at the next step boundary.
    Checkpoint,
    /// Write a checkpoint and return.
    Stop,
}

/// One metrics report, written to metrics.jsonl and handed to the sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// Steps completed.
    pub step: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Loss of the last step (before its update).
    pub loss: f64,
    /// Its reconstruction part (training-scaled space).
    pub mse: f64,
    /// Its sparsity part, before λ.
    pub sparsity: f64,
    /// Its pre-activation part, before its coefficient.
    pub pre_act: f64,
    /// Mean active features per token on the last batch.
    pub l0: f64,
    /// 1 − FVU on the last batch.
    pub explained_variance: f64,
    /// Features that have not fired in the last `dead_window_tokens` tokens.
    pub dead: u64,
    /// `dead / d_sae`.
    pub dead_fraction: f64,
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
    /// Histogram of log10(firing frequency + 1e-10) over features, frequency over the window
    /// since the previous report; range [-10, 0].
    pub firing_hist: Histogram,
    /// Histogram of log10 θ, θ in raw activation units.
    pub theta_hist: Histogram,
    /// Seconds since the run (or resume) started.
    pub elapsed_s: f64,
}

/// What the trainer reports to its sink.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Training is about to take its first step (of this process).
    Started {
        /// Steps already done (non-zero after resume).
        step: u64,
        /// Steps of the whole run.
        total_steps: u64,
        /// Input width.
        d_in: usize,
        /// Dictionary size.
        d_sae: usize,
        /// Input scale C.
        scale: f64,
    },
    /// A metrics report.
    Metrics(Box<MetricsRecord>),
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: u64,
        /// Its directory.
        path: PathBuf,
    },
    /// A new data epoch began.
    Epoch {
        /// The new epoch (0-based).
        epoch: u64,
        /// At which step.
        step: u64,
    },
    /// Hyperparameters changed.
    HyperChanged {
        /// At which step they take effect.
        step: u64,
        /// Who changed them.
        source: String,
        /// `key: old -> new` lines.
        changes: Vec<String>,
    },
    /// Something worth telling (skipped rows, …).
    Warning(String),
    /// Paused or resumed.
    Paused(bool),
    /// A validation report on the held-out rows.
    Eval {
        /// Steps completed.
        step: u64,
        /// The report (raw activation space).
        report: crate::eval::EvalReport,
    },
}
