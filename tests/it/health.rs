//! Training health through real runs: each kind is raised once by a run constructed to go wrong
//! that way on the synthetic store (one stderr line headless, a `warning` record), and cleared
//! when a live edit fixes the cause or the cause passes; the demo and the MiniLM sample run
//! clean. (Each rule's condition is unit-tested on constructed report sequences in
//! `src/health/tests.rs`.)

use crate::common::*;
use jumpscope::config::parse;
use jumpscope::live::{self, HyperEdit};
use jumpscope::schema::health::Kind;
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

/// Train in this process with the `--set` strings `sets` on `store`, and at the report of step
/// `at` apply the live edits `edits` (`key`, `value`, as typed on the screen): the run directory.
fn train_steered(
    dir: &std::path::Path,
    store: &str,
    sets: &[&str],
    at: u64,
    edits: &[(&str, &str)],
) -> std::path::PathBuf {
    let run_dir = dir.join("run");
    let mut all: Vec<String> = vec![
        format!("data.stores={store}"),
        format!("run.out=\"{}\"", run_dir.display()),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let c = parse("", "test", &all).unwrap().validate("test").unwrap();
    let mut new = c.clone();
    for (key, value) in edits {
        new = match live::judge_key(&new, key, value) {
            live::Verdict::Apply(n, _) => *n,
            other => panic!("{key} = {value}: {other:?}"),
        };
    }
    let edit = HyperEdit {
        hyper: new.hyper.clone(),
        changes: live::diff(&c, &new).unwrap(),
        source: jumpscope::schema::record::EditSource::Key,
    };
    let mut t = Trainer::new(c).unwrap();
    let (tx, rx) = mpsc::channel();
    t.run(&rx, &mut |ev| {
        if let TrainEvent::Record(Record::Metrics(m)) = ev
            && m.step == at
            && !edits.is_empty()
        {
            tx.send(Control::SetHyper(Box::new(edit.clone()))).unwrap();
        }
    })
    .unwrap();
    run_dir
}

/// The `data.stores` value of one synthetic store written into `dir`.
fn one_store(dir: &std::path::Path, spec: &jumpscope::data::synth::SynthSpec) -> String {
    let store = dir.join("s.h5");
    synth_store(&store, spec);
    format!("[\"{}\"]", store.display())
}

/// What every constructed run here shares: the demo's recipe scaled down to a 16-dim store.
const BASE: [&str; 7] = [
    "data.batch_size=128",
    "sae.threshold_init=0.1",
    "sae.bandwidth=0.05",
    "train.lr=8e-3",
    "train.lr_warmup_steps=10",
    "train.sparsity_warmup_steps=40",
    "train.log_every=5",
];

fn with_base<'a>(sets: &[&'a str]) -> Vec<&'a str> {
    BASE.iter().copied().chain(sets.iter().copied()).collect()
}

#[test]
fn a_tiny_bandwidth_freezes_theta_until_it_is_raised() {
    let d = tempdir().unwrap();
    let store = one_store(d.path(), &small_spec(4000, 5));
    let run = train_steered(
        d.path(),
        &store,
        &with_base(&[
            "sae.d_sae=128",
            "sae.bandwidth=1e-5",
            "train.sparsity_loss=\"l0_target\"",
            "train.target_l0=3",
            "train.sparsity_coefficient=0.01",
            "train.steps=150",
        ]),
        60,
        &[("sae.bandwidth", "0.05")],
    );
    assert_eq!(warnings(&run), vec![(40, Kind::ThresholdFrozen)]);
    once(cleared(&run), Kind::ThresholdFrozen, 61..=90);
}

#[test]
fn no_sparsity_penalty_runs_l0_away_until_lambda_is_raised() {
    let d = tempdir().unwrap();
    let store = one_store(d.path(), &small_spec(4000, 7));
    let run = train_steered(
        d.path(),
        &store,
        &with_base(&[
            "sae.d_sae=64",
            "train.sparsity_coefficient=0",
            "train.steps=150",
        ]),
        60,
        &[("train.sparsity_coefficient", "0.1")],
    );
    assert_eq!(warnings(&run), vec![(40, Kind::L0Runaway)]);
    once(cleared(&run), Kind::L0Runaway, 61..);
}

