//! `jumpscope bench`: print the measured training throughput.

use crate::cli::BenchArgs;
use jumpscope::bench::{BenchSizes, run as bench};

/// Run the command; returns the process exit code.
pub fn exec(a: BenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        a.d_in > 0 && a.d_sae > 0 && a.batch > 0 && a.steps > 0,
        "sizes and --steps must be at least 1"
    );
    if let Some(l0) = a.l0 {
        anyhow::ensure!(
            l0.is_finite() && l0 > 0.0 && l0 < a.d_sae as f64,
            "--l0 = {l0}: expected a number of active features in (0, --d-sae = {})",
            a.d_sae
        );
    }
    let dev = a.device.resolve()?;
    let r = bench(
        BenchSizes {
            d_in: a.d_in,
            d_sae: a.d_sae,
            batch: a.batch,
            steps: a.steps,
            warmup: a.warmup,
            l0: a.l0,
            step: a.step,
        },
        &dev,
        &a.device.label(),
    );
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} on {}: d_in {} d_sae {} batch {}: {:.0} tokens/s ({:.1} ms/step over {} steps, {} threads); L0 {:.1}; encoder product alone {:.1} ms, step / encoder {:.2}; {:.0} % of steps sparse\n{}; {}",
            r.implementation,
            r.device,
            r.d_in,
            r.d_sae,
            r.batch,
            r.tokens_per_s,
            r.ms_per_step,
            r.steps,
            r.threads,
            r.l0,
            r.encoder_ms,
            r.limit_ratio,
            r.sparse_fraction * 100.0,
            r.cpu,
            jumpscope::isa::summary()
        );
    }
    Ok(0)
}
