//! The one table of configuration keys: each key's section and name, whether it may change while
//! a run trains, how the screen labels it, the short name a sweep gives its members, and the
//! architectures it applies to. Validation, live edits, the screen's tunables, sweep member names
//! and the "does not apply" checks all read it; no other code spells a key's name.

use crate::sae::model::{Architecture, Kind};

/// A `[section]` of the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[data]`: the store and how it is read.
    Data,
    /// `[sae]`: the model's shape (and its live `bandwidth`, `k`).
    Sae,
    /// `[train]`: the run's length and hyperparameters.
    Train,
    /// `[run]`: the output directory and the device.
    Run,
    /// `[health]`: the health rules' thresholds.
    Health,
    /// `[lm_eval]`: the model in the loop.
    LmEval,
}

impl Section {
    /// The table's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Section::Data => "data",
            Section::Sae => "sae",
            Section::Train => "train",
            Section::Run => "run",
            Section::Health => "health",
            Section::LmEval => "lm_eval",
        }
    }
}

/// Which architectures or kinds a key applies to; giving it for another is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Every architecture and kind.
    All,
    /// JumpReLU only (its threshold, its penalties).
    JumpRelu,
    /// TopK and BatchTopK (k, AuxK).
    TopK,
    /// The penalised ones, JumpReLU and ReLU (λ and its warm-up).
    Penalised,
    /// SAEs only, not transcoders (the pre-encoder bias: b_dec has the input's width).
    SaeKind,
    /// Transcoders and skip-transcoders (the target site).
    Transcoders,
}

impl Applies {
    /// Whether a key of this kind applies to `arch` and `kind`.
    pub fn to(self, arch: Architecture, kind: Kind) -> bool {
        match self {
            Applies::All => true,
            Applies::JumpRelu => arch == Architecture::JumpRelu,
            Applies::TopK => arch.is_topk(),
            Applies::Penalised => !arch.is_topk(),
            Applies::SaeKind => kind == Kind::Sae,
            Applies::Transcoders => kind.has_target(),
        }
    }

    /// The key that decides (`sae.architecture` or `sae.kind`), as an error names it.
    pub fn by(self) -> &'static Key {
        match self {
            Applies::SaeKind | Applies::Transcoders => &KIND,
            _ => &ARCHITECTURE,
        }
    }

    /// The architectures or kinds, as an error names them.
    pub fn owners(self) -> &'static str {
        match self {
            Applies::All => "every architecture",
            Applies::JumpRelu => "jumprelu",
            Applies::TopK => "topk and batchtopk",
            Applies::Penalised => "jumprelu and relu",
            Applies::SaeKind => "sae",
            Applies::Transcoders => "transcoder and skip-transcoder",
        }
    }
}

/// One configuration key.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    /// Its table.
    pub section: Section,
    /// Its name inside the table.
    pub name: &'static str,
    /// Whether it may change while a run trains (a key on the screen, a save of config.toml).
    pub live: bool,
    /// How the training screen's hyperparameter pane names it, when it is one of the pane's.
    pub label: Option<&'static str>,
    /// The short name sweep members are named with (`lambda=3e-3`); else its name.
    pub short: Option<&'static str>,
    /// The architectures it applies to.
    pub applies: Applies,
}

impl Key {
    /// `section.name`, as the file and `--set` spell it.
    pub fn path(&self) -> String {
        format!("{}.{}", self.section.name(), self.name)
    }

    /// The name a sweep member's name uses for it.
    pub fn short(&self) -> &'static str {
        self.short.unwrap_or(self.name)
    }

    /// Whether `path` (`section.name`) is this key.
    pub fn is(&self, path: &str) -> bool {
        path.split_once('.') == Some((self.section.name(), self.name))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.section.name(), self.name)
    }
}

const fn key(section: Section, name: &'static str, live: bool) -> Key {
    Key {
        section,
        name,
        live,
        label: None,
        short: None,
        applies: Applies::All,
    }
}

const fn only(mut k: Key, applies: Applies) -> Key {
    k.applies = applies;
    k
}

const fn labelled(mut k: Key, label: &'static str) -> Key {
    k.label = Some(label);
    k
}

const fn short(mut k: Key, s: &'static str) -> Key {
    k.short = Some(s);
    k
}

use Section::{Data, Health, LmEval, Run, Sae, Train};