#[test]
fn a_high_learning_rate_kills_features_until_the_pre_activation_loss_revives_them() {
    let d = tempdir().unwrap();
    let store = one_store(d.path(), &small_spec(4000, 5));
    let run = train_steered(
        d.path(),
        &store,
        &with_base(&[
            "sae.d_sae=256",
            "train.lr=3e-2",
            "train.sparsity_loss=\"l0_target\"",
            "train.target_l0=3",
            "train.sparsity_coefficient=0.1",
            "train.dead_window_tokens=2560",
            "train.steps=400",
        ]),
        200,
        &[("train.lr", "3e-3"), ("train.pre_act_coefficient", "0.1")],
    );
    once(warnings(&run), Kind::DeadRising, ..200);
    once(cleared(&run), Kind::DeadRising, 201..);
}

#[test]
fn a_slow_store_makes_the_run_data_bound_until_reading_moves_on_to_a_fast_one() {
    let d = tempdir().unwrap();
    let fast = d.path().join("fast.h5");
    let slow = d.path().join("slow.h5");
    synth_store(&fast, &small_spec(8192, 5));
    // the same rows gzip-compressed by h5py, read from simulated slow storage (30 ms a block)
    h5py(&format!(
        "with h5py.File('{}') as f:\n    x = f['activations'][:]\n\
         with h5py.File('{}', 'w') as f:\n    \
         f.create_dataset('activations', data=x, chunks=(256, 16), compression='gzip')\n",
        fast.display(),
        slow.display()
    ));
    let run = d.path().join("run");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\", \"{}\"]\nbatch_size = 128\nshuffle = false\n\
             shuffle_buffer_tokens = 256\n[sae]\nd_sae = 64\nthreshold_init = 0.1\n\
             bandwidth = 0.05\n[train]\nsteps = 128\nlog_every = 2\nlr = 8e-3\n\
             sparsity_warmup_steps = 500\n[run]\nout = \"{}\"\n",
            slow.display(),
            fast.display(),
            run.display()
        ),
    );
    let o = bin()
        .args(["train", "--config", cfg.to_str().unwrap(), "--headless"])
        .env("JUMPSCOPE_TEST_SLOW_STORE", "slow.h5:30")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w = warnings(&run);
    // the third slow report in a row; the first 64 steps read slow.h5
    assert!(
        matches!(w.as_slice(), [(s, Kind::DataBound)] if *s >= 6 && *s <= 20),
        "{w:?}\n{}",
        stderr(&o)
    );
    once(cleared(&run), Kind::DataBound, 65..=90);
    let err = stderr(&o);
    assert_eq!(
        err.matches("data-bound").count(),
        2,
        "raised once, cleared once:\n{err}"
    );
}

#[test]
fn outlier_rows_in_the_store_spike_the_loss_once() {
    let d = tempdir().unwrap();
    let spec = small_spec(6400, 9);
    let mut s = jumpscope::data::synth::generate(&spec);
    // 8 rows of the batch of step 30 (unshuffled: rows 3712..3840) are 30× too large, the kind
    // of corruption `store info --scan` is for
    for r in 3712..3720 {
        for v in &mut s.activations[r * spec.d_in..(r + 1) * spec.d_in] {
            *v *= 30.0;
        }
    }
    let store = d.path().join("s.h5");
    jumpscope::data::store::write_store(
        &store,
        "activations",
        &s.activations,
        spec.d_in,
        jumpscope::data::dtype::Dtype::F32,
        &[],
        &[],
    )
    .unwrap();
    let run = train_steered(
        d.path(),
        &format!("[\"{}\"]", store.display()),
        &with_base(&[
            "data.shuffle=false",
            "sae.d_sae=128",
            "train.log_every=1",
            "train.sparsity_loss=\"l0_target\"",
            "train.target_l0=3",
            "train.sparsity_coefficient=0.01",
            "train.steps=50",
        ]),
        0,
        &[],
    );
    assert_eq!(warnings(&run), vec![(30, Kind::LossSpike)]);
    once(cleared(&run), Kind::LossSpike, 35..=45);
}

