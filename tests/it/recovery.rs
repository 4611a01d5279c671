//! Nothing lost, continued (through the binary): a store cut short under a running memory-mapped
//! read, checkpoints rewritten or damaged, directories holding no complete checkpoint, a run
//! directory deleted while it trains, and a run killed at random moments.

use crate::common::*;
use std::path::Path;
use tempfile::tempdir;

#[test]
fn a_contiguous_store_cut_short_under_its_map_stops_cleanly_with_a_checkpoint() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    // contiguous and unfiltered (h5py's default), so the rows are read in place from the map;
    // one shuffle block (8 Mi values) holds the whole store, and an epoch is 12,500 steps: the
    // block is mapped and its size checked once, then read from the map long after the cut, so
    // only the fault on the map can see it
    h5py_activations(
        &store,
        "x = np.random.default_rng(3).standard_normal((100000, 16)).astype('f4')",
    );
    let run_dir = d.path().join("run");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 8\n[sae]\nd_sae = 64\n\
             [train]\nsteps = 100000000\nlog_every = 5\ncheckpoint_every = 0\n[run]\nout = \"{}\"\n",
            store.display(),
            run_dir.display()
        ),
    );
    let child = spawn_training(&cfg, &run_dir, 3);
    let len = std::fs::metadata(&store).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(len / 4)
        .unwrap();
    let out = child.wait();
    let last = metrics(&run_dir).last().unwrap().step;
    assert!(last < 12_500, "the first epoch did not end (step {last})");
    assert_ne!(out.status.code(), None, "killed by a signal: {out:?}");
    assert_user_error(&out, &["s.h5", "cut short while being read"]);
    let ck = jumpscope::train::checkpoint::list(&run_dir);
    assert_eq!(ck.len(), 1, "the steps trained are kept in a checkpoint");
    assert!(
        ck[0].0 >= last,
        "checkpoint at {} before step {last}",
        ck[0].0
    );
    assert_eq!(records(&run_dir, "checkpoint").len(), 1);
}

/// The saved SAE's weights file.
fn weights(run_dir: &Path) -> Vec<u8> {
    std::fs::read(run_dir.join("sae/sae_weights.safetensors")).unwrap()
}

/// `jumpscope ARGS --headless` with `JUMPSCOPE_TEST_KILL_AT=point`: it must die by SIGKILL.
fn killed_at(point: &str, args: &[&str]) {
    let o = bin()
        .args(args)
        .arg("--headless")
        .env("JUMPSCOPE_TEST_KILL_AT", point)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        o.status.signal(),
        Some(9),
        "not killed at {point}: {}",
        stderr(&o)
    );
}

fn resumed(run_dir: &Path) -> String {
    let o = run(&["train", "--resume", run_dir.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o)
}

#[test]
fn a_checkpoint_rewritten_at_its_own_step_stays_whole_at_every_kill() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    let sae = weights(&run_dir);
    let step20 = run_dir.join("checkpoints/step-20");
    let (_, original) = jumpscope::train::checkpoint::read(&step20).unwrap();
    // a run killed in its final export is resumed at its last step, and finishes again: its
    // checkpoint of step 20 is written a second time. Killed with the new copy complete beside
    // the old, then with the two just exchanged:
    for point in ["checkpoint-written", "dir-swapped"] {
        std::fs::remove_dir_all(run_dir.join("sae")).unwrap();
        killed_at(point, &["train", "--resume", run_dir.to_str().unwrap()]);
        let (_, now) = jumpscope::train::checkpoint::read(&step20)
            .unwrap_or_else(|e| panic!("{point}: step 20 is not whole: {e}"));
        assert_eq!(now, original, "{point}");
        let text = resumed(&run_dir);
        assert!(
            text.contains("removed") && text.contains(".tmp-step-20"),
            "{point}: {text}"
        );
        assert_eq!(weights(&run_dir), sae, "{point}: the same SAE");
    }
}

#[test]
fn a_rewrite_cut_between_its_renames_is_put_back_on_resume() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    let sae = weights(&run_dir);
    // what a kill between the two renames of a rewrite left (the way taken where the file
    // system cannot exchange two directories, and by earlier versions): no step-20, the old
    // copy beside it, the new one under its temporary name; the writer (a pid above the
    // kernel's limit) long dead
    let ck = run_dir.join("checkpoints");
    // the rewrite was the finishing checkpoint's, so the export had not happened
    std::fs::remove_dir_all(run_dir.join("sae")).unwrap();
    std::fs::rename(ck.join("step-20"), ck.join(".step-20.old-99999999")).unwrap();
    copy_dir(
        &ck.join(".step-20.old-99999999"),
        &ck.join(".tmp-step-20-99999999"),
    );
    let text = resumed(&run_dir);
    assert!(
        text.contains("restored") && text.contains("step-20"),
        "{text}"
    );
    assert!(!ck.join(".step-20.old-99999999").exists());
    assert!(!ck.join(".tmp-step-20-99999999").exists());
    let resume = records(&run_dir, "resume");
    assert!(
        matches!(resume.last(), Some(Record::Resume { step: 20, .. })),
        "{resume:?}"
    );
    assert_eq!(weights(&run_dir), sae);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one_with_a_warning() {
    let d = tempdir().unwrap();
    let (run_dir, _) = finished_run(d.path());
    let sae = weights(&run_dir);
    let t = run_dir.join("checkpoints/step-20/tensors.safetensors");
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let text = resumed(&run_dir);
    assert!(
        text.contains("warning") && text.contains("step 20 is damaged") && text.contains("step 10"),
        "{text}"
    );
    let resume = records(&run_dir, "resume");
    assert!(
        matches!(resume.last(), Some(Record::Resume { step: 10, .. })),
        "{resume:?}"
    );
    // kept for the user, out of the way
    assert!(
        run_dir
            .join("checkpoints/damaged-step-20/state.json")
            .is_file()
    );
    // steps 10 to 20 again, the same data in the same order: the same SAE
    assert_eq!(weights(&run_dir), sae);
}

