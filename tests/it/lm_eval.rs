//! The model in the loop, as the trainer and the sweep drive it, with a stand-in companion (a
//! stdlib-only Python script speaking the companion's protocol) so that these tests need no
//! torch: evaluations due every `lm_eval.every` steps, skipped while one runs, the final step
//! always evaluated and waited for (the exact SAE of that step is what the companion received),
//! a companion that dies, and `[lm_eval]`'s keys. The real companion on a real model is tested by
//! scripts/test_lm_eval.py (`scripts/dev.sh test-lm`).

use crate::common::*;
use jumpscope::live::{Verdict, judge_key};
use jumpscope::session::{self, Output};
use jumpscope::sweep::driver::Sweep;
use jumpscope::sweep::spec;
use jumpscope::train::trainer::Trainer;
use std::path::{Path, PathBuf};
use tempfile::tempdir;

/// A stand-in companion: answers `open` with a baseline and `eval` with the sum of the SAE's
/// `b_dec` as its `fvu` (read from the safetensors file it was sent), after `sleep` seconds;
/// with `die`, it exits on the first `eval`.
pub fn fake_companion(dir: &Path, sleep: f64, die: bool) -> PathBuf {
    let path = dir.join(if die { "dying-python" } else { "fake-python" });
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, struct, sys, time
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
def b_dec_sum(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    a, b = head["b_dec"]["data_offsets"]
    return sum(struct.unpack("<%df" % ((b - a) // 4), data[a:b]))
open("{pid_file}", "w").write(str(os.getpid()))
send({{"ready": True}})
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "quit":
        break
    if req["op"] == "open":
        send({{"ok": "open", "d_site": 16, "vocab_size": 50, "n_seq": 2, "seq_len": 8,
              "positions": 16, "predicted": 14, "ce_clean": 2.0, "ce_ablated": 6.0, "secs": 0.0}})
    elif {die}:
        sys.stderr.write("the stand-in dies as asked\n")
        sys.exit(3)
    else:
        time.sleep({sleep})
        send({{"ok": "eval", "secs": {sleep}, "tokens_per_s": 1.0,
              "results": [{{"ce_spliced": 2.5, "kl": 0.25, "l0": 3.0, "fvu": b_dec_sum(p)}} for p in req["saes"]]}})
"#,
        die = if die { "True" } else { "False" },
        pid_file = dir.join("companion.pid").display(),
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A run of `steps` steps with `[lm_eval]` every `every` steps through `python`.
fn lm_cfg(d: &Path, python: &Path, steps: u64, every: u64) -> Cfg {
    let store = d.join("s.h5");
    if !store.exists() {
        synth_store(&store, &small_spec(600, 3));
    }
    let ids = d.join("ids.npy");
    std::fs::write(&ids, b"stand-in: the fake companion does not read it").unwrap();
    Cfg::on(&store).with(&[
        "data.batch_size=64",
        "sae.d_sae=32",
        &format!("train.steps={steps}"),
        "train.log_every=5",
        "train.checkpoint_every=0",
        "lm_eval.model=\"org/stand-in\"",
        "lm_eval.layer=0",
        "lm_eval.site=\"resid_post\"",
        &format!("lm_eval.token_ids=\"{}\"", ids.display()),
        &format!("lm_eval.every={every}"),
        &format!("lm_eval.python=\"{}\"", python.display()),
    ])
}

fn lm_records(run: &Path) -> Vec<jumpscope::schema::record::LmEvalRecord> {
    log(run)
        .into_iter()
        .filter_map(|r| match r {
            Record::LmEval(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn b_dec_sum(sae: &Path) -> f64 {
    let p = jumpscope::sae::io::load(sae).unwrap().params;
    p.b_dec.iter().map(|&v| v as f64).sum()
}

#[test]
fn every_due_evaluation_is_recorded_or_skipped_and_the_final_one_is_waited_for() {
    let d = tempdir().unwrap();
    let python = fake_companion(d.path(), 0.0, false);
    let run = d.path().join("run");
    let cfg = lm_cfg(d.path(), &python, 40, 10).out(&run).build();
    let (out, seen) = Output::capture();
    let closing = session::headless(Trainer::new(cfg).unwrap(), false, &out).unwrap();
    assert_eq!(closing.code, 0, "{}", seen.err());
    let lm = lm_records(&run);
    let all = log(&run);
    for step in [10, 20, 30] {
        let done = lm.iter().any(|r| r.step == step);
        let skipped = all
            .iter()
            .any(|r| matches!(r, Record::LmEvalSkipped { step: s, .. } if *s == step));
        assert!(
            done || skipped,
            "step {step}: neither evaluated nor skipped"
        );
    }
    // the final step: evaluated, recorded before `finish`, and of exactly the exported SAE
    let last = lm.last().expect("an lm-eval record");
    assert_eq!(last.step, 40);
    let pos = |pred: &dyn Fn(&Record) -> bool| all.iter().position(pred).unwrap();
    assert!(
        pos(&|r| matches!(r, Record::LmEval(r) if r.step == 40))
            < pos(&|r| matches!(r, Record::Finish { .. }))
    );
    let exported = b_dec_sum(&run.join("sae"));
    assert!(
        (last.scores.fvu - exported).abs() <= 1e-4 * exported.abs().max(1.0),
        "the companion got b_dec summing to {}, the exported SAE's sums to {exported}",
        last.scores.fvu
    );
    // the scores are derived from the companion's parts as docs/lm-eval.md defines them
    let s = last.scores;
    assert_eq!(s.delta_lm_loss, 2.5 - 2.0);
    assert_eq!(s.ce_recovered, (6.0 - 2.5) / (6.0 - 2.0));
    assert_eq!(
        (last.eval_tokens, last.layer, last.site.as_str()),
        (16, 0, "resid_post")
    );
    assert!(
        seen.err().contains("step 40: lm-eval: ΔLM loss +0.5000"),
        "{}",
        seen.err()
    );
    // doctor reads them back
    let d = jumpscope::doctor::diagnose(&run).unwrap();
    let lm_seen = d
        .lm_eval
        .as_ref()
        .expect("doctor sees the model in the loop");
    assert_eq!(
        (lm_seen.evaluations, lm_seen.newest.as_ref().map(|n| n.step)),
        (lm.len(), Some(40))
    );
    assert!(
        d.render().contains("newest of step 40: ΔLM loss +0.5000"),
        "{}",
        d.render()
    );
}

#[test]
fn a_due_evaluation_is_skipped_while_the_previous_one_runs() {
    let d = tempdir().unwrap();
    let python = fake_companion(d.path(), 0.4, false);
    let run = d.path().join("run");
    let cfg = lm_cfg(d.path(), &python, 30, 2).out(&run).build();
    let (out, _seen) = Output::capture();
    session::headless(Trainer::new(cfg).unwrap(), false, &out).unwrap();
    let skipped: Vec<(u64, u64)> = log(&run)
        .iter()
        .filter_map(|r| match r {
            Record::LmEvalSkipped { step, running, .. } => Some((*step, *running)),
            _ => None,
        })
        .collect();
    assert!(
        !skipped.is_empty(),
        "an evaluation of 0.4 s every 2 steps of a few ms"
    );
    assert!(skipped.iter().all(|(step, running)| running < step));
    assert_eq!(lm_records(&run).last().map(|r| r.step), Some(30));
}

#[test]
fn a_companion_that_dies_is_a_warning_and_training_goes_on() {
    let d = tempdir().unwrap();
    let python = fake_companion(d.path(), 0.0, true);
    let run = d.path().join("run");
    let cfg = lm_cfg(d.path(), &python, 20, 5).out(&run).build();
    let (out, seen) = Output::capture();
    let closing = session::headless(Trainer::new(cfg).unwrap(), false, &out).unwrap();
    assert_eq!(closing.code, 0);
    let all = log(&run);
    let failed: Vec<&String> = all
        .iter()
        .filter_map(|r| match r {
            Record::LmEvalFailed { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "said once: {failed:?}");
    assert!(
        failed[0].contains("exited") && failed[0].contains("the stand-in dies as asked"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("lm-eval.log"), "{}", failed[0]);
    assert!(run.join("lm-eval.log").is_file());
    assert!(
        all.iter()
            .any(|r| matches!(r, Record::Finish { step: 20, .. }))
    );
    assert!(
        seen.err().contains("lm-eval failed, training goes on"),
        "{}",
        seen.err()
    );
    let d = jumpscope::doctor::diagnose(&run).unwrap();
    assert_eq!(d.lm_eval.map(|l| l.failures.len()), Some(1));
}

#[test]
fn a_python_that_cannot_start_is_one_warning() {
    let d = tempdir().unwrap();
    let run = d.path().join("run");
    let cfg = lm_cfg(d.path(), &d.path().join("no-such-python"), 10, 5)
        .out(&run)
        .build();
    let (out, _seen) = Output::capture();
    session::headless(Trainer::new(cfg).unwrap(), false, &out).unwrap();
    let failed: Vec<String> = log(&run)
        .into_iter()
        .filter_map(|r| match r {
            Record::LmEvalFailed { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("no-such-python: cannot start it"),
        "{}",
        failed[0]
    );
}

#[test]
fn every_member_of_a_sweep_is_evaluated_through_one_companion() {
    let d = tempdir().unwrap();
    let python = fake_companion(d.path(), 0.0, false);
    let base = lm_cfg(d.path(), &python, 20, 10);
    let text = format!(
        "{}\n[sweep]\nvary = {{ \"train.sparsity_coefficient\" = [1e-3, 1e-2] }}\n",
        base.toml()
    );
    let file = config(d.path(), &text);
    let out_dir = d.path().join("sw");
    let spec = spec::load(&file, &[format!("run.out=\"{}\"", out_dir.display())], None).unwrap();
    let (out, _seen) = Output::capture();
    let closing = session::headless(Sweep::new(&spec).unwrap(), false, &out).unwrap();
    assert_eq!(closing.code, 0);
    for m in &spec.members {
        let run = out_dir.join(&m.name);
        let lm = lm_records(&run);
        assert_eq!(lm.last().map(|r| r.step), Some(20), "{}", m.name);
        let exported = b_dec_sum(&run.join("sae"));
        assert!((lm.last().unwrap().scores.fvu - exported).abs() <= 1e-4 * exported.abs().max(1.0));
    }
    assert!(
        out_dir.join("lm-eval.log").is_file(),
        "one companion log for the sweep"
    );
}

#[test]
fn lm_eval_keys_are_checked_and_only_every_and_enabled_change_live() {
    let d = tempdir().unwrap();
    let python = d.path().join("python");
    let cfg = lm_cfg(d.path(), &python, 100, 10)
        .out(&d.path().join("r"))
        .build();
    let lm = cfg.lm_eval.as_ref().unwrap();
    assert_eq!((lm.target.layer, lm.target.batch_size), (0, 8));
    assert_eq!(cfg.hyper.lm_eval.every, 10);
    match judge_key(&cfg, "lm_eval.every", "25") {
        Verdict::Apply(c, edit) => {
            assert_eq!(c.hyper.lm_eval.every, 25);
            assert!(edit.changes.contains_key("lm_eval"), "{:?}", edit.changes);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        judge_key(&cfg, "lm_eval.enabled", "false"),
        Verdict::Apply(..)
    ));
    for (key, value) in [
        ("lm_eval.model", "\"other\""),
        ("lm_eval.layer", "1"),
        ("lm_eval.site", "\"mlp_out\""),
    ] {
        match judge_key(&cfg, key, value) {
            Verdict::Refused(why) => assert!(
                why.contains(key) && why.contains("cannot change while training"),
                "{why}"
            ),
            other => panic!("{key}: {other:?}"),
        }
    }
    // `every` defaults to a tenth of the run; a missing key is named with what it takes
    let parse = |body: &str| {
        jumpscope::config::parse(body, "t.toml", &[])
            .unwrap()
            .validate("t.toml")
    };
    let ok = parse("[train]\nsteps = 500\n[lm_eval]\nmodel = \"m\"\nlayer = 3\nsite = \"resid_post\"\ntexts = \"t.txt\"\n").unwrap();
    assert_eq!(ok.hyper.lm_eval.every, 50);
    for (body, key) in [
        (
            "[lm_eval]\nlayer = 3\nsite = \"resid_post\"\ntexts = \"t\"\n",
            "lm_eval.model = (missing)",
        ),
        (
            "[lm_eval]\nmodel = \"m\"\nsite = \"resid_post\"\ntexts = \"t\"\n",
            "lm_eval.layer = (missing)",
        ),
        (
            "[lm_eval]\nmodel = \"m\"\nlayer = 3\ntexts = \"t\"\n",
            "lm_eval.site = (missing)",
        ),
        (
            "[lm_eval]\nmodel = \"m\"\nlayer = 3\nsite = \"resid_post\"\n",
            "lm_eval.token_ids = (missing)",
        ),
        (
            "[lm_eval]\nmodel = \"m\"\nlayer = 3\nsite = \"resid_mid\"\ntexts = \"t\"\n",
            "lm_eval.site = resid_mid",
        ),
    ] {
        let e = parse(body).unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml: ") && e.contains(key) && !e.contains('\n'),
            "{e}"
        );
    }
}

#[test]
fn a_stop_while_the_final_evaluation_runs_stops_the_waiting_and_the_companion() {
    let d = tempdir().unwrap();
    // a companion whose evaluations never come back
    let python = fake_companion(d.path(), 3600.0, false);
    let run = d.path().join("run");
    let cfg = lm_cfg(d.path(), &python, 10, 5).out(&run).build();
    let mut trainer = Trainer::new(cfg).unwrap();
    let (controls, rx) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = trainer.run(&rx, &mut |_| {});
        drop(trainer);
        let _ = done_tx.send(outcome.is_ok());
    });
    // the run reaches its end (its last checkpoint) and waits for the evaluation of step 5,
    // which never comes
    assert!(
        wait_for(30, || log_has(&run, "checkpoint")),
        "the run did not reach its end"
    );
    assert!(
        done.recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "it waits"
    );
    assert!(!log_has(&run, "finish"));
    controls
        .send(jumpscope::train::control::Control::Stop)
        .unwrap();
    let ok = done
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a stop ends the waiting, and the companion is ended");
    assert!(ok);
    let all = log(&run);
    assert!(all.iter().any(
        |r| matches!(r, Record::LmEvalFailed { message, .. } if message.contains("abandoned"))
    ));
    assert!(
        all.iter()
            .any(|r| matches!(r, Record::Finish { step: 10, .. }))
    );
    // the companion was killed when its evaluation did not end within the grace period
    let pid: i32 = std::fs::read_to_string(d.path().join("companion.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the companion {pid} outlived the run"
    );
}

/// Whether the run log has a record of `kind`.
fn log_has(run: &Path, kind: &str) -> bool {
    try_log(run).is_some_and(|l| l.iter().any(|r| r.kind() == kind))
}
