//! End-to-end tests of the live screens: the real binary in a real terminal (tmux, driven with
//! `send-keys` and read with `capture-pane`). `scripts/dev.sh test` installs tmux when missing.

use crate::common::{
    Record, endless_run, records, small_spec, spawn_training, synth_store, try_log, wait_for,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::tempdir;

/// A private tmux server (its own socket) running one command in a 120×40 window; killed on
/// drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `command` (run by sh; the window stays open after it ends, showing `EXIT=code`).
    fn start(name: &str, command: &str) -> Self {
        let socket = format!("jumpscope-test-{}-{name}", std::process::id());
        let t = Self { socket };
        let script = format!("{command}; echo EXIT=$?; sleep 600");
        let out = t
            .tmux()
            .args(["new-session", "-d", "-x", "120", "-y", "40", "sh", "-c"])
            .arg(&script)
            .output()
            .expect("tmux runs (scripts/dev.sh test installs it)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// What the window shows now.
    fn screen(&self) -> String {
        let out = self.tmux().args(["capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Type `keys` (tmux key names).
    fn keys(&self, keys: &str) {
        assert!(
            self.tmux()
                .args(["send-keys", keys])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Type several keys in one go (they reach the program together, often in one read).
    fn key_burst(&self, keys: &[&str]) {
        assert!(
            self.tmux()
                .arg("send-keys")
                .args(keys)
                .status()
                .unwrap()
                .success()
        );
    }

    /// Wait (up to 60 s) until the screen satisfies `ok`; the screen, or a failure showing it.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut s = String::new();
        if !wait_for(60, || {
            s = self.screen();
            ok(&s)
        }) {
            panic!("waited 60 s for {what}; the screen:\n{s}");
        }
        s
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// Wait (up to 60 s) for `ok`, else fail with `what` and `detail()`.
fn wait_until(what: &str, ok: impl Fn() -> bool, detail: impl Fn() -> String) {
    if !wait_for(60, ok) {
        panic!("waited 60 s for {what}:\n{}", detail());
    }
}

/// The step the status line shows (`step N/M`).
fn shown_step(screen: &str) -> Option<u64> {
    let at = screen.find("step ")? + 5;
    let digits: String = screen[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A store and a config for a run that goes on until it is stopped.
fn long_run(dir: &Path, headless_log_every: u64) -> (PathBuf, PathBuf) {
    let store = dir.join("s.h5");
    synth_store(&store, &small_spec(8192, 3));
    let tuned = "lr = 0.0002\nsparsity_coefficient = 0.001";
    endless_run(dir, &store, headless_log_every, "", tuned)
}

fn binary() -> String {
    env!("CARGO_BIN_EXE_jumpscope").to_string()
}

/// A `hyper` record changing `key` from `source`: (old, new).
fn change(run_dir: &Path, source: &str, key: &str) -> Option<(f64, f64)> {
    records(run_dir, "hyper").iter().find_map(|r| match r {
        Record::Hyper {
            source: s, changes, ..
        } if s.to_string() == source => {
            let c = changes.get(key)?;
            Some((c.old.as_f64()?, c.new.as_f64()?))
        }
        _ => None,
    })
}

fn replace_line(file: &Path, starts: &str, with: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(starts) {
                found = true;
                with.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no line `{starts}` in {}:\n{text}", file.display());
    std::fs::write(file, out.join("\n") + "\n").unwrap();
}

#[test]
fn the_training_screen_in_a_real_terminal() {
    let d = tempdir().unwrap();
    let (cfg, run_dir) = long_run(d.path(), 50);
    let t = Tmux::start(
        "train",
        &format!("{} train --config {}", binary(), cfg.display()),
    );
    // the panes appear, their axes named (waiting for all of them: a capture can catch a frame
    // half drawn)
    let panes = [
        "L0",
        "nMSE",
        "FVU train",
        "log10 θ",
        "log10 freq",
        "step",
        "dead",
        "held-out",
        "hyperparameters",
        "events",
        "quit",
    ];
    let s = t.wait("the training screen with every pane", |s| {
        s.contains("state training") && panes.iter().all(|p| s.contains(p))
    });
    // the health badge, and `W` lists the active warnings (Esc closes the list)
    assert!(s.contains("health "), "no health badge:\n{s}");
    t.keys("W");
    t.wait("the warnings list", |s| {
        s.contains("health warnings (Esc closes)")
    });
    t.keys("Escape");
    t.wait("the warnings list to close", |s| {
        !s.contains("health warnings (Esc closes)")
    });
    // the step count advances
    let first = shown_step(&s).expect("a step on the status line");
    t.wait("the step to advance", |s| {
        shown_step(s).is_some_and(|n| n > first)
    });
    // a key changes λ (selected first; `l` steps it up 25 %) and metrics.jsonl records it
    t.keys("l");
    wait_until(
        "λ changed from the keyboard in metrics.jsonl",
        || change(&run_dir, "key", "sparsity_coefficient").is_some(),
        || t.screen(),
    );
    let (old, new) = change(&run_dir, "key", "sparsity_coefficient").unwrap();
    assert!(
        (old - 0.001).abs() < 1e-12 && (new - 0.00125).abs() < 1e-12,
        "{old} -> {new}"
    );
    // an edit of the run's config.toml is applied and shown
    replace_line(&run_dir.join("config.toml"), "lr = ", "lr = 0.0005");
    wait_until(
        "the config.toml edit in metrics.jsonl",
        || change(&run_dir, "file", "lr").is_some(),
        || t.screen(),
    );
    assert_eq!(change(&run_dir, "file", "lr"), Some((0.0002, 0.0005)));
    t.wait("the edit in the event log", |s| {
        s.contains("[file] lr: 0.0002 -> 0.0005")
    });
    // q asks; y stops with a checkpoint; the terminal is given back
    t.keys("q");
    t.wait("the quit question", |s| {
        s.contains("stop with a checkpoint")
    });
    t.keys("y");
    let s = t.wait("the run to end", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=130"), "{s}");
    assert!(s.contains("stopped at step"), "{s}");
    assert!(
        !s.contains("hyperparameters"),
        "the screen was not restored:\n{s}"
    );
    let stop = records(&run_dir, "stop");
    assert_eq!(stop.len(), 1);
    let ck = jumpscope::train::checkpoint::list(&run_dir);
    assert_eq!(ck.last().map(|c| c.0), Some(stop[0].step()), "{ck:?}");
}

#[test]
fn sigterm_and_sighup_under_the_screen_checkpoint_first() {
    let d = tempdir().unwrap();
    let (cfg, run_dir) = long_run(d.path(), 50);
    let t = Tmux::start(
        "term",
        &format!("{} train --config {}", binary(), cfg.display()),
    );
    t.wait("the training screen", |s| s.contains("state training"));
    // the whole command line, so that the shell around it is not signalled too
    let killed = Command::new("pkill")
        .args([
            "-TERM",
            "-x",
            "-f",
            &format!("{} train --config {}", binary(), cfg.display()),
        ])
        .status()
        .unwrap();
    assert!(killed.success(), "pkill found the run");
    let s = t.wait("the run to end", |s| s.contains("EXIT="));
    assert!(
        s.contains("EXIT=130") && s.contains("stopped at step"),
        "{s}"
    );
    assert!(
        !s.contains("hyperparameters"),
        "the screen was not restored:\n{s}"
    );
    assert_eq!(jumpscope::train::checkpoint::list(&run_dir).len(), 1);
    let stopped_at = records(&run_dir, "stop")[0].step();

    // resumed under the screen: the run's history is there from the start (its first events,
    // the checkpoint it resumes from), not an empty screen
    let tr = Tmux::start(
        "resumed",
        &format!("{} train --resume {}", binary(), run_dir.display()),
    );
    let s = tr.wait("the resumed screen", |s| s.contains("resumed from"));
    assert!(
        s.contains("started: jumprelu SAE"),
        "the history's events:\n{s}"
    );
    assert!(
        s.contains(&format!("checkpoint step {stopped_at}")),
        "the last checkpoint is known:\n{s}"
    );
    tr.keys("q");
    tr.wait("the quit question", |s| {
        s.contains("stop with a checkpoint")
    });
    tr.keys("y");
    let s = tr.wait("the resumed run to end", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=130"), "{s}");

    // an SSH drop: the terminal goes away under the running screen
    let d2 = tempdir().unwrap();
    let (cfg2, run2) = long_run(d2.path(), 50);
    let t2 = Tmux::start(
        "hup",
        &format!("{} train --config {}", binary(), cfg2.display()),
    );
    t2.wait("the training screen", |s| s.contains("state training"));
    drop(t2); // kill-server: SIGHUP to the pane's processes
    wait_until(
        "a checkpoint after SIGHUP",
        || try_log(&run2).is_some_and(|l| l.iter().any(|r| r.kind() == "stop")),
        || std::fs::read_to_string(run2.join("metrics.jsonl")).unwrap_or_default(),
    );
    let stop = &records(&run2, "stop")[0];
    let ck = jumpscope::train::checkpoint::list(&run2);
    assert_eq!(ck.last().map(|c| c.0), Some(stop.step()), "{ck:?}");

    // the terminal goes away but no SIGHUP arrives (the shell around us ignores it and stays):
    // the screen notices the hung-up terminal itself
    let d3 = tempdir().unwrap();
    let (cfg3, run3) = long_run(d3.path(), 50);
    let t3 = Tmux::start(
        "gone",
        &format!(
            // `exit`: this shell ignores SIGHUP, so it must not linger in the pane's `sleep`
            "trap '' HUP; {} train --config {}; exit",
            binary(),
            cfg3.display()
        ),
    );
    t3.wait("the training screen", |s| s.contains("state training"));
    drop(t3);
    wait_until(
        "a checkpoint after the terminal vanished",
        || try_log(&run3).is_some_and(|l| l.iter().any(|r| r.kind() == "stop")),
        || std::fs::read_to_string(run3.join("metrics.jsonl")).unwrap_or_default(),
    );
    assert_eq!(jumpscope::train::checkpoint::list(&run3).len(), 1);
}

#[test]
fn watch_attaches_to_a_headless_run_and_steers_it() {
    let d = tempdir().unwrap();
    let (cfg, run_dir) = long_run(d.path(), 200);
    let mut run = spawn_training(&cfg, &run_dir, 1);
    let t = Tmux::start(
        "watch",
        &format!("{} watch {}", binary(), run_dir.display()),
    );
    let s = t.wait("the watch screen", |s| {
        s.contains("watching, last record") && s.contains("state training")
    });
    let first = shown_step(&s).unwrap();
    t.wait("the step to advance", |s| {
        shown_step(s).is_some_and(|n| n > first)
    });
    // λ stepped up here goes through config.toml to the training process
    t.keys("l");
    wait_until(
        "λ changed through config.toml",
        || change(&run_dir, "file", "sparsity_coefficient").is_some(),
        || t.screen(),
    );
    let (old, new) = change(&run_dir, "file", "sparsity_coefficient").unwrap();
    assert!(
        (old - 0.001).abs() < 1e-12 && (new - 0.00125).abs() < 1e-12,
        "{old} -> {new}"
    );
    t.wait("the change, read back from metrics.jsonl", |s| {
        s.contains("[file] sparsity_coefficient")
    });
    // leaving the viewer leaves the run alone
    t.keys("q");
    let s = t.wait("the viewer to close", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(run.running(), "the run goes on");
    assert_eq!(run.terminate(), Some(130));
}

#[test]
fn a_panic_restores_the_terminal_and_a_screen_panic_checkpoints_first() {
    // the screen's own thread panics: the terminal comes back, the trainer stops with a
    // checkpoint, and the process exits 101 with the panic message
    let d = tempdir().unwrap();
    let (cfg, run_dir) = long_run(d.path(), 50);
    let t = Tmux::start(
        "ui-panic",
        &format!(
            "JUMPSCOPE_TEST_PANIC=ui RUST_BACKTRACE=0 {} train --config {}",
            binary(),
            cfg.display()
        ),
    );
    let s = t.wait("the run to end", |s| s.contains("EXIT="));
    assert!(s.contains("injected by JUMPSCOPE_TEST_PANIC=ui"), "{s}");
    assert!(s.contains("training stopped with a checkpoint"), "{s}");
    assert!(
        !s.contains("hyperparameters"),
        "the screen was not restored:\n{s}"
    );
    let stop = records(&run_dir, "stop");
    assert_eq!(stop.len(), 1, "a stop record");
    let ck = jumpscope::train::checkpoint::list(&run_dir);
    assert_eq!(ck.last().map(|c| c.0), Some(stop[0].step()));

    // the trainer panics: the screen says so and stays until q; then the message, exit 101
    let d2 = tempdir().unwrap();
    let (cfg2, _) = long_run(d2.path(), 50);
    let t2 = Tmux::start(
        "trainer-panic",
        &format!(
            "JUMPSCOPE_TEST_PANIC=trainer RUST_BACKTRACE=0 {} train --config {}",
            binary(),
            cfg2.display()
        ),
    );
    t2.wait("the failed state", |s| {
        s.contains("state failed") && s.contains("the trainer panicked")
    });
    t2.keys("q");
    let s = t2.wait("the run to end", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=101"), "{s}");
    assert!(s.contains("the trainer panicked: injected"), "{s}");
    assert!(
        !s.contains("hyperparameters"),
        "the screen was not restored:\n{s}"
    );
}

#[test]
fn the_inspection_screen_in_a_real_terminal() {
    let d = tempdir().unwrap();
    crate::inspect::write_inputs(d.path(), &crate::inspect::case());
    let t = Tmux::start(
        "inspect",
        &format!(
            "{} inspect {} --store {}",
            binary(),
            d.path().join("params.npz").display(),
            d.path().join("store.h5").display()
        ),
    );
    // every pane, in one capture (a capture can catch a frame half drawn)
    let parts = [
        "features: 24 of 24",
        "top activations",
        "nearest features",
        "▲ θ",
        "density",
    ];
    t.wait("the inspection screen with all its panes", |s| {
        parts.iter().all(|p| s.contains(p))
    });
    // jump to feature 3; its contexts show the vocabulary's words
    t.key_burst(&["/", "3", "Enter"]);
    t.wait("feature 3 selected", |s| {
        s.contains("┌ feature 3 ┐") || s.contains("┌ feature 3 ─")
    });
    // filter to the dead features: the one that never fires is listed
    t.key_burst(&["/", "d", "e", "a", "d", "Enter"]);
    let s = t.wait("the dead filter", |s| s.contains("(dead)"));
    assert!(s.contains("never fired on this store"), "{s}");
    t.keys("q");
    let s = t.wait("the screen to close", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(
        !s.contains("nearest features"),
        "the screen was not restored:\n{s}"
    );

    // SIGTERM closes it cleanly too
    let cmd = format!(
        "{} inspect {} --store {}",
        binary(),
        d.path().join("params.npz").display(),
        d.path().join("store.h5").display()
    );
    let t = Tmux::start("inspect-term", &cmd);
    t.wait("the inspection screen", |s| {
        s.contains("features: 24 of 24")
    });
    let killed = Command::new("pkill")
        .args(["-TERM", "-x", "-f", &cmd])
        .status()
        .unwrap();
    assert!(killed.success());
    let s = t.wait("the screen to close", |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(
        !s.contains("nearest features"),
        "the screen was not restored:\n{s}"
    );
}

#[test]
fn a_sweep_runs_under_its_screen_member_by_member() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(8192, 3));
    let out = d.path().join("sw");
    let cfg = d.path().join("sw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 64\nk = 8\n\
             [train]\nsteps = 100000000\nlog_every = 20\ncheckpoint_every = 0\nlr = 0.0002\n\
             [run]\nout = \"{}\"\n[sweep]\n\
             vary = {{ \"train.sparsity_coefficient\" = [0.001, 0.01], \"sae.architecture\" = [\"jumprelu\", \"topk\"] }}\n",
            store.display(),
            out.display()
        ),
    )
    .unwrap();
    let t = Tmux::start(
        "sweep",
        &format!("{} sweep --config {}", binary(), cfg.display()),
    );
    let s = t.wait("the member table with reports", |s| {
        s.contains("sweep sw") && s.contains("arch=topk") && s.contains("L0 (log)")
    });
    assert!(s.contains("3 running"), "{s}");
    // open the second member's training screen, and come back
    t.keys("j");
    t.keys("Enter");
    t.wait("the member's screen", |s| {
        s.contains("member 2/3") && s.contains("Esc: sweep")
    });
    t.keys("Escape");
    t.wait("the table again", |s| s.contains("members (FVU"));
    // stop the selected member (it asks first)
    t.keys("x");
    t.wait("the question", |s| s.contains("with a checkpoint?"));
    t.keys("y");
    t.wait("one member stopped", |s| s.contains("1 stopped"));
    // q asks, y stops every member with a checkpoint and leaves with 130
    t.keys("q");
    t.wait("the quit question", |s| s.contains("stop the sweep"));
    t.keys("y");
    t.wait("the exit", |s| s.contains("EXIT=130"));
    let recs = jumpscope::schema::sweep::read(&out.join("sweep.jsonl")).unwrap();
    assert!(
        matches!(
            recs.last(),
            Some(jumpscope::schema::sweep::SweepRecord::Stop { .. })
        ),
        "{recs:?}"
    );
    for m in [
        "arch=jumprelu,lambda=1e-3",
        "arch=jumprelu,lambda=0.01",
        "arch=topk",
    ] {
        assert_eq!(
            records(&out.join(m), "stop").len(),
            1,
            "{m}: stopped with a checkpoint"
        );
    }
}

#[test]
fn watch_follows_a_headless_sweep_and_leaves_it_running() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(8192, 3));
    let out = d.path().join("sw");
    let cfg = d.path().join("sw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 64\n\
             [train]\nsteps = 100000000\nlog_every = 20\ncheckpoint_every = 0\nlr = 0.0002\n\
             [run]\nout = \"{}\"\n[sweep]\nvary = {{ \"train.lr\" = [0.0002, 0.001] }}\n",
            store.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut sweep = crate::common::Reaped(
        Command::new(binary())
            .args(["sweep", "--config", cfg.to_str().unwrap(), "--headless"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let member = out.join("lr=1e-3");
    wait_until(
        "the sweep's first reports",
        || try_log(&member).is_some_and(|l| l.iter().any(|r| matches!(r, Record::Metrics(_)))),
        || "no metrics in the member's log".into(),
    );
    let t = Tmux::start(
        "watch-sweep",
        &format!("{} watch {}", binary(), out.display()),
    );
    let s = t.wait("the sweep's members", |s| {
        s.contains("sweep sw") && s.contains("lr=2e-4") && s.contains("lr=1e-3")
    });
    assert!(s.contains("2 running"), "{s}");
    // stop is the sweep's own process's: here it is refused with a note
    t.keys("x");
    t.wait("the refusal", |s| s.contains("pause, checkpoint and stop"));
    // q leaves the viewer at once; the sweep goes on
    t.keys("q");
    t.wait("the viewer's exit", |s| s.contains("EXIT=0"));
    assert!(sweep.try_wait().unwrap().is_none(), "the sweep still runs");
    let _ = sweep.kill();
    let _ = sweep.wait();
}

#[test]
fn a_sweep_with_the_model_in_the_loop_shows_its_delta_lm_and_charts_it_on_y() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(8192, 3));
    let python = crate::lm_eval::fake_companion(d.path(), 0.0, false);
    let ids = d.path().join("ids.npy");
    std::fs::write(&ids, b"not read by the stand-in").unwrap();
    let out = d.path().join("sw");
    let cfg = d.path().join("sw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 64\n\
             [train]\nsteps = 100000000\nlog_every = 20\ncheckpoint_every = 0\nlr = 0.0002\n\
             [lm_eval]\nmodel = \"org/stand-in\"\nlayer = 0\nsite = \"resid_post\"\n\
             token_ids = \"{}\"\nevery = 50\npython = \"{}\"\n\
             [run]\nout = \"{}\"\n[sweep]\n\
             vary = {{ \"train.sparsity_coefficient\" = [0.001, 0.01] }}\n",
            store.display(),
            ids.display(),
            python.display(),
            out.display()
        ),
    )
    .unwrap();
    let t = Tmux::start(
        "sweep-lm",
        &format!("{} sweep --config {}", binary(), cfg.display()),
    );
    // the stand-in reports ce_spliced 2.5 against ce_clean 2.0: ΔLM +0.5000 per member
    let s = t.wait("the ΔLM column with an evaluation", |s| {
        s.contains("ΔLM") && s.contains("+0.5000")
    });
    assert!(s.contains("L0 (log) × FVU"), "{s}");
    t.keys("y");
    t.wait("the frontier by ΔLM loss", |s| {
        s.contains("L0 (log) × ΔLM loss") && s.contains(" ΔLM│")
    });
    t.keys("y");
    t.wait("and back", |s| s.contains("L0 (log) × FVU"));
    t.keys("q");
    t.wait("the quit question", |s| s.contains("stop the sweep"));
    t.keys("y");
    t.wait("the exit", |s| s.contains("EXIT=130"));
}
