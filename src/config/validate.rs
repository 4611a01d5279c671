//! Checking a file configuration into a [`Config`]: every range, with the key, the value and what
//! is allowed named in the error.

use super::*;

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

/// A key and its value as given (`None`: not given).
type Given = (&'static str, Option<String>);

impl FileConfig {
    /// `[health]` with every threshold in its range.
    fn health_checked(&self, c: &Check<'_>) -> Result<crate::health::HealthConfig, ConfigError> {
        let h = &self.health;
        c.at_least_one("health.clear_after_reports", h.clear_after_reports as u64)?;
        c.positive(
            "health.theta_change_per_1k_steps",
            h.theta_change_per_1k_steps,
        )?;
        c.positive("health.l0_over_target", h.l0_over_target)?;
        c.positive("health.l0_under_target", h.l0_under_target)?;
        c.unit_interval("health.dead_fraction", h.dead_fraction, false)?;
        c.at_least_one("health.dead_reports", h.dead_reports as u64)?;
        c.non_negative("health.l0_min", h.l0_min)?;
        c.positive("health.l0_max_divisor", h.l0_max_divisor)?;
        c.positive("health.spike_factor", h.spike_factor)?;
        c.at_least_one("health.spike_window", h.spike_window as u64)?;
        c.positive("health.overfit_gap", h.overfit_gap)?;
        c.unit_interval("health.data_wait", h.data_wait, false)?;
        c.at_least_one("health.data_wait_reports", h.data_wait_reports as u64)?;
        c.positive("health.sparsity_over_mse", h.sparsity_over_mse)?;
        if h.l0_under_target >= h.l0_over_target {
            return Err(c.fail(
                "health.l0_under_target",
                h.l0_under_target,
                "less than health.l0_over_target",
            ));
        }
        Ok(h.clone())
    }

    /// The first key given that does not apply to `arch`, with its value and the architectures
    /// it is for.
    fn inapplicable(&self, arch: Architecture) -> Option<(&'static str, String, &'static str)> {
        let (s, t) = (&self.sae, &self.train);
        let text = |v: Option<&dyn std::fmt::Debug>| v.map(|v| format!("{v:?}"));
        let jumprelu_only: [Given; 7] = [
            (
                "sae.threshold_param",
                text(s.threshold_param.as_ref().map(|v| v as _)),
            ),
            (
                "sae.threshold_init",
                text(s.threshold_init.as_ref().map(|v| v as _)),
            ),
            ("sae.bandwidth", text(s.bandwidth.as_ref().map(|v| v as _))),
            (
                "train.sparsity_loss",
                text(t.sparsity_loss.as_ref().map(|v| v as _)),
            ),
            (
                "train.target_l0",
                text(t.target_l0.as_ref().map(|v| v as _)),
            ),
            (
                "train.tanh_scale",
                text(t.tanh_scale.as_ref().map(|v| v as _)),
            ),
            (
                "train.pre_act_coefficient",
                text(t.pre_act_coefficient.as_ref().map(|v| v as _)),
            ),
        ];
        let topk_only: [Given; 3] = [
            ("sae.k", text(s.k.as_ref().map(|v| v as _))),
            ("train.aux_k", text(t.aux_k.as_ref().map(|v| v as _))),
            (
                "train.aux_coefficient",
                text(t.aux_coefficient.as_ref().map(|v| v as _)),
            ),
        ];
        let penalised: [Given; 2] = [
            (
                "train.sparsity_coefficient",
                text(t.sparsity_coefficient.as_ref().map(|v| v as _)),
            ),
            (
                "train.sparsity_warmup_steps",
                text(t.sparsity_warmup_steps.as_ref().map(|v| v as _)),
            ),
        ];
        let groups: [(&[Given], bool, &'static str); 3] = [
            (&jumprelu_only, arch == Architecture::JumpRelu, "jumprelu"),
            (&topk_only, arch.is_topk(), "topk and batchtopk"),
            (&penalised, !arch.is_topk(), "jumprelu and relu"),
        ];
        groups
            .into_iter()
            .filter(|(_, applies, _)| !applies)
            .flat_map(|(keys, _, owners)| keys.iter().map(move |(k, v)| (*k, v.clone(), owners)))
            .find_map(|(k, v, owners)| v.map(|v| (k, v, owners)))
    }

    /// Leave out every key given that does not apply to this file's architecture (a sweep over
    /// architectures shares one base); the keys left out, in order.
    pub fn drop_inapplicable(&mut self) -> Vec<&'static str> {
        let arch = self.sae.architecture.unwrap_or_default();
        let mut dropped = Vec::new();
        while let Some((key, _, _)) = self.inapplicable(arch) {
            let (s, t) = (&mut self.sae, &mut self.train);
            match key {
                "sae.threshold_param" => s.threshold_param = None,
                "sae.threshold_init" => s.threshold_init = None,
                "sae.bandwidth" => s.bandwidth = None,
                "sae.k" => s.k = None,
                "train.sparsity_loss" => t.sparsity_loss = None,
                "train.target_l0" => t.target_l0 = None,
                "train.tanh_scale" => t.tanh_scale = None,
                "train.pre_act_coefficient" => t.pre_act_coefficient = None,
                "train.aux_k" => t.aux_k = None,
                "train.aux_coefficient" => t.aux_coefficient = None,
                "train.sparsity_coefficient" => t.sparsity_coefficient = None,
                "train.sparsity_warmup_steps" => t.sparsity_warmup_steps = None,
                // a key `inapplicable` names but this list lacks: stop rather than loop
                _ => break,
            }
            dropped.push(key);
        }
        dropped
    }

    /// Check every value and fill in defaults. `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<Config, ConfigError> {
        let c = Check { origin };
        let architecture = self.sae.architecture.unwrap_or_default();
        if let Some((key, value, owners)) = self.inapplicable(architecture) {
            return Err(c.fail(
                key,
                value,
                &format!(
                    "no {key} with sae.architecture = \"{}\": it applies to {owners} only",
                    architecture.name()
                ),
            ));
        }
        let k = match (architecture.is_topk(), self.sae.k) {
            (true, Some(k)) => c.at_least_one("sae.k", k as u64)? as usize,
            (true, None) => {
                return Err(c.fail(
                    "sae.k",
                    "(missing)",
                    &format!(
                        "an integer >= 1 (features kept per token) with sae.architecture = \"{}\"",
                        architecture.name()
                    ),
                ));
            }
            (false, _) => 0,
        };
        if let (Some(m), true) = (self.sae.d_sae, k > 0)
            && k > m
        {
            return Err(c.fail("sae.k", k, &format!("at most sae.d_sae = {m}")));
        }
        let d = &self.data;
        if let Some(stores) = &d.stores
            && stores.is_empty()
        {
            return Err(c.fail(
                "data.stores",
                "[]",
                "at least one HDF5 file, or a SAELens cache directory",
            ));
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
        // the other architectures keep θ at 0 as a raw parameter (BatchTopK's estimate lives
        // there too): no log of 0, and relu(0) = 0 is exactly ReLU
        let jump = architecture == Architecture::JumpRelu;
        let sae = SaeConfig {
            architecture,
            d_sae: s.d_sae,
            expansion_factor,
            init_from: s.init_from.clone(),
            threshold_param: if jump {
                s.threshold_param.unwrap_or(ThresholdParam::Log)
            } else {
                ThresholdParam::Raw
            },
            threshold_init: if jump {
                c.positive("sae.threshold_init", s.threshold_init.unwrap_or(0.001))?
            } else {
                0.0
            },
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
            sparsity_coefficient: if architecture.is_topk() {
                0.0
            } else {
                c.non_negative(
                    "train.sparsity_coefficient",
                    t.sparsity_coefficient.unwrap_or(1e-3),
                )?
            },
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
            k,
            aux_k: c.at_least_one("train.aux_k", t.aux_k.unwrap_or(DEFAULT_AUX_K) as u64)? as usize,
            aux_coefficient: c.non_negative(
                "train.aux_coefficient",
                t.aux_coefficient.unwrap_or(DEFAULT_AUX_COEFFICIENT),
            )?,
            health: self.health_checked(&c)?,
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
