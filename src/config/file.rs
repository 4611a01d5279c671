//! The configuration file as written: every key optional, unknown keys refused; `--set`
//! overrides applied to the TOML before it is read; and the way back from a [`Config`] to a file.

use super::{
    Architecture, Config, ConfigError, Kind, Normalize, OnNonFinite, SparsityLoss, ThresholdParam,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
        target_stores: Vec<PathBuf>,
        target_dataset: String,
    }
);
file_section!(
    /// `[sae]` as written in the file.
    SaeFile {
        kind: Kind,
        architecture: Architecture,
        k: usize,
        d_sae: usize,
        matryoshka_widths: Vec<usize>,
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
        aux_k: usize,
        aux_coefficient: f64,
        log_every: u64,
        checkpoint_every: u64,
        keep_checkpoints: usize,
        dead_window_tokens: u64,
        eval_every: u64,
    }
);
file_section!(
    /// `[lm_eval]` as written in the file: the model in the loop while training.
    LmEvalFile {
        model: String,
        layer: usize,
        site: String,
        target_site: String,
        token_ids: PathBuf,
        texts: PathBuf,
        tokens: u64,
        seq_len: usize,
        batch_size: usize,
        every: u64,
        enabled: bool,
        device: String,
        dtype: String,
        python: PathBuf,
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
    /// `[health]` (every key has a default; see `health::HealthConfig`)
    #[serde(default)]
    pub health: crate::schema::health::HealthConfig,
    /// `[lm_eval]` (absent: no model in the loop)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm_eval: Option<LmEvalFile>,
}

/// Parse a TOML string into the file form, applying `--set section.key=value` overrides first.
pub fn parse(text: &str, origin: &str, sets: &[String]) -> Result<FileConfig, ConfigError> {
    parse_blaming(text, origin, sets, "--set")
}

/// [`parse`], with the overrides' mistakes blamed on `sets_origin` (`--set`, or where else the
/// overrides came from).
pub fn parse_blaming(
    text: &str,
    origin: &str,
    sets: &[String],
    sets_origin: &str,
) -> Result<FileConfig, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: one_line(&e.to_string()),
        })?;
    // the file alone first, so that its own mistakes are blamed on it, with their line, and a
    // bad `--set` on `--set`
    if !sets.is_empty() {
        from_table(table.clone(), origin).map_err(|e| with_line(e, text))?;
    }
    apply_sets(&mut table, sets)?;
    from_table(table, if sets.is_empty() { origin } else { sets_origin }).map_err(|e| {
        if sets.is_empty() {
            with_line(e, text)
        } else {
            e
        }
    })
}

/// Read a TOML table (a file already parsed, overrides applied) into the file form.
/// `data.stores` and `data.target_stores` may be one path instead of a list of them.
pub fn from_table(mut table: toml::Table, origin: &str) -> Result<FileConfig, ConfigError> {
    if let Some(toml::Value::Table(data)) = table.get_mut("data") {
        for key in ["stores", "target_stores"] {
            if let Some(one @ toml::Value::String(_)) = data.get_mut(key) {
                *one = toml::Value::Array(vec![one.clone()]);
            }
        }
    }
    FileConfig::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: explain(&one_line(&e.to_string())),
    })
}

