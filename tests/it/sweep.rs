//! Sweeps end to end: members train exactly as separate runs of their configurations would, on
//! one reading of the store; a failing member leaves the others going; per-member pause and
//! stop; checkpoints of all members at one step; `sweep --resume` reproduces an uninterrupted
//! sweep; every member directory is a normal run; bad sweeps are one line.

use crate::common::*;
use jumpscope::config::parse;
use jumpscope::sae::io;
use jumpscope::schema::sweep::{self, MemberState, SweepRecord};
use jumpscope::sweep::driver::{Sweep, SweepOutcome};
use jumpscope::sweep::spec;
use jumpscope::train::control::{Control, TrainEvent};
use jumpscope::train::control::{JobControl, JobEvent};
use jumpscope::train::trainer::{Outcome, Trainer};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tempfile::tempdir;

/// A sweep config on `store`: 12 steps of 64 rows (an epoch boundary inside), a report every
/// step, checkpoints every 5; `sweep` is the [sweep] table's body.
fn sweep_toml(store: &Path, out: &Path, sweep: &str) -> String {
    format!(
        "[data]\nstores = [\"{}\"]\nbatch_size = 64\nseed = 3\neval_tokens = 64\n\
         [sae]\nd_sae = 40\nk = 6\nbandwidth = 0.05\n\
         [train]\nsteps = 12\nlog_every = 1\ncheckpoint_every = 5\nlr = 1e-3\nlr_warmup_steps = 3\n\
         sparsity_warmup_steps = 4\nsparsity_coefficient = 0.01\neval_every = 4\n\
         [run]\nout = \"{}\"\n[sweep]\n{sweep}\n",
        store.display(),
        out.display()
    )
}

const GRID: &str = "vary = { \"train.sparsity_coefficient\" = [0.01, 0.1], \"sae.architecture\" = [\"jumprelu\", \"topk\"] }";

fn store(dir: &Path) -> PathBuf {
    let s = dir.join("s.h5");
    // 500 rows less 64 held out: 12 steps of 64 cross an epoch boundary
    synth_store(&s, &small_spec(500, 7));
    s
}

/// Run the sweep to its end (or its stop), sending each control when `when` says so.
fn drive(sweep: &mut Sweep, mut when: impl FnMut(&JobEvent) -> Option<JobControl>) -> SweepOutcome {
    let (tx, rx) = mpsc::channel();
    sweep
        .run(&rx, &mut |ev| {
            if let Some(c) = when(&ev) {
                tx.send(c).unwrap();
            }
        })
        .unwrap()
}

fn losses(run_dir: &Path) -> Vec<(u64, f64, f64)> {
    metrics(run_dir)
        .iter()
        .map(|r| (r.step, r.loss, r.l0))
        .collect()
}

fn same_losses(a: &[(u64, f64, f64)], b: &[(u64, f64, f64)], what: &str) {
    assert_eq!(
        a.iter().map(|x| x.0).collect::<Vec<_>>(),
        b.iter().map(|x| x.0).collect::<Vec<_>>(),
        "{what}: steps"
    );
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x.1 - y.1).abs() <= 1e-6 * x.1.abs().max(1.0),
            "{what}: step {}: loss {} vs {}",
            x.0,
            x.1,
            y.1
        );
        assert_eq!(x.2, y.2, "{what}: step {}: L0", x.0);
    }
}

/// Train member `name`'s configuration alone (its own `config.toml`, into `dir/alone-NAME`);
/// the run directory and the member's config text.
fn train_alone(dir: &Path, member_dir: &Path, name: &str) -> (PathBuf, String) {
    let text = std::fs::read_to_string(member_dir.join("config.toml")).unwrap();
    let alone_dir = dir.join(format!("alone-{name}"));
    let c = parse(
        &text,
        "member",
        &[format!("run.out=\"{}\"", alone_dir.display())],
    )
    .unwrap()
    .validate("member")
    .unwrap();
    let mut t = Trainer::new(c).unwrap();
    let (_tx, rx) = mpsc::channel::<Control>();
    assert!(matches!(
        t.run(&rx, &mut |_| {}).unwrap(),
        Outcome::Finished { .. }
    ));
    (alone_dir, text)
}

fn sweep_records(dir: &Path) -> Vec<SweepRecord> {
    sweep::read(&dir.join("sweep.jsonl")).unwrap()
}

