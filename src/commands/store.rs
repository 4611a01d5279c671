//! `jumpscope store …`: synthetic stores.

use crate::cli::{DtypeArg, StoreCommand};
use jumpscope::data::store::{Extra, WriteDtype, write_store};
use jumpscope::data::synth::{SynthSpec, generate};

/// Run the command; returns the process exit code.
pub fn run(cmd: StoreCommand) -> anyhow::Result<i32> {
    match cmd {
        StoreCommand::Synth(a) => {
            anyhow::ensure!(
                a.d_in > 0 && a.features > 0 && a.tokens > 0,
                "--d-in, --features and --tokens must be at least 1"
            );
            anyhow::ensure!(
                a.mean_active > 0.0 && a.mean_active <= a.features as f64,
                "--mean-active = {}: expected a number in (0, --features]",
                a.mean_active
            );
            let spec = SynthSpec {
                d_in: a.d_in,
                features: a.features,
                mean_active: a.mean_active,
                tokens: a.tokens,
                noise: a.noise,
                seed: a.seed,
            };
            let s = generate(&spec);
            let dtype = match a.dtype {
                DtypeArg::F32 => WriteDtype::F32,
                DtypeArg::F16 => WriteDtype::F16,
            };
            let desc = format!(
                "synthetic: {} features in {} dims, mean active {}, noise {}, seed {}",
                a.features, a.d_in, a.mean_active, a.noise, a.seed
            );
            write_store(
                &a.out,
                "activations",
                &s.activations,
                a.d_in,
                dtype,
                &[
                    Extra::F32("true_features", &s.directions, a.features, a.d_in),
                    Extra::F32Vec("feature_probs", &s.probs),
                ],
                &[("source", desc.as_str())],
            )?;
            eprintln!(
                "wrote {} ({} tokens x {} dims; true directions in `true_features`)",
                a.out.display(),
                a.tokens,
                a.d_in
            );
            Ok(0)
        }
    }
}