/// serde's "unknown field `X`, expected one of `a`, `b` in `section`" as a key name with the
/// nearest known key ("did you mean"); any other message as it is.
fn explain(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, rest)) = rest.split_once('`') else {
        return message.to_string();
    };
    let (list, section) = match rest.rsplit_once(" in `") {
        Some((list, sec)) => (list, Some(sec.trim_end_matches('`'))),
        None => (rest, None),
    };
    let known: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    let full = |k: &str| section.map_or(k.to_string(), |s| format!("{s}.{k}"));
    let what = if section.is_some() { "key" } else { "section" };
    let nearest = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(field, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    match nearest {
        Some((_, k)) => format!(
            "unknown {what} `{}`: did you mean `{}`?",
            full(field),
            full(k)
        ),
        None => format!(
            "unknown {what} `{}` (known: {})",
            full(field),
            known.iter().map(|k| full(k)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A file's deserialisation error with the line of the key it names (`section.key`), when that
/// key is written in the file.
fn with_line(e: ConfigError, text: &str) -> ConfigError {
    let ConfigError::Parse { origin, message } = e else {
        return e;
    };
    let key = message
        .split('`')
        .nth(1)
        .filter(|k| !k.contains(' '))
        .or_else(|| {
            message
                .rsplit_once(" in `")
                .map(|(_, k)| k.trim_end_matches('`'))
        });
    match key.and_then(|k| line_of(text, k)) {
        Some(line) => ConfigError::Parse {
            origin: format!("{origin}:{line}"),
            message,
        },
        None => ConfigError::Parse { origin, message },
    }
}

/// The 1-based line of `section.key = …` (or of `[section]` for a bare section name) in a TOML
/// text.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let (section, field) = match key.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (key, None),
    };
    let mut current = "";
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim();
            if field.is_none() && current == section {
                return Some(i + 1);
            }
            continue;
        }
        let Some(f) = field else { continue };
        let name = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if current == section && name == f && line.contains('=') {
            return Some(i + 1);
        }
    }
    None
}

/// Apply `--set section.key=value` overrides to a parsed TOML table.
pub fn apply_sets(table: &mut toml::Table, sets: &[String]) -> Result<(), ConfigError> {
    for s in sets {
        apply_set(table, s)?;
    }
    Ok(())
}

/// Set `section.key` of a parsed TOML table to `value`; false when `section` is not a table.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> bool {
    let Some((section, field)) = key.split_once('.') else {
        return false;
    };
    match table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(t) => {
            t.insert(field.to_string(), value);
            true
        }
        _ => false,
    }
}

/// Read and parse a config file with overrides.
pub fn load(path: &Path, sets: &[String]) -> Result<FileConfig, ConfigError> {
    let text = crate::durable::check_regular(path)
        .and_then(|()| std::fs::read_to_string(path))
        .map_err(|source| ConfigError::Read {
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

impl Config {
    /// The file form that reproduces this configuration, every key written out.
    pub fn to_file(&self) -> FileConfig {
        let h = &self.hyper;
        let arch = self.sae.architecture;
        let mut file = FileConfig {
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
                target_stores: (!self.data.target_stores.is_empty())
                    .then(|| self.data.target_stores.clone()),
                target_dataset: self.data.target_dataset.clone(),
            },
            sae: SaeFile {
                kind: Some(self.sae.kind),
                architecture: Some(arch),
                k: Some(h.k),
                d_sae: self.sae.d_sae,
                matryoshka_widths: (!self.sae.matryoshka_widths.is_empty())
                    .then(|| self.sae.matryoshka_widths.clone()),
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
                aux_k: Some(h.aux_k),
                aux_coefficient: Some(h.aux_coefficient),
                log_every: Some(h.log_every),
                checkpoint_every: Some(h.checkpoint_every),
                keep_checkpoints: Some(h.keep_checkpoints),
                dead_window_tokens: Some(h.dead_window_tokens),
                eval_every: Some(h.eval_every),
            },
            run: RunFile {
                out: Some(self.out.clone()),
                device: Some(self.device.to_string()),
            },
            health: h.health.clone(),
            lm_eval: self.lm_eval.as_ref().map(|l| l.to_file(&h.lm_eval)),
        };
        // only the keys that apply to the architecture: the others are errors when read back
        file.drop_inapplicable();
        file
    }

    /// The configuration as TOML text (written to `RUN_DIR/config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_file()).unwrap_or_default()
    }

    /// This configuration with `key` (`section.key`) set to `value` (TOML, or a bare string),
    /// checked exactly as a config file is; `origin` names the edit in errors.
    pub fn with_edit(&self, key: &str, value: &str, origin: &str) -> Result<Config, ConfigError> {
        parse_blaming(&self.to_toml(), origin, &[format!("{key}={value}")], origin)?
            .validate(origin)
    }
}
