//! Helpers shared by the integration tests: stores, configs and running the real binary.

use jumpscope::data::dtype::Dtype;
use jumpscope::data::store::{Extra, write_store};
use jumpscope::data::synth::{Synth, SynthSpec, generate};
pub use jumpscope::schema::record::{MetricsRecord, Record, read_log};
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

/// The largest |a_i − b_i| of two equally long slices; NaN if any difference is NaN (where a
/// plain `f32::max` fold would pass over it).
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, e| if e.is_nan() { f32::NAN } else { m.max(e) })
}

/// A small synthetic store written by our writer.
pub fn synth_store(path: &Path, spec: &SynthSpec) -> Synth {
    let s = generate(spec);
    write_store(
        path,
        "activations",
        &s.activations,
        spec.d_in,
        Dtype::F32,
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

/// A run configuration built from `section.key=value` settings (TOML values, as `--set` takes
/// them): the one way the tests build a [`jumpscope::config::Config`] in-process.
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    sets: Vec<String>,
}

impl Cfg {
    /// Training on `store`.
    pub fn on(store: &Path) -> Self {
        Self::default().set("data.stores", format!("[\"{}\"]", store.display()))
    }

    /// Set `key` to `value` (TOML text).
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.sets.push(format!("{key}={value}"));
        self
    }

    /// Add `key=value` settings as `--set` takes them.
    pub fn with(mut self, sets: &[&str]) -> Self {
        self.sets.extend(sets.iter().map(|s| s.to_string()));
        self
    }

    /// Write the run into `dir`.
    pub fn out(self, dir: &Path) -> Self {
        self.set("run.out", format!("\"{}\"", dir.display()))
    }

    /// The validated configuration.
    pub fn build(&self) -> jumpscope::config::Config {
        jumpscope::config::parse("", "test", &self.sets)
            .unwrap()
            .validate("test")
            .unwrap()
    }

    /// The configuration as the TOML text of a file (every key written out).
    pub fn toml(&self) -> String {
        self.build().to_toml()
    }
}

/// A run's held-out evaluations, in order.
pub fn held_out(run_dir: &Path) -> Vec<jumpscope::eval::Evaluation> {
    records(run_dir, "eval")
        .into_iter()
        .filter_map(|r| match r {
            Record::Eval { eval, .. } => Some(eval),
            _ => None,
        })
        .collect()
}

/// The FVU of a run's last held-out evaluation.
pub fn last_held_out_fvu(run_dir: &Path) -> f64 {
    held_out(run_dir).last().expect("a held-out evaluation").fvu
}

/// Write a config file with `body` and return its path.
pub fn config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// A run on `store` that trains until it is stopped: batches of 64, 64 features, a report every
/// `log_every` steps, no periodic checkpoint; `data_extra` and `train_extra` are more lines for
/// those tables. Writes `dir/config.toml`; returns it and the run directory `dir/run`.
pub fn endless_run(
    dir: &Path,
    store: &Path,
    log_every: u64,
    data_extra: &str,
    train_extra: &str,
) -> (PathBuf, PathBuf) {
    let run_dir = dir.join("run");
    let body = format!(
        "[data]\nstores = [\"{}\"]\nbatch_size = 64\n{data_extra}\n[sae]\nd_sae = 64\n\
         [train]\nsteps = 100000000\nlog_every = {log_every}\ncheckpoint_every = 0\n{train_extra}\n\
         [run]\nout = \"{}\"\n",
        store.display(),
        run_dir.display()
    );
    (config(dir, &body), run_dir)
}

/// Every record of a run's metrics.jsonl, read through the log's own type; `None` while the file
/// does not exist. Only complete lines count (a run that is still writing may have a last line
/// without its newline yet); a line that is not a record fails the test.
pub fn try_log(run_dir: &Path) -> Option<Vec<Record>> {
    let path = run_dir.join("metrics.jsonl");
    if !path.exists() {
        return None;
    }
    Some(read_log(&path).unwrap_or_else(|e| panic!("{e}")))
}

