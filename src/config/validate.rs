//! Checking a file configuration into a [`Config`]: every range, with the key, the value and what
//! is allowed named in the error.

use super::*;
use crate::schema::keys::{self, Key};

/// The largest dictionary or batch a configuration may ask for (2^31): far beyond any machine's
/// memory, and small enough that no size computed from it overflows.
const MAX_SIZE: usize = 1 << 31;

struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn fail(&self, key: &Key, value: impl std::fmt::Display, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.path(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
    fn positive(&self, key: &Key, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(self.fail(key, v, "a finite number > 0"))
        }
    }
    fn non_negative(&self, key: &Key, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(self.fail(key, v, "a finite number >= 0"))
        }
    }
    fn unit_interval(&self, key: &Key, v: f64, upper_open: bool) -> Result<f64, ConfigError> {
        let ok = v.is_finite() && v >= 0.0 && if upper_open { v < 1.0 } else { v <= 1.0 };
        if ok {
            Ok(v)
        } else if upper_open {
            Err(self.fail(key, v, "a number in [0, 1)"))
        } else {
            Err(self.fail(key, v, "a number in [0, 1]"))
        }
    }
    fn at_most<T: PartialOrd + std::fmt::Display>(
        &self,
        key: &Key,
        v: T,
        max: T,
    ) -> Result<T, ConfigError> {
        if v <= max {
            Ok(v)
        } else {
            Err(self.fail(key, &v, &format!("at most {max} (no machine holds more)")))
        }
    }
    fn at_least_one<T: Copy + Into<u64> + std::fmt::Display>(
        &self,
        key: &Key,
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
    /// `[health]` with every threshold in its range.
    fn health_checked(
        &self,
        c: &Check<'_>,
    ) -> Result<crate::schema::health::HealthConfig, ConfigError> {
        let h = &self.health;
        c.at_least_one(&keys::CLEAR_AFTER_REPORTS, h.clear_after_reports as u64)?;
        c.positive(
            &keys::THETA_CHANGE_PER_1K_STEPS,
            h.theta_change_per_1k_steps,
        )?;
        c.positive(&keys::L0_OVER_TARGET, h.l0_over_target)?;
        c.positive(&keys::L0_UNDER_TARGET, h.l0_under_target)?;
        c.unit_interval(&keys::DEAD_FRACTION, h.dead_fraction, false)?;
        c.at_least_one(&keys::DEAD_REPORTS, h.dead_reports as u64)?;
        c.non_negative(&keys::L0_MIN, h.l0_min)?;
        c.positive(&keys::L0_MAX_DIVISOR, h.l0_max_divisor)?;
        c.positive(&keys::SPIKE_FACTOR, h.spike_factor)?;
        c.at_least_one(&keys::SPIKE_WINDOW, h.spike_window as u64)?;
        c.positive(&keys::OVERFIT_GAP, h.overfit_gap)?;
        c.unit_interval(&keys::DATA_WAIT, h.data_wait, false)?;
        c.at_least_one(&keys::DATA_WAIT_REPORTS, h.data_wait_reports as u64)?;
        c.positive(&keys::SPARSITY_OVER_MSE, h.sparsity_over_mse)?;
        if h.l0_under_target >= h.l0_over_target {
            return Err(c.fail(
                &keys::L0_UNDER_TARGET,
                h.l0_under_target,
                &format!("less than {}", keys::L0_OVER_TARGET),
            ));
        }
        Ok(h.clone())
    }

    /// The keys given (in the file form) that do not apply to `arch`, in the key table's order,
    /// each with its value as written.
    fn inapplicable(&self, arch: Architecture, kind: Kind) -> Vec<(&'static Key, toml::Value)> {
        let Ok(toml::Value::Table(file)) = toml::Value::try_from(self) else {
            return Vec::new();
        };
        keys::ALL
            .iter()
            .copied()
            .filter(|k| !k.applies.to(arch, kind))
            .filter_map(|k| {
                let v = file.get(k.section.name())?.get(k.name)?;
                Some((k, v.clone()))
            })
            .collect()
    }

    /// Leave out every key given that does not apply to this file's architecture (a sweep over
    /// architectures shares one base, and the file written for a run holds only its keys); the
    /// keys left out, in order.
    pub fn drop_inapplicable(&mut self) -> Vec<&'static Key> {
        let arch = self.sae.architecture.unwrap_or_default();
        let kind = self.sae.kind.unwrap_or_default();
        let dropped: Vec<&'static Key> = self
            .inapplicable(arch, kind)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if dropped.is_empty() {
            return dropped;
        }
        let Ok(toml::Value::Table(mut file)) = toml::Value::try_from(&*self) else {
            return Vec::new();
        };
        for k in &dropped {
            if let Some(toml::Value::Table(t)) = file.get_mut(k.section.name()) {
                t.remove(k.name);
            }
        }
        // the same file less some keys always reads back
        if let Ok(f) = FileConfig::deserialize(toml::Value::Table(file)) {
            *self = f;
        }
        dropped
    }

    /// `sae.matryoshka_widths` checked: at least one width, each ≥ 1, strictly increasing, none
    /// above `sae.d_sae` when it is given, which is added as the last width when missing (with
    /// the expansion factor the run checks it once d_sae is known).
    fn matryoshka(&self, c: &Check<'_>, widths: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let shown = || {
            format!(
                "[{}]",
                widths
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if widths.is_empty() || widths[0] == 0 {
            return Err(c.fail(
                &keys::MATRYOSHKA_WIDTHS,
                shown(),
                "widths of at least 1 feature each, e.g. [512, 2048, 16384]",
            ));
        }
        if let Some(k) = widths.windows(2).position(|p| p[1] <= p[0]) {
            return Err(c.fail(
                &keys::MATRYOSHKA_WIDTHS,
                shown(),
                &format!(
                    "strictly increasing widths ({} is not above {})",
                    widths[k + 1],
                    widths[k]
                ),
            ));
        }
        let mut out = widths.to_vec();
        if let Some(m) = self.sae.d_sae {
            let last = out[out.len() - 1];
            if last > m {
                return Err(c.fail(
                    &keys::MATRYOSHKA_WIDTHS,
                    shown(),
                    &format!("widths of at most {} = {m}", keys::D_SAE),
                ));
            }
            if last < m {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Check every value and fill in defaults. `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<Config, ConfigError> {
        let c = Check { origin };
        let architecture = self.sae.architecture.unwrap_or_default();
        let kind = self.sae.kind.unwrap_or_default();
        if let Some((key, value)) = self.inapplicable(architecture, kind).into_iter().next() {
            let by = key.applies.by();
            let value_of_by = if *by == keys::KIND {
                kind.name()
            } else {
                architecture.name()
            };
            return Err(c.fail(
                key,
                value,
                &format!(
                    "no {key} with {by} = \"{value_of_by}\": it applies to {} only",
                    key.applies.owners()
                ),
            ));
        }
        if kind.has_target() && self.data.target_stores.as_ref().is_none_or(Vec::is_empty) {
            return Err(c.fail(
                &keys::TARGET_STORES,
                "(missing)",
                &format!(
                    "the HDF5 files (or SAELens cache) of the site a {} = \"{}\" reconstructs, rows paired with {}'s",
                    keys::KIND,
                    kind.name(),
                    keys::STORES
                ),
            ));
        }
        let k = match (architecture.is_topk(), self.sae.k) {
            (true, Some(k)) => c.at_least_one(&keys::K, k as u64)? as usize,
            (true, None) => {
                return Err(c.fail(
                    &keys::K,
                    "(missing)",
                    &format!(
                        "an integer >= 1 (features kept per token) with {} = \"{}\"",
                        keys::ARCHITECTURE,
                        architecture.name()
                    ),
                ));
            }
            (false, _) => 0,
        };
        if let (Some(m), true) = (self.sae.d_sae, k > 0)
            && k > m
        {
            return Err(c.fail(&keys::K, k, &format!("at most {} = {m}", keys::D_SAE)));
        }
        let d = &self.data;
        if let Some(stores) = &d.stores
            && stores.is_empty()
        {
            return Err(c.fail(
                &keys::STORES,
                "[]",
                "at least one HDF5 file, or a SAELens cache directory",
            ));
        }
        let stores = d.stores.clone().unwrap_or_default();
        let batch_size = d.batch_size.unwrap_or(4096);
        c.at_least_one(&keys::BATCH_SIZE, batch_size as u64)?;
        c.at_most(&keys::BATCH_SIZE, batch_size, MAX_SIZE)?;
        let scale_sample_tokens = d.scale_sample_tokens.unwrap_or(65_536);
        c.at_least_one(&keys::SCALE_SAMPLE_TOKENS, scale_sample_tokens as u64)?;
        let dataset = d.dataset.clone();
        if dataset.as_deref() == Some("") {
            return Err(c.fail(&keys::DATASET, "\"\"", "a dataset path"));
        }
        if d.target_dataset.as_deref() == Some("") {
            return Err(c.fail(&keys::TARGET_DATASET, "\"\"", "a dataset path"));
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
                Some(n) => Some(c.at_least_one(&keys::SHUFFLE_BUFFER_TOKENS, n as u64)? as usize),
                None => None,
            },
            target_stores: d.target_stores.clone().unwrap_or_default(),
            target_dataset: d.target_dataset.clone(),
        };

        let s = &self.sae;
        if let Some(m) = s.d_sae {
            c.at_least_one(&keys::D_SAE, m as u64)?;
            c.at_most(&keys::D_SAE, m, MAX_SIZE)?;
        }
        let matryoshka_widths = match &s.matryoshka_widths {
            Some(w) => self.matryoshka(&c, w)?,
            None => Vec::new(),
        };
        let expansion_factor = s.expansion_factor.unwrap_or(8.0);
        c.positive(&keys::EXPANSION_FACTOR, expansion_factor)?;
        c.at_most(&keys::EXPANSION_FACTOR, expansion_factor, 65_536.0)?;
        // the other architectures keep θ at 0 as a raw parameter (BatchTopK's estimate lives
        // there too): no log of 0, and relu(0) = 0 is exactly ReLU
        let jump = architecture == Architecture::JumpRelu;
        let sae = SaeConfig {
            kind,
            architecture,
            d_sae: s.d_sae,
            matryoshka_widths,
            expansion_factor,
            init_from: s.init_from.clone(),
            threshold_param: if jump {
                s.threshold_param.unwrap_or(ThresholdParam::Log)
            } else {
                ThresholdParam::Raw
            },
            threshold_init: if jump {
                c.positive(&keys::THRESHOLD_INIT, s.threshold_init.unwrap_or(0.001))?
            } else {
                0.0
            },
            // a transcoder's b_dec has the target's width: no pre-encoder bias
            pre_encoder_bias: kind == Kind::Sae && s.pre_encoder_bias.unwrap_or(true),
            unit_norm_decoder: s.unit_norm_decoder.unwrap_or(true),
        };

        let t = &self.train;
        if let Some(steps) = t.steps {
            c.at_least_one(&keys::STEPS, steps)?;
        }
        if let Some(tokens) = t.tokens {
            c.at_least_one(&keys::TOKENS, tokens)?;
        }
        if t.steps.is_some() && t.tokens.is_some() {
            return Err(c.fail(
                &keys::TOKENS,
                t.tokens.unwrap_or(0),
                &format!("either {} or {}, not both", keys::STEPS, keys::TOKENS),
            ));
        }
        let sparsity_loss = t.sparsity_loss.unwrap_or(SparsityLoss::L0);
        let target_l0 = match t.target_l0 {
            Some(v) => Some(c.positive(&keys::TARGET_L0, v)?),
            None if sparsity_loss == SparsityLoss::L0Target => {
                return Err(c.fail(
                    &keys::TARGET_L0,
                    "(missing)",
                    &format!(
                        "a number > 0 when {} = \"l0_target\"",
                        keys::SPARSITY_LOSS.name
                    ),
                ));
            }
            None => None,
        };
        let hyper = Hyper {
            lr: c.positive(&keys::LR, t.lr.unwrap_or(7e-5))?,
            lr_warmup_steps: t.lr_warmup_steps.unwrap_or(1000),
            lr_decay_fraction: c.unit_interval(
                &keys::LR_DECAY_FRACTION,
                t.lr_decay_fraction.unwrap_or(0.0),
                false,
            )?,
            adam_beta1: c.unit_interval(&keys::ADAM_BETA1, t.adam_beta1.unwrap_or(0.0), true)?,
            adam_beta2: c.unit_interval(&keys::ADAM_BETA2, t.adam_beta2.unwrap_or(0.999), true)?,
            adam_eps: c.positive(&keys::ADAM_EPS, t.adam_eps.unwrap_or(1e-8))?,
            sparsity_loss,
            sparsity_coefficient: if architecture.is_topk() {
                0.0
            } else {
                c.non_negative(
                    &keys::SPARSITY_COEFFICIENT,
                    t.sparsity_coefficient.unwrap_or(1e-3),
                )?
            },
            sparsity_warmup_steps: t.sparsity_warmup_steps.unwrap_or(10_000),
            target_l0,
            tanh_scale: c.positive(&keys::TANH_SCALE, t.tanh_scale.unwrap_or(4.0))?,
            pre_act_coefficient: c.non_negative(
                &keys::PRE_ACT_COEFFICIENT,
                t.pre_act_coefficient.unwrap_or(0.0),
            )?,
            bandwidth: c.positive(&keys::BANDWIDTH, s.bandwidth.unwrap_or(0.001))?,
            log_every: c.at_least_one(&keys::LOG_EVERY, t.log_every.unwrap_or(100))?,
            checkpoint_every: t.checkpoint_every.unwrap_or(1000),
            keep_checkpoints: c.at_least_one(
                &keys::KEEP_CHECKPOINTS,
                t.keep_checkpoints.unwrap_or(3) as u64,
            )? as usize,
            dead_window_tokens: c.at_least_one(
                &keys::DEAD_WINDOW_TOKENS,
                t.dead_window_tokens.unwrap_or(10_000_000),
            )?,
            eval_every: t.eval_every.unwrap_or(1000),
            k,
            aux_k: c.at_least_one(&keys::AUX_K, t.aux_k.unwrap_or(DEFAULT_AUX_K) as u64)? as usize,
            aux_coefficient: c.non_negative(
                &keys::AUX_COEFFICIENT,
                t.aux_coefficient.unwrap_or(DEFAULT_AUX_COEFFICIENT),
            )?,
            health: self.health_checked(&c)?,
            lm_eval: LmEvalLive::default(),
        };
        if self
            .run
            .out
            .as_ref()
            .is_some_and(|o| o.as_os_str().is_empty())
        {
            return Err(c.fail(
                &keys::OUT,
                "\"\"",
                "a directory path (an empty one would write the run into the current directory)",
            ));
        }
        let device = match &self.run.device {
            None => crate::device::DeviceName::Cpu,
            Some(d) => d.parse().map_err(|e: crate::device::DeviceError| {
                c.fail(&keys::DEVICE, d, &e.to_string())
            })?,
        };
        let length = TrainLength {
            steps: t.steps,
            tokens: t.tokens,
        };
        let mut hyper = hyper;
        let lm_eval = match &self.lm_eval {
            None => None,
            Some(l) => {
                let (cfg, live) = lm_eval_checked(&c, l, &length, (batch_size, kind))?;
                hyper.lm_eval = live;
                Some(cfg)
            }
        };
        Ok(Config {
            data,
            sae,
            length,
            hyper,
            lm_eval,
            out: self
                .run
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/run")),
            device,
        })
    }
}

/// `[lm_eval]` checked: the model, layer, site and tokens are required; `every` defaults to a
/// tenth of the run.
fn lm_eval_checked(
    c: &Check<'_>,
    l: &LmEvalFile,
    length: &TrainLength,
    (batch_size, kind): (usize, Kind),
) -> Result<(LmEvalConfig, LmEvalLive), ConfigError> {
    use crate::lmeval::{LmTarget, SITES, TokenSource};
    let missing = |key: &Key, what: &str| c.fail(key, "(missing)", what);
    let model = l.model.clone().filter(|m| !m.is_empty()).ok_or_else(|| {
        missing(
            &keys::LM_MODEL,
            "the model to splice the SAE into (a local directory or a Hugging Face id)",
        )
    })?;
    let layer = l.layer.ok_or_else(|| {
        missing(
            &keys::LM_LAYER,
            "the layer the SAE reads (an integer, TransformerLens numbering)",
        )
    })?;
    let site = l
        .site
        .clone()
        .ok_or_else(|| missing(&keys::LM_SITE, &format!("one of {}", SITES.join(", "))))?;
    if !SITES.contains(&site.as_str()) {
        return Err(c.fail(
            &keys::LM_SITE,
            &site,
            &format!("one of {}", SITES.join(", ")),
        ));
    }
    // a transcoder's output replaces another site: an MLP's input's transcoder, its output's
    let target_site = match (kind.has_target(), &l.target_site) {
        (false, _) => None,
        (true, Some(t)) if SITES.contains(&t.as_str()) => Some(t.clone()),
        (true, Some(t)) => {
            return Err(c.fail(
                &keys::LM_TARGET_SITE,
                t,
                &format!("one of {}", SITES.join(", ")),
            ));
        }
        (true, None) if site == "mlp_in" => Some("mlp_out".to_string()),
        (true, None) => {
            return Err(missing(
                &keys::LM_TARGET_SITE,
                &format!(
                    "the site a {} = \"{}\" writes (its output replaces that site's; {} = \"mlp_in\" defaults it to \"mlp_out\")",
                    keys::KIND,
                    kind.name(),
                    keys::LM_SITE
                ),
            ));
        }
    };
    let tokens = match (&l.token_ids, &l.texts) {
        (Some(ids), None) => {
            if l.tokens.is_some() || l.seq_len.is_some() {
                let key = if l.tokens.is_some() {
                    &keys::LM_TOKENS
                } else {
                    &keys::LM_SEQ_LEN
                };
                return Err(c.fail(
                    key,
                    "(given)",
                    &format!(
                        "no {key} with {}: the ids are used as they are",
                        keys::LM_TOKEN_IDS
                    ),
                ));
            }
            TokenSource::TokenIds(ids.clone())
        }
        (None, Some(texts)) => TokenSource::Texts {
            path: texts.clone(),
            tokens: l.tokens.unwrap_or(65_536),
            seq_len: match l.seq_len {
                Some(s) if s < 2 => return Err(c.fail(&keys::LM_SEQ_LEN, s, "an integer >= 2")),
                Some(s) => s,
                None => 128,
            },
        },
        (Some(_), Some(_)) => {
            return Err(c.fail(
                &keys::LM_TEXTS,
                "(given)",
                &format!(
                    "either {} or {}, not both",
                    keys::LM_TOKEN_IDS,
                    keys::LM_TEXTS
                ),
            ));
        }
        (None, None) => {
            return Err(missing(
                &keys::LM_TOKEN_IDS,
                &format!(
                    "the tokens to evaluate on: {} (an integer .npy [n_seq, seq_len]) or {} (a text file)",
                    keys::LM_TOKEN_IDS,
                    keys::LM_TEXTS
                ),
            ));
        }
    };
    let batch = c.at_least_one(&keys::LM_BATCH_SIZE, l.batch_size.unwrap_or(8) as u64)? as usize;
    let dtype = l.dtype.clone().unwrap_or_else(|| "float32".into());
    if !["float32", "float16", "bfloat16"].contains(&dtype.as_str()) {
        return Err(c.fail(&keys::LM_DTYPE, &dtype, "float32, float16 or bfloat16"));
    }
    let total = match (length.steps, length.tokens) {
        (Some(s), _) => s,
        (None, Some(t)) => t.div_ceil(batch_size as u64),
        (None, None) => 10_000,
    };
    let every = match l.every {
        Some(e) => c.at_least_one(&keys::LM_EVERY, e)?,
        None => total.div_ceil(10).max(1),
    };
    Ok((
        LmEvalConfig {
            target: LmTarget {
                model,
                layer,
                site,
                target_site,
                tokens,
                device: l.device.clone().unwrap_or_else(|| "cpu".into()),
                dtype,
                batch_size: batch,
            },
            python: l.python.clone(),
        },
        LmEvalLive {
            every,
            enabled: l.enabled.unwrap_or(true),
        },
    ))
}
