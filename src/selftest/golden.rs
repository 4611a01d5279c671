//! The golden cases (`tests/golden/*.json`, written by `reference/jumprelu_torch.py golden`),
//! built into the binary, and the check of one case on one device: first-forward loss parts and
//! gradients, then per-step loss parts and every parameter after each Adam step, against the
//! reference's float64 answers.

use crate::config::{Config, ThresholdParam, parse};
use crate::sae::kernels::Kernels;
use crate::sae::loss::{LossParts, loss_and_grads};
use crate::sae::model::{HostParams, Sae, download, upload};
use crate::train::adam::AdamState;
use crate::train::step::{StepPlan, loss_settings, train_step};
use burn::tensor::{Bool, Device, Tensor};
use serde_json::Value;

/// Absolute tolerance of every golden comparison (the reference's own float32 run drifts ~1e-7).
pub const TOL: f64 = 1e-5;

/// The cases' file names and contents, as committed (the repository's copy of the project's
/// shared golden data; a test checks that the two agree).
pub const FILES: [(&str, &str); 16] = [
    (
        "batchtopk_auxk",
        include_str!("../../tests/golden/batchtopk_auxk.json"),
    ),
    (
        "gdm_l0_log",
        include_str!("../../tests/golden/gdm_l0_log.json"),
    ),
    ("hand_2x3", include_str!("../../tests/golden/hand_2x3.json")),
    (
        "l0_target",
        include_str!("../../tests/golden/l0_target.json"),
    ),
    (
        "matryoshka_batchtopk_auxk",
        include_str!("../../tests/golden/matryoshka_batchtopk_auxk.json"),
    ),
    (
        "matryoshka_jumprelu",
        include_str!("../../tests/golden/matryoshka_jumprelu.json"),
    ),
    (
        "matryoshka_skip_transcoder_topk",
        include_str!("../../tests/golden/matryoshka_skip_transcoder_topk.json"),
    ),
    (
        "raw_threshold_free_decoder",
        include_str!("../../tests/golden/raw_threshold_free_decoder.json"),
    ),
    ("relu_l1", include_str!("../../tests/golden/relu_l1.json")),
    (
        "skip_transcoder_batchtopk_auxk",
        include_str!("../../tests/golden/skip_transcoder_batchtopk_auxk.json"),
    ),
    (
        "skip_transcoder_l0_target",
        include_str!("../../tests/golden/skip_transcoder_l0_target.json"),
    ),
    ("tanh", include_str!("../../tests/golden/tanh.json")),
    (
        "topk_auxk",
        include_str!("../../tests/golden/topk_auxk.json"),
    ),
    (
        "topk_free_decoder",
        include_str!("../../tests/golden/topk_free_decoder.json"),
    ),
    (
        "transcoder_jumprelu",
        include_str!("../../tests/golden/transcoder_jumprelu.json"),
    ),
    (
        "transcoder_relu",
        include_str!("../../tests/golden/transcoder_relu.json"),
    ),
];

/// One parsed case.
pub struct Case {
    /// Its file stem.
    pub name: &'static str,
    value: Value,
}

/// A golden file that does not hold what the reference writes (only a broken build can cause it).
#[derive(Debug, thiserror::Error)]
#[error("golden case {0}: {1}")]
pub struct CaseError(String, String);

/// Every case, parsed.
pub fn cases() -> Result<Vec<Case>, CaseError> {
    FILES
        .iter()
        .map(|(name, text)| {
            let value = serde_json::from_str(text)
                .map_err(|e| CaseError(name.to_string(), e.to_string()))?;
            Ok(Case { name, value })
        })
        .collect()
}

/// Every quantity compared for one case on one device, with its worst absolute error.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `(quantity, worst absolute error)`, in the order checked; NaN if ours was not finite.
    pub errors: Vec<(String, f64)>,
}

impl Outcome {
    fn push(&mut self, what: String, err: f64) {
        self.errors.push((what, err));
    }

    /// The errors of the loss parts the reference records (`want`: loss, mse, sparsity, l0).
    fn push_parts(&mut self, what: &str, p: &LossParts, want: &Value) {
        for (k, ours) in [
            ("loss", p.loss),
            ("mse", p.mse),
            ("sparsity", p.sparsity),
            ("l0", p.l0),
        ] {
            let want = want[k].as_f64().unwrap_or(f64::NAN);
            self.push(format!("{what} {k}"), (ours - want).abs());
        }
    }

    /// The worst error and its quantity (NaN counts as worst).
    pub fn worst(&self) -> Option<&(String, f64)> {
        self.errors.iter().fold(None, |w, e| match w {
            Some(w) if !(e.1.is_nan() || (!w.1.is_nan() && e.1 > w.1)) => Some(w),
            _ => Some(e),
        })
    }

