//! `jumpscope selftest`: the first command on a new (GPU) box. On one device it runs every golden
//! case through each form of the step the device has ([`golden`]), trains thirty steps beside a
//! CPU reference ([`agree`]), and times the bench at two sizes; the report is a pass/fail table
//! with the worst error per check.

pub mod agree;
pub mod golden;

use crate::bench::{self, BenchSizes, StepPath};
use crate::sae::kernels::Kernels;
use crate::sae::sparse::switch_density;
use burn::tensor::Device;
use serde::Serialize;

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The worst error found (absolute for golden cases, relative for the 30-step comparison;
    /// absent for timings).
    pub worst: Option<f64>,
    /// The largest error that passes (absent for timings).
    pub tolerance: Option<f64>,
    /// `pass`, `FAIL` or `info` (timings, which have no pass mark).
    pub result: &'static str,
    /// Where the worst error was, or what was measured.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct SelftestResult {
    /// The device tested.
    pub device: String,
    /// The instruction sets of the CPU kernels that ran (`isa::summary`); every kernel and its
    /// level are also rows of `checks`.
    pub isa: String,
    /// What the 30-step comparison ran against.
    pub reference: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Whether every pass/fail check passed.
    pub passed: bool,
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Time the bench (skipped by tests that only need the checks).
    pub bench: bool,
}

/// The forms of the step a device has: `(label, kernels, sparse_below)`.
fn paths(device: &Device) -> Vec<(&'static str, Kernels, f64)> {
    let k = Kernels::for_device(device);
    let mut v = vec![("dense", k, 0.0), ("sparse", k, f64::INFINITY)];
    if k == Kernels::HostFused {
        // the generic tensor ops (the CUDA code path) on the CPU too
        v.push(("tensor ops", Kernels::TensorOps, 0.0));
    } else if *device == Device::flex() {
        // tensor ops on flex (JUMPSCOPE_NO_FUSED) have no sparse form
        v.truncate(1);
    }
    v
}

fn pass_or_fail(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

/// Run the self-test on `device` (named `label`); `progress` hears what starts next.
pub fn run(
    device: &Device,
    label: &str,
    opts: Options,
    progress: &mut dyn FnMut(&str),
) -> Result<SelftestResult, golden::CaseError> {
    // which instruction set each CPU kernel ran with, as rows of the table: on a LibTorch
    // device the step is LibTorch's, and only the store decoding is ours
    let host = Kernels::for_device(device) == Kernels::HostFused;
    let info = |name: &str, detail: String| Check {
        name: format!("cpu kernels: {name}"),
        worst: None,
        tolerance: None,
        result: "info",
        detail,
    };
    let mut checks: Vec<Check> = crate::isa::kernels()
        .into_iter()
        .filter(|k| host || k.kernel.starts_with("f16/bf16"))
        .map(|k| {
            let detail = format!("{} ({}); {}", k.isa.name(), k.isa.describe(), k.code);
            info(k.kernel, detail)
        })
        .collect();
    if !host {
        checks.insert(
            0,
            info(
                "the training step",
                format!("LibTorch's own kernels on {label}"),
            ),
        );
    }
    for case in golden::cases()? {
        for (path, kernels, below) in paths(device) {
            let name = format!("golden {} ({path})", case.name);
            progress(&name);
            let out = case.check(device, kernels, below)?;
            let (what, worst) = out.worst().cloned().unwrap_or_default();
            let bad = out.mismatches();
            let detail = if bad.is_empty() {
                format!("{} quantities; worst: {what}", out.errors.len())
            } else {
                format!("{} of {} beyond: {}", bad.len(), out.errors.len(), bad[0])
            };
            checks.push(Check {
                name,
                worst: Some(worst),
                tolerance: Some(golden::TOL),
                result: pass_or_fail(bad.is_empty()),
                detail,
            });
        }
    }

    let k = Kernels::for_device(device);
    let ours = agree::Side {
        device: device.clone(),
        kernels: k,
        sparse_below: switch_density(k),
    };
    let flex = Device::flex();
    let (reference, reference_label) = if *device == flex && k == Kernels::HostFused {
        let r = agree::Side {
            device: flex,
            kernels: Kernels::TensorOps,
            sparse_below: 0.0,
        };
        (r, "cpu with the dense tensor-op step")
    } else {
        let r = agree::Side {
            device: flex,
            kernels: Kernels::HostFused,
            sparse_below: switch_density(Kernels::HostFused),
        };
        (r, "cpu")
    };
    let name = format!("{} steps {label} vs {reference_label}", agree::STEPS);
    progress(&name);
    let a = agree::compare(&ours, &reference);
    let (worst, at) = a.worst();
    let ok = worst <= agree::REL_TOL;
    checks.push(Check {
        name,
        worst: Some(worst),
        tolerance: Some(agree::REL_TOL),
        result: pass_or_fail(ok),
        detail: format!(
            "relative, loss and MSE; worst at step {at}; L0 differs by at most {:.3}; {} of {} steps sparse",
            a.worst_l0(),
            a.sparse_steps,
            agree::STEPS
        ),
    });

    if opts.bench {
        for (d_in, d_sae) in [(512, 4096), (768, 16384)] {
            let name = format!("bench {d_in}/{d_sae}/4096 --l0 64");
            progress(&name);
            let r = bench::run(
                BenchSizes {
                    d_in,
                    d_sae,
                    batch: 4096,
                    steps: 4,
                    warmup: 2,
                    l0: Some(64.0),
                    step: StepPath::Auto,
                },
                device,
                label,
            );
            checks.push(Check {
                name,
                worst: None,
                tolerance: None,
                result: "info",
                detail: format!(
                    "{:.0} tokens/s, {:.1} ms/step, L0 {:.1}, step / encoder product {:.2}, {:.0} % sparse",
                    r.tokens_per_s,
                    r.ms_per_step,
                    r.l0,
                    r.limit_ratio,
                    r.sparse_fraction * 100.0
                ),
            });
        }
    }
    let passed = checks.iter().all(|c| c.result != "FAIL");
    Ok(SelftestResult {
        device: label.to_string(),
        isa: crate::isa::summary(),
        reference: reference_label.to_string(),
        checks,
        passed,
    })
}

/// The report as a text table and a closing line.
pub fn render(r: &SelftestResult) -> String {
    let w = r
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2e}"));
    let mut s = format!(
        "{:w$}  {:>9}  {:>9}  {:6}  detail\n",
        "check", "worst", "tolerance", "result"
    );
    for c in &r.checks {
        s += &format!(
            "{:w$}  {:>9}  {:>9}  {:6}  {}\n",
            c.name,
            num(c.worst),
            num(c.tolerance),
            c.result,
            c.detail
        );
    }
    let failed = r.checks.iter().filter(|c| c.result == "FAIL").count();
    let counted = r.checks.iter().filter(|c| c.result != "info").count();
    s += &format!("instruction sets: {}\n", r.isa);
    if r.passed {
        s += &format!("selftest on {}: all {counted} checks passed\n", r.device);
    } else {
        s += &format!(
            "selftest on {}: {failed} of {counted} checks FAILED: please open an issue with this table and `jumpscope selftest --device {} --json` attached\n",
            r.device, r.device
        );
    }
    s
}
