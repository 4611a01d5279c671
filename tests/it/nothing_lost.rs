//! Nothing lost (through the binary): an export never deletes what is not a saved SAE, never
//! writes into or over its own run, and replaces a saved SAE only with `--force`.

use crate::common::*;
use std::path::Path;
use std::process::Command;
use tempfile::tempdir;

/// Every file under `dir`, with its bytes.
fn tree(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn export_never_deletes_what_is_not_a_saved_sae_nor_touches_its_run() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    let ckpt = run_dir.join("checkpoints").join("step-20");
    let before = tree(&run_dir);
    let export = |src: &Path, dest: &Path, force: bool| {
        let mut args = vec!["export", src.to_str().unwrap(), dest.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        run(&args)
    };
    // the run itself, inside it (its own sae/ too), a directory holding it: refused, untouched
    for (src, dest, needle) in [
        (&run_dir, run_dir.clone(), "into the run"),
        (&ckpt, run_dir.clone(), "into the run"),
        (&run_dir, run_dir.join("sae"), "into the run"),
        (&run_dir, run_dir.join("checkpoints"), "into the run"),
        (&ckpt, d.path().to_path_buf(), "into the run"),
        (&run_dir, run_dir.join("..").join("run"), "into the run"),
    ] {
        let o = export(src, &dest, true);
        assert_user_error(&o, &[needle]);
    }
    assert_eq!(tree(&run_dir), before, "the run is untouched");

    // a foreign directory with files: refused, with or without --force
    let foreign = d.path().join("notes");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), "months of work").unwrap();
    for force in [false, true] {
        assert_user_error(
            &export(&ckpt, &foreign, force),
            &["not an empty directory or a saved SAE"],
        );
    }
    assert_eq!(
        std::fs::read(foreign.join("thesis.tex")).unwrap(),
        b"months of work"
    );
    // a file: refused
    let file = d.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert_user_error(&export(&ckpt, &file, true), &["a-file"]);

    // a new or empty directory: written
    let fresh = d.path().join("out");
    assert_eq!(export(&ckpt, &fresh, false).status.code(), Some(0));
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(export(&ckpt, &empty, false).status.code(), Some(0));
    assert!(empty.join("sae_weights.safetensors").is_file());
    // a saved SAE: only with --force
    assert_user_error(
        &export(&ckpt, &fresh, false),
        &["already holds a saved SAE", "--force"],
    );
    let first = run_dir.join("checkpoints").join("step-10");
    let o = export(&first, &fresh, true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fresh.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(
        meta["metadata"]["step"], 10,
        "replaced by the step-10 export"
    );
}

