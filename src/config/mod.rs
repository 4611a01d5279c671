//! The run configuration: TOML file types and `--set` overrides (`file`), validation (`validate`),
//! and the one immutable [`Config`] they produce, whose live-tunable part is [`Hyper`].
//!
//! Every field of the file is optional and falls back to the recipe default (docs/training.md,
//! "The recipe"); unknown keys are rejected by serde. After parsing,
//! [`FileConfig::validate`] checks every range and names the key, the value and what is allowed.

mod file;
mod validate;

pub use crate::data::batches::OnNonFinite;
pub use crate::sae::kernels::SparsityLoss;
pub use crate::sae::model::{Architecture, Kind, ThresholdParam};
pub use file::{
    DataFile, FileConfig, LmEvalFile, RunFile, SaeFile, TrainFile, apply_sets, from_table, load,
    parse, set_key,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A configuration problem: always names the file (or `--set`), the key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The config file (or `--set`).
        origin: String,
        /// toml's message, folded onto one line.
        message: String,
    },
    /// A value outside its allowed range.
    #[error("{origin}: {key} = {value}: expected {expected}")]
    Invalid {
        /// The config file (or `--set`).
        origin: String,
        /// `section.key`.
        key: String,
        /// The offending value as written.
        value: String,
        /// What is allowed.
        expected: String,
    },
}

/// Input normalisation before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// Divide by C with C² = mean ‖x‖² over a sample, so that E‖x‖² = 1.
    MeanSquaredNorm,
    /// Train on raw activations.
    None,
}

/// Validated data settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// HDF5 files read as one store, in order.
    pub stores: Vec<PathBuf>,
    /// The dataset inside each file (`None`: `activations`, else the only float dataset).
    pub dataset: Option<String>,
    /// Tokens per training step.
    pub batch_size: usize,
    /// Shuffle rows (false: batches come in file order).
    pub shuffle: bool,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Input normalisation.
    pub normalize: Normalize,
    /// Tokens read to estimate the input scale.
    pub scale_sample_tokens: usize,
    /// Policy for rows with NaN/Inf.
    pub on_nonfinite: OnNonFinite,
    /// Rows at the end of the store held out from training for validation (0 = none).
    pub eval_tokens: usize,
    /// Rows per shuffle block (None: about 32 MiB of f32).
    pub shuffle_buffer_tokens: Option<usize>,
    /// A transcoder's target: HDF5 files read as one store whose rows pair with `stores`' rows
    /// (empty for an SAE; absent from checkpoints of earlier versions).
    #[serde(default)]
    pub target_stores: Vec<PathBuf>,
    /// The dataset inside each target file (`None`: as for `dataset`).
    #[serde(default)]
    pub target_dataset: Option<String>,
}

/// Validated model-shape settings (structural: fixed for a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// What it reads and reconstructs (absent from checkpoints of earlier versions: an SAE).
    #[serde(default)]
    pub kind: Kind,
    /// What the encoder does (absent from checkpoints of earlier versions: JumpReLU).
    #[serde(default)]
    pub architecture: Architecture,
    /// Dictionary size, when given directly.
    pub d_sae: Option<usize>,
    /// Matryoshka widths, strictly increasing, the last d_sae (empty: a plain dictionary;
    /// absent from checkpoints of earlier versions). See [`SaeConfig::inner_widths`].
    #[serde(default)]
    pub matryoshka_widths: Vec<usize>,
    /// d_sae = expansion_factor · d_in, when d_sae is not given.
    pub expansion_factor: f64,
    /// Start from a saved SAE (SAELens directory or Gemma Scope params.npz).
    pub init_from: Option<PathBuf>,
    /// log θ or raw θ.
    pub threshold_param: ThresholdParam,
    /// Initial θ (training-scaled units).
    pub threshold_init: f64,
    /// Subtract b_dec from the input before encoding.
    pub pre_encoder_bias: bool,
    /// Keep decoder rows at unit norm.
    pub unit_norm_decoder: bool,
}

impl SaeConfig {
    /// The Matryoshka widths below the dictionary of `d_sae` features: the prefixes whose
    /// reconstructions join the loss (empty without `sae.matryoshka_widths`).
    pub fn inner_widths(&self, d_sae: usize) -> Vec<usize> {
        self.matryoshka_widths
            .iter()
            .copied()
            .filter(|&w| w < d_sae)
            .collect()
    }

    /// The dictionary size for inputs of width `d_in`.
    pub fn d_sae_for(&self, d_in: usize) -> usize {
        self.d_sae
            .unwrap_or_else(|| ((self.expansion_factor * d_in as f64).round() as usize).max(1))
    }
}

