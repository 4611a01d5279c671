//! The model in the loop: what an SAE spliced into a language model does to its next-token loss
//! (ΔLM loss, CE recovered, KL), measured by the model companion, a Python process this module
//! starts and talks to (`companion`), once for a command or kept running beside a training job
//! (`worker`). The definitions are in docs/lm-eval.md.

mod companion;
mod worker;

pub use companion::{Baseline, Companion};
pub use worker::{LmOutcome, LmPort, LmWorker, Submitted};

use crate::sae::model::HostParams;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The sites the companion finds in a model, named as TransformerLens names hooks.
pub const SITES: [&str; 5] = ["resid_post", "resid_pre", "mlp_in", "mlp_out", "attn_out"];

/// Where the evaluation's tokens come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// An integer `.npy` array `[n_seq, seq_len]`, used exactly as given.
    TokenIds(PathBuf),
    /// Text tokenized as `scripts/harvest.py` tokenizes it.
    Texts {
        /// The text file (`.txt`, `.jsonl`, or a directory of them).
        path: PathBuf,
        /// At most this many tokens (0: all).
        tokens: u64,
        /// Tokens per sequence.
        seq_len: usize,
    },
}

/// A model, a site in it and the tokens to evaluate on: everything fixed while SAEs are
/// evaluated against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmTarget {
    /// A local directory or a Hugging Face id.
    pub model: String,
    /// The layer (TransformerLens numbering).
    pub layer: usize,
    /// One of [`SITES`].
    pub site: String,
    /// A transcoder's target site (one of [`SITES`]): the transcoder reads `site` and its output
    /// replaces this one's; `None` for SAEs, which replace `site` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_site: Option<String>,
    /// The tokens.
    pub tokens: TokenSource,
    /// torch's device name (`cpu`, `cuda`, `cuda:N`).
    pub device: String,
    /// The model's dtype for the forward passes.
    pub dtype: String,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

impl LmTarget {
    /// The companion's `open` request.
    fn request(&self) -> serde_json::Value {
        let mut r = serde_json::json!({
            "op": "open",
            "model": self.model,
            "layer": self.layer,
            "site": self.site,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
        });
        if let Some(t) = &self.target_site {
            r["target_site"] = serde_json::json!(t);
        }
        match &self.tokens {
            TokenSource::TokenIds(p) => r["token_ids"] = serde_json::json!(p),
            TokenSource::Texts {
                path,
                tokens,
                seq_len,
            } => {
                r["texts"] = serde_json::json!(path);
                r["tokens"] = serde_json::json!(tokens);
                r["seq_len"] = serde_json::json!(seq_len);
            }
        }
        r
    }

    /// What can be checked without starting Python: the site's name and the files named.
    pub fn check(&self) -> Result<(), LmEvalError> {
        for (what, site) in std::iter::once(("site", &self.site))
            .chain(self.target_site.iter().map(|t| ("target site", t)))
        {
            if !SITES.contains(&site.as_str()) {
                return Err(LmEvalError::User(format!(
                    "{what} {site}: unknown site: expected {}",
                    SITES.join(", ")
                )));
            }
        }
        let file = match &self.tokens {
            TokenSource::TokenIds(p) => p,
            TokenSource::Texts { path, .. } => path,
        };
        if !file.exists() {
            return Err(LmEvalError::User(format!(
                "{}: no such file",
                file.display()
            )));
        }
        if looks_local(&self.model) && !Path::new(&self.model).is_dir() {
            return Err(LmEvalError::User(format!(
                "model {}: no such directory (a local model, or a Hugging Face id like org/name)",
                self.model
            )));
        }
        Ok(())
    }

    /// `blocks.L.hook_SITE` of `model` (→ the target site's, for transcoders), for messages.
    pub fn describe(&self) -> String {
        let to = self
            .target_site
            .as_ref()
            .map(|t| format!(" -> blocks.{}.hook_{t}", self.layer))
            .unwrap_or_default();
        format!(
            "{} at blocks.{}.hook_{}{to}",
            self.model, self.layer, self.site
        )
    }
}