#[test]
fn thousands_of_epochs_over_a_tiny_store_overfit() {
    let d = tempdir().unwrap();
    // 384 training rows and 256 held out, with noise the dictionary can memorise but not predict
    let mut spec = small_spec(640, 11);
    spec.noise = 0.3;
    let store = one_store(d.path(), &spec);
    let run = train_steered(
        d.path(),
        &store,
        &with_base(&[
            "data.eval_tokens=256",
            "sae.d_sae=512",
            "train.sparsity_loss=\"l0_target\"",
            "train.target_l0=3",
            "train.sparsity_coefficient=0.01",
            "train.eval_every=25",
            "train.log_every=25",
            "train.steps=600",
            "health.disabled=[\"l0-runaway\"]",
        ]),
        400,
        // no live edit adds data: the user accepts the gap (a restart with more tokens is the
        // fix the hint names)
        &[("health.overfit_gap", "5")],
    );
    once(warnings(&run), Kind::Overfitting, ..400);
    once(cleared(&run), Kind::Overfitting, 401..);
}

/// Exactly one event, of `kind`, at a step in `steps`.
fn once(
    events: Vec<(u64, Kind)>,
    kind: Kind,
    steps: impl std::ops::RangeBounds<u64> + std::fmt::Debug,
) {
    assert!(
        matches!(events.as_slice(), [(s, k)] if *k == kind && steps.contains(s)),
        "expected one {kind:?} in steps {steps:?}: {events:?}"
    );
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
fn a_huge_lambda_collapses_l0_until_it_is_lowered() {
    let d = tempdir().unwrap();
    let store = one_store(d.path(), &small_spec(4000, 5));
    let run = train_steered(
        d.path(),
        &store,
        &with_base(&[
            "sae.d_sae=128",
            "train.lr=3e-2",
            "train.sparsity_coefficient=3",
            "train.steps=250",
            // λ · L0 is also far above the MSE while λ is huge: a second true warning, not
            // this test's subject
            "health.disabled=[\"sparsity-dominates\"]",
        ]),
        120,
        &[("train.sparsity_coefficient", "0.01")],
    );
    once(warnings(&run), Kind::L0Collapse, 40..80);
    once(cleared(&run), Kind::L0Collapse, 81..);
}

#[test]
fn slow_the_demo_runs_clean() {
    let d = tempdir().unwrap();
    let run = d.path().join("demo");
    let o = train_sample("demo", &run);
    assert_eq!(warnings(&run), vec![], "{}", stderr(&o));
    assert!(records(&run, "metrics").len() >= 30);
}

#[test]
fn slow_the_minilm_sample_runs_clean() {
    let d = tempdir().unwrap();
    let run = d.path().join("minilm");
    let o = train_sample("minilm", &run);
    assert_eq!(warnings(&run), vec![], "{}", stderr(&o));
    // it was checked: held-out evaluations ran from the third epoch on
    let evals = records(&run, "eval");
    assert_eq!(evals.len(), 5);
    assert!(metrics(&run).last().unwrap().epoch >= 2);
}

#[test]
fn lowering_lambda_live_clears_sparsity_dominates() {
    let d = tempdir().unwrap();
    let store = one_store(d.path(), &small_spec(2000, 6));
    let run_dir = train_steered(
        d.path(),
        &store,
        &[
            "data.batch_size=128",
            "sae.d_sae=64",
            "train.steps=30",
            "train.log_every=1",
            "train.lr=1e-3",
            "train.lr_warmup_steps=0",
            "train.sparsity_warmup_steps=2",
            "train.sparsity_coefficient=10",
            // this test is about one rule: the tiny dictionary is also a runaway L0, and the
            // narrow default bandwidth leaves most θ without gradient (threshold-frozen)
            "health.disabled=[\"l0-runaway\", \"threshold-frozen\"]",
        ],
        10,
        &[("train.sparsity_coefficient", "1e-5")],
    );
    let w = warnings(&run_dir);
    assert_eq!(w, vec![(2, Kind::SparsityDominates)], "{w:?}");
    // λ is lowered from step 10 on; the fifth report without the condition clears it
    assert_eq!(cleared(&run_dir), vec![(15, Kind::SparsityDominates)]);
}

#[test]
fn health_keys_are_checked_and_live() {
    let c = parse("", "test", &[]).unwrap().validate("test").unwrap();
    assert_eq!(
        c.hyper.health,
        jumpscope::schema::health::HealthConfig::default()
    );
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