/// `data.stores`
pub const STORES: Key = key(Data, "stores", false);
/// `data.dataset`
pub const DATASET: Key = key(Data, "dataset", false);
/// `data.batch_size`
pub const BATCH_SIZE: Key = key(Data, "batch_size", false);
/// `data.shuffle`
pub const SHUFFLE: Key = key(Data, "shuffle", false);
/// `data.seed`
pub const SEED: Key = key(Data, "seed", false);
/// `data.normalize`
pub const NORMALIZE: Key = key(Data, "normalize", false);
/// `data.scale_sample_tokens`
pub const SCALE_SAMPLE_TOKENS: Key = key(Data, "scale_sample_tokens", false);
/// `data.on_nonfinite`
pub const ON_NONFINITE: Key = key(Data, "on_nonfinite", false);
/// `data.eval_tokens`
pub const EVAL_TOKENS: Key = key(Data, "eval_tokens", false);
/// `data.shuffle_buffer_tokens`
pub const SHUFFLE_BUFFER_TOKENS: Key = key(Data, "shuffle_buffer_tokens", false);
/// `data.target_stores`
pub const TARGET_STORES: Key = only(key(Data, "target_stores", false), Applies::Transcoders);
/// `data.target_dataset`
pub const TARGET_DATASET: Key = only(key(Data, "target_dataset", false), Applies::Transcoders);

/// `sae.architecture`
pub const ARCHITECTURE: Key = short(key(Sae, "architecture", false), "arch");
/// `sae.kind`
pub const KIND: Key = key(Sae, "kind", false);
/// `sae.k`
pub const K: Key = labelled(
    only(key(Sae, "k", true), Applies::TopK),
    "k (kept per token)",
);
/// `sae.d_sae`
pub const D_SAE: Key = key(Sae, "d_sae", false);
/// `sae.matryoshka_widths`
pub const MATRYOSHKA_WIDTHS: Key = short(key(Sae, "matryoshka_widths", false), "widths");
/// `sae.expansion_factor`
pub const EXPANSION_FACTOR: Key = short(key(Sae, "expansion_factor", false), "x");
/// `sae.init_from`
pub const INIT_FROM: Key = key(Sae, "init_from", false);
/// `sae.threshold_param`
pub const THRESHOLD_PARAM: Key = only(key(Sae, "threshold_param", false), Applies::JumpRelu);
/// `sae.threshold_init`
pub const THRESHOLD_INIT: Key = only(key(Sae, "threshold_init", false), Applies::JumpRelu);
/// `sae.bandwidth`
pub const BANDWIDTH: Key = short(
    labelled(
        only(key(Sae, "bandwidth", true), Applies::JumpRelu),
        "bandwidth ε",
    ),
    "bw",
);
/// `sae.pre_encoder_bias`
pub const PRE_ENCODER_BIAS: Key = only(key(Sae, "pre_encoder_bias", false), Applies::SaeKind);
/// `sae.unit_norm_decoder`
pub const UNIT_NORM_DECODER: Key = key(Sae, "unit_norm_decoder", false);

/// `train.steps`
pub const STEPS: Key = key(Train, "steps", false);
/// `train.tokens`
pub const TOKENS: Key = key(Train, "tokens", false);
/// `train.lr`
pub const LR: Key = labelled(key(Train, "lr", true), "learning rate");
/// `train.lr_warmup_steps`
pub const LR_WARMUP_STEPS: Key = key(Train, "lr_warmup_steps", true);
/// `train.lr_decay_fraction`
pub const LR_DECAY_FRACTION: Key = key(Train, "lr_decay_fraction", true);
/// `train.adam_beta1`
pub const ADAM_BETA1: Key = key(Train, "adam_beta1", true);
/// `train.adam_beta2`
pub const ADAM_BETA2: Key = key(Train, "adam_beta2", true);
/// `train.adam_eps`
pub const ADAM_EPS: Key = key(Train, "adam_eps", true);
/// `train.sparsity_loss`
pub const SPARSITY_LOSS: Key = only(key(Train, "sparsity_loss", true), Applies::JumpRelu);
/// `train.sparsity_coefficient` (λ)
pub const SPARSITY_COEFFICIENT: Key = short(
    labelled(
        only(key(Train, "sparsity_coefficient", true), Applies::Penalised),
        "λ (sparsity coef.)",
    ),
    "lambda",
);
/// `train.sparsity_warmup_steps`
pub const SPARSITY_WARMUP_STEPS: Key = only(
    key(Train, "sparsity_warmup_steps", true),
    Applies::Penalised,
);
/// `train.target_l0`
pub const TARGET_L0: Key = short(
    labelled(
        only(key(Train, "target_l0", true), Applies::JumpRelu),
        "target L0",
    ),
    "l0",
);
/// `train.tanh_scale`
pub const TANH_SCALE: Key = only(key(Train, "tanh_scale", true), Applies::JumpRelu);
/// `train.pre_act_coefficient`
pub const PRE_ACT_COEFFICIENT: Key =
    only(key(Train, "pre_act_coefficient", true), Applies::JumpRelu);