/// Whether a `--model` names a local directory rather than a Hugging Face id (`name` or
/// `org/name`): an absolute or `./`, `../`, `~` path, or one of more than two parts.
pub fn looks_local(model: &str) -> bool {
    model.starts_with(['/', '.', '~']) || model.matches('/').count() > 1
}

/// What an SAE spliced in does to the model, on one set of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LmScores {
    /// Next-token cross-entropy without the SAE (mean over predicted positions).
    pub ce_clean: f64,
    /// The same with the SAE's reconstruction in place of the site's activation.
    pub ce_spliced: f64,
    /// The same with the site zero-ablated.
    pub ce_ablated: f64,
    /// `ce_spliced − ce_clean`.
    pub delta_lm_loss: f64,
    /// `(ce_ablated − ce_spliced) / (ce_ablated − ce_clean)`.
    pub ce_recovered: f64,
    /// KL(clean ‖ spliced), summed over the vocabulary, mean over all positions.
    pub kl: f64,
    /// Mean active features per position at the site.
    pub l0: f64,
    /// Fraction of the site's variance the SAE leaves unexplained.
    pub fvu: f64,
}

impl LmScores {
    /// The scores from the clean and ablated baseline and one spliced pass.
    pub fn new(base: &Baseline, spliced: &companion::Spliced) -> Self {
        Self {
            ce_clean: base.ce_clean,
            ce_spliced: spliced.ce_spliced,
            ce_ablated: base.ce_ablated,
            delta_lm_loss: spliced.ce_spliced - base.ce_clean,
            ce_recovered: (base.ce_ablated - spliced.ce_spliced)
                / (base.ce_ablated - base.ce_clean),
            kl: spliced.kl,
            l0: spliced.l0,
            fvu: spliced.fvu,
        }
    }
}

/// Why the model could not be put in the loop.
#[derive(Debug, thiserror::Error)]
pub enum LmEvalError {
    /// A mistake in what was asked (a missing model, a layer it lacks, ids outside the
    /// vocabulary, a Python without torch): one line, exit code 2.
    #[error("{0}")]
    User(String),
    /// The companion could not be started.
    #[error(
        "{python}: cannot start it ({why}); the model companion needs a Python with torch and transformers: name one with --python, lm_eval.python or JUMPSCOPE_PYTHON"
    )]
    Spawn {
        /// The Python.
        python: PathBuf,
        /// What the OS said.
        why: std::io::Error,
    },
    /// The companion failed or died.
    #[error("the model companion failed: {0}")]
    Failed(String),
    /// A file of ours could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The Python that runs the companion: `flag` (`--python`), else `configured`
/// (`lm_eval.python`), else `JUMPSCOPE_PYTHON`, else `python3`.
pub fn python(flag: Option<&Path>, configured: Option<&Path>) -> PathBuf {
    flag.or(configured)
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("JUMPSCOPE_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Evaluate `saes` (inference form) on `target` with one companion: the clean and ablated passes
/// once, then one spliced pass per batch for all of them. `progress(what, done, total)`.
pub fn evaluate(
    python: &Path,
    target: &LmTarget,
    saes: &[(String, HostParams)],
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(Baseline, Vec<LmScores>), LmEvalError> {
    target.check()?;
    let mut c = Companion::start(python, None, false)?;
    let base = c.open(target, progress)?;
    for (name, p) in saes {
        base.check_width(name, p, target)?;
    }
    let params: Vec<&HostParams> = saes.iter().map(|(_, p)| p).collect();
    let spliced = c.eval(&params, progress)?;
    c.quit();
    Ok((
        base,
        spliced.iter().map(|s| LmScores::new(&base, s)).collect(),
    ))
}
