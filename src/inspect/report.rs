//! The inspection report: what `inspect` prints with `--json`, saves with `--out`, and reopens
//! without the store. Its field names are the documented JSON schema (docs/commands.md, "jumpscope inspect").

use crate::eval::Evaluation;
use crate::metrics::stats::Histogram;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Schema version written into every report.
pub const VERSION: u32 = 1;

/// A histogram with explicit edges (`edges.len() == counts.len() + 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeHistogram {
    /// Bin edges, increasing; bin `i` is `[edges[i], edges[i+1])`.
    pub edges: Vec<f64>,
    /// Count per bin.
    pub counts: Vec<u64>,
}

/// Tokens around a top activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Store row of the first token shown.
    pub start: u64,
    /// Index in the window of the activating token.
    pub active: usize,
    /// Token ids of the window.
    pub ids: Vec<i64>,
    /// Token strings of the window, when the store has them (`token_strs` or `vocab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
}

/// One of a feature's largest activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopActivation {
    /// Row in the store (over all files, in order).
    pub position: u64,
    /// The activation (raw units).
    pub activation: f64,
    /// The tokens around it, when the store has token ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

/// What one feature does on the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReport {
    /// Feature index.
    pub index: usize,
    /// Firing frequency: fraction of tokens with a non-zero activation.
    pub density: f64,
    /// Mean of its non-zero activations (0 if it never fired).
    pub mean: f64,
    /// Its largest activation (0 if it never fired).
    pub max: f64,
    /// Its threshold θ (raw units).
    pub threshold: f64,
    /// ‖W_dec[index]‖.
    pub decoder_norm: f64,
    /// Histogram of its non-zero activations over `[0, R)`, `R` the power of two above its
    /// maximum (empty if it never fired).
    pub histogram: EdgeHistogram,
    /// Its largest activations, largest first (equal ones: earlier position first).
    pub top: Vec<TopActivation>,
}

/// The SAE inspected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeInfo {
    /// Where it was read from.
    pub path: String,
    /// "saelens" or "gemma-scope".
    pub format: String,
    /// Input width.
    pub d_in: usize,
    /// The width it reconstructs (absent from reports of earlier versions, and for SAEs there
    /// `d_in`).
    #[serde(default)]
    pub d_out: usize,
    /// What it reconstructs (absent from reports of earlier versions: an SAE).
    #[serde(default, skip_serializing_if = "crate::sae::model::Kind::is_sae")]
    pub kind: crate::sae::model::Kind,
    /// Dictionary size.
    pub d_sae: usize,
    /// Its architecture (absent from reports of earlier versions: JumpReLU). Only JumpReLU and
    /// BatchTopK (one global value) have a threshold θ; the features' `threshold` is 0 for the
    /// others.
    #[serde(default)]
    pub architecture: crate::sae::model::Architecture,
}

impl SaeInfo {
    /// What the histogram marker stands for: θ per feature, BatchTopK's global θ, or `None`
    /// where the architecture has no threshold (TopK, ReLU).
    pub fn theta_marker(&self) -> Option<&'static str> {
        use crate::sae::model::Architecture;
        match self.architecture {
            Architecture::JumpRelu => Some("θ"),
            Architecture::BatchTopK => Some("θ (global)"),
            Architecture::TopK | Architecture::Relu => None,
        }
    }

    /// Why there is no θ marker, where there is none.
    pub fn no_theta_note(&self) -> Option<&'static str> {
        use crate::sae::model::Architecture;
        match self.architecture {
            Architecture::TopK => Some("no θ: a TopK SAE keeps each token's k largest"),
            Architecture::Relu => Some("no θ: a ReLU SAE fires wherever z > 0"),
            _ => None,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    /// Schema version ([`VERSION`]).
    pub version: u32,
    /// The SAE.
    pub sae: SaeInfo,
    /// The store files.
    pub stores: Vec<String>,
    /// The dataset read.
    pub dataset: String,
    /// Over the store's finite rows (rows with NaN/Inf are left out): `n_tokens`, `l0`,
    /// `mse_raw`, `mse_norm`, `fvu`, `explained_variance`, and `silent` / `silent_fraction`
    /// (features that never fired); the same object as `eval --json`, written inline.
    #[serde(flatten)]
    pub recon: Evaluation,
    /// Features with density ≥ `dense_threshold`.
    pub dense: u64,
    /// The density at which a feature counts as dense.
    pub dense_threshold: f64,
    /// Histogram of log10(density + 1e-10) over features, 40 bins over [-10, 0].
    pub density_hist: Histogram,
    /// Histogram of log10 θ over features.
    pub theta_hist: Histogram,
    /// Histogram of decoder norms over features.
    pub decoder_norm_hist: Histogram,
    /// Tokens shown on each side of a top activation (0: none).
    pub context: usize,
    /// Why contexts are missing, when they are (e.g. a store without token ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_note: Option<String>,
    /// Per feature, in index order.
    pub features: Vec<FeatureReport>,
}

/// A report file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Cannot read or write it.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a report.
    #[error("{path}: not a jumpscope inspect report: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Inspection {
    /// Read a report saved with `--out`.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let p = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| ReportError::Io {
            path: p.clone(),
            source,
        })?;
        let r: Inspection = serde_json::from_slice(&text).map_err(|e| ReportError::Invalid {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        if r.version != VERSION {
            return Err(ReportError::Invalid {
                path: p,
                reason: format!("version {} (this jumpscope reads {VERSION})", r.version),
            });
        }
        Ok(r)
    }

    /// Save it (atomically: a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let bytes = serde_json::to_vec(self).map_err(|e| ReportError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        crate::durable::write_file(path, &bytes).map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
