//! The run configuration: TOML file types, `--set` overrides, and validation into one immutable
//! [`Config`] whose live-tunable part is [`Hyper`].
//!
//! Every field of the file is optional and falls back to the recipe default of the spec
//! (`jumprelu-spec.md`, "The recipe"); unknown keys are rejected by serde. After parsing,
//! [`FileConfig::validate`] checks every range and names the key, the value and what is allowed.

pub use crate::sae::kernels::SparsityLoss;
pub use crate::sae::model::ThresholdParam;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// What to do with a batch that contains NaN or Inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Drop the offending rows, count them, and go on.
    Skip,
    /// Stop the run with an error naming the store and the row.
    Stop,
}

macro_rules! file_section {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[$fmeta])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>,)* }
    };
}

file_section!(
    /// `[data]` as written in the file.
    DataFile {
        stores: Vec<PathBuf>,
        dataset: String,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        normalize: Normalize,
        scale_sample_tokens: usize,
        on_nonfinite: OnNonFinite,
        eval_tokens: usize,
        shuffle_buffer_tokens: usize,
    }
);
file_section!(
    /// `[sae]` as written in the file.
    SaeFile {
        d_sae: usize,
        expansion_factor: f64,
        init_from: PathBuf,
        threshold_param: ThresholdParam,
        threshold_init: f64,
        bandwidth: f64,
        pre_encoder_bias: bool,
        unit_norm_decoder: bool,
    }
);
file_section!(
    /// `[train]` as written in the file.
    TrainFile {
        steps: u64,
        tokens: u64,
        lr: f64,
        lr_warmup_steps: u64,
        lr_decay_fraction: f64,
        adam_beta1: f64,
        adam_beta2: f64,
        adam_eps: f64,
        sparsity_loss: SparsityLoss,
        sparsity_coefficient: f64,
        sparsity_warmup_steps: u64,
        target_l0: f64,
        tanh_scale: f64,
        pre_act_coefficient: f64,
        log_every: u64,
        checkpoint_every: u64,
        keep_checkpoints: usize,
        dead_window_tokens: u64,
        eval_every: u64,
    }
);
file_section!(
    /// `[run]` as written in the file.
    RunFile {
        out: PathBuf,
        device: String,
    }
);

/// The configuration file as written: every key optional, unknown keys rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[data]`
    #[serde(default)]
    pub data: DataFile,
    /// `[sae]`
    #[serde(default)]
    pub sae: SaeFile,
    /// `[train]`
    #[serde(default)]
    pub train: TrainFile,
    /// `[run]`
    #[serde(default)]
    pub run: RunFile,
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
}

/// Validated model-shape settings (structural: fixed for a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// Dictionary size, when given directly.
    pub d_sae: Option<usize>,
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
    /// Device name (`cpu`, …).
    pub device: String,
}

impl Config {
    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        match (self.length.steps, self.length.tokens) {
            (Some(s), _) => s,
            (None, Some(t)) => t.div_ceil(self.data.batch_size as u64),
            (None, None) => 10_000,
        }
    }
}

/// Parse a TOML string into the file form, applying `--set section.key=value` overrides first.
pub fn parse(text: &str, origin: &str, sets: &[String]) -> Result<FileConfig, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: one_line(&e.to_string()),
        })?;
    for s in sets {
        apply_set(&mut table, s)?;
    }
    FileConfig::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: one_line(&e.to_string()),
    })
}

/// Read and parse a config file with overrides.
pub fn load(path: &Path, sets: &[String]) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), sets)
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), ConfigError> {
    let bad = |expected: &str| ConfigError::Invalid {
        origin: "--set".into(),
        key: set.split('=').next().unwrap_or(set).to_string(),
        value: set.split_once('=').map(|x| x.1).unwrap_or("").to_string(),
        expected: expected.into(),
    };
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| bad("section.key=value"))?;
    let (section, field) = key
        .trim()
        .split_once('.')
        .ok_or_else(|| bad("a key of the form section.key (e.g. train.lr)"))?;
    // A value is TOML when it parses as TOML (numbers, booleans, arrays, quoted strings),
    // else it is taken as a bare string, so `--set run.out=runs/a` works without quotes.
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match sec {
        toml::Value::Table(t) => {
            t.insert(field.to_string(), value);
            Ok(())
        }
        _ => Err(bad("a [section] table")),
    }
}

struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn fail(&self, key: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
    fn positive(&self, key: &str, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(self.fail(key, v, "a finite number > 0"))
        }
    }
    fn non_negative(&self, key: &str, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(self.fail(key, v, "a finite number >= 0"))
        }
    }
    fn unit_interval(&self, key: &str, v: f64, upper_open: bool) -> Result<f64, ConfigError> {
        let ok = v.is_finite() && v >= 0.0 && if upper_open { v < 1.0 } else { v <= 1.0 };
        if ok {
            Ok(v)
        } else if upper_open {
            Err(self.fail(key, v, "a number in [0, 1)"))
        } else {
            Err(self.fail(key, v, "a number in [0, 1]"))
        }
    }
    fn at_least_one<T: Copy + Into<u64> + std::fmt::Display>(
        &self,
        key: &str,
        v: T,
    ) -> Result<T, ConfigError> {
        if v.into() >= 1 {
            Ok(v)
        } else {
            Err(self.fail(key, v, "an integer >= 1"))
        }
    }
}

impl FileConfig {
    /// Check every value and fill in defaults. `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<Config, ConfigError> {
        let c = Check { origin };
        let d = &self.data;
        if let Some(stores) = &d.stores
            && stores.is_empty()
        {
            return Err(c.fail("data.stores", "[]", "at least one HDF5 file"));
        }
        let stores = d.stores.clone().unwrap_or_default();
        let batch_size = d.batch_size.unwrap_or(4096);
        c.at_least_one("data.batch_size", batch_size as u64)?;
        let scale_sample_tokens = d.scale_sample_tokens.unwrap_or(65_536);
        c.at_least_one("data.scale_sample_tokens", scale_sample_tokens as u64)?;
        let dataset = d.dataset.clone();
        if dataset.as_deref() == Some("") {
            return Err(c.fail("data.dataset", "\"\"", "a dataset path"));
        }
        let data = DataConfig {
            stores,
            dataset,
            batch_size,
            shuffle: d.shuffle.unwrap_or(true),
            seed: d.seed.unwrap_or(0),
            normalize: d.normalize.unwrap_or(Normalize::MeanSquaredNorm),
            scale_sample_tokens,
            on_nonfinite: d.on_nonfinite.unwrap_or(OnNonFinite::Skip),
            eval_tokens: d.eval_tokens.unwrap_or(0),
            shuffle_buffer_tokens: match d.shuffle_buffer_tokens {
                Some(n) => Some(c.at_least_one("data.shuffle_buffer_tokens", n as u64)? as usize),
                None => None,
            },
        };

        let s = &self.sae;
        if let Some(m) = s.d_sae {
            c.at_least_one("sae.d_sae", m as u64)?;
        }
        let expansion_factor = s.expansion_factor.unwrap_or(8.0);
        c.positive("sae.expansion_factor", expansion_factor)?;
        let sae = SaeConfig {
            d_sae: s.d_sae,
            expansion_factor,
            init_from: s.init_from.clone(),
            threshold_param: s.threshold_param.unwrap_or(ThresholdParam::Log),
            threshold_init: c.positive("sae.threshold_init", s.threshold_init.unwrap_or(0.001))?,
            pre_encoder_bias: s.pre_encoder_bias.unwrap_or(true),
            unit_norm_decoder: s.unit_norm_decoder.unwrap_or(true),
        };