/// `train.aux_k`
pub const AUX_K: Key = labelled(only(key(Train, "aux_k", true), Applies::TopK), "AuxK k_aux");
/// `train.aux_coefficient`
pub const AUX_COEFFICIENT: Key = labelled(
    only(key(Train, "aux_coefficient", true), Applies::TopK),
    "AuxK coef. α",
);
/// `train.log_every`
pub const LOG_EVERY: Key = labelled(key(Train, "log_every", true), "log every");
/// `train.checkpoint_every`
pub const CHECKPOINT_EVERY: Key =
    labelled(key(Train, "checkpoint_every", true), "checkpoint every");
/// `train.keep_checkpoints`
pub const KEEP_CHECKPOINTS: Key = key(Train, "keep_checkpoints", true);
/// `train.dead_window_tokens`
pub const DEAD_WINDOW_TOKENS: Key = key(Train, "dead_window_tokens", true);
/// `train.eval_every`
pub const EVAL_EVERY: Key = key(Train, "eval_every", true);

/// `run.out`
pub const OUT: Key = key(Run, "out", false);
/// `run.device`
pub const DEVICE: Key = key(Run, "device", false);

/// `lm_eval.model`
pub const LM_MODEL: Key = key(LmEval, "model", false);
/// `lm_eval.layer`
pub const LM_LAYER: Key = key(LmEval, "layer", false);
/// `lm_eval.site`
pub const LM_SITE: Key = key(LmEval, "site", false);
/// `lm_eval.target_site`
pub const LM_TARGET_SITE: Key = only(key(LmEval, "target_site", false), Applies::Transcoders);
/// `lm_eval.token_ids`
pub const LM_TOKEN_IDS: Key = key(LmEval, "token_ids", false);
/// `lm_eval.texts`
pub const LM_TEXTS: Key = key(LmEval, "texts", false);
/// `lm_eval.tokens`
pub const LM_TOKENS: Key = key(LmEval, "tokens", false);
/// `lm_eval.seq_len`
pub const LM_SEQ_LEN: Key = key(LmEval, "seq_len", false);
/// `lm_eval.batch_size`
pub const LM_BATCH_SIZE: Key = key(LmEval, "batch_size", false);
/// `lm_eval.device`
pub const LM_DEVICE: Key = key(LmEval, "device", false);
/// `lm_eval.dtype`
pub const LM_DTYPE: Key = key(LmEval, "dtype", false);
/// `lm_eval.python`
pub const LM_PYTHON: Key = key(LmEval, "python", false);
/// `lm_eval.every`
pub const LM_EVERY: Key = labelled(key(LmEval, "every", true), "lm-eval every");
/// `lm_eval.enabled`
pub const LM_ENABLED: Key = key(LmEval, "enabled", true);
/// `health.enabled`
pub const HEALTH_ENABLED: Key = key(Health, "enabled", true);
/// `health.disabled`
pub const HEALTH_DISABLED: Key = key(Health, "disabled", true);
/// `health.clear_after_reports`
pub const CLEAR_AFTER_REPORTS: Key = key(Health, "clear_after_reports", true);
/// `health.theta_change_per_1k_steps`
pub const THETA_CHANGE_PER_1K_STEPS: Key = key(Health, "theta_change_per_1k_steps", true);
/// `health.l0_over_target`
pub const L0_OVER_TARGET: Key = key(Health, "l0_over_target", true);
/// `health.l0_under_target`
pub const L0_UNDER_TARGET: Key = key(Health, "l0_under_target", true);
/// `health.dead_fraction`
pub const DEAD_FRACTION: Key = key(Health, "dead_fraction", true);
/// `health.dead_reports`
pub const DEAD_REPORTS: Key = key(Health, "dead_reports", true);
/// `health.l0_min`
pub const L0_MIN: Key = key(Health, "l0_min", true);
/// `health.l0_max_divisor`
pub const L0_MAX_DIVISOR: Key = key(Health, "l0_max_divisor", true);
/// `health.spike_factor`
pub const SPIKE_FACTOR: Key = key(Health, "spike_factor", true);
/// `health.spike_window`
pub const SPIKE_WINDOW: Key = key(Health, "spike_window", true);
/// `health.overfit_epoch`
pub const OVERFIT_EPOCH: Key = key(Health, "overfit_epoch", true);
/// `health.overfit_gap`
pub const OVERFIT_GAP: Key = key(Health, "overfit_gap", true);
/// `health.data_wait`
pub const DATA_WAIT: Key = key(Health, "data_wait", true);
/// `health.data_wait_reports`
pub const DATA_WAIT_REPORTS: Key = key(Health, "data_wait_reports", true);
/// `health.sparsity_over_mse`
pub const SPARSITY_OVER_MSE: Key = key(Health, "sparsity_over_mse", true);

