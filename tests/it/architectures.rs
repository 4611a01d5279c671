//! The baselines beside JumpReLU (TopK, BatchTopK, ReLU) through the whole workbench: each sample
//! recipe recovers the synthetic store's known features at about the demo's L0 and exports an SAE
//! that loads back as its own architecture and evaluates the same; resume equals an uninterrupted
//! run; k is live; and every misuse is one line naming the key and the architecture.

use crate::common::*;
use jumpscope::config::{Architecture, Config, parse};
use jumpscope::data::synth::mmcs;
use jumpscope::live;
use jumpscope::sae::io;
use jumpscope::train::control::{Control, TrainEvent};
use jumpscope::train::trainer::{Outcome, Trainer};
use std::path::Path;
use std::sync::mpsc;
use tempfile::tempdir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn slow_every_sample_recipe_recovers_the_known_features_at_the_demos_l0() {
    let d = tempdir().unwrap();
    let store = Path::new(ROOT).join("sample_data/synth.h5");
    let truth = jumpscope::data::store::read_f32_dataset(&store, "true_features").unwrap();
    let d_in = truth.1[1];
    let mut l0s = Vec::new();
    for (name, arch) in [
        ("demo", Architecture::JumpRelu),
        ("topk", Architecture::TopK),
        ("batchtopk", Architecture::BatchTopK),
        ("relu", Architecture::Relu),
    ] {
        let run = d.path().join(name);
        let err = stderr(&train_sample(name, &run));
        assert!(!err.contains("warning"), "{name} runs clean:\n{err}");
        let loaded = io::load(&run.join("sae")).unwrap();
        assert_eq!(loaded.architecture, arch, "{name}");
        assert_eq!(loaded.params.topk.is_some(), arch == Architecture::TopK);
        let score = mmcs(&loaded.params.w_dec, &truth.0, d_in);
        let e = eval_json(&run.join("sae"), &store);
        let l0 = e["l0"].as_f64().unwrap();
        eprintln!("{name}: MMCS {score:.3}, L0 {l0:.2}, FVU {:.3}", e["fvu"]);
        assert!(score >= 0.85, "{name}: MMCS {score}");
        l0s.push((name, l0));
        inspect_marks_theta_only_where_there_is_one(&run.join("sae"), &store, arch, l0);
        // doctor says which rule the architecture skips
        let o = crate::common::run(&["doctor", run.to_str().unwrap()]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let skipped = format!(
            "skip threshold-frozen: not checked ({} has no trained threshold θ)",
            arch.name()
        );
        assert_eq!(
            out.contains(&skipped),
            arch != Architecture::JumpRelu,
            "{name}:\n{out}"
        );
    }
    // about the demo's L0: within a factor of 1.5 of it
    let demo = l0s[0].1;
    for (name, l0) in &l0s {
        assert!(
            *l0 >= demo / 1.5 && *l0 <= demo * 1.5,
            "{name}: L0 {l0} against the demo's {demo}"
        );
    }
}

/// `inspect` encodes as the architecture does (its L0 equals eval's), names the architecture,
/// and shows θ only for JumpReLU (per feature) and BatchTopK (one global value).
fn inspect_marks_theta_only_where_there_is_one(
    sae: &Path,
    store: &Path,
    arch: Architecture,
    l0: f64,
) {
    let args = [
        "inspect",
        sae.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    let o = run(&[&args[..], &["--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["sae"]["architecture"], arch.name());
    let inspected = r["l0"].as_f64().unwrap();
    assert!(
        (inspected - l0).abs() < 1e-3,
        "{arch:?}: inspect L0 {inspected} vs eval {l0}"
    );
    let o = run(&[&args[..], &["--feature", "3"]].concat());
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let has_theta = text.contains(" θ ");
    match arch {
        Architecture::JumpRelu => assert!(has_theta, "{text}"),
        Architecture::BatchTopK => assert!(text.contains("θ (global)"), "{text}"),
        Architecture::TopK => assert!(!has_theta && text.contains("no θ: a TopK SAE"), "{text}"),
        Architecture::Relu => assert!(!has_theta && text.contains("no θ: a ReLU SAE"), "{text}"),
    }
}

fn small(store: &Path, out: &Path, arch: &str, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = vec![
        format!("data.stores=[\"{}\"]", store.display()),
        "data.batch_size=64".into(),
        "data.seed=3".into(),
        format!("sae.architecture=\"{arch}\""),
        "sae.d_sae=40".into(),
        "train.steps=12".into(),
        "train.log_every=1".into(),
        "train.checkpoint_every=5".into(),
        "train.lr=1e-3".into(),
        "train.lr_warmup_steps=3".into(),
        "train.dead_window_tokens=128".into(),
        format!("run.out=\"{}\"", out.display()),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    parse("", "test", &sets).unwrap().validate("test").unwrap()
}

fn run_all(c: Config, stop_at: Option<u64>) -> Outcome {
    let mut t = Trainer::new(c).unwrap();
    let (tx, rx) = mpsc::channel();
    t.run(&rx, &mut |ev| {
        if let TrainEvent::Record(Record::Metrics(m)) = ev
            && Some(m.step) == stop_at
        {
            tx.send(Control::Stop).unwrap();
        }
    })
    .unwrap()
}

#[test]
fn stopped_and_resumed_baselines_match_their_uninterrupted_runs() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(500, 7));
    for (arch, extra) in [
        ("topk", &["sae.k=3"][..]),
        ("batchtopk", &["sae.k=3"][..]),
        ("relu", &["train.sparsity_coefficient=0.05"][..]),
    ] {
        let full = d.path().join(format!("{arch}-full"));
        let cfg = small(&store, &full, arch, extra);
        run_all(cfg.clone(), None);
        // the run's config.toml (what `watch` and live edits read) holds the architecture's
        // keys only and reads back to the same configuration
        match live::read(&full.join("config.toml")) {
            live::ConfigEdit::Valid(c) => assert_eq!(*c, cfg, "{arch}"),
            live::ConfigEdit::Invalid(why) => panic!("{arch}: {why}"),
        }
        let part = d.path().join(format!("{arch}-part"));
        let stopped = run_all(small(&store, &part, arch, extra), Some(7));
        assert!(
            matches!(stopped, Outcome::Stopped { step: 7, .. }),
            "{stopped:?}"
        );
        let mut second = Trainer::resume(&part, &[]).unwrap().trainer().unwrap();
        let (_tx, rx) = mpsc::channel::<Control>();
        second.run(&rx, &mut |_| {}).unwrap();
        let (a, b) = (metrics(&full), metrics(&part));
        assert_eq!(a.len(), 12, "{arch}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x.loss - y.loss).abs() <= 1e-6 * x.loss.abs().max(1.0),
                "{arch} step {}: loss {} vs {}",
                x.step,
                x.loss,
                y.loss
            );
            assert_eq!(x.l0, y.l0, "{arch} step {}", x.step);
        }
        let pa = io::load(&full.join("sae")).unwrap().params;
        let pb = io::load(&part.join("sae")).unwrap().params;
        for (what, u, v) in [
            ("W_dec", &pa.w_dec, &pb.w_dec),
            ("threshold", &pa.threshold, &pb.threshold),
        ] {
            let diff = max_diff(u, v);
            assert!(diff < 1e-6, "{arch}: final {what} differs by {diff}");
        }
        if arch == "batchtopk" {
            // the running threshold is what inference uses: positive, one value for all
            assert!(pa.threshold[0] > 0.0, "{:?}", &pa.threshold[..3]);
            assert!(pa.threshold.iter().all(|t| *t == pa.threshold[0]));
        }
    }
}

#[test]
fn k_is_live_for_topk_and_refused_where_it_does_not_apply() {
    let store = Path::new("unused.h5");
    let out = Path::new("unused");
    let topk = small(store, out, "topk", &["sae.k=3"]);
    match live::judge_key(&topk, "sae.k", "8") {
        live::Verdict::Apply(new, edit) => {
            assert_eq!(new.hyper.k, 8);
            assert!(edit.changes.contains_key("k"), "{:?}", edit.changes);
        }
        other => panic!("{other:?}"),
    }
    let jump = small(store, out, "jumprelu", &[]);
    match live::judge_key(&jump, "sae.k", "8") {
        live::Verdict::Refused(why) => {
            assert!(why.contains("sae.k") && why.contains("jumprelu"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    match live::judge_key(&topk, "sae.bandwidth", "0.1") {
        live::Verdict::Refused(why) => {
            assert!(
                why.contains("sae.bandwidth") && why.contains("topk"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn misuse_is_one_line_naming_the_key_and_the_architecture() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 2));
    let base = format!(
        "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[train]\nsteps = 2\n[run]\nout = \"{}\"\n",
        store.display(),
        d.path().join("run").display()
    );
    let cfg = config(d.path(), &base);
    for (sets, needles) in [
        (
            &["sae.architecture=\"gated\""][..],
            &["sae.architecture", "gated", "topk"][..],
        ),
        (
            &["sae.architecture=\"topk\""][..],
            &["sae.k", "(missing)", "topk"][..],
        ),
        (
            &["sae.architecture=\"topk\"", "sae.k=0"][..],
            &["sae.k = 0", "an integer >= 1"][..],
        ),
        (
            &["sae.architecture=\"topk\"", "sae.k=50", "sae.d_sae=32"][..],
            &["sae.k = 50", "at most sae.d_sae = 32"][..],
        ),
        (
            // d_sae from the expansion factor: checked once the store's d_in is known
            &[
                "sae.architecture=\"batchtopk\"",
                "sae.k=200",
                "sae.expansion_factor=2",
            ][..],
            &["sae.k = 200", "at most d_sae = 32"][..],
        ),
        (&["sae.k=5"][..], &["sae.k", "jumprelu", "topk"][..]),
        (
            &["sae.architecture=\"topk\"", "sae.k=4", "sae.bandwidth=0.1"][..],
            &["sae.bandwidth", "\"topk\"", "jumprelu only"][..],
        ),
        (
            &[
                "sae.architecture=\"topk\"",
                "sae.k=4",
                "train.sparsity_coefficient=0.1",
            ][..],
            &["train.sparsity_coefficient", "\"topk\""][..],
        ),
        (
            &["sae.architecture=\"relu\"", "train.aux_k=8"][..],
            &["train.aux_k", "\"relu\"", "topk and batchtopk"][..],
        ),
        (
            &["sae.architecture=\"relu\"", "train.pre_act_coefficient=0.1"][..],
            &["train.pre_act_coefficient", "\"relu\""][..],
        ),
    ] {
        let o = train_cli(&cfg, sets, &[]);
        assert_user_error(&o, needles);
    }
}

#[test]
fn init_from_an_sae_of_another_architecture_names_both() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 2));
    let first = d.path().join("topk");
    run_all(
        small(&store, &first, "topk", &["sae.k=3", "train.steps=2"]),
        None,
    );
    let sae = first.join("sae");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\ninit_from = \"{}\"\n[train]\nsteps = 2\n[run]\nout = \"{}\"\n",
            store.display(),
            sae.display(),
            d.path().join("run").display()
        ),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(&o, &["topk SAE", "sae.architecture = \"jumprelu\""]);
    // the right architecture continues from it
    let o = train_cli(&cfg, &["sae.architecture=\"topk\"", "sae.k=3"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
