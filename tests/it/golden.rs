//! Golden parity: our f32 training reproduces the PyTorch reference (float64) of
//! `tests/golden/*.json` (written by `reference/jumprelu_torch.py golden`) to 1e-5 absolute — first-forward loss parts and gradients, and per-step
//! loss parts and every parameter after each Adam step.

use burn::tensor::{Device, Tensor};
use jumpscope::config::{Config, ThresholdParam, parse};
use jumpscope::sae::kernels::Kernels;
use jumpscope::sae::loss::{LossParts, loss_and_grads};
use jumpscope::sae::model::{HostParams, Sae, download, upload};
use jumpscope::train::adam::AdamState;
use jumpscope::train::step::{StepPlan, loss_settings, train_step};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f64 = 1e-5;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The project's shared material, when a checkout has it beside the clone (a user's clone does
/// not; `JUMPSCOPE_SHARED` points elsewhere).
fn shared_golden() -> Option<PathBuf> {
    let dir = std::env::var_os("JUMPSCOPE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("golden");
    dir.is_dir().then_some(dir)
}

#[test]
fn the_repository_copies_equal_the_shared_golden_cases() {
    let Some(shared) = shared_golden() else {
        eprintln!("no ../shared/golden beside this clone: nothing to compare the copies with");
        return;
    };
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&shared), names(&golden_dir()), "the same cases");
    for name in names(&shared) {
        let ours = std::fs::read(golden_dir().join(&name)).unwrap();
        let theirs = std::fs::read(shared.join(&name)).unwrap();
        assert!(
            ours == theirs,
            "tests/golden/{name} differs from {}: copy it again",
            shared.join(&name).display()
        );
    }
}

fn cases() -> Vec<(String, Value)> {
    let mut out: Vec<_> = std::fs::read_dir(golden_dir())
        .expect("tests/golden holds the golden cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 5,
        "expected the five golden cases, found {}",
        out.len()
    );
    out
}