        let t = &self.train;
        if let Some(steps) = t.steps {
            c.at_least_one("train.steps", steps)?;
        }
        if let Some(tokens) = t.tokens {
            c.at_least_one("train.tokens", tokens)?;
        }
        if t.steps.is_some() && t.tokens.is_some() {
            return Err(c.fail(
                "train.tokens",
                t.tokens.unwrap_or(0),
                "either train.steps or train.tokens, not both",
            ));
        }
        let sparsity_loss = t.sparsity_loss.unwrap_or(SparsityLoss::L0);
        let target_l0 = match t.target_l0 {
            Some(v) => Some(c.positive("train.target_l0", v)?),
            None if sparsity_loss == SparsityLoss::L0Target => {
                return Err(c.fail(
                    "train.target_l0",
                    "(missing)",
                    "a number > 0 when sparsity_loss = \"l0_target\"",
                ));
            }
            None => None,
        };
        let hyper = Hyper {
            lr: c.positive("train.lr", t.lr.unwrap_or(7e-5))?,
            lr_warmup_steps: t.lr_warmup_steps.unwrap_or(1000),
            lr_decay_fraction: c.unit_interval(
                "train.lr_decay_fraction",
                t.lr_decay_fraction.unwrap_or(0.0),
                false,
            )?,
            adam_beta1: c.unit_interval("train.adam_beta1", t.adam_beta1.unwrap_or(0.0), true)?,
            adam_beta2: c.unit_interval("train.adam_beta2", t.adam_beta2.unwrap_or(0.999), true)?,
            adam_eps: c.positive("train.adam_eps", t.adam_eps.unwrap_or(1e-8))?,
            sparsity_loss,
            sparsity_coefficient: c.non_negative(
                "train.sparsity_coefficient",
                t.sparsity_coefficient.unwrap_or(1e-3),
            )?,
            sparsity_warmup_steps: t.sparsity_warmup_steps.unwrap_or(10_000),
            target_l0,
            tanh_scale: c.positive("train.tanh_scale", t.tanh_scale.unwrap_or(4.0))?,
            pre_act_coefficient: c.non_negative(
                "train.pre_act_coefficient",
                t.pre_act_coefficient.unwrap_or(0.0),
            )?,
            bandwidth: c.positive("sae.bandwidth", s.bandwidth.unwrap_or(0.001))?,
            log_every: c.at_least_one("train.log_every", t.log_every.unwrap_or(100))?,
            checkpoint_every: t.checkpoint_every.unwrap_or(1000),
            keep_checkpoints: c.at_least_one(
                "train.keep_checkpoints",
                t.keep_checkpoints.unwrap_or(3) as u64,
            )? as usize,
            dead_window_tokens: c.at_least_one(
                "train.dead_window_tokens",
                t.dead_window_tokens.unwrap_or(10_000_000),
            )?,
            eval_every: t.eval_every.unwrap_or(1000),
        };
        let device = self.run.device.clone().unwrap_or_else(|| "cpu".into());
        Ok(Config {
            data,
            sae,
            length: TrainLength {
                steps: t.steps,
                tokens: t.tokens,
            },
            hyper,
            out: self
                .run
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/run")),
            device,
        })
    }
}

impl Config {
    /// The file form that reproduces this configuration, every key written out.
    pub fn to_file(&self) -> FileConfig {
        let h = &self.hyper;
        FileConfig {
            data: DataFile {
                stores: (!self.data.stores.is_empty()).then(|| self.data.stores.clone()),
                dataset: self.data.dataset.clone(),
                batch_size: Some(self.data.batch_size),
                shuffle: Some(self.data.shuffle),
                seed: Some(self.data.seed),
                normalize: Some(self.data.normalize),
                scale_sample_tokens: Some(self.data.scale_sample_tokens),
                on_nonfinite: Some(self.data.on_nonfinite),
                eval_tokens: Some(self.data.eval_tokens),
                shuffle_buffer_tokens: self.data.shuffle_buffer_tokens,
            },
            sae: SaeFile {
                d_sae: self.sae.d_sae,
                expansion_factor: Some(self.sae.expansion_factor),
                init_from: self.sae.init_from.clone(),
                threshold_param: Some(self.sae.threshold_param),
                threshold_init: Some(self.sae.threshold_init),
                bandwidth: Some(h.bandwidth),
                pre_encoder_bias: Some(self.sae.pre_encoder_bias),
                unit_norm_decoder: Some(self.sae.unit_norm_decoder),
            },
            train: TrainFile {
                steps: self.length.steps,
                tokens: self.length.tokens,
                lr: Some(h.lr),
                lr_warmup_steps: Some(h.lr_warmup_steps),
                lr_decay_fraction: Some(h.lr_decay_fraction),
                adam_beta1: Some(h.adam_beta1),
                adam_beta2: Some(h.adam_beta2),
                adam_eps: Some(h.adam_eps),
                sparsity_loss: Some(h.sparsity_loss),
                sparsity_coefficient: Some(h.sparsity_coefficient),
                sparsity_warmup_steps: Some(h.sparsity_warmup_steps),
                target_l0: h.target_l0,
                tanh_scale: Some(h.tanh_scale),
                pre_act_coefficient: Some(h.pre_act_coefficient),
                log_every: Some(h.log_every),
                checkpoint_every: Some(h.checkpoint_every),
                keep_checkpoints: Some(h.keep_checkpoints),
                dead_window_tokens: Some(h.dead_window_tokens),
                eval_every: Some(h.eval_every),
            },
            run: RunFile {
                out: Some(self.out.clone()),
                device: Some(self.device.clone()),
            },
        }
    }

    /// The configuration as TOML text (written to `RUN_DIR/config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_file()).unwrap_or_default()
    }

    /// This configuration with `key` (`section.key`) set to `value` (TOML, or a bare string),
    /// checked exactly as a config file is; `origin` names the edit in errors.
    pub fn with_edit(&self, key: &str, value: &str, origin: &str) -> Result<Config, ConfigError> {
        parse(&self.to_toml(), origin, &[format!("{key}={value}")])?.validate(origin)
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
}
