//! Transcoders and skip-transcoders through the real binary: every kind with every architecture
//! trains end to end on synthetic pairs, its export names the right SAELens class, `eval
//! --target-store` gives the run's own held-out numbers, a resumed run ends byte for byte where
//! an uninterrupted one does, a sweep varies `sae.kind`, and every mistake the issue lists is
//! one line with exit code 2.

use crate::common::*;
use jumpscope::data::dtype::Dtype;
use jumpscope::data::store::{Extra, write_store};
use jumpscope::data::synth::{SynthSpec, generate_pairs};
use jumpscope::sae::io;
use jumpscope::schema::record::Record;
use std::path::{Path, PathBuf};
use tempfile::tempdir;

/// A synthetic pair: input rows of width 16 and target rows of width 24 written by the same
/// 48 features.
fn pair(dir: &Path, tokens: usize) -> (PathBuf, PathBuf) {
    let spec = SynthSpec {
        d_in: 16,
        features: 48,
        mean_active: 3.0,
        tokens,
        noise: 0.0,
        seed: 5,
    };
    let (s, t) = generate_pairs(&spec, 24);
    let (x, y) = (dir.join("in.h5"), dir.join("out.h5"));
    write_store(&x, "activations", &s.activations, 16, Dtype::F32, &[], &[]).unwrap();
    let extra = [Extra::F32("true_out_features", &t.directions, 48, 24)];
    write_store(
        &y,
        "activations",
        &t.activations,
        24,
        Dtype::F32,
        &extra,
        &[],
    )
    .unwrap();
    (x, y)
}

/// A transcoder's configuration on a pair, its run in `out`.
fn toml(x: &Path, y: &Path, out: &Path, kind: &str, arch: &str) -> String {
    let arch_keys = match arch {
        "topk" | "batchtopk" => "k = 4\n",
        "relu" => "",
        _ => "threshold_init = 0.05\nbandwidth = 0.05\n",
    };
    let train_keys = match arch {
        "topk" | "batchtopk" => "",
        _ => "sparsity_coefficient = 0.01\nsparsity_warmup_steps = 20\n",
    };
    format!(
        "[data]\nstores = [\"{}\"]\ntarget_stores = [\"{}\"]\nbatch_size = 256\neval_tokens = 1024\nseed = 1\n\
         [sae]\nkind = \"{kind}\"\narchitecture = \"{arch}\"\nd_sae = 96\n{arch_keys}\
         [train]\nsteps = 200\nlr = 5e-3\nlr_warmup_steps = 10\n{train_keys}log_every = 50\n\
         eval_every = 100\ncheckpoint_every = 100\n[run]\nout = \"{}\"\n",
        x.display(),
        y.display(),
        out.display()
    )
}

