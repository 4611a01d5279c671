//! Resume and directories never lose the user's intent (through the binary): edits of a stopped
//! run's config.toml apply on resume or are refused, `--resume --set` extends a run, a finished
//! run or sweep resumed is left as it is, and `--out` never lands in a sweep or a foreign
//! directory.

use crate::common::*;
use std::path::Path;
use tempfile::tempdir;

fn resume(run_dir: &Path, sets: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--resume", run_dir.to_str().unwrap(), "--headless"];
    for s in sets {
        args.extend(["--set", s]);
    }
    run(&args)
}

/// The run log's `hyper` records as JSON.
fn hyper_records(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "hyper")
        .collect()
}

#[test]
fn edits_of_a_stopped_runs_config_apply_on_resume_and_others_are_refused() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // a structural key: refused in one line, nothing written
    let log_before = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();
    std::fs::write(&path, text.replace("batch_size = 64", "batch_size = 32")).unwrap();
    let o = resume(&run_dir, &[]);
    assert_user_error(
        &o,
        &["config.toml", "data.batch_size", "cannot change on resume"],
    );
    assert_eq!(
        std::fs::read(run_dir.join("metrics.jsonl")).unwrap(),
        log_before
    );
    // a live key and the length: applied and logged as an edit from the file
    let edited = text
        .replace("steps = 20", "steps = 30")
        .replace("\nlr = 0.00007\n", "\nlr = 0.0001\n");
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();
    let o = resume(&run_dir, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h = hyper_records(&run_dir);
    let last = h.last().expect("an edit logged");
    assert_eq!(last["source"], "file", "{last}");
    assert_eq!(last["changes"]["steps"]["new"], 30, "{last}");
    assert_eq!(last["changes"]["lr"]["new"], 0.0001, "{last}");
    assert!(matches!(
        log(&run_dir).last(),
        Some(Record::Finish { step: 30, .. })
    ));
    // the file shows what is in force
    let now = std::fs::read_to_string(&path).unwrap();
    assert!(
        now.contains("steps = 30") && now.contains("lr = 0.0001"),
        "{now}"
    );
}