/// Every key, in the order the file writes them.
pub const ALL: &[&Key] = &[
    &STORES,
    &DATASET,
    &BATCH_SIZE,
    &SHUFFLE,
    &SEED,
    &NORMALIZE,
    &SCALE_SAMPLE_TOKENS,
    &ON_NONFINITE,
    &EVAL_TOKENS,
    &SHUFFLE_BUFFER_TOKENS,
    &TARGET_STORES,
    &TARGET_DATASET,
    &KIND,
    &ARCHITECTURE,
    &K,
    &D_SAE,
    &MATRYOSHKA_WIDTHS,
    &EXPANSION_FACTOR,
    &INIT_FROM,
    &THRESHOLD_PARAM,
    &THRESHOLD_INIT,
    &BANDWIDTH,
    &PRE_ENCODER_BIAS,
    &UNIT_NORM_DECODER,
    &STEPS,
    &TOKENS,
    &LR,
    &LR_WARMUP_STEPS,
    &LR_DECAY_FRACTION,
    &ADAM_BETA1,
    &ADAM_BETA2,
    &ADAM_EPS,
    &SPARSITY_LOSS,
    &SPARSITY_COEFFICIENT,
    &SPARSITY_WARMUP_STEPS,
    &TARGET_L0,
    &TANH_SCALE,
    &PRE_ACT_COEFFICIENT,
    &AUX_K,
    &AUX_COEFFICIENT,
    &LOG_EVERY,
    &CHECKPOINT_EVERY,
    &KEEP_CHECKPOINTS,
    &DEAD_WINDOW_TOKENS,
    &EVAL_EVERY,
    &OUT,
    &DEVICE,
    &HEALTH_ENABLED,
    &HEALTH_DISABLED,
    &CLEAR_AFTER_REPORTS,
    &THETA_CHANGE_PER_1K_STEPS,
    &L0_OVER_TARGET,
    &L0_UNDER_TARGET,
    &DEAD_FRACTION,
    &DEAD_REPORTS,
    &L0_MIN,
    &L0_MAX_DIVISOR,
    &SPIKE_FACTOR,
    &SPIKE_WINDOW,
    &OVERFIT_EPOCH,
    &OVERFIT_GAP,
    &DATA_WAIT,
    &DATA_WAIT_REPORTS,
    &SPARSITY_OVER_MSE,
    &LM_MODEL,
    &LM_LAYER,
    &LM_SITE,
    &LM_TARGET_SITE,
    &LM_TOKEN_IDS,
    &LM_TEXTS,
    &LM_TOKENS,
    &LM_SEQ_LEN,
    &LM_BATCH_SIZE,
    &LM_DEVICE,
    &LM_DTYPE,
    &LM_PYTHON,
    &LM_EVERY,
    &LM_ENABLED,
];

/// The key spelled `path` (`section.name`), if there is one.
pub fn find(path: &str) -> Option<&'static Key> {
    ALL.iter().copied().find(|k| k.is(path))
}

/// Whether `path` may change while a run trains.
pub fn is_live(path: &str) -> bool {
    find(path).is_some_and(|k| k.live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for k in ALL {
            assert!(seen.insert(k.path()), "{k} twice");
        }
    }

    #[test]
    fn live_keys_are_the_hyperparameters() {
        assert!(is_live("train.lr") && is_live("sae.k") && is_live("health.overfit_gap"));
        assert!(!is_live("train.steps") && !is_live("data.batch_size") && !is_live("sae.d_sae"));
        assert!(!is_live("train.nonsense") && !is_live("lr"));
        assert!(is_live("lm_eval.every") && is_live("lm_eval.enabled"));
        assert!(!is_live("lm_eval.model") && !is_live("lm_eval.layer") && !is_live("lm_eval.site"));
    }
}
