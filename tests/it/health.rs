//! Training health through real runs on the synthetic store: a constructed run raises its
//! warning once (one stderr line headless, a `warning` record), the demo runs clean, and a live
//! edit that fixes the cause clears the warning. (Each rule's condition is unit-tested on
//! constructed report sequences in `src/health/tests.rs`.)

use crate::common::*;
use jumpscope::config::parse;
use jumpscope::health::Kind;
use jumpscope::live::{self, HyperEdit};
use jumpscope::train::control::{Control, TrainEvent};
use jumpscope::train::trainer::Trainer;
use std::sync::mpsc;
use tempfile::tempdir;

fn warnings(run_dir: &std::path::Path) -> Vec<(u64, Kind)> {
    log(run_dir)
        .into_iter()
        .filter_map(|r| match r {
            Record::Warning { step, kind, .. } => Some((step, kind)),
            _ => None,
        })
        .collect()
}

fn cleared(run_dir: &std::path::Path) -> Vec<(u64, Kind)> {
    log(run_dir)
        .into_iter()
        .filter_map(|r| match r {
            Record::WarningCleared { step, kind, .. } => Some((step, kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_firing_after_the_warm_up_is_an_l0_collapse_said_once() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(2000, 5));
    let run = d.path().join("run");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 128\n[sae]\nd_sae = 64\nthreshold_init = 50.0\n\
             [train]\nsteps = 30\nlog_every = 2\nsparsity_warmup_steps = 10\n\
             [run]\nout = \"{}\"\n",
            store.display(),
            run.display()
        ),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w = warnings(&run);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0], (10, Kind::L0Collapse));
    doctor_tells_the_collapse(&run);
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("l0-collapse")).collect();
    assert_eq!(
        lines.len(),
        1,
        "one stderr line, not one per report:\n{err}"
    );
    assert!(
        lines[0].contains("L0 is 0.00") && lines[0].contains("lower train.sparsity_coefficient"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_demo_runs_clean() {
    let d = tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let run = d.path().join("demo");
    let o = bin()
        .current_dir(root)
        .args([
            "train",
            "--config",
            "sample_data/demo.toml",
            "--out",
            run.to_str().unwrap(),
            "--headless",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(warnings(&run), vec![], "{}", stderr(&o));
    assert!(records(&run, "metrics").len() >= 30);
}

#[test]
fn lowering_lambda_live_clears_sparsity_dominates() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(2000, 6));
    let run_dir = d.path().join("run");
    let sets: Vec<String> = vec![
        format!("data.stores=[\"{}\"]", store.display()),
        "data.batch_size=128".into(),
        "sae.d_sae=64".into(),
        "train.steps=30".into(),
        "train.log_every=1".into(),
        "train.lr=1e-3".into(),
        "train.lr_warmup_steps=0".into(),
        "train.sparsity_warmup_steps=2".into(),
        "train.sparsity_coefficient=10".into(),
        // this test is about one rule: the tiny dictionary is also a runaway L0, and the narrow
        // default bandwidth leaves most θ without gradient (threshold-frozen)
        "health.disabled=[\"l0-runaway\", \"threshold-frozen\"]".into(),
        format!("run.out=\"{}\"", run_dir.display()),
    ];
    let c = parse("", "test", &sets).unwrap().validate("test").unwrap();
    let mut t = Trainer::new(c.clone()).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut new = c.clone();
    new.hyper.sparsity_coefficient = 1e-5;
    let edit = HyperEdit {
        hyper: new.hyper.clone(),
        changes: live::diff(&c, &new).unwrap(),
        source: "test".into(),
    };
    t.run(&rx, &mut |ev| {
        if let TrainEvent::Record(Record::Metrics(m)) = ev
            && m.step == 10
        {
            tx.send(Control::SetHyper(Box::new(edit.clone()))).unwrap();
        }
    })
    .unwrap();
    let w = warnings(&run_dir);
    assert_eq!(w, vec![(2, Kind::SparsityDominates)], "{w:?}");
    // λ is lowered from step 10 on; the fifth report without the condition clears it
    assert_eq!(cleared(&run_dir), vec![(15, Kind::SparsityDominates)]);
}

#[test]
fn health_keys_are_checked_and_live() {
    let c = parse("", "test", &[]).unwrap().validate("test").unwrap();
    assert_eq!(c.hyper.health, jumpscope::health::HealthConfig::default());
    match live::judge_key(&c, "health.spike_factor", "5") {
        live::Verdict::Apply(new, edit) => {
            assert_eq!(new.hyper.health.spike_factor, 5.0);
            assert!(edit.changes.contains_key("health"), "{:?}", edit.changes);
        }
        other => panic!("{other:?}"),
    }
    match live::judge_key(&c, "health.disabled", "[\"loss-spike\"]") {
        live::Verdict::Apply(new, _) => {
            assert!(new.hyper.health.disabled.contains(&Kind::LossSpike))
        }
        other => panic!("{other:?}"),
    }
    for (key, value, needle) in [
        ("health.spike_factor", "0", "health.spike_factor"),
        ("health.dead_fraction", "1.5", "health.dead_fraction"),
        (
            "health.l0_under_target",
            "2.0",
            "less than health.l0_over_target",
        ),
        ("health.disabled", "[\"no-such-rule\"]", "no-such-rule"),
        ("health.spike_facto", "3", "spike_facto"),
    ] {
        match live::judge_key(&c, key, value) {
            live::Verdict::Refused(why) => assert!(why.contains(needle), "{key}: {why}"),
            other => panic!("{key} = {value}: {other:?}"),
        }
    }
}

/// `jumpscope doctor` on the collapsed run: the warning with its steps and hint, the quiet
/// rules, JSON, a directory of runs, and a directory that holds none.
fn doctor_tells_the_collapse(run: &std::path::Path) {
    let o = crate::common::run(&["doctor", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("30 steps (ended); 1 warning(s)"), "{out}");
    assert!(
        out.contains("warning l0-collapse at step 10 (still active): L0 is 0.00"),
        "{out}"
    );
    assert!(
        out.contains("→ λ too high: lower train.sparsity_coefficient"),
        "{out}"
    );
    for k in Kind::ALL.iter().filter(|k| **k != Kind::L0Collapse) {
        assert!(
            out.contains(&format!("ok {}: checked, never fired", k.name())),
            "{out}"
        );
    }
    let o = crate::common::run(&["doctor", run.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["episodes"][0]["kind"], "l0-collapse");
    assert_eq!(v[0]["episodes"][0]["raised_at"], 10);
    assert!(v[0]["episodes"][0]["cleared_at"].is_null());
    assert_eq!(
        v[0]["healthy"].as_array().unwrap().len(),
        Kind::ALL.len() - 1
    );
    // the parent directory holds the run (and a store): one block, for the run
    let parent = run.parent().unwrap();
    let o = crate::common::run(&["doctor", parent.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.matches(" steps (").count(), 1, "{out}");
    let o = crate::common::run(&["doctor", run.join("checkpoints").to_str().unwrap()]);
    assert_user_error(&o, &["not a run directory"]);
}