#[test]
fn resume_with_set_extends_a_finished_run_and_a_finished_run_is_left_alone() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    // finished: said so, exit 0, nothing appended
    let log_before = std::fs::read(run_dir.join("metrics.jsonl")).unwrap();
    let o = resume(&run_dir, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("already finished at step 20") && out.contains("--set train.steps"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(run_dir.join("metrics.jsonl")).unwrap(),
        log_before
    );
    // --set train.steps extends it; a live key too; each logged with source "set"
    let o = resume(
        &run_dir,
        &["train.steps=26", "train.sparsity_coefficient=0.5"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h = hyper_records(&run_dir);
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(h.iter().all(|r| r["source"] == "set"));
    assert_eq!(h[0]["changes"]["steps"]["new"], 26);
    assert_eq!(h[1]["changes"]["sparsity_coefficient"]["new"], 0.5);
    assert!(matches!(
        log(&run_dir).last(),
        Some(Record::Finish { step: 26, .. })
    ));
    // a structural --set is refused and blamed on --set
    let o = resume(&run_dir, &["sae.d_sae=64"]);
    assert_user_error(&o, &["--set sae.d_sae=64", "cannot change on resume"]);
}

#[test]
fn a_finished_sweep_resumed_is_left_alone() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(600, 3));
    let out = d.path().join("sw");
    let cfg = d.path().join("sweep.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\n\
             [train]\nsteps = 10\ncheckpoint_every = 5\n[run]\nout = \"{}\"\n\
             [sweep]\nvary = {{ \"train.lr\" = [1e-3, 1e-4] }}\n",
            store.display(),
            out.display()
        ),
    )
    .unwrap();
    let o = run(&["sweep", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = std::fs::read(out.join("sweep.jsonl")).unwrap();
    let o = run(&["sweep", "--resume", out.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("already finished (2 finished, 0 stopped, 0 failed)"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(out.join("sweep.jsonl")).unwrap(),
        before,
        "nothing appended"
    );
}

#[test]
fn a_run_is_never_started_in_a_sweep_or_a_foreign_directory() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(600, 3));
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\n[train]\nsteps = 5\n",
            store.display()
        ),
    );
    let sweep = d.path().join("sw");
    std::fs::create_dir_all(&sweep).unwrap();
    std::fs::write(sweep.join("sweep.toml"), "").unwrap();
    let o = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        sweep.to_str().unwrap(),
        "--headless",
    ]);
    assert_user_error(&o, &["sw", "is a sweep's directory"]);
    let foreign = d.path().join("mine");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let o = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        foreign.to_str().unwrap(),
        "--headless",
    ]);
    assert_user_error(&o, &["mine", "is not a run's directory", "notes.txt"]);
    // nothing was written in either
    assert_eq!(std::fs::read_dir(&sweep).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    // an empty directory is fine
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        empty.to_str().unwrap(),
        "--headless",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A finished run of `steps` steps on `store` (`d_sae` features) holding out its last 128 rows,
/// evaluated on them every 10 steps: the run directory and what the command printed.
fn train_holding_out(
    dir: &Path,
    store: &Path,
    d_sae: usize,
    steps: u64,
) -> (std::path::PathBuf, std::process::Output) {
    let run_dir = dir.join("run");
    let cfg = config(
        dir,
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\neval_tokens = 128\n[sae]\nd_sae = {d_sae}\n\
             [train]\nsteps = {steps}\neval_every = 10\ncheckpoint_every = 10\n[run]\nout = \"{}\"\n",
            store.display(),
            run_dir.display()
        ),
    );
    let o = run(&["train", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (run_dir, o)
}

/// The run's own newest held-out evaluation (its metrics.jsonl `eval` record).
fn own_held_out(run_dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["type"] == "eval")
        .expect("the run's held-out evaluation")["eval"]
        .clone()
}

/// A finished 20-step run holding out the store's last 128 rows, evaluated on them at step 20.
fn held_out_run(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let store = dir.join("s.h5");
    synth_store(&store, &small_spec(2000, 3));
    let (run_dir, o) = train_holding_out(dir, &store, 32, 20);
    // the closing line gives the final numbers, the held-out one too
    let all = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    let closing = all
        .lines()
        .find(|l| l.starts_with("done:"))
        .unwrap_or_default();
    assert!(
        closing.contains("final L0 ")
            && closing.contains("training FVU ")
            && closing.contains("held-out FVU "),
        "{all}"
    );
    (run_dir, store)
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn eval_and_compare_on_the_held_out_rows_give_the_runs_own_held_out_numbers() {
    let d = tempdir().unwrap();
    let (run_dir, store) = held_out_run(d.path());
    let (r, s) = (run_dir.to_str().unwrap(), store.to_str().unwrap());
    let own = own_held_out(&run_dir);
    assert_eq!(own["n_tokens"], 128);
    let e = json_of(&run(&["eval", r, "--store", s, "--held-out", "--json"]));
    assert_eq!(e["n_tokens"], 128);
    for k in ["fvu", "l0", "mse_raw", "mse_norm"] {
        let (a, b) = (e[k].as_f64().unwrap(), own[k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{k}: eval {a}, the run's own {b}");
    }
    // all rows differ: the held-out figure is not the whole store's
    let all = json_of(&run(&["eval", r, "--store", s, "--json"]));
    assert_eq!(all["n_tokens"], 2000);
    assert_ne!(all["fvu"], e["fvu"]);
    let c = json_of(&run(&["compare", r, "--store", s, "--held-out", "--json"]));
    assert_eq!(c[0]["basis"]["held_out"], true);
    assert!((c[0]["fvu"].as_f64().unwrap() - own["fvu"].as_f64().unwrap()).abs() < 1e-6);
    // a saved SAE alone has no run to say which rows were held out
    let alone = d.path().join("alone");
    let o = run(&["export", r, alone.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["eval", alone.to_str().unwrap(), "--store", s, "--held-out"]);
    assert_user_error(&o, &["--held-out needs a run's SAE"]);
    let o = run(&[
        "compare",
        alone.to_str().unwrap(),
        "--store",
        s,
        "--held-out",
    ]);
    assert_user_error(&o, &["--held-out needs runs"]);
}

#[test]
fn eval_and_inspect_take_a_run_directory_and_its_newest_checkpoint() {
    let d = tempdir().unwrap();
    let (run_dir, store) = held_out_run(d.path());
    let (r, s) = (run_dir.to_str().unwrap(), store.to_str().unwrap());
    let by_sae = json_of(&run(&["eval", &format!("{r}/sae"), "--store", s, "--json"]));
    let by_run = json_of(&run(&["eval", r, "--store", s, "--json"]));
    assert_eq!(by_run, by_sae, "a run is read through its sae/");
    let i = json_of(&run(&["inspect", r, "--store", s, "--json"]));
    assert!(
        i["sae"]["path"].as_str().unwrap().ends_with("run/sae"),
        "{}",
        i["sae"]
    );
    // while it trains (no sae/ yet): its newest checkpoint, the same SAE
    std::fs::remove_dir_all(run_dir.join("sae")).unwrap();
    let o = run(&["eval", r, "--store", s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("checkpoints/step-20"));
    let by_ckpt = json_of(&run(&["eval", r, "--store", s, "--json"]));
    for k in ["fvu", "l0", "mse_raw", "mse_norm"] {
        let (a, b) = (by_ckpt[k].as_f64().unwrap(), by_sae[k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{k}: {a} vs {b}");
    }
    let i = json_of(&run(&["inspect", r, "--store", s, "--json"]));
    assert!(
        i["sae"]["path"].as_str().unwrap().contains("step-20"),
        "{}",
        i["sae"]
    );
}

#[test]
fn a_reader_whose_output_pipe_closes_ends_quietly() {
    let d = tempdir().unwrap();
    let (run_dir, store) = held_out_run(d.path());
    let child = bin()
        .args([
            "inspect",
            run_dir.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    // the reader of its output goes away before it prints (as `| head -c 1` does)
    drop(child.stdout.take());
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{status:?}: {err}");
}

#[test]
fn eval_on_the_held_out_rows_leaves_out_what_the_stores_mask_leaves_out() {
    let d = tempdir().unwrap();
    // 64 sequences of 16: position 0 of each (BOS, say) is masked out of training
    let store = d.path().join("m.h5");
    h5py(&format!(
        "x = np.random.default_rng(1).standard_normal((64, 16, 8)).astype('f4')\n\
         x[:, 0, :] *= 30.0\n\
         m = np.ones((64, 16), dtype='u1'); m[:, 0] = 0\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x\n    f['mask'] = m\n",
        store.display()
    ));
    let (run_dir, _) = train_holding_out(d.path(), &store, 16, 10);
    let own = own_held_out(&run_dir);
    // 128 held-out positions, 8 of them masked
    assert_eq!(own["n_tokens"], 120);
    let (r, s) = (run_dir.to_str().unwrap(), store.to_str().unwrap());
    let e = json_of(&run(&["eval", r, "--store", s, "--held-out", "--json"]));
    assert_eq!(e["n_tokens"], 120, "{e}");
    for k in ["fvu", "l0", "mse_raw", "mse_norm"] {
        let (a, b) = (e[k].as_f64().unwrap(), own[k].as_f64().unwrap());
        // f32 sums over differently shaped products: equal to a few units in the last place
        assert!(
            (a - b).abs() < 1e-6 * a.abs().max(1.0),
            "{k}: eval {a}, the run's own {b}"
        );
    }
    // the whole store: every unmasked position
    let all = json_of(&run(&["eval", r, "--store", s, "--json"]));
    assert_eq!(all["n_tokens"], 64 * 15);
}