    /// The quantities beyond [`TOL`] (or not finite).
    pub fn mismatches(&self) -> Vec<String> {
        self.errors
            .iter()
            .filter(|(_, e)| e.is_nan() || *e > TOL)
            .map(|(w, e)| format!("{w}: max abs error {e:.3e}"))
            .collect()
    }
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        _ => vec![f64::NAN],
    }
}

fn flat32(v: &Value) -> Vec<f32> {
    flat(v).into_iter().map(|x| x as f32).collect()
}

/// The largest |ours − want|; NaN if any is NaN or the lengths differ.
fn max_err(ours: &[f32], want: &[f64]) -> f64 {
    if ours.len() != want.len() {
        return f64::NAN;
    }
    ours.iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - b).abs())
        // NaN must not hide behind f64::max, which ignores it
        .fold(0.0, |m: f64, e| {
            if e.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(e)
            }
        })
}

impl Case {
    /// The case's configuration as a validated [`Config`].
    pub fn config(&self) -> Result<Config, CaseError> {
        use crate::schema::keys::{self, Key};
        let c = &self.value["config"];
        let arch: crate::config::Architecture =
            serde_json::from_value(c["architecture"].clone()).unwrap_or_default();
        let kind: crate::config::Kind =
            serde_json::from_value(c["kind"].clone()).unwrap_or_default();
        // the case's settings are named as our keys are; only those of its architecture are
        // given (the others are refused), and absent or null values are left at their defaults
        let given: [&Key; 21] = [
            &keys::KIND,
            &keys::MATRYOSHKA_WIDTHS,
            &keys::ARCHITECTURE,
            &keys::PRE_ENCODER_BIAS,
            &keys::UNIT_NORM_DECODER,
            &keys::LR,
            &keys::LR_WARMUP_STEPS,
            &keys::ADAM_BETA1,
            &keys::ADAM_BETA2,
            &keys::ADAM_EPS,
            &keys::THRESHOLD_PARAM,
            &keys::BANDWIDTH,
            &keys::SPARSITY_LOSS,
            &keys::TANH_SCALE,
            &keys::TARGET_L0,
            &keys::SPARSITY_COEFFICIENT,
            &keys::SPARSITY_WARMUP_STEPS,
            &keys::K,
            &keys::AUX_K,
            &keys::AUX_COEFFICIENT,
            &keys::PRE_ACT_COEFFICIENT,
        ];
        let toml_text = |v: &serde_json::Value| match v {
            serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            serde_json::Value::Number(n) => n.as_f64().map(|x| format!("{x:e}")),
            serde_json::Value::String(s) => Some(format!("\"{s}\"")),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            serde_json::Value::Array(a) => Some(format!(
                "[{}]",
                a.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => None,
        };
        // a transcoder case's targets come with the case, not from a store
        let target = kind
            .has_target()
            .then(|| format!("{}=[\"(golden case)\"]", keys::TARGET_STORES));
        let sets: Vec<String> = given
            .iter()
            .filter(|k| k.applies.to(arch, kind))
            .filter_map(|k| Some(format!("{k}={}", toml_text(c.get(k.name)?)?)))
            .chain(target)
            .collect();
        parse("", "golden", &sets)
            .and_then(|f| f.validate("golden"))
            .map_err(|e| CaseError(self.name.into(), e.to_string()))
    }

    fn initial(&self) -> HostParams {
        let v = &self.value;
        let i = &v["initial"];
        HostParams {
            kind: serde_json::from_value(v["config"]["kind"].clone()).unwrap_or_default(),
            d_in: v["d_in"].as_u64().unwrap_or(0) as usize,
            d_sae: v["d_sae"].as_u64().unwrap_or(0) as usize,
            d_out: self.d_out(),
            w_enc: flat32(&i["W_enc"]),
            b_enc: flat32(&i["b_enc"]),
            w_dec: flat32(&i["W_dec"]),
            b_dec: flat32(&i["b_dec"]),
            w_skip: (!i["W_skip"].is_null()).then(|| flat32(&i["W_skip"])),
            threshold: flat32(&i["threshold"]),
            topk: None,
        }
    }

    /// The latents the AuxK loss treats as dead at every step (every `dead_every`-th), if any.
    fn dead(&self, device: &Device) -> Option<Tensor<1, Bool>> {
        let every = self.value["config"]["dead_every"].as_u64()? as usize;
        let m = self.value["d_sae"].as_u64().unwrap_or(0) as usize;
        let v: Vec<f32> = (0..m).map(|i| (i % every == 0) as u8 as f32).collect();
        Some(upload(&v, [m], device).greater_elem(0.5))
    }

    /// The output width: a transcoder case's `d_out`, else `d_in`.
    fn d_out(&self) -> usize {
        let v = &self.value;
        v["d_out"].as_u64().or(v["d_in"].as_u64()).unwrap_or(0) as usize
    }

    /// Batch `k` and, for a transcoder case, its targets.
    fn batch(&self, k: usize, device: &Device) -> (Tensor<2>, Option<Tensor<2>>) {
        let rows_of = |b: &Value, d: usize| {
            let rows = b.as_array().map_or(0, Vec::len);
            upload(&flat32(b), [rows, d], device)
        };
        let d = self.value["d_in"].as_u64().unwrap_or(0) as usize;
        let x = rows_of(&self.value["batches"][k], d);
        let y = self
            .value
            .get("targets")
            .map(|t| rows_of(&t[k], self.d_out()));
        (x, y)
    }

    /// Whether the case records Adam steps (all but the hand-written one).
    pub fn has_steps(&self) -> bool {
        self.value["steps"].as_array().is_some()
    }

    /// Run the case on `device` with `kernels`, the rest of each step sparse below
    /// `sparse_below`, and compare everything the reference recorded.
    pub fn check(
        &self,
        device: &Device,
        kernels: Kernels,
        sparse_below: f64,
    ) -> Result<Outcome, CaseError> {
        let cfg = self.config()?;
        let mut out = Outcome::default();
        let theta_key = match cfg.sae.threshold_param {
            ThresholdParam::Log => "log_threshold",
            ThresholdParam::Raw => "threshold",
        };

        // first forward: the reference uses the full coefficient, no warm-up
        let sae = Sae::from_host(&self.initial(), cfg.sae.threshold_param, device);
        let mut s = loss_settings(0, &cfg.hyper, &cfg.sae);
        s.lambda = cfg.hyper.sparsity_coefficient;
        s.kernels = kernels;
        s.sparse_below = sparse_below;
        s.matryoshka = cfg.sae.inner_widths(sae.dims().1);
        let dead = self.dead(device);
        let (x, y) = self.batch(0, device);
        let (o, g) = loss_and_grads(&sae, x, y, &s, dead.as_ref());
        let ff = &self.value["first_forward"];
        out.push_parts("first forward", &LossParts::from_tensor(&o.parts), ff);
        let gr = &ff["gradients"];
        for (k, t) in [
            ("W_enc", download(&g.w_enc)),
            ("b_enc", download(&g.b_enc)),
            ("W_dec", download(&g.w_dec)),
            ("b_dec", download(&g.b_dec)),
            (theta_key, download(&g.theta_param)),
            (
                "W_skip",
                g.w_skip.as_ref().map(download).unwrap_or_default(),
            ),
        ] {
            // W_skip: only a skip-transcoder case has it (and its gradient)
            if k == "W_skip" && gr[k].is_null() && t.is_empty() {
                continue;
            }
            // the baselines train no θ: its gradient must be 0
            let want = if gr[k].is_null() {
                vec![0.0; t.len()]
            } else {
                flat(&gr[k])
            };
            out.push(format!("first forward d{k}"), max_err(&t, &want));
        }

        let Some(steps) = self.value["steps"].as_array() else {
            return Ok(out);
        };
        let mut sae = Sae::from_host(&self.initial(), cfg.sae.threshold_param, device);
        let mut adam = AdamState::new(&sae);
        for (t, rec) in steps.iter().enumerate() {
            let plan = StepPlan {
                t: t as u64,
                total_steps: steps.len() as u64,
                hyper: &cfg.hyper,
                sae: &cfg.sae,
                kernels,
                sparse_below,
            };
            let o = train_step(
                &mut sae,
                &mut adam,
                self.batch(t, device),
                plan,
                dead.as_ref(),
            );
            out.push_parts(&format!("step {t}"), &LossParts::from_tensor(&o.parts), rec);
        }
        let fin = &self.value["final"];
        let h = sae.to_host();
        for (k, ours) in [
            ("W_enc", &h.w_enc),
            ("b_enc", &h.b_enc),
            ("W_dec", &h.w_dec),
            ("b_dec", &h.b_dec),
            ("threshold", &h.threshold),
            ("W_skip", h.w_skip.as_ref().unwrap_or(&Vec::new())),
        ] {
            if k == "W_skip" && fin[k].is_null() && ours.is_empty() {
                continue;
            }
            out.push(
                format!("{k} after {} Adam steps", steps.len()),
                max_err(ours, &flat(&fin[k])),
            );
        }
        Ok(out)
    }
}