/// The hyperparameters that may change while a run goes on (keys and the watched config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// Peak learning rate η.
    pub lr: f64,
    /// Steps of cosine warm-up from 0.1η to η.
    pub lr_warmup_steps: u64,
    /// Final fraction of the run over which lr decays linearly to 0.
    pub lr_decay_fraction: f64,
    /// Adam β1.
    pub adam_beta1: f64,
    /// Adam β2.
    pub adam_beta2: f64,
    /// Adam ε.
    pub adam_eps: f64,
    /// Which sparsity penalty.
    pub sparsity_loss: SparsityLoss,
    /// λ after warm-up.
    pub sparsity_coefficient: f64,
    /// Steps of linear λ warm-up from 0.
    pub sparsity_warmup_steps: u64,
    /// L* for `l0_target`.
    pub target_l0: Option<f64>,
    /// c for `tanh`.
    pub tanh_scale: f64,
    /// Coefficient of the pre-activation loss on dead features (0 = off).
    pub pre_act_coefficient: f64,
    /// STE bandwidth ε.
    pub bandwidth: f64,
    /// Steps between metric reports.
    pub log_every: u64,
    /// Steps between checkpoints (0 = only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// A feature that has not fired in this many tokens is dead.
    pub dead_window_tokens: u64,
    /// Steps between validation reports (0 = only at the end).
    pub eval_every: u64,
    /// Features kept per token (`topk`; per token on average for `batchtopk`; else 0).
    #[serde(default)]
    pub k: usize,
    /// Dead latents the AuxK loss reconstructs the residual from (`topk`, `batchtopk`).
    #[serde(default = "default_aux_k")]
    pub aux_k: usize,
    /// Coefficient α of the AuxK loss (`topk`, `batchtopk`; 0 = off).
    #[serde(default = "default_aux_coefficient")]
    pub aux_coefficient: f64,
    /// The training-health rules (`[health]`; absent from checkpoints of earlier versions).
    #[serde(default)]
    pub health: crate::schema::health::HealthConfig,
    /// The live part of `[lm_eval]` (absent from checkpoints of earlier versions).
    #[serde(default)]
    pub lm_eval: LmEvalLive,
}

/// What may change of `[lm_eval]` while a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LmEvalLive {
    /// Steps between evaluations (the final step is always evaluated).
    pub every: u64,
    /// Whether evaluations run (the final one included).
    pub enabled: bool,
}

impl Default for LmEvalLive {
    fn default() -> Self {
        Self {
            every: 1000,
            enabled: true,
        }
    }
}

/// `[lm_eval]`: the model, site and tokens an SAE is spliced into while it trains, and the
/// Python that runs the companion (fixed for a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmEvalConfig {
    /// The model, its site, the tokens, the device.
    pub target: crate::lmeval::LmTarget,
    /// `lm_eval.python`, when given.
    pub python: Option<PathBuf>,
}

impl LmEvalConfig {
    /// The file form of this table with its live part `live`.
    fn to_file(&self, live: &LmEvalLive) -> LmEvalFile {
        use crate::lmeval::TokenSource;
        let t = &self.target;
        let (token_ids, texts, tokens, seq_len) = match &t.tokens {
            TokenSource::TokenIds(p) => (Some(p.clone()), None, None, None),
            TokenSource::Texts {
                path,
                tokens,
                seq_len,
            } => (None, Some(path.clone()), Some(*tokens), Some(*seq_len)),
        };
        LmEvalFile {
            model: Some(t.model.clone()),
            layer: Some(t.layer),
            site: Some(t.site.clone()),
            target_site: t.target_site.clone(),
            token_ids,
            texts,
            tokens,
            seq_len,
            batch_size: Some(t.batch_size),
            every: Some(live.every),
            enabled: Some(live.enabled),
            device: Some(t.device.clone()),
            dtype: Some(t.dtype.clone()),
            python: self.python.clone(),
        }
    }
}

/// k_aux = 256, the default of the code released with Gao et al. 2024 ("Scaling and evaluating
/// sparse autoencoders"; openai/sparse_autoencoder, `train.py`, `Config.auxk`), capped at the
/// number of dead latents at each step.
pub const DEFAULT_AUX_K: usize = 256;

/// α = 1/32, the paper's section 2.4 and the same code's `Config.auxk_coef`.
pub const DEFAULT_AUX_COEFFICIENT: f64 = 1.0 / 32.0;

fn default_aux_k() -> usize {
    DEFAULT_AUX_K
}

fn default_aux_coefficient() -> f64 {
    DEFAULT_AUX_COEFFICIENT
}