/// Every case through the tensor-op kernels and through the fused host kernels on the flex CPU
/// backend, and (built with the `tch` feature) through the tensor-op kernels on LibTorch's CPU
/// device; the name says which.
fn variants() -> Vec<(String, Value, Device, Kernels, f64)> {
    let mut devices = vec![
        ("generic", Device::flex(), Kernels::TensorOps, 0.0),
        ("fused", Device::flex(), Kernels::HostFused, 0.0),
        ("sparse", Device::flex(), Kernels::HostFused, f64::INFINITY),
    ];
    if cfg!(feature = "tch") {
        let tch = jumpscope::device::resolve("tch-cpu").expect("a tch build has tch-cpu");
        devices.push(("tch-cpu", tch, Kernels::TensorOps, 0.0));
    }
    cases()
        .into_iter()
        .flat_map(|(n, v)| {
            devices
                .iter()
                .map(|(tag, dev, k, below)| {
                    (format!("{n} [{tag}]"), v.clone(), dev.clone(), *k, *below)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not numeric: {other}"),
    }
}

fn flat64(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat64).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not numeric: {other}"),
    }
}

/// The golden case's config as our validated Config.
fn config_of(case: &Value) -> Config {
    let c = &case["config"];
    let mut sets: Vec<String> = vec![
        format!("sae.pre_encoder_bias={}", c["pre_encoder_bias"]),
        format!("sae.threshold_param={}", c["threshold_param"]),
        format!("sae.bandwidth={:e}", c["bandwidth"].as_f64().unwrap()),
        format!("sae.unit_norm_decoder={}", c["unit_norm_decoder"]),
        format!("train.sparsity_loss={}", c["sparsity_loss"]),
        format!(
            "train.sparsity_coefficient={:e}",
            c["sparsity_coefficient"].as_f64().unwrap()
        ),
        format!("train.tanh_scale={:e}", c["tanh_scale"].as_f64().unwrap()),
        format!("train.lr={:e}", c["lr"].as_f64().unwrap()),
        format!("train.lr_warmup_steps={}", c["lr_warmup_steps"]),
        format!("train.sparsity_warmup_steps={}", c["sparsity_warmup_steps"]),
        format!("train.adam_beta1={:e}", c["adam_beta1"].as_f64().unwrap()),
        format!("train.adam_beta2={:e}", c["adam_beta2"].as_f64().unwrap()),
        format!("train.adam_eps={:e}", c["adam_eps"].as_f64().unwrap()),
    ];
    if let Some(t) = c["target_l0"].as_f64() {
        sets.push(format!("train.target_l0={t:e}"));
    }
    parse("", "golden", &sets)
        .unwrap()
        .validate("golden")
        .unwrap()
}

fn initial(case: &Value) -> HostParams {
    let i = &case["initial"];
    HostParams {
        d_in: case["d_in"].as_u64().unwrap() as usize,
        d_sae: case["d_sae"].as_u64().unwrap() as usize,
        w_enc: flat(&i["W_enc"]),
        b_enc: flat(&i["b_enc"]),
        w_dec: flat(&i["W_dec"]),
        b_dec: flat(&i["b_dec"]),
        threshold: flat(&i["threshold"]),
    }
}

fn batch(case: &Value, k: usize, device: &Device) -> Tensor<2> {
    let b = &case["batches"][k];
    let rows = b.as_array().unwrap().len();
    let d = case["d_in"].as_u64().unwrap() as usize;
    upload(&flat(b), [rows, d], device)
}

fn max_err(ours: &[f32], want: &[f64]) -> f64 {
    assert_eq!(ours.len(), want.len(), "length");
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

fn check(what: &str, ours: &[f32], want: &Value, errs: &mut Vec<String>) {
    let e = max_err(ours, &flat64(want));
    if e.is_nan() || e > TOL {
        errs.push(format!("{what}: max abs error {e:.3e}"));
    }
}

fn check_scalar(what: &str, ours: f64, want: &Value, errs: &mut Vec<String>) {
    let e = (ours - want.as_f64().unwrap()).abs();
    if e.is_nan() || e > TOL {
        errs.push(format!("{what}: {ours} vs {want} (error {e:.3e})"));
    }
}

fn theta_key(cfg: &Config) -> &'static str {
    match cfg.sae.threshold_param {
        ThresholdParam::Log => "log_threshold",
        ThresholdParam::Raw => "threshold",
    }
}

#[test]
fn first_forward_loss_and_gradients_match_the_reference() {
    let mut errs = Vec::new();
    for (name, case, device, kernels, sparse_below) in variants() {
        let cfg = config_of(&case);
        let sae = Sae::from_host(&initial(&case), cfg.sae.threshold_param, &device);
        let mut s = loss_settings(0, &cfg.hyper, &cfg.sae);
        // the reference's first forward uses the full coefficient, no warm-up
        s.lambda = cfg.hyper.sparsity_coefficient;
        s.kernels = kernels;
        s.sparse_below = sparse_below;
        let (out, g) = loss_and_grads(&sae, batch(&case, 0, &device), &s, None);
        let parts = LossParts::from_tensor(&out.parts);
        let ff = &case["first_forward"];
        check_scalar(&format!("{name} loss"), parts.loss, &ff["loss"], &mut errs);
        check_scalar(&format!("{name} mse"), parts.mse, &ff["mse"], &mut errs);
        check_scalar(
            &format!("{name} sparsity"),
            parts.sparsity,
            &ff["sparsity"],
            &mut errs,
        );
        check_scalar(&format!("{name} l0"), parts.l0, &ff["l0"], &mut errs);
        let gr = &ff["gradients"];
        check(
            &format!("{name} dW_enc"),
            &download(&g.w_enc),
            &gr["W_enc"],
            &mut errs,
        );
        check(
            &format!("{name} db_enc"),
            &download(&g.b_enc),
            &gr["b_enc"],
            &mut errs,
        );
        check(
            &format!("{name} dW_dec"),
            &download(&g.w_dec),
            &gr["W_dec"],
            &mut errs,
        );
        check(
            &format!("{name} db_dec"),
            &download(&g.b_dec),
            &gr["b_dec"],
            &mut errs,
        );
        let tk = theta_key(&cfg);
        check(
            &format!("{name} d{tk}"),
            &download(&g.theta_param),
            &gr[tk],
            &mut errs,
        );
    }
    assert!(errs.is_empty(), "golden mismatches:\n{}", errs.join("\n"));
}

#[test]
fn every_adam_step_matches_the_reference() {
    let mut errs = Vec::new();
    let mut checked = 0;
    for (name, case, device, kernels, sparse_below) in variants() {
        let Some(steps) = case["steps"].as_array() else {
            continue;
        };
        let cfg = config_of(&case);
        let mut sae = Sae::from_host(&initial(&case), cfg.sae.threshold_param, &device);
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
            let out = train_step(&mut sae, &mut adam, batch(&case, t, &device), plan, None);
            let p = LossParts::from_tensor(&out.parts);
            check_scalar(
                &format!("{name} step {t} loss"),
                p.loss,
                &rec["loss"],
                &mut errs,
            );
            check_scalar(
                &format!("{name} step {t} mse"),
                p.mse,
                &rec["mse"],
                &mut errs,
            );
            check_scalar(
                &format!("{name} step {t} sparsity"),
                p.sparsity,
                &rec["sparsity"],
                &mut errs,
            );
            check_scalar(&format!("{name} step {t} l0"), p.l0, &rec["l0"], &mut errs);
        }
        let fin = &case["final"];
        let h = sae.to_host();
        check(
            &format!("{name} final W_enc"),
            &h.w_enc,
            &fin["W_enc"],
            &mut errs,
        );
        check(
            &format!("{name} final b_enc"),
            &h.b_enc,
            &fin["b_enc"],
            &mut errs,
        );
        check(
            &format!("{name} final W_dec"),
            &h.w_dec,
            &fin["W_dec"],
            &mut errs,
        );
        check(
            &format!("{name} final b_dec"),
            &h.b_dec,
            &fin["b_dec"],
            &mut errs,
        );
        check(
            &format!("{name} final threshold"),
            &h.threshold,
            &fin["threshold"],
            &mut errs,
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected four multi-step golden cases, checked {checked}"
    );
    assert!(errs.is_empty(), "golden mismatches:\n{}", errs.join("\n"));
}
