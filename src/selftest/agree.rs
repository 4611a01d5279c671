//! Thirty training steps on the device under test and on a reference from the same initial state
//! and the same batches, compared step by step: the check that a whole run, not only one step,
//! computes the same thing on a new device.

use crate::bench::{pre_acts, thresholds_for_l0};
use crate::config::{Config, parse};
use crate::sae::kernels::Kernels;
use crate::sae::loss::LossParts;
use crate::sae::model::{HostParams, Sae, download, upload};
use crate::schema::keys;
use crate::train::adam::AdamState;
use crate::train::step::{StepPlan, train_step};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Steps compared.
pub const STEPS: usize = 30;
/// Largest relative difference of a step's loss or MSE that passes: float32 rounding differs
/// between backends and a pre-activation within rounding of θ may fire on one and not the
/// other; both stay orders of magnitude below this over 30 steps (measured: ~1e-6).
pub const REL_TOL: f64 = 1e-4;

/// Sizes: small enough to take a second on a CPU, sparse enough (L0 ≈ 16 of 1024) that the
/// sparse step runs, as it does in a real run.
const D_IN: usize = 64;
const D_SAE: usize = 1024;
const BATCH: usize = 512;
const L0: f64 = 16.0;

/// One side of the comparison.
#[derive(Debug, Clone)]
pub struct Side {
    /// The device.
    pub device: Device,
    /// Its kernels.
    pub kernels: Kernels,
    /// Density switch (`sae::sparse::switch_density`).
    pub sparse_below: f64,
}

/// What the comparison found.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Per step: (loss, MSE, L0) on the device and on the reference.
    pub steps: Vec<([f64; 3], [f64; 3])>,
    /// Steps that ran sparse on the device.
    pub sparse_steps: usize,
}

impl Agreement {
    /// The worst relative difference of loss or MSE, and its step (NaN if any value is not
    /// finite).
    pub fn worst(&self) -> (f64, usize) {
        let mut worst = (0.0, 0);
        for (t, (a, b)) in self.steps.iter().enumerate() {
            for k in 0..2 {
                let e = (a[k] - b[k]).abs() / b[k].abs().max(1e-12);
                if e.is_nan() || !a[k].is_finite() {
                    return (f64::NAN, t);
                }
                if e > worst.0 {
                    worst = (e, t);
                }
            }
        }
        worst
    }

    /// The largest L0 difference over the steps.
    pub fn worst_l0(&self) -> f64 {
        self.steps
            .iter()
            .map(|(a, b)| (a[2] - b[2]).abs())
            .fold(0.0, f64::max)
    }
}

fn recipe() -> Config {
    parse(
        "",
        "selftest",
        &[
            format!("{}=1e-3", keys::LR),
            format!("{}=0", keys::LR_WARMUP_STEPS),
            format!("{}=5", keys::SPARSITY_WARMUP_STEPS),
            format!("{}=1e-3", keys::SPARSITY_COEFFICIENT),
        ],
    )
    .and_then(|f| f.validate("selftest"))
    .expect("the selftest recipe is valid")
}

fn run_on(
    side: &Side,
    host: &HostParams,
    batches: &[Vec<f32>],
    cfg: &Config,
) -> (Vec<[f64; 3]>, usize) {
    let mut sae = Sae::from_host(host, cfg.sae.threshold_param, &side.device);
    let mut adam = AdamState::new(&sae);
    let mut sparse = 0;
    let per_step = (0..STEPS)
        .map(|t| {
            let x: Tensor<2> = upload(&batches[t % batches.len()], [BATCH, D_IN], &side.device);
            let plan = StepPlan {
                t: t as u64,
                total_steps: STEPS as u64,
                hyper: &cfg.hyper,
                sae: &cfg.sae,
                kernels: side.kernels,
                sparse_below: side.sparse_below,
            };
            let out = train_step(&mut sae, &mut adam, (x, None), plan, None);
            sparse += usize::from(out.sparse);
            let p = LossParts::from_tensor(&out.parts);
            [p.loss, p.mse, p.l0]
        })
        .collect();
    (per_step, sparse)
}

/// Train [`STEPS`] steps on `device` and on `reference` from one seeded state and data.
pub fn compare(device: &Side, reference: &Side) -> Agreement {
    let cfg = recipe();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let scale = 1.0 / (D_IN as f32).sqrt();
    let batches: Vec<Vec<f32>> = (0..8)
        .map(|_| {
            (0..BATCH * D_IN)
                .map(|_| {
                    let v: f32 = StandardNormal.sample(&mut rng);
                    v * scale
                })
                .collect()
        })
        .collect();
    let mut host = HostParams::init(D_IN, D_SAE, 1e-3, 7);
    // θ so that about L0 features fire, from the first batch's pre-activations (as bench --l0)
    let z: Vec<f32> = {
        let flex = Device::flex();
        let sae = Sae::from_host(&host, crate::config::ThresholdParam::Log, &flex);
        download(&pre_acts(&sae, upload(&batches[0], [BATCH, D_IN], &flex)))
    };
    host.threshold = thresholds_for_l0(&z, D_SAE, L0);
    let (ours, sparse_steps) = run_on(device, &host, &batches, &cfg);
    let (theirs, _) = run_on(reference, &host, &batches, &cfg);
    Agreement {
        steps: ours.into_iter().zip(theirs).collect(),
        sparse_steps,
    }
}