#[test]
fn an_empty_run_out_is_refused_for_runs_and_sweeps() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 3));
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\n[run]\nout = \"\"\n",
            store.display()
        ),
    );
    let cwd = d.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let o = bin()
        .current_dir(&cwd)
        .args(["train", "--config", cfg.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    assert_user_error(&o, &["run.out = \"\"", "expected a directory path"]);
    let o = bin()
        .current_dir(&cwd)
        .args([
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--headless",
            "--out",
            "",
        ])
        .output()
        .unwrap();
    assert_user_error(&o, &["--out"]);
    let sweep = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\n[run]\nout = \"\"\n[sweep]\nvary = {{ \"train.lr\" = [1e-3, 1e-4] }}\n",
            store.display()
        ),
    );
    let o = bin()
        .current_dir(&cwd)
        .args(["sweep", "--config", sweep.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    assert_user_error(&o, &["run.out", "expected a directory path"]);
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn a_torn_last_log_line_is_cut_on_resume_and_skipped_by_readers() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    // a disk that filled in the middle of a record
    let log_path = run_dir.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    use std::io::Write;
    f.write_all(br#"{"type":"metrics","step":11,"tok"#).unwrap();
    drop(f);
    // readers skip it, doctor says so
    let o = run(&["doctor", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["compare", run_dir.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // a complete but broken last line too
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    let o = run(&["doctor", run_dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("is not a whole record") && text.contains("skipped"),
        "{text}"
    );
    // resume continues on a clean line: the log reads whole afterwards
    let before = std::fs::read(&log_path).unwrap();
    let o = run(&[
        "train",
        "--resume",
        run_dir.to_str().unwrap(),
        "--headless",
        "--set",
        "train.steps=25",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (recs, note) =
        jumpscope::schema::record::read_log_noting(&log_path).expect("the log reads whole");
    assert!(note.is_none(), "{note:?}");
    assert!(
        recs.iter()
            .any(|r| matches!(r, Record::Resume { step: 20, .. }))
    );
    assert!(matches!(recs.last(), Some(Record::Finish { step: 25, .. })));
    let after = std::fs::read_to_string(&log_path).unwrap();
    let kept = String::from_utf8_lossy(&before);
    let cut = kept.rfind("{\"type\":\"metrics\",\"step\":11").unwrap();
    assert!(
        after.starts_with(&kept[..cut]),
        "the whole lines before the torn one are kept"
    );
}

#[test]
fn one_writer_per_run_directory_and_readers_keep_working() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(2000, 3));
    let (cfg, run_dir) = endless_run(d.path(), &store, 5, "", "");
    let first = spawn_training(&cfg, &run_dir, 2);
    let pid = first.id().to_string();
    // a second train into the same directory, and a resume of it: refused, naming the writer
    let o = run(&["train", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_user_error(
        &o,
        &["another jumpscope process", &format!("pid {pid}"), "watch"],
    );
    let o = run(&["train", "--resume", run_dir.to_str().unwrap(), "--headless"]);
    assert_user_error(&o, &[&format!("pid {pid}")]);
    // the readers work while it trains
    let o = run(&["doctor", run_dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["compare", run_dir.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // one start record: the refused processes wrote nothing
    let starts = records(&run_dir, "start").len();
    assert_eq!(starts, 1);
    assert_eq!(first.terminate(), Some(130));
    // once it has ended, resume takes the directory
    let mut again = Reaped(
        bin()
            .args(["train", "--resume", run_dir.to_str().unwrap(), "--headless"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(30, || records(&run_dir, "resume").len() == 1));
    let _ = again.kill();
    let _ = again.wait();
}

#[test]
fn one_writer_per_sweep_directory() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(2000, 3));
    let out = d.path().join("sw");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\n[train]\nsteps = 100000000\nlog_every = 5\ncheckpoint_every = 20\n[run]\nout = \"{}\"\n[sweep]\nvary = {{ \"train.lr\" = [1e-3, 1e-4] }}\n",
            store.display(),
            out.display()
        ),
    );
    let log = d.path().join("sweep.stderr");
    let mut first = Reaped(
        bin()
            .args(["sweep", "--config", cfg.to_str().unwrap(), "--headless"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let has_checkpoint = || {
        std::fs::read_to_string(out.join("sweep.jsonl"))
            .is_ok_and(|t| t.contains("\"type\":\"checkpoint\""))
    };
    assert!(
        wait_for(60, has_checkpoint),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pid = first.id().to_string();
    let o = run(&["sweep", "--resume", out.to_str().unwrap(), "--headless"]);
    assert_user_error(&o, &["another jumpscope process", &format!("pid {pid}")]);
    // a member's own directory is the sweep's while it runs
    let member = out.join("lr=1e-3");
    let o = run(&["train", "--resume", member.to_str().unwrap(), "--headless"]);
    assert_user_error(&o, &[&format!("pid {pid}")]);
    let _ = first.kill();
    let _ = first.wait();
}

/// A sweep of two members in `dir/sw` that trains until stopped, checkpointing every 10 stream
/// steps and keeping one checkpoint per member; the command's arguments, run from `dir`.
fn endless_sweep(dir: &Path, keep: usize) -> Vec<String> {
    let store = dir.join("s.h5");
    synth_store(&store, &small_spec(2000, 3));
    // the store by its full path (data paths are the working directory's); `out` relative
    std::fs::write(
        dir.join("sweep.toml"),
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\n\
             [train]\nsteps = 100000000\nlog_every = 5\ncheckpoint_every = 10\nkeep_checkpoints = {keep}\n\
             [run]\nout = \"sw\"\n[sweep]\nvary = {{ \"train.lr\" = [1e-3, 1e-4] }}\n",
            store.display()
        ),
    )
    .unwrap();
    ["sweep", "--config", "sweep.toml", "--headless"]
        .map(String::from)
        .to_vec()
}

/// The sweep checkpoint records of `sweep.jsonl` so far.
fn sweep_checkpoints(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("sweep.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "checkpoint")
        .collect()
}

#[test]
fn a_sweep_keeping_one_checkpoint_resumes_after_every_kill() {
    let d = tempdir().unwrap();
    let start = endless_sweep(d.path(), 1);
    let out = d.path().join("sw");
    let resume = ["sweep", "--resume", "sw", "--headless"]
        .map(String::from)
        .to_vec();
    for round in 0..4 {
        let args = if round == 0 { &start } else { &resume };
        let before = sweep_checkpoints(&out).len();
        let mut child = Reaped(
            bin()
                .current_dir(d.path())
                .args(args)
                .stderr(
                    std::fs::File::create(d.path().join(format!("round{round}.stderr"))).unwrap(),
                )
                .spawn()
                .unwrap(),
        );
        // a few sweep checkpoints in, at a moment of its own choosing: kill -9
        assert!(
            wait_for(60, || sweep_checkpoints(&out).len() >= before + 2 + round),
            "round {round}: {}",
            std::fs::read_to_string(d.path().join(format!("round{round}.stderr"))).unwrap()
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // the last record's checkpoints are all there (relative to the sweep directory)
        let last = sweep_checkpoints(&out).pop().unwrap();
        for (name, p) in last["members"].as_object().unwrap() {
            let p = Path::new(p.as_str().unwrap());
            assert!(p.is_relative() && p.starts_with(name), "{p:?}");
            assert!(
                out.join(p).join("state.json").is_file(),
                "round {round}: {name}: {p:?} is gone"
            );
        }
    }
    // and the last resume went on from it
    let o = std::fs::read_to_string(d.path().join("round3.stderr")).unwrap();
    assert!(!o.contains("error"), "{o}");
}

#[test]
fn a_sweep_resumes_from_any_working_directory_and_reads_old_records() {
    let d = tempdir().unwrap();
    let start = endless_sweep(d.path(), 3);
    let out = d.path().join("sw");
    let mut child = Reaped(
        bin()
            .current_dir(d.path())
            .args(&start)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(60, || sweep_checkpoints(&out).len() >= 2));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // an older version's records: member paths relative to the command's working directory
    let log = out.join("sweep.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replace(":\"lr=", ":\"elsewhere/sw/lr=")).unwrap();
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("elsewhere/sw/lr=1e-3/checkpoints")
    );
    // resumed from another directory, by the sweep's absolute path
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let mut again = Reaped(
        bin()
            .current_dir(&other)
            .args(["sweep", "--resume", out.to_str().unwrap(), "--headless"])
            .stderr(std::fs::File::create(d.path().join("again.stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let resumed = || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"type\":\"resume\""));
    assert!(
        wait_for(60, resumed),
        "{}",
        std::fs::read_to_string(d.path().join("again.stderr")).unwrap()
    );
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(again.wait().unwrap().code(), Some(130));

    // a member's checkpoint that the last record names is gone: the resume goes back to the
    // newest sweep checkpoint every member still has, and says so
    let records = sweep_checkpoints(&out);
    let last = &records[records.len() - 1];
    let gone = last["members"]["lr=1e-3"].as_str().unwrap().to_string();
    let gone = out
        .join("lr=1e-3")
        .join("checkpoints")
        .join(Path::new(&gone).file_name().unwrap());
    std::fs::remove_dir_all(&gone).unwrap();
    // the newest record all of whose checkpoints are still there (two records can name the
    // same step when a stop came right after a periodic checkpoint)
    let whole = |r: &serde_json::Value| {
        r["members"].as_object().unwrap().iter().all(|(name, p)| {
            let step = Path::new(p.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_owned();
            out.join(name)
                .join("checkpoints")
                .join(step)
                .join("state.json")
                .is_file()
        })
    };
    let previous = records
        .iter()
        .rev()
        .find(|r| whole(r))
        .expect("an older whole record")
        .clone();
    let mut third = Reaped(
        bin()
            .current_dir(&other)
            .args(["sweep", "--resume", out.to_str().unwrap(), "--headless"])
            .stderr(std::fs::File::create(d.path().join("third.stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let said = || {
        std::fs::read_to_string(d.path().join("third.stderr"))
            .is_ok_and(|t| t.contains("continuing from the newest one every member has whole"))
    };
    assert!(
        wait_for(60, said),
        "{}",
        std::fs::read_to_string(d.path().join("third.stderr")).unwrap()
    );
    Command::new("kill")
        .args(["-TERM", &third.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(third.wait().unwrap().code(), Some(130));
    let resumes: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "resume")
        .collect();
    let listing = |m: &str| {
        let mut v: Vec<String> = std::fs::read_dir(out.join(m).join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        resumes.last().unwrap()["step"],
        previous["step"],
        "resumes {resumes:?}\nrecords {records:?}\nremoved {gone:?}\nnow {:?} {:?}\n{}",
        listing("lr=1e-3"),
        listing("lr=1e-4"),
        std::fs::read_to_string(d.path().join("third.stderr")).unwrap()
    );
}

#[test]
fn non_regular_files_are_refused_before_they_are_opened() {
    let d = tempdir().unwrap();
    let fifo = d.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 3));
    let good = config(
        d.path(),
        &format!("[data]\nstores = [\"{}\"]\n", store.display()),
    );
    // a run finished, for inspect's --vocab
    let r = d.path().join("r");
    std::fs::create_dir_all(&r).unwrap();
    let (run_dir, _) = finished_run(&r);
    for (args, needle) in [
        (
            vec!["train", "--config", fifo.to_str().unwrap(), "--headless"],
            "a fifo, not a regular file",
        ),
        (
            vec!["train", "--config", "/dev/zero", "--headless"],
            "a device, not a regular file",
        ),
        (
            vec!["sweep", "--config", fifo.to_str().unwrap(), "--headless"],
            "a fifo",
        ),
        (
            vec![
                "train",
                "--config",
                good.to_str().unwrap(),
                "--headless",
                "--set",
                &format!("data.stores=[\"{}\"]", fifo.display()),
            ],
            "a fifo",
        ),
        (vec!["store", "info", "/dev/zero"], "a device"),
        (
            vec![
                "inspect",
                run_dir.join("sae").to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
                "--vocab",
                fifo.to_str().unwrap(),
                "--json",
            ],
            "a fifo",
        ),
    ] {
        let o = bin().args(&args).output().unwrap();
        assert_user_error(&o, &[needle]);
    }
}

#[test]
fn sizes_no_machine_holds_are_refused_in_one_line() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 3));
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\n[run]\nout = \"{}\"\n",
            store.display(),
            d.path().join("r").display()
        ),
    );
    for (set, needle) in [
        (
            "sae.d_sae=2305843009213693952",
            "sae.d_sae = 2305843009213693952: expected at most 2147483648",
        ),
        ("sae.expansion_factor=1e30", "sae.expansion_factor"),
        (
            "data.batch_size=4611686018427387904",
            "data.batch_size = 4611686018427387904: expected at most",
        ),
        // within the bounds, but more than this machine has: the memory check, with real numbers
        ("sae.d_sae=2147483648", "GiB"),
        ("sae.expansion_factor=1e15", "sae.expansion_factor"),
    ] {
        let o = run(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--headless",
            "--set",
            set,
        ]);
        assert_user_error(&o, &[needle]);
    }
}

#[test]
fn an_error_says_its_cause_once() {
    let d = tempdir().unwrap();
    let missing = d.path().join("missing.toml");
    let o = run(&["train", "--config", missing.to_str().unwrap(), "--headless"]);
    assert_user_error(&o, &["missing.toml"]);
    assert_eq!(
        stderr(&o).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn eval_of_a_store_with_no_finite_row_is_refused() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    let nan = d.path().join("nan.h5");
    h5py_activations(&nan, "x = np.full((64, 16), np.nan, dtype=np.float32)");
    let o = run(&[
        "eval",
        run_dir.join("sae").to_str().unwrap(),
        "--store",
        nan.to_str().unwrap(),
        "--json",
    ]);
    assert_user_error(&o, &["nan.h5", "every one of its 64 rows has NaN or Inf"]);
}

#[test]
fn a_headless_run_and_sweep_whose_output_pipe_closes_finish_their_work() {
    use std::io::BufRead;
    use std::process::Stdio;
    let d = tempdir().unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let store = root.join("sample_data/synth.h5");
    let sweep_cfg = d.path().join("sweep.toml");
    std::fs::write(
        &sweep_cfg,
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 256\n[sae]\nd_sae = 64\n\
             [train]\nsteps = 300\nlog_every = 10\n\
             [sweep]\nvary = {{ \"train.sparsity_coefficient\" = [1e-3, 1e-2] }}\n",
            store.display()
        ),
    )
    .unwrap();
    for (what, args) in [
        (
            "train",
            vec![
                "train".to_string(),
                "--config".into(),
                root.join("sample_data/demo.toml").display().to_string(),
                "--out".into(),
                d.path().join("run").display().to_string(),
                "--set".into(),
                "train.steps=400".into(),
                "--set".into(),
                format!("data.stores=[\"{}\"]", store.display()),
            ],
        ),
        (
            "sweep",
            vec![
                "sweep".to_string(),
                "--config".into(),
                sweep_cfg.display().to_string(),
                "--out".into(),
                d.path().join("sweep").display().to_string(),
            ],
        ),
    ] {
        // `jumpscope … 2>&1 | head -1`: the reader goes away after one line
        let mut child = Reaped(
            bin()
                .args(&args)
                .arg("--headless")
                .current_dir(&root)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut first = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "{what}: a closed output is no reason to fail (first line: {first})"
        );
    }
    assert!(
        d.path().join("run/sae").is_dir(),
        "the run finished its work"
    );
    assert!(
        std::fs::read_to_string(d.path().join("sweep/sweep.jsonl"))
            .unwrap()
            .contains("\"finish\""),
        "the sweep finished its work"
    );
}