/// Validated training-length settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainLength {
    /// Optimizer steps, when given.
    pub steps: Option<u64>,
    /// Tokens, when given instead (steps = ceil(tokens / batch_size)).
    pub tokens: Option<u64>,
}

/// The whole validated configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `[data]`
    pub data: DataConfig,
    /// `[sae]`
    pub sae: SaeConfig,
    /// Length of the run.
    pub length: TrainLength,
    /// Live-tunable hyperparameters.
    pub hyper: Hyper,
    /// Run directory.
    pub out: PathBuf,
    /// The device.
    pub device: crate::device::DeviceName,
    /// `[lm_eval]`: the model in the loop (absent from checkpoints of earlier versions).
    #[serde(default)]
    pub lm_eval: Option<LmEvalConfig>,
}

impl Config {
    /// `Some(k)` when the SAE encodes by each token's top k at inference (TopK).
    pub fn topk_inference(&self) -> Option<usize> {
        (self.sae.architecture == Architecture::TopK).then_some(self.hyper.k)
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        match (self.length.steps, self.length.tokens) {
            (Some(s), _) => s,
            (None, Some(t)) => t.div_ceil(self.data.batch_size as u64),
            (None, None) => 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_recipe() {
        let cfg = parse("[data]\nstores = [\"a.h5\"]\n", "t.toml", &[])
            .unwrap()
            .validate("t.toml")
            .unwrap();
        assert_eq!(cfg.hyper.lr, 7e-5);
        assert_eq!(cfg.hyper.adam_beta1, 0.0);
        assert_eq!(cfg.hyper.adam_eps, 1e-8);
        assert_eq!(cfg.hyper.bandwidth, 0.001);
        assert_eq!(cfg.data.batch_size, 4096);
        assert_eq!(cfg.sae.threshold_param, ThresholdParam::Log);
    }

    #[test]
    fn set_overrides_and_round_trip() {
        let sets = vec![
            "train.lr=0.001".to_string(),
            "run.out=runs/x".to_string(),
            "train.sparsity_loss=\"tanh\"".to_string(),
        ];
        let cfg = parse("", "t.toml", &sets)
            .unwrap()
            .validate("t.toml")
            .unwrap();
        assert_eq!(cfg.hyper.lr, 0.001);
        assert_eq!(cfg.out, PathBuf::from("runs/x"));
        assert_eq!(cfg.hyper.sparsity_loss, SparsityLoss::Tanh);
        let again = parse(&cfg.to_toml(), "t.toml", &[])
            .unwrap()
            .validate("t.toml")
            .unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[train]\nlrr = 1\n", "t.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml") && e.contains("lrr"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn out_of_range_is_named() {
        let e = parse("[train]\nlr = -1.0\n", "t.toml", &[])
            .unwrap()
            .validate("t.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.toml: train.lr = -1: expected a finite number > 0");
        let e = parse("", "t.toml", &["train.sparsity_loss=\"l0_target\"".into()])
            .unwrap()
            .validate("t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.target_l0"), "{e}");
    }

    /// The key table and the file form name the same keys: every key written for a run is in
    /// the table, and every key of the table is one the file takes.
    #[test]
    fn the_key_table_is_the_file_form() {
        use crate::schema::keys;
        let base = ["data.stores=[\"a.h5\"]".to_string()];
        let jump = parse("", "t", &base).unwrap().validate("t").unwrap();
        let mut topk_sets = base.to_vec();
        topk_sets.extend([
            "sae.architecture=\"topk\"".to_string(),
            "sae.k=4".to_string(),
        ]);
        let topk = parse("", "t", &topk_sets).unwrap().validate("t").unwrap();
        for cfg in [jump, topk] {
            let toml::Value::Table(t) = toml::Value::try_from(cfg.to_file()).unwrap() else {
                panic!("a table");
            };
            for (section, v) in t {
                for name in v.as_table().unwrap().keys() {
                    let path = format!("{section}.{name}");
                    assert!(
                        keys::find(&path).is_some(),
                        "{path} is not in the key table"
                    );
                }
            }
        }
        for k in keys::ALL {
            // a value of the wrong type for every key: a type error, never an unknown key
            let e = parse("", "t", &[format!("{k}={{ x = 1 }}")])
                .unwrap_err()
                .to_string();
            assert!(!e.contains("unknown key"), "{k}: {e}");
        }
        assert!(
            parse("", "t", &["train.nonsense=1".to_string()])
                .unwrap_err()
                .to_string()
                .contains("unknown key `train.nonsense`")
        );
    }
}
