//! `jumpscope bench`: full training steps (forward, STE backward, Adam, decoder renorm) on random
//! data, timed after a warm-up. The same step the trainer runs, without the data pipeline.
//!
//! With `l0`, θ_j starts at the (1 − L0/d_sae) quantile of feature j's pre-activations on the
//! first batch (floored at 1e-6), so that about L0 features fire per token as in a trained SAE;
//! the PyTorch reference's `bench --l0` applies the same rule. The dense encoder product alone is
//! timed too: the one part of a step that no formulation avoids.

use crate::config::{Config, parse};
use crate::sae::kernels::Kernels;
use crate::sae::loss::LossParts;
use crate::sae::model::{HostParams, Sae, download, upload};
use crate::train::adam::AdamState;
use crate::train::step::{StepPlan, train_step};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// "jumpscope".
    pub implementation: &'static str,
    /// Device name.
    pub device: String,
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// Tokens per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Worker threads of the CPU backend.
    pub threads: usize,
    /// Tokens per second over the timed steps.
    pub tokens_per_s: f64,
    /// Milliseconds per step.
    pub ms_per_step: f64,
    /// Mean active features per token on the first batch after the timed steps.
    pub l0: f64,
    /// Milliseconds of the dense encoder product `x · W_enc` alone, same sizes and device.
    pub encoder_ms: f64,
    /// `ms_per_step / encoder_ms`: how close a step is to the product it cannot avoid.
    pub limit_ratio: f64,
    /// Fraction of the timed steps that ran sparse.
    pub sparse_fraction: f64,
    /// The instruction set of the matrix products (the `gemm` crate's choice on this CPU).
    pub isa_products: crate::isa::Isa,
    /// The instruction set of jumpscope's own CPU kernels (`JUMPSCOPE_ISA` can lower it).
    pub isa_kernels: crate::isa::Isa,
    /// The CPU's model name (from /proc/cpuinfo where there is one).
    pub cpu: String,
}

/// The CPU's model name from /proc/cpuinfo, or the architecture where there is none.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Sizes of a benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct BenchSizes {
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// Tokens per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Start θ so that about this many features fire per token (`None`: θ = 1e-3 everywhere).
    pub l0: Option<f64>,
    /// Sparse or dense rest of the step, or the trainer's choice.
    pub step: StepPath,
}

/// Which form of the step after the encoder product a bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StepPath {
    /// Chosen per step from the measured density, as in training.
    Auto,
    /// Always the sparse form (where the backend has one).
    Sparse,
    /// Always the dense form.
    Dense,
}

/// The `q`-quantile of `v` (sorted in place) with linear interpolation between order statistics,
/// as `torch.quantile` computes it.
fn quantile(v: &mut [f32], q: f64) -> f32 {
    v.sort_unstable_by(f32::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = (pos - lo as f64) as f32;
    v[lo] + frac * (v[hi] - v[lo])
}

/// Per-feature thresholds for about `l0` active features per token: the (1 − l0/d_sae) quantile
/// of each column of the pre-activations `z [rows, d_sae]` (row-major), floored at 1e-6.
pub fn thresholds_for_l0(z: &[f32], d_sae: usize, l0: f64) -> Vec<f32> {
    let rows = z.len() / d_sae;
    let q = 1.0 - l0 / d_sae as f64;
    (0..d_sae)
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(rows),
            |col, j| {
                col.clear();
                col.extend((0..rows).map(|r| z[r * d_sae + j]));
                quantile(col, q).max(1e-6)
            },
        )
        .collect()
}

/// Pre-activations `(x − b_dec) W_enc + b_enc` of `x [rows, d_in]`.
pub(crate) fn pre_acts(sae: &Sae, x: Tensor<2>) -> Tensor<2> {
    (x - sae.b_dec.clone().unsqueeze_dim::<2>(0)).matmul(sae.w_enc.clone())
        + sae.b_enc.clone().unsqueeze_dim::<2>(0)
}