/// Every record of a run's metrics.jsonl; a missing file fails the test.
pub fn log(run_dir: &Path) -> Vec<Record> {
    try_log(run_dir).unwrap_or_else(|| panic!("{}: no metrics.jsonl", run_dir.display()))
}

/// The records of one `type` (a missing metrics.jsonl fails the test).
pub fn records(run_dir: &Path, kind: &str) -> Vec<Record> {
    assert!(Record::KINDS.contains(&kind), "no record type `{kind}`");
    log(run_dir)
        .into_iter()
        .filter(|r| r.kind() == kind)
        .collect()
}

/// The metrics reports of a run, in order.
pub fn metrics(run_dir: &Path) -> Vec<MetricsRecord> {
    log(run_dir)
        .into_iter()
        .filter_map(|r| match r {
            Record::Metrics(m) => Some(*m),
            _ => None,
        })
        .collect()
}

/// Poll `what` every 20 ms until it holds or `secs` seconds pass; whether it held.
pub fn wait_for(secs: u64, mut what: impl FnMut() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while !what() {
        if t0.elapsed().as_secs() >= secs {
            return what();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
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

/// `jumpscope train --config sample_data/<name>.toml --out OUT --headless`, run from the
/// repository root (the sample recipes' store paths are relative to it); it must succeed.
pub fn train_sample(name: &str, out: &Path) -> Output {
    let o = bin()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "train",
            "--config",
            &format!("sample_data/{name}.toml"),
            "--out",
            out.to_str().expect("utf-8 path"),
            "--headless",
        ])
        .output()
        .expect("the binary runs");
    assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
    o
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

/// A child process killed (and reaped) on drop, so that a test that fails while it runs leaves
/// nothing running behind it (a leaked child holding the test's output open would stall the
/// whole suite).
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `jumpscope train --headless` running in the background, its stderr going to a file (a pipe
/// nobody reads could fill and block the trainer). Killed on drop, so a failing test leaves no
/// trainer behind.
pub struct Background {
    child: std::process::Child,
    stderr: PathBuf,
}

impl Background {
    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Send it SIGTERM and wait for its exit code.
    pub fn terminate(self) -> Option<i32> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.wait().status.code()
    }

    /// Wait for it to end: its exit status and stderr (stdout is not kept).
    pub fn wait(mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&self.stderr).unwrap_or_default(),
        }
    }

    /// Fail the test with `what` and the run's stderr.
    pub fn fail(mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        panic!("{what} ({status:?}); stderr:\n{}", self.stderr())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `jumpscope train --config CFG --headless` in the background and wait until its
/// metrics.jsonl in `run_dir` has `reports` metrics records; a run that dies first, or takes more
/// than a minute, fails the test with its stderr.
pub fn spawn_training(cfg: &Path, run_dir: &Path, reports: usize) -> Background {
    let name = run_dir.file_name().unwrap().to_string_lossy();
    let stderr = run_dir.with_file_name(format!("{name}.stderr"));
    let file = std::fs::File::create(&stderr).unwrap();
    let child = bin()
        .args(["train", "--config", cfg.to_str().unwrap(), "--headless"])
        .stderr(file)
        .spawn()
        .expect("the binary starts");
    let mut run = Background { child, stderr };
    let reported = || {
        try_log(run_dir).is_some_and(|l| {
            l.iter().filter(|r| matches!(r, Record::Metrics(_))).count() >= reports
        })
    };
    if !wait_for(60, || reported() || !run.running()) || !reported() {
        run.fail("training did not start");
    }
    run
}

/// A finished 20-step run in `dir/run` (checkpoints at steps 10 and 20), and its config.
pub fn finished_run(dir: &Path) -> (PathBuf, PathBuf) {
    let store = dir.join("s.h5");
    synth_store(&store, &small_spec(600, 3));
    let run_dir = dir.join("run");
    let cfg = config(
        dir,
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\n[train]\nsteps = 20\ncheckpoint_every = 10\n[run]\nout = \"{}\"\n",
            store.display(),
            run_dir.display()
        ),
    );
    let o = run(&["train", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (run_dir, cfg)
}
