//! The instruction-set switch through the real binary: `JUMPSCOPE_ISA` refused with one line
//! when it cannot be honoured, and a training run on an f16 store at each level the CPU has
//! (baseline, AVX2, AVX-512) ending with the same SAE to 1e-5; `selftest` passes at each level
//! and its table names the level that ran.

use crate::common::*;
use jumpscope::data::dtype::Dtype;
use jumpscope::data::store::write_store;
use jumpscope::data::synth::{SynthSpec, generate};
use jumpscope::isa::{Isa, detected};
use jumpscope::sae::io;
use serde_json::Value;

/// Every level this CPU can run, lowest first.
fn levels() -> Vec<Isa> {
    [Isa::Baseline, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| i <= detected())
        .collect()
}

#[test]
fn an_unusable_isa_variable_is_one_line_and_exit_2() {
    let o = bin()
        .args(["bench", "--steps", "1"])
        .env("JUMPSCOPE_ISA", "avx3")
        .output()
        .unwrap();
    assert_user_error(
        &o,
        &[
            "JUMPSCOPE_ISA=\"avx3\"",
            "expected auto, avx512, avx2 or baseline",
        ],
    );
    // above the CPU: only testable where the CPU lacks a level
    if detected() < Isa::Avx512 {
        let o = bin()
            .args(["bench", "--steps", "1"])
            .env("JUMPSCOPE_ISA", "avx512")
            .output()
            .unwrap();
        assert_user_error(&o, &["JUMPSCOPE_ISA=avx512", "can only lower"]);
    }
}

#[test]
fn training_gives_the_same_sae_at_every_instruction_set() {
    let dir = tempfile::tempdir().unwrap();
    // wide enough rows for whole 16-lane vectors and a masked tail (100 = 6·16 + 4), stored
    // as f16 so that decoding takes the level's path too
    let spec = SynthSpec {
        d_in: 100,
        features: 400,
        mean_active: 4.0,
        tokens: 6000,
        noise: 0.01,
        seed: 7,
    };
    let s = generate(&spec);
    let store = dir.path().join("s.h5");
    write_store(
        &store,
        "activations",
        &s.activations,
        spec.d_in,
        Dtype::F16,
        &[],
        &[],
    )
    .unwrap();
    let mut finals = Vec::new();
    for isa in levels() {
        let out = dir.path().join(isa.name());
        let cfg = config(
            dir.path(),
            &format!(
                "[data]\nstores = [\"{}\"]\nbatch_size = 256\n[sae]\nd_sae = 800\nthreshold_init = 0.1\nbandwidth = 0.05\n[train]\nsteps = 150\nlr = 4e-3\n[run]\nout = \"{}\"\n",
                store.display(),
                out.display()
            ),
        );
        let o = bin()
            .args(["train", "--config", cfg.to_str().unwrap(), "--headless"])
            .env("JUMPSCOPE_ISA", isa.name())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{isa:?}: {}", stderr(&o));
        let m = metrics(&out);
        let last = m.last().unwrap();
        // the sparse step ran (its per-feature pass is where the levels differ most)
        assert!(last.l0 < 0.1 * 800.0, "{isa:?}: L0 {}", last.l0);
        finals.push((isa, io::load(&out.join("sae")).unwrap().params, m));
    }
    assert!(finals.len() >= 2, "this CPU runs only the baseline level");
    let (first, p0, m0) = &finals[0];
    for (isa, p, m) in &finals[1..] {
        for (what, u, v) in [
            ("W_enc", &p0.w_enc, &p.w_enc),
            ("b_enc", &p0.b_enc, &p.b_enc),
            ("W_dec", &p0.w_dec, &p.w_dec),
            ("b_dec", &p0.b_dec, &p.b_dec),
            ("threshold", &p0.threshold, &p.threshold),
        ] {
            let diff = max_diff(u, v);
            assert!(
                diff <= 1e-5,
                "{first:?} vs {isa:?}: final {what} differs by {diff}"
            );
        }
        for (a, b) in m0.iter().zip(m) {
            assert!(
                (a.loss - b.loss).abs() <= 1e-5 * a.loss.abs().max(1.0),
                "{first:?} vs {isa:?} at step {}: loss {} vs {}",
                a.step,
                a.loss,
                b.loss
            );
        }
    }
}

#[test]
fn selftest_passes_at_every_instruction_set_and_says_which_ran() {
    for isa in levels() {
        let o = bin()
            .args(["selftest", "--device", "cpu", "--no-bench", "--json"])
            .env("JUMPSCOPE_ISA", isa.name())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{isa:?}: {}", stderr(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["passed"], true, "{isa:?}: {r}");
        assert!(
            r["isa"]
                .as_str()
                .unwrap()
                .contains(&format!("own kernels {}", isa.name())),
            "{isa:?}: {}",
            r["isa"]
        );
        let rows: Vec<&Value> = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with("cpu kernels: "))
            .collect();
        assert!(rows.len() >= 5, "{isa:?}: {r}");
        // every kernel but gemm's products runs at the level asked for
        for c in &rows[1..] {
            assert!(
                c["detail"].as_str().unwrap().starts_with(isa.name()),
                "{isa:?}: {c}"
            );
        }
    }
}