/// Time `sizes.steps` training steps with the recipe's defaults (as the PyTorch reference does).
pub fn run(sizes: BenchSizes, device: &Device, device_name: &str) -> BenchResult {
    let cfg: Config = parse("", "bench", &[])
        .and_then(|f| f.validate("bench"))
        .expect("the built-in defaults are valid");
    let BenchSizes {
        d_in,
        d_sae,
        batch,
        steps,
        warmup,
        l0,
        step: path,
    } = sizes;
    let mut host = HostParams::init(d_in, d_sae, 1e-3, 0);
    let mut sae = Sae::from_host(&host, cfg.sae.threshold_param, device);
    let mut adam = AdamState::new(&sae);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let scale = 1.0 / (d_in as f32).sqrt();
    let batches: Vec<_> = (0..4)
        .map(|_| {
            let v: Vec<f32> = (0..batch * d_in)
                .map(|_| StandardNormal.sample(&mut rng))
                .map(|x: f32| x * scale)
                .collect();
            upload(&v, [batch, d_in], device)
        })
        .collect();
    if let Some(l0) = l0 {
        let z = download(&pre_acts(&sae, batches[0].clone()));
        host.threshold = thresholds_for_l0(&z, d_sae, l0);
        sae = Sae::from_host(&host, cfg.sae.threshold_param, device);
    }
    let total = (warmup + steps) as u64;
    let kernels = Kernels::for_device(device);
    let sparse_below = match path {
        StepPath::Auto => crate::sae::sparse::switch_density(kernels),
        StepPath::Sparse => f64::INFINITY,
        StepPath::Dense => 0.0,
    };
    let mut sparse_steps = 0usize;
    let mut step = |t: usize| {
        let plan = StepPlan {
            t: t as u64,
            total_steps: total,
            hyper: &cfg.hyper,
            sae: &cfg.sae,
            kernels,
            sparse_below,
        };
        let out = train_step(
            &mut sae,
            &mut adam,
            (batches[t % batches.len()].clone(), None),
            plan,
            None,
        );
        sparse_steps += usize::from(out.sparse && t >= warmup);
        out.parts
    };
    for t in 0..warmup {
        LossParts::from_tensor(&step(t));
    }
    let t0 = Instant::now();
    let mut last = None;
    for t in warmup..warmup + steps {
        last = Some(step(t));
    }
    // reading the last loss back waits for all queued work on asynchronous devices
    if let Some(p) = last {
        LossParts::from_tensor(&p);
    }
    let secs = t0.elapsed().as_secs_f64();
    let active = pre_acts(&sae, batches[0].clone())
        .greater(sae.theta().unsqueeze_dim::<2>(0).expand([batch, d_sae]))
        .float()
        .sum();
    let l0_after = download(&active)[0] as f64 / batch as f64;
    let encoder_ms = encoder_ms(&sae, &batches[0], steps);
    let ms_per_step = secs * 1e3 / steps as f64;
    BenchResult {
        implementation: "jumpscope",
        device: device_name.to_string(),
        d_in,
        d_sae,
        batch,
        steps,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        tokens_per_s: (batch * steps) as f64 / secs,
        ms_per_step,
        l0: l0_after,
        encoder_ms,
        limit_ratio: ms_per_step / encoder_ms,
        sparse_fraction: sparse_steps as f64 / steps as f64,
        isa_products: crate::isa::gemm(),
        isa_kernels: crate::isa::active(),
        cpu: cpu_model(),
    }
}

/// Milliseconds of `x · W_enc` alone, median of `reps` timings after one warm-up (each waits for
/// the product by reading one of its values back, so asynchronous devices are timed too).
fn encoder_ms(sae: &Sae, x: &Tensor<2>, reps: usize) -> f64 {
    let once = || {
        let t0 = Instant::now();
        let z = x.clone().matmul(sae.w_enc.clone());
        download(&z.slice([0..1, 0..1]));
        t0.elapsed().as_secs_f64() * 1e3
    };
    once();
    let mut ms: Vec<f64> = (0..reps.max(1)).map(|_| once()).collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_torch() {
        // torch.quantile(torch.tensor([4., 1., 3., 2.]), q) for q = 0, 0.5, 0.9, 1
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        assert_eq!(quantile(&mut v, 0.5), 2.5);
        assert!((quantile(&mut v, 0.9) - 3.7).abs() < 1e-6);
        assert_eq!(quantile(&mut v, 1.0), 4.0);
    }

    #[test]
    fn thresholds_let_about_l0_features_fire() {
        // 1000 rows x 50 features, column j a permutation of 0..1000 scaled by j + 1
        let (rows, m) = (1000, 50);
        let z: Vec<f32> = (0..rows * m)
            .map(|i| {
                let (r, j) = (i / m, i % m);
                ((r * 7919 + j * 13) % rows) as f32 * (j + 1) as f32
            })
            .collect();
        let theta = thresholds_for_l0(&z, m, 5.0);
        let active = z
            .chunks(m)
            .map(|row| row.iter().zip(&theta).filter(|(z, t)| z > t).count())
            .sum::<usize>() as f64
            / rows as f64;
        assert!((active - 5.0).abs() < 0.1, "{active}");
        // the floor: a column of non-positive values gets 1e-6
        assert_eq!(thresholds_for_l0(&[-1.0, -2.0], 1, 0.5), vec![1e-6]);
    }
}
