//! The session layer in-process: a run and a sweep headless, their output read from buffers,
//! each ending with the closing line and exit code the commands print.

use crate::common::*;
use jumpscope::session::{self, Output};
use jumpscope::sweep::driver::Sweep;
use jumpscope::sweep::spec;
use jumpscope::train::trainer::Trainer;
use tempfile::tempdir;

#[test]
fn a_headless_run_prints_its_reports_records_and_closing_line() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(600, 3));
    let run_dir = d.path().join("run");
    let cfg = Cfg::on(&store)
        .out(&run_dir)
        .with(&[
            "data.batch_size=64",
            "data.eval_tokens=64",
            "sae.d_sae=32",
            "train.steps=8",
            "train.log_every=2",
            "train.eval_every=4",
            "train.checkpoint_every=4",
        ])
        .build();
    let (out, seen) = Output::capture();
    let closing = session::headless(Trainer::new(cfg).unwrap(), false, &out).unwrap();
    assert_eq!(closing.code, 0);
    assert!(
        closing.message.starts_with("done: SAE in") && closing.message.contains("run/sae"),
        "{}",
        closing.message
    );
    let err = seen.err();
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("training ") && lines[0].contains("(8 steps, device cpu)"));
    // one line per report, the held-out evaluations and checkpoints as `step N: …`
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("step ") && l.contains("/8  loss"))
            .count(),
        4,
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("step 4: held-out")),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("step 4: checkpoint")),
        "{err}"
    );
    // the end is said once, by the closing line, not by the log's finish record
    assert!(!err.contains("finish"), "{err}");
    assert!(seen.out().is_empty());
}

#[test]
fn a_headless_sweep_prints_member_lines_and_the_member_table() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(600, 4));
    let out_dir = d.path().join("sw");
    let text = format!(
        "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 32\nk = 4\n\
         [train]\nsteps = 6\nlog_every = 3\n[run]\nout = \"{}\"\n\
         [sweep]\nvary = {{ \"sae.architecture\" = [\"jumprelu\", \"topk\"] }}\n",
        store.display(),
        out_dir.display()
    );
    let spec = spec::parse(&text, "sw.toml", &[], None).unwrap();
    let (out, seen) = Output::capture();
    let closing = session::headless(Sweep::new(&spec).unwrap(), false, &out).unwrap();
    assert_eq!(closing.code, 0);
    assert!(
        closing.message.contains("rows read once for 2 members"),
        "{}",
        closing.message
    );
    let err = seen.err();
    assert!(err.starts_with("sweep of 2 members"), "{err}");
    for m in ["arch=jumprelu", "arch=topk"] {
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with(m) && l.contains("step      6"))
                .count(),
            1,
            "{err}"
        );
    }
    let table = seen.out();
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("member") && rows[0].contains("heldout FVU"),
        "{table}"
    );
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[1..].iter().all(|r| r.contains("finished")), "{table}");
}