/// A new directory `name` in `dir`.
fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn eval_pair(sae: &Path, x: &Path, y: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval",
        sae.to_str().unwrap(),
        "--store",
        x.to_str().unwrap(),
        "--target-store",
        y.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn every_kind_and_architecture_trains_and_evaluates_as_its_run_did() {
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 6144);
    for kind in ["transcoder", "skip-transcoder"] {
        for arch in ["jumprelu", "topk", "batchtopk", "relu"] {
            let what = format!("{kind} {arch}");
            let run_dir = d.path().join(format!("{kind}-{arch}"));
            let cfg_dir = d.path().join(format!("cfg-{kind}-{arch}"));
            std::fs::create_dir_all(&cfg_dir).unwrap();
            let cfg = config(&cfg_dir, &toml(&x, &y, &run_dir, kind, arch));
            let o = train_cli(&cfg, &[], &[]);
            assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
            // the run says what it trains
            let start = log(&run_dir)
                .into_iter()
                .find_map(|r| match r {
                    Record::Start { kind, d_out, .. } => Some((kind, d_out)),
                    _ => None,
                })
                .expect("a start record");
            assert_eq!((start.0.name(), start.1), (kind, Some(24)), "{what}");
            // the export: SAELens's class for the kind and architecture, both widths, the skip
            let sae = run_dir.join("sae");
            let cfg_json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(sae.join("cfg.json")).unwrap())
                    .unwrap();
            let want = match (kind, arch) {
                ("transcoder", "jumprelu" | "batchtopk") => "jumprelu_transcoder",
                ("transcoder", "relu") => "transcoder",
                ("transcoder", "topk") => io::TOPK_TRANSCODER,
                ("skip-transcoder", "jumprelu" | "batchtopk") => "jumprelu_skip_transcoder",
                ("skip-transcoder", "relu") => "skip_transcoder",
                _ => io::TOPK_SKIP_TRANSCODER,
            };
            assert_eq!(cfg_json["architecture"], want, "{what}");
            assert_eq!(
                (cfg_json["d_in"].as_u64(), cfg_json["d_out"].as_u64()),
                (Some(16), Some(24))
            );
            let tensors = io::read_safetensors(&sae.join("sae_weights.safetensors")).unwrap();
            assert_eq!(tensors["W_dec"].1, vec![96, 24], "{what}");
            assert_eq!(
                tensors.get("W_skip").map(|t| t.1.clone()),
                (kind == "skip-transcoder").then(|| vec![24, 16]),
                "{what}: SAELens keeps W_skip as [d_out, d_in]"
            );
            // it loads back as what it is
            let loaded = io::load(&sae).unwrap();
            assert_eq!(loaded.params.kind().name(), kind, "{what}");
            assert_eq!(loaded.architecture.name(), arch, "{what}");
            // eval on the held-out pairs gives the run's own last held-out numbers
            let held = held_out(&run_dir);
            let last = held.last().expect("held-out evaluations");
            let ours = eval_pair(&sae, &x, &y, &["--held-out"]);
            let fvu = ours["fvu"].as_f64().unwrap();
            assert!(
                (fvu - last.fvu).abs() <= 1e-4 * last.fvu.max(1e-3),
                "{what}: eval FVU {fvu} vs the run's {}",
                last.fvu
            );
            assert_eq!(ours["n_tokens"].as_u64(), Some(1024), "{what}");
            // it learned the map: far better than the mean of the target (FVU 1)
            eprintln!("{what}: held-out FVU {:.4}, L0 {:.2}", last.fvu, last.l0);
            assert!(last.fvu < 0.8, "{what}: held-out FVU {}", last.fvu);
        }
    }
}

