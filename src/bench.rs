//! `jumpscope bench`: full training steps (forward, STE backward, Adam, decoder renorm) on random
//! data, timed after a warm-up. The same step the trainer runs, without the data pipeline.

use crate::config::{Config, parse};
use crate::sae::kernels::Kernels;
use crate::sae::loss::LossParts;
use crate::sae::model::{HostParams, Sae, upload};
use crate::train::adam::AdamState;
use crate::train::step::{StepPlan, train_step};
use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use std::time::Instant;

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
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
}

/// Time `sizes.steps` training steps with the recipe's defaults (as the PyTorch reference does).
pub fn run(sizes: BenchSizes, device: &Device, device_name: &str) -> BenchReport {
    let cfg: Config = parse("", "bench", &[])
        .and_then(|f| f.validate("bench"))
        .expect("the built-in defaults are valid");
    let BenchSizes {
        d_in,
        d_sae,
        batch,
        steps,
        warmup,
    } = sizes;
    let mut sae = Sae::from_host(
        &HostParams::init(d_in, d_sae, 1e-3, 0),
        cfg.sae.threshold_param,
        device,
    );
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
    let total = (warmup + steps) as u64;
    let kernels = Kernels::for_device(device);
    let mut step = |t: usize| {
        let plan = StepPlan {
            t: t as u64,
            total_steps: total,
            hyper: &cfg.hyper,
            sae: &cfg.sae,
            kernels,
        };
        let out = train_step(
            &mut sae,
            &mut adam,
            batches[t % batches.len()].clone(),
            plan,
            None,
        );
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
    BenchReport {
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
        ms_per_step: secs * 1e3 / steps as f64,
    }
}
