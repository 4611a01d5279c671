//! Helpers shared by the integration tests: stores, configs and running the real binary.

use jumpscope::data::store::{Extra, WriteDtype, write_store};
use jumpscope::data::synth::{Synth, SynthSpec, generate};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jumpscope"))
}

/// Run the binary with `args`.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A user error: exit 2, one `error:` line naming `needles`, no panic or backtrace.
pub fn assert_user_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line:\n{err}");
    for n in needles {
        assert!(lines[0].contains(n), "error line lacks `{n}`: {}", lines[0]);
    }
}

/// A small synthetic store written by our writer.
pub fn synth_store(path: &Path, spec: &SynthSpec) -> Synth {
    let s = generate(spec);
    write_store(
        path,
        "activations",
        &s.activations,
        spec.d_in,
        WriteDtype::F32,
        &[Extra::F32(
            "true_features",
            &s.directions,
            spec.features,
            spec.d_in,
        )],
        &[],
    )
    .expect("write store");
    s
}

/// A small default spec.
pub fn small_spec(tokens: usize, seed: u64) -> SynthSpec {
    SynthSpec {
        d_in: 16,
        features: 48,
        mean_active: 3.0,
        tokens,
        noise: 0.0,
        seed,
    }
}

/// Write a config file with `body` and return its path.
pub fn config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// Parse metrics.jsonl records of one type. Only complete lines count: a run that is still
/// writing may have a last line without its newline yet.
pub fn records(run_dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each complete line is JSON"))
        .filter(|v| v["type"] == kind)
        .collect()
}

/// Write a store with h5py (a real file written by another HDF5 client).
pub fn h5py(script: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("import h5py, numpy as np\n{script}"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "h5py script failed (scripts/dev.sh setup installs h5py): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write a store whose `activations` is the numpy array `x` that the Python lines `setup` define,
/// with h5py.
pub fn h5py_activations(path: &Path, setup: &str) {
    h5py(&format!(
        "{setup}\nwith h5py.File('{}', 'w') as f:\n    f['activations'] = x\n",
        path.display()
    ));
}

/// `jumpscope train --config CFG --headless`, each of `sets` passed as `--set`, then `extra`.
pub fn train_cli(cfg: &Path, sets: &[&str], extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        cfg.to_str().expect("utf-8 path"),
        "--headless",
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    args.extend_from_slice(extra);
    run(&args)
}

/// `jumpscope eval SAE --store STORE --json`, which must succeed; its JSON.
pub fn eval_json(sae: &Path, store: &Path) -> serde_json::Value {
    let o = run(&[
        "eval",
        sae.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("eval --json prints JSON")
}

/// Start `jumpscope train --config CFG --headless` in the background and wait until its
/// metrics.jsonl in `run_dir` has `reports` metrics records; a run that dies first, or takes more
/// than a minute, fails the test with its stderr.
pub fn spawn_training(cfg: &Path, run_dir: &Path, reports: usize) -> std::process::Child {
    let mut child = bin()
        .args(["train", "--config", cfg.to_str().unwrap(), "--headless"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let t0 = std::time::Instant::now();
    while records(run_dir, "metrics").len() < reports {
        if t0.elapsed().as_secs() > 60 || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("training did not start: {:?} {}", out.status, stderr(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}