#[test]
fn members_train_exactly_as_their_own_runs_on_one_reading_of_the_store() {
    let d = tempdir().unwrap();
    let s = store(d.path());
    let out = d.path().join("sw");
    let path = d.path().join("sw.toml");
    std::fs::write(
        &path,
        sweep_toml(&s, &out, &format!("devices = [\"cpu\", \"auto\"]\n{GRID}")),
    )
    .unwrap();
    let spec = spec::load(&path, &[], None).unwrap();
    assert_eq!(
        spec.members.len(),
        3,
        "λ does not apply to TopK: 4 points, 3 members"
    );
    let mut sweep = Sweep::new(&spec).unwrap();
    assert_eq!(drive(&mut sweep, |_| None), SweepOutcome::Done);
    // placement round-robin over two names for the CPU
    let devices: Vec<String> = spec
        .members
        .iter()
        .map(|m| m.config.device.to_string())
        .collect();
    assert_eq!(devices, ["cpu", "auto", "cpu"]);
    let recs = sweep_records(&out);
    let Some(SweepRecord::Finish {
        rows_read, states, ..
    }) = recs.last()
    else {
        panic!("no finish record: {recs:?}")
    };
    assert_eq!(
        *rows_read,
        12 * 64,
        "the store is read once for all members"
    );
    assert!(states.values().all(|s| *s == MemberState::Finished));
    // all members checkpointed after the same batches
    let ckpts: Vec<(u64, usize)> = recs
        .iter()
        .filter_map(|r| match r {
            SweepRecord::Checkpoint { step, members, .. } => Some((*step, members.len())),
            _ => None,
        })
        .collect();
    assert_eq!(ckpts, [(5, 3), (10, 3)]);
    for m in &spec.members {
        let member_dir = out.join(&m.name);
        // the same configuration trained alone, from the member's own config.toml
        let (alone_dir, _) = train_alone(d.path(), &member_dir, &m.name);
        same_losses(&losses(&alone_dir), &losses(&member_dir), &m.name);
        assert_eq!(losses(&member_dir).len(), 12);
        let a = io::load(&alone_dir.join("sae")).unwrap().params;
        let b = io::load(&member_dir.join("sae")).unwrap().params;
        let diff = max_diff(&a.w_enc, &b.w_enc);
        assert!(diff < 1e-6, "{}: W_enc differs by {diff}", m.name);
        assert_eq!(
            records(&member_dir, "eval").len(),
            records(&alone_dir, "eval").len(),
            "{}: held-out evaluations",
            m.name
        );
    }
}

#[test]
fn a_resumed_sweep_reproduces_the_uninterrupted_one() {
    let d = tempdir().unwrap();
    let s = store(d.path());
    let full = d.path().join("full");
    let part = d.path().join("part");
    for out in [&full, &part] {
        let text = sweep_toml(&s, out, GRID);
        let spec = spec::parse(&text, "sw.toml", &[], None).unwrap();
        let mut sweep = Sweep::new(&spec).unwrap();
        let stop_at = (out == &part).then_some(7u64);
        let outcome = drive(&mut sweep, |ev| match ev {
            JobEvent::Member(0, TrainEvent::Record(Record::Metrics(m)))
                if Some(m.step) == stop_at =>
            {
                Some(JobControl {
                    member: None,
                    control: Control::Stop,
                })
            }
            _ => None,
        });
        let want = if stop_at.is_some() {
            SweepOutcome::Stopped
        } else {
            SweepOutcome::Done
        };
        assert_eq!(outcome, want);
    }
    // stopped after step 7: every member checkpointed there
    let last = sweep_records(&part)
        .into_iter()
        .rev()
        .find_map(|r| match r {
            SweepRecord::Checkpoint { step, members, .. } => Some((step, members)),
            _ => None,
        })
        .unwrap();
    assert_eq!((last.0, last.1.len()), (7, 3));
    let mut again = Sweep::resume(&part).unwrap();
    assert_eq!(again.step(), 7);
    assert_eq!(drive(&mut again, |_| None), SweepOutcome::Done);
    for name in [
        "arch=jumprelu,lambda=0.01",
        "arch=jumprelu,lambda=0.1",
        "arch=topk",
    ] {
        same_losses(&losses(&full.join(name)), &losses(&part.join(name)), name);
    }
    // the resumed run read the rest of the stream once
    let Some(SweepRecord::Finish { rows_read, .. }) = sweep_records(&part).pop() else {
        panic!("no finish")
    };
    assert_eq!(rows_read, 12 * 64);
}

