//! The LibTorch backend (built with `--features tch`, run on its CPU device): a short training
//! run through the real binary gives the same per-step losses as the flex CPU backend, resumes on
//! the same device, and the device names behave. (Golden parity on tch-cpu is in `golden.rs`.)

use crate::common::*;
use std::path::Path;
use tempfile::tempdir;

fn per_step(run_dir: &Path) -> Vec<(u64, f64, f64, f64)> {
    metrics(run_dir)
        .iter()
        .map(|r| (r.step, r.loss, r.mse_scaled, r.l0))
        .collect()
}

fn run_on(device: &str, dir: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    let out = dir.join(device);
    let set_out = format!("run.out=\"{}\"", out.display());
    let set_dev = format!("run.device=\"{device}\"");
    let mut sets = vec![set_out.as_str(), set_dev.as_str()];
    sets.extend(extra);
    train_cli(cfg, &sets, &[])
}

#[test]
fn flex_and_tch_cpu_give_the_same_per_step_losses() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(3000, 11));
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 256\nseed = 5\n\
             [sae]\nd_sae = 96\nbandwidth = 0.05\n\
             [train]\nsteps = 40\nlog_every = 1\ncheckpoint_every = 20\nlr = 3e-3\n\
             lr_warmup_steps = 5\nsparsity_warmup_steps = 10\nsparsity_coefficient = 0.05\n\
             pre_act_coefficient = 0.01\ndead_window_tokens = 2000\n",
            store.display()
        ),
    );
    for dev in ["cpu", "tch-cpu"] {
        let o = run_on(dev, d.path(), &cfg, &[]);
        assert!(o.status.success(), "{dev}: {}", stderr(&o));
    }
    let (a, b) = (
        per_step(&d.path().join("cpu")),
        per_step(&d.path().join("tch-cpu")),
    );
    assert_eq!(a.len(), 40);
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        for (p, q) in [(x.1, y.1), (x.2, y.2)] {
            worst = worst.max((p - q).abs());
        }
        // L0 counts features above θ: a pre-activation within rounding of θ may flip
        assert!(
            (x.3 - y.3).abs() <= 0.05,
            "step {}: L0 {} vs {}",
            x.0,
            x.3,
            y.3
        );
    }
    assert!(worst <= 1e-4, "per-step loss/MSE differ by up to {worst:e}");
    // the run's metadata says where it ran
    let start = &records(&d.path().join("tch-cpu"), "start")[0];
    assert!(
        matches!(start, Record::Start { device, .. } if device == "tch-cpu"),
        "{start:?}"
    );
}

#[test]
fn transcoders_and_matryoshka_train_alike_on_flex_and_tch_cpu() {
    use jumpscope::data::dtype::Dtype;
    use jumpscope::data::store::write_store;
    use jumpscope::data::synth::{SynthSpec, generate_pairs};
    let d = tempdir().unwrap();
    let spec = SynthSpec {
        d_in: 16,
        features: 48,
        mean_active: 3.0,
        tokens: 3000,
        noise: 0.0,
        seed: 12,
    };
    let (sx, ty) = generate_pairs(&spec, 20);
    let (x, y) = (d.path().join("in.h5"), d.path().join("out.h5"));
    write_store(&x, "activations", &sx.activations, 16, Dtype::F32, &[], &[]).unwrap();
    write_store(&y, "activations", &ty.activations, 20, Dtype::F32, &[], &[]).unwrap();
    for (kind, arch) in [("skip-transcoder", "jumprelu"), ("transcoder", "batchtopk")] {
        let arch_keys = match arch {
            "jumprelu" => "bandwidth = 0.05\n",
            _ => "k = 4\n",
        };
        let lambda = match arch {
            "jumprelu" => "sparsity_coefficient = 0.05\nsparsity_warmup_steps = 10\n",
            _ => "",
        };
        let dir = d.path().join(format!("{kind}-{arch}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = config(
            &dir,
            &format!(
                "[data]\nstores = [\"{}\"]\ntarget_stores = [\"{}\"]\nbatch_size = 256\nseed = 5\n\
                 [sae]\nkind = \"{kind}\"\narchitecture = \"{arch}\"\nd_sae = 96\n\
                 matryoshka_widths = [16, 48]\n{arch_keys}\
                 [train]\nsteps = 30\nlog_every = 1\ncheckpoint_every = 0\nlr = 3e-3\n\
                 lr_warmup_steps = 5\n{lambda}",
                x.display(),
                y.display()
            ),
        );
        for dev in ["cpu", "tch-cpu"] {
            let o = run_on(dev, &dir, &cfg, &[]);
            assert!(o.status.success(), "{kind} {arch} {dev}: {}", stderr(&o));
        }
        let (a, b) = (per_step(&dir.join("cpu")), per_step(&dir.join("tch-cpu")));
        assert_eq!((a.len(), b.len()), (30, 30), "{kind} {arch}");
        for (p, q) in a.iter().zip(&b) {
            let worst = (p.1 - q.1).abs().max((p.2 - q.2).abs());
            assert!(worst <= 1e-4, "{kind} {arch} step {}: {p:?} vs {q:?}", p.0);
        }
        let last = metrics(&dir.join("tch-cpu")).pop().unwrap();
        assert_eq!(last.matryoshka_fvu.len(), 2, "{kind} {arch}");
    }
}

#[test]
fn a_tch_run_resumes_on_its_device_with_the_same_losses() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(1000, 3));
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 128\n[sae]\nd_sae = 32\n\
             [train]\nsteps = 10\nlog_every = 1\ncheckpoint_every = 4\n",
            store.display()
        ),
    );
    let o = run_on("tch-cpu", d.path(), &cfg, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.path().join("tch-cpu");
    let first = per_step(&run);
    assert_eq!(first.len(), 10);
    // drop the final checkpoint: the resume starts from step 8 and redoes steps 9 and 10
    std::fs::remove_dir_all(run.join("checkpoints/step-10")).unwrap();
    let o = bin()
        .args(["train", "--headless", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let all = per_step(&run);
    let again = &all[all.len() - 2..];
    for (x, y) in first[8..].iter().zip(again) {
        assert_eq!(x.0, y.0);
        assert!(
            (x.1 - y.1).abs() <= 1e-6 * x.1.abs().max(1.0),
            "step {}: {} vs {}",
            x.0,
            x.1,
            y.1
        );
    }
    let start = records(&run, "start");
    assert!(
        matches!(&start[0], Record::Start { device, .. } if device == "tch-cpu"),
        "{start:?}"
    );
}

#[test]
fn cuda_without_a_gpu_is_one_line_naming_what_is_available() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 1));
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\n[train]\nsteps = 2\n",
            store.display()
        ),
    );
    if jumpscope::device::cuda_devices() > 0 {
        return; // a GPU machine: nothing to refuse
    }
    for dev in ["cuda", "cuda:1"] {
        let o = run_on(dev, d.path(), &cfg, &[]);
        assert_user_error(&o, &[dev, "sees no CUDA GPU", "tch-cpu"]);
    }
}