#[test]
fn a_run_killed_in_its_first_checkpoint_write_starts_afresh_when_resumed_or_started_again() {
    let d = tempdir().unwrap();
    let (reference, cfg) = finished_run(d.path());
    let sae = weights(&reference);
    let run_dir = d.path().join("again");
    let out = run_dir.to_str().unwrap();
    let start = ["train", "--config", cfg.to_str().unwrap(), "--out", out];
    killed_at("checkpoint-written", &start);
    assert!(jumpscope::train::checkpoint::list(&run_dir).is_empty());
    // --resume: from step 0, saying so, the first attempt's log set aside
    let text = resumed(&run_dir);
    assert!(text.contains("starts from step 0"), "{text}");
    let aside = run_dir.join("abandoned-1");
    assert!(aside.join("metrics.jsonl").is_file() && aside.join("config.toml").is_file());
    let log = log(&run_dir);
    assert!(
        matches!(log.first(), Some(Record::Start { .. })),
        "a new log: {log:?}"
    );
    assert_eq!(records(&run_dir, "start").len(), 1);
    assert_eq!(weights(&run_dir), sae, "the same SAE as a run never killed");
    // the start command into a directory whose attempt never checkpointed: the same
    std::fs::remove_dir_all(&run_dir).unwrap();
    killed_at("checkpoint-written", &start);
    let o = run(&[&start[..], &["--headless"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(text.contains("starts from step 0"), "{text}");
    assert!(run_dir.join("abandoned-1/metrics.jsonl").is_file());
    assert_eq!(weights(&run_dir), sae);
    // a directory with a checkpoint is still refused by the start command
    let o = run(&[&start[..], &["--headless"]].concat());
    assert_user_error(&o, &["already holds a run", "--resume"]);
}

#[test]
fn a_sweep_killed_before_its_first_checkpoint_starts_afresh() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(600, 3));
    let out = d.path().join("sw");
    std::fs::write(
        d.path().join("sweep.toml"),
        format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\n\
             [train]\nsteps = 20\ncheckpoint_every = 10\n[run]\nout = \"{}\"\n\
             [sweep]\nvary = {{ \"train.lr\" = [1e-3, 1e-4] }}\n",
            store.display(),
            out.display()
        ),
    )
    .unwrap();
    let cfg = d.path().join("sweep.toml");
    let start = ["sweep", "--config", cfg.to_str().unwrap()];
    killed_at("checkpoint-written", &start);
    let o = run(&["sweep", "--resume", out.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(text.contains("starts from step 0"), "{text}");
    let aside = out.join("abandoned-1");
    assert!(aside.join("sweep.jsonl").is_file() && aside.join("sweep.toml").is_file());
    let members: Vec<_> = std::fs::read_dir(&aside)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("metrics.jsonl").is_file())
        .collect();
    assert_eq!(members.len(), 2, "both members' first attempts set aside");
    // the start command after another such kill: the same
    killed_at(
        "checkpoint-written",
        &[
            "sweep",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            d.path().join("sw2").to_str().unwrap(),
        ],
    );
    let o = run(&[
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        d.path().join("sw2").to_str().unwrap(),
        "--headless",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(d.path().join("sw2/abandoned-1/sweep.jsonl").is_file());
    // a sweep with a checkpoint is refused by the start command
    let o = run(&["sweep", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_user_error(&o, &["already holds a sweep", "--resume"]);
}

#[test]
fn a_run_whose_directory_is_deleted_stops_and_does_not_make_it_again() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(4096, 3));
    let (cfg, run_dir) = endless_run(d.path(), &store, 5, "", "");
    let mut child = spawn_training(&cfg, &run_dir, 2);
    std::fs::remove_dir_all(&run_dir).unwrap();
    if !wait_for(60, || !child.running()) {
        child.fail("the run went on writing into a deleted directory");
    }
    let out = child.wait();
    assert_user_error(
        &out,
        &["run directory was deleted while the run was training"],
    );
    assert!(!run_dir.exists(), "the run directory was made again");
}