#[test]
fn a_failing_member_is_marked_failed_and_the_others_go_on_with_pause_and_stop_per_member() {
    let d = tempdir().unwrap();
    let s = store(d.path());
    let out = d.path().join("sw");
    let members = "[[sweep.member]]\nname = \"steady\"\n\
                   [[sweep.member]]\nname = \"boom\"\n\"train.lr\" = 1e30\n\
                   [[sweep.member]]\nname = \"paused\"\n\
                   [[sweep.member]]\nname = \"stopped\"\n";
    let spec = spec::parse(&sweep_toml(&s, &out, members), "sw.toml", &[], None).unwrap();
    let mut sweep = Sweep::new(&spec).unwrap();
    let ctl = |member: usize, control: Control| JobControl {
        member: Some(member),
        control,
    };
    drive(&mut sweep, |ev| match ev {
        JobEvent::Member(0, TrainEvent::Record(Record::Metrics(m))) => match m.step {
            2 => Some(ctl(2, Control::Pause)),
            5 => Some(ctl(2, Control::Resume)),
            6 => Some(ctl(3, Control::Stop)),
            _ => None,
        },
        _ => None,
    });
    let states: Vec<(MemberState, u64)> =
        sweep.members().iter().map(|m| (m.state, m.step)).collect();
    assert_eq!(states[0], (MemberState::Finished, 12));
    assert_eq!(states[1].0, MemberState::Failed);
    assert!(
        sweep.members()[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not finite")),
        "{:?}",
        sweep.members()[1].reason
    );
    // members step in order, so a control sent while member 0 reports step s acts before the
    // stream's step s + 1: paused for stream steps 3 to 5, it trains its 12 steps by step 15
    assert_eq!(states[2], (MemberState::Finished, 12));
    assert_eq!(records(&out.join("paused"), "pause").len(), 1);
    let Some(SweepRecord::Finish { step, .. }) = sweep_records(&out).pop() else {
        panic!("no finish")
    };
    assert_eq!(step, 15, "the stream went on for the paused member alone");
    assert_eq!(states[3], (MemberState::Stopped, 6));
    assert_eq!(records(&out.join("stopped"), "stop").len(), 1);
    let recs = sweep_records(&out);
    assert!(recs.iter().any(|r| matches!(r,
        SweepRecord::Member { name, state: MemberState::Failed, .. } if name == "boom")));
    // a failed member's directory is still a run the other commands read; a finished one exports
    assert!(out.join("steady/sae").is_dir() && !out.join("boom/sae").exists());
}

#[test]
fn the_command_runs_a_sweep_whose_members_are_ordinary_runs() {
    let d = tempdir().unwrap();
    let s = store(d.path());
    let out = d.path().join("sw");
    let cfg = config(d.path(), &sweep_toml(&s, &out, GRID));
    let o = bin()
        .args(["sweep", "--config", cfg.to_str().unwrap(), "--headless"])
        .args(["--set", "train.steps=6"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("arch=topk") && table.matches("finished").count() == 3,
        "{table}"
    );
    assert!(stderr(&o).contains("note: grid point"), "{}", stderr(&o));
    // sweep.toml is the sweep as run: it runs again elsewhere with the same members
    let again = spec::load(&out.join("sweep.toml"), &[], Some(&d.path().join("again"))).unwrap();
    assert_eq!(again.members.len(), 3);
    assert!(
        again
            .members
            .iter()
            .all(|m| m.config.length.steps == Some(6))
    );
    // each member is a complete run: eval reads its SAE, doctor reads the sweep as runs
    let member = out.join("arch=topk");
    let ev = run(&[
        "eval",
        member.join("sae").to_str().unwrap(),
        "--store",
        s.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(ev.status.code(), Some(0), "{}", stderr(&ev));
    let doc = run(&["doctor", out.to_str().unwrap()]);
    assert_eq!(doc.status.code(), Some(0), "{}", stderr(&doc));
    assert_eq!(
        String::from_utf8_lossy(&doc.stdout)
            .matches("arch=")
            .count(),
        3,
        "{}",
        String::from_utf8_lossy(&doc.stdout)
    );
    // a second sweep into the same directory is refused; --resume of a finished sweep has
    // nothing left to train and says so by finishing at once
    let o = bin()
        .args(["sweep", "--config", cfg.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    assert_user_error(&o, &["already holds a sweep", "--resume"]);
}

#[test]
fn bad_sweeps_are_one_line_and_exit_2() {
    let d = tempdir().unwrap();
    let s = store(d.path());
    let out = d.path().join("sw");
    let cases: [(&str, &[&str]); 7] = [
        ("vary = { \"train.lr\" = [] }", &["train.lr", "empty list"]),
        (
            "vary = { \"train.lrate\" = [1e-3] }",
            &["train.lrate", "unknown key"],
        ),
        (
            "vary = { \"data.seed\" = [1, 2] }",
            &["data.seed", "data stream"],
        ),
        (
            "[[sweep.member]]\nname = \"a\"\n[[sweep.member]]\nname = \"a\"\n\"train.lr\" = 1e-3",
            &["two members have this name"],
        ),
        (
            "devices = [\"cuda:7\"]\nvary = { \"train.lr\" = [1e-3] }",
            &["sweep.devices", "cuda:7"],
        ),
        ("", &["no members"]),
        (
            "[[sweep.member]]\nname = \"huge\"\n\"sae.d_sae\" = 2000000000",
            &["need about", "GiB", "free"],
        ),
    ];
    for (body, needles) in cases {
        let cfg = config(d.path(), &sweep_toml(&s, &out, body));
        let o = run(&["sweep", "--config", cfg.to_str().unwrap(), "--headless"]);
        assert_user_error(&o, needles);
        assert!(!out.exists(), "nothing written for a refused sweep");
    }
    let o = run(&[
        "sweep",
        "--resume",
        d.path().to_str().unwrap(),
        "--headless",
    ]);
    assert_user_error(&o, &["not a sweep", "sweep.toml"]);
}

#[test]
fn a_member_config_edit_steers_it_and_sigterm_then_resume_finishes_the_sweep() {
    let d = tempdir().unwrap();
    let s = d.path().join("s.h5");
    synth_store(&s, &small_spec(4096, 2));
    let out = d.path().join("sw");
    let body = sweep_toml(
        &s,
        &out,
        "[[sweep.member]]\nname = \"a\"\n[[sweep.member]]\nname = \"b\"\n\"train.lr\" = 2e-3",
    )
    .replace("steps = 12", "steps = 3000")
    .replace("log_every = 1", "log_every = 20")
    .replace("checkpoint_every = 5", "checkpoint_every = 0");
    let cfg = config(d.path(), &body);
    let err = std::fs::File::create(d.path().join("sweep.stderr")).unwrap();
    let mut child = Reaped(
        bin()
            .args(["sweep", "--config", cfg.to_str().unwrap(), "--headless"])
            .stderr(err)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let member_b = out.join("b");
    assert!(
        wait_for(60, || try_log(&member_b).is_some_and(|l| l
            .iter()
            .any(|r| matches!(r, Record::Metrics(_))))),
        "the sweep did not start"
    );
    // edit member b's config.toml: its lr changes, member a's does not
    let file = member_b.join("config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("lr = 0.002", "lr = 0.0005")).unwrap();
    let steered = wait_for(60, || !records(&member_b, "hyper").is_empty());
    assert!(steered, "no hyper record in member b");
    assert!(records(&out.join("a"), "hyper").is_empty());
    // SIGTERM: every member checkpoints, exit 130
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let code = child.wait().unwrap().code();
    let said = std::fs::read_to_string(d.path().join("sweep.stderr")).unwrap();
    assert_eq!(code, Some(130), "{said}");
    assert!(said.contains("sweep --resume"), "{said}");
    let stopped_at = metrics(&member_b).last().unwrap().step;
    // --resume finishes it, with b's edited lr in force
    let o = run(&["sweep", "--resume", out.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let last = metrics(&member_b).last().cloned().unwrap();
    assert_eq!(last.step, 3000);
    assert!(last.step > stopped_at);
    assert!(
        (last.lr - 5e-4).abs() < 1e-12 || last.lr < 5e-4,
        "lr {}",
        last.lr
    );
    assert!(out.join("a/sae").is_dir() && out.join("b/sae").is_dir());
}

/// Members on two backends in one sweep (flex and LibTorch's CPU device): each batch is uploaded
/// to each device, and each member trains as its own run would on its device.
#[cfg(feature = "tch")]
#[test]
fn members_on_flex_and_libtorch_train_as_their_own_runs() {
    let d = tempdir().unwrap();
    let s = store(d.path());
    let out = d.path().join("sw");
    let members = "devices = [\"cpu\", \"tch-cpu\"]\n\
                   [[sweep.member]]\nname = \"flex\"\n\
                   [[sweep.member]]\nname = \"libtorch\"\n";
    let spec = spec::parse(&sweep_toml(&s, &out, members), "sw.toml", &[], None).unwrap();
    let mut sweep = Sweep::new(&spec).unwrap();
    assert_eq!(drive(&mut sweep, |_| None), SweepOutcome::Done);
    for m in &spec.members {
        let member_dir = out.join(&m.name);
        let (alone_dir, text) = train_alone(d.path(), &member_dir, &m.name);
        assert!(
            text.contains(&format!("device = \"{}\"", m.config.device)),
            "{text}"
        );
        same_losses(&losses(&alone_dir), &losses(&member_dir), &m.name);
    }
}