#[test]
fn a_transcoder_of_equal_widths_is_still_a_transcoder() {
    // an MLP's input and output have the model's width: nothing but the kind tells a
    // transcoder from an SAE
    let d = tempdir().unwrap();
    let spec = SynthSpec {
        d_in: 16,
        features: 48,
        mean_active: 3.0,
        tokens: 2048,
        noise: 0.0,
        seed: 6,
    };
    let (s, t) = generate_pairs(&spec, 16);
    let (x, y) = (d.path().join("in.h5"), d.path().join("out.h5"));
    write_store(&x, "activations", &s.activations, 16, Dtype::F32, &[], &[]).unwrap();
    write_store(&y, "activations", &t.activations, 16, Dtype::F32, &[], &[]).unwrap();
    let run_dir = d.path().join("run");
    let cfg = config(d.path(), &toml(&x, &y, &run_dir, "transcoder", "jumprelu"));
    let o = train_cli(&cfg, &["train.steps=20"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sae = run_dir.join("sae");
    let cfg_json = std::fs::read_to_string(sae.join("cfg.json")).unwrap();
    assert!(cfg_json.contains("\"jumprelu_transcoder\""), "{cfg_json}");
    let loaded = io::load(&sae).unwrap().params;
    assert_eq!((loaded.kind().name(), loaded.d_out), ("transcoder", 16));
    // evaluated against its target, not its input
    let o = run(&[
        "eval",
        sae.to_str().unwrap(),
        "--store",
        x.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["--target-store"]);
    let ours = eval_pair(&sae, &x, &y, &["--held-out"]);
    let last = last_held_out_fvu(&run_dir);
    assert!((ours["fvu"].as_f64().unwrap() - last).abs() <= 1e-4 * last.max(1e-3));
}

#[test]
fn inspect_reads_the_input_and_measures_the_target() {
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 3072);
    let run_dir = d.path().join("run");
    let cfg = config(d.path(), &toml(&x, &y, &run_dir, "skip-transcoder", "topk"));
    let o = train_cli(&cfg, &["train.steps=60"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sae = run_dir.join("sae");
    let (sae_s, x_s, y_s) = (
        sae.to_str().unwrap(),
        x.to_str().unwrap(),
        y.to_str().unwrap(),
    );
    let o = run(&[
        "inspect",
        sae_s,
        "--store",
        x_s,
        "--target-store",
        y_s,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["sae"]["kind"], "skip-transcoder");
    assert_eq!(report["sae"]["d_out"], 24);
    // the same reconstruction numbers as eval's, on every row
    let ours = eval_pair(&sae, &x, &y, &[]);
    for k in ["fvu", "mse_norm", "l0"] {
        let (a, b) = (report[k].as_f64().unwrap(), ours[k].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{k}: {a} vs {b}");
    }
    // features fire on the input's tokens: k = 4 of them on every row
    let fired: f64 = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["density"].as_f64().unwrap())
        .sum();
    assert!((fired - report["l0"].as_f64().unwrap()).abs() < 1e-6);
    // without its target it says what it needs
    let o = run(&["inspect", sae_s, "--store", x_s, "--json"]);
    assert_user_error(&o, &["--target-store", "skip-transcoder"]);
}

#[test]
fn compare_measures_saes_and_transcoders_on_the_target() {
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 4096);
    // an SAE on the target site, and a transcoder into it
    let (sae_run, tc_run) = (d.path().join("sae-on-y"), d.path().join("tc"));
    let cfg = config(d.path(), &toml(&x, &y, &tc_run, "transcoder", "topk"));
    let o = train_cli(&cfg, &["train.steps=100"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sae_toml = toml(&y, &y, &sae_run, "sae", "topk")
        .replace(&format!("target_stores = [\"{}\"]\n", y.display()), "");
    let o = train_cli(
        &config(&fresh(d.path(), "s"), &sae_toml),
        &["train.steps=100"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let held = last_held_out_fvu;
    let (s, t) = (sae_run.to_str().unwrap(), tc_run.to_str().unwrap());
    let entries = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["compare", s, t, "--json"];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // from the logs, and measured again on the held-out pairs: each its run's held-out FVU
    for e in [
        entries(&[]),
        entries(&[
            "--store",
            x.to_str().unwrap(),
            "--target-store",
            y.to_str().unwrap(),
            "--held-out",
        ]),
    ] {
        assert_eq!(
            (e[0]["kind"].as_str(), e[1]["kind"].as_str()),
            (Some("sae"), Some("transcoder"))
        );
        assert_eq!(
            (e[0]["d_out"].as_u64(), e[1]["d_out"].as_u64()),
            (Some(24), Some(24))
        );
        for (entry, run) in e.iter().zip([&sae_run, &tc_run]) {
            let (a, b) = (entry["fvu"].as_f64().unwrap(), held(run));
            assert!((a - b).abs() <= 1e-4 * b.max(1e-3), "{a} vs {b}");
        }
    }
    // the plain table says which is which
    let o = run(&["compare", s, t]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("topk/tc"));
    // a transcoder on a store without its target
    let o = run(&["compare", s, t, "--store", x.to_str().unwrap()]);
    assert_user_error(&o, &["--target-store", "transcoder"]);
}

#[test]
fn a_resumed_skip_transcoder_ends_where_an_uninterrupted_one_does() {
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 4096);
    let whole = d.path().join("whole");
    let cfg = config(
        d.path(),
        &toml(&x, &y, &whole, "skip-transcoder", "jumprelu"),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let split = d.path().join("split");
    let o = train_cli(
        &cfg,
        &["train.steps=100"],
        &["--out", split.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&[
        "train",
        "--resume",
        split.to_str().unwrap(),
        "--headless",
        "--set",
        "train.steps=200",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let weights = |r: &Path| std::fs::read(r.join("sae/sae_weights.safetensors")).unwrap();
    assert!(
        weights(&whole) == weights(&split),
        "the resumed skip-transcoder differs from the uninterrupted one"
    );
}

#[test]
fn a_sweep_varies_the_kind_on_one_stream() {
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 4096);
    let out = d.path().join("sweep");
    let body = format!(
        "{}[sweep]\nvary = {{ \"sae.kind\" = [\"sae\", \"transcoder\", \"skip-transcoder\"] }}\n",
        toml(&x, &y, &out, "transcoder", "topk").replace("steps = 200", "steps = 40")
    );
    let cfg = config(d.path(), &body);
    let o = run(&["sweep", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut kinds = Vec::new();
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let sae = e.path().join("sae");
        if !sae.is_dir() {
            continue;
        }
        let p = io::load(&sae).unwrap().params;
        // the SAE member reconstructs its input; the others the target
        kinds.push((p.kind().name(), p.d_out));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        vec![("sae", 16), ("skip-transcoder", 24), ("transcoder", 24)]
    );
}

#[test]
fn transcoder_mistakes_are_one_line_and_exit_2() {
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 2048);
    let out = d.path().join("run");
    let good = toml(&x, &y, &out, "transcoder", "jumprelu");
    let cfg = config(d.path(), &good);
    // a transcoder without its target
    let o = train_cli(&cfg, &["sae.kind=\"transcoder\""], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let no_target = good.replace(&format!("target_stores = [\"{}\"]\n", y.display()), "");
    let cfg2 = config(&fresh(d.path(), "a"), &no_target);
    assert_user_error(
        &train_cli(&cfg2, &[], &[]),
        &["data.target_stores", "missing", "transcoder"],
    );
    // target stores given to a plain SAE
    assert_user_error(
        &train_cli(
            &cfg,
            &["sae.kind=\"sae\""],
            &["--out", d.path().join("b").to_str().unwrap()],
        ),
        &["data.target_stores", "sae.kind = \"sae\""],
    );
    // target rows that do not pair with the inputs: both counts named
    let short = d.path().join("short.h5");
    let (_, t) = generate_pairs(
        &SynthSpec {
            d_in: 16,
            features: 48,
            mean_active: 3.0,
            tokens: 1500,
            noise: 0.0,
            seed: 5,
        },
        24,
    );
    write_store(
        &short,
        "activations",
        &t.activations,
        24,
        Dtype::F32,
        &[],
        &[],
    )
    .unwrap();
    let unpaired = good.replace(&y.display().to_string(), &short.display().to_string());
    let cfg3 = config(&fresh(d.path(), "c"), &unpaired);
    assert_user_error(
        &train_cli(&cfg3, &[], &[]),
        &["short.h5", "1500 rows", "2048", "target_stores"],
    );
    // files that do not pair one to one
    let two = format!("target_stores = [\"{}\", \"{}\"]", y.display(), y.display());
    let files = good.replace(&format!("target_stores = [\"{}\"]", y.display()), &two);
    let cfg4 = config(&fresh(d.path(), "d"), &files);
    assert_user_error(&train_cli(&cfg4, &[], &[]), &["4096 rows", "2048"]);
    // init_from of another kind: the SAE trained above is a transcoder
    let o = train_cli(
        &cfg,
        &[
            "sae.kind=\"skip-transcoder\"",
            &format!("sae.init_from=\"{}\"", out.join("sae").display()),
        ],
        &["--out", d.path().join("e").to_str().unwrap()],
    );
    assert_user_error(&o, &["sae.kind = \"skip-transcoder\"", "transcoder"]);
    // init_from of another width
    let o = train_cli(
        &cfg,
        &[
            &format!("sae.init_from=\"{}\"", out.join("sae").display()),
            "sae.d_sae=64",
        ],
        &["--out", d.path().join("f").to_str().unwrap()],
    );
    assert_user_error(&o, &["d_sae"]);
    // eval: a transcoder needs its target, an SAE takes none
    let o = run(&[
        "eval",
        out.join("sae").to_str().unwrap(),
        "--store",
        x.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["--target-store", "transcoder"]);
    let sae_run = d.path().join("sae-run");
    let plain = no_target
        .replace("kind = \"transcoder\"", "kind = \"sae\"")
        .replace(&out.display().to_string(), &sae_run.display().to_string());
    let o = train_cli(&config(&fresh(d.path(), "g"), &plain), &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&[
        "eval",
        sae_run.join("sae").to_str().unwrap(),
        "--store",
        x.to_str().unwrap(),
        "--target-store",
        y.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["--target-store", "is an SAE"]);
}

#[test]
fn the_model_in_the_loop_knows_a_transcoders_target_site() {
    let base = |kind: &str, lm: &str| {
        jumpscope::config::parse(
            &format!(
                "[data]\nstores = [\"in.h5\"]\n{}\n[sae]\nkind = \"{kind}\"\n\
                 [lm_eval]\nmodel = \"m\"\nlayer = 0\ntoken_ids = \"ids.npy\"\n{lm}\n",
                if kind == "sae" {
                    ""
                } else {
                    "target_stores = [\"out.h5\"]"
                }
            ),
            "t.toml",
            &[],
        )
        .unwrap()
        .validate("t.toml")
    };
    let target =
        |r: Result<jumpscope::config::Config, _>| r.map(|c| c.lm_eval.unwrap().target.target_site);
    // an MLP's transcoder writes its output
    assert_eq!(
        target(base("transcoder", "site = \"mlp_in\"")).unwrap(),
        Some("mlp_out".to_string())
    );
    assert_eq!(
        target(base(
            "skip-transcoder",
            "site = \"resid_pre\"\ntarget_site = \"attn_out\""
        ))
        .unwrap(),
        Some("attn_out".to_string())
    );
    let err = |r: Result<_, jumpscope::config::ConfigError>| r.unwrap_err().to_string();
    assert!(
        err(target(base("transcoder", "site = \"resid_pre\"")))
            .contains("lm_eval.target_site = (missing)")
    );
    assert!(
        err(target(base(
            "sae",
            "site = \"mlp_out\"\ntarget_site = \"mlp_out\""
        )))
        .contains("no lm_eval.target_site with sae.kind = \"sae\"")
    );
    assert!(
        err(target(base(
            "transcoder",
            "site = \"mlp_in\"\ntarget_site = \"mlp_mid\""
        )))
        .contains("one of")
    );
}

#[test]
fn init_from_takes_every_kind_back() {
    // a run started from another's export (each kind, each export layout: SAELens's classes and
    // jumpscope's TopK one) holds its weights: both scales and the skip unfold and fold back
    let d = tempdir().unwrap();
    let (x, y) = pair(d.path(), 4096);
    for (kind, arch) in [
        ("skip-transcoder", "topk"),
        ("transcoder", "jumprelu"),
        ("skip-transcoder", "relu"),
    ] {
        let what = format!("{kind} {arch}");
        let first = d.path().join(format!("{kind}-{arch}-a"));
        let cfg_dir = fresh(d.path(), &format!("cfg-{kind}-{arch}"));
        let cfg = config(&cfg_dir, &toml(&x, &y, &first, kind, arch));
        let o = train_cli(&cfg, &["train.steps=100", "train.log_every=1"], &[]);
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
        let again = d.path().join(format!("{kind}-{arch}-b"));
        let o = train_cli(
            &cfg,
            &[
                "train.steps=2",
                "train.log_every=1",
                "train.lr=1e-12",
                &format!("sae.init_from=\"{}\"", first.join("sae").display()),
            ],
            &["--out", again.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
        // its weights, read back, are the export's (lr ≈ 0 leaves them)
        let (a, b) = (
            jumpscope::sae::io::load(&first.join("sae")).unwrap().params,
            jumpscope::sae::io::load(&again.join("sae")).unwrap().params,
        );
        assert_eq!((a.kind, a.d_out), (b.kind, b.d_out), "{what}");
        let worst = |p: &[f32], q: &[f32]| {
            p.iter()
                .zip(q)
                .map(|(u, v)| (u - v).abs() / u.abs().max(1e-3))
                .fold(0.0f32, f32::max)
        };
        assert!(worst(&a.w_dec, &b.w_dec) < 1e-3, "{what}: W_dec");
        assert!(worst(&a.w_enc, &b.w_enc) < 1e-3, "{what}: W_enc");
        assert!(worst(&a.b_dec, &b.b_dec) < 1e-3, "{what}: b_dec");
        if let (Some(p), Some(q)) = (&a.w_skip, &b.w_skip) {
            assert!(worst(p, q) < 1e-3, "{what}: W_skip");
        }
        assert_eq!(a.w_skip.is_some(), kind == "skip-transcoder", "{what}");
    }
}
