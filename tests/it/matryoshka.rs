//! Matryoshka dictionaries through the real binary: nested widths train, each report carries
//! the FVU of every inner width's prefix, the export is the architecture's plain class with
//! the widths in its metadata, a sweep varies the widths, and bad widths are one line, exit 2.

use crate::common::*;
use std::path::Path;
use tempfile::tempdir;

fn synth() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data/synth.h5")
        .display()
        .to_string()
}

fn toml(out: &Path, widths: &str) -> String {
    format!(
        "[data]\nstores = [\"{}\"]\nbatch_size = 1024\neval_tokens = 2048\n\
         [sae]\narchitecture = \"batchtopk\"\nk = 5\nd_sae = 512\nmatryoshka_widths = {widths}\n\
         [train]\nsteps = 300\nlr = 3e-3\nlr_warmup_steps = 50\nlog_every = 50\n\
         checkpoint_every = 0\n[run]\nout = \"{}\"\n",
        synth(),
        out.display()
    )
}

#[test]
fn nested_widths_train_and_report_each_prefix() {
    let d = tempdir().unwrap();
    let run_dir = d.path().join("run");
    let cfg = config(d.path(), &toml(&run_dir, "[32, 128]"));
    let o = train_cli(&cfg, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let last = metrics(&run_dir).pop().expect("reports");
    let widths: Vec<usize> = last.matryoshka_fvu.iter().map(|w| w.width).collect();
    assert_eq!(widths, vec![32, 128], "the inner widths, narrowest first");
    // fewer features reconstruct worse: each prefix's FVU above the next, all above the whole
    let fvu = 1.0 - last.explained_variance;
    let (w32, w128) = (last.matryoshka_fvu[0].fvu, last.matryoshka_fvu[1].fvu);
    assert!(w32 > w128 && w128 > fvu && w32 < 1.0, "{w32} {w128} {fvu}");
    // the export is a plain BatchTopK SAE (SAELens's JumpReLU class) with the widths recorded
    let cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("sae/cfg.json")).unwrap())
            .unwrap();
    assert_eq!(cfg_json["architecture"], "jumprelu");
    assert_eq!(
        cfg_json["metadata"]["matryoshka_widths"],
        serde_json::json!([32, 128, 512]),
        "d_sae is added as the last width"
    );
    // the held-out evaluation, eval and the run agree as for any SAE
    let held = last_held_out_fvu(&run_dir);
    assert!(held < 0.5, "held-out FVU {held}");
}

#[test]
fn a_sweep_varies_the_widths() {
    let d = tempdir().unwrap();
    let out = d.path().join("sweep");
    let body = format!(
        "{}[sweep]\nvary = {{ \"sae.matryoshka_widths\" = [[64], [16, 256]] }}\n",
        toml(&out, "[64]").replace("steps = 300", "steps = 60")
    );
    let cfg = config(d.path(), &body);
    let o = run(&["sweep", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        if !e.path().join("metrics.jsonl").is_file() {
            continue;
        }
        let last = metrics(&e.path()).pop().unwrap();
        seen.push(
            last.matryoshka_fvu
                .iter()
                .map(|w| w.width)
                .collect::<Vec<_>>(),
        );
    }
    seen.sort();
    assert_eq!(seen, vec![vec![16, 256], vec![64]]);
}

#[test]
fn bad_widths_are_one_line_and_exit_2() {
    let d = tempdir().unwrap();
    let run_dir = d.path().join("run");
    let cfg = config(d.path(), &toml(&run_dir, "[64]"));
    for (widths, needles) in [
        (
            "[128, 64]",
            vec!["sae.matryoshka_widths", "strictly increasing", "64"],
        ),
        (
            "[64, 64]",
            vec!["sae.matryoshka_widths", "strictly increasing"],
        ),
        (
            "[64, 1024]",
            vec!["sae.matryoshka_widths", "at most sae.d_sae = 512"],
        ),
        ("[0, 64]", vec!["sae.matryoshka_widths", "at least 1"]),
        ("[]", vec!["sae.matryoshka_widths", "at least 1"]),
    ] {
        let o = train_cli(&cfg, &[&format!("sae.matryoshka_widths={widths}")], &[]);
        assert_user_error(&o, &needles);
    }
    // with d_sae from the expansion factor (64 · 2 = 128), checked once the store is open
    let body = toml(&run_dir, "[64, 256]").replace("d_sae = 512\n", "expansion_factor = 2\n");
    let x = d.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    let cfg = config(&x, &body);
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(&o, &["sae.matryoshka_widths", "256", "d_sae = 128"]);
    assert!(
        !run_dir.exists(),
        "nothing written for a run that could not start"
    );
}
