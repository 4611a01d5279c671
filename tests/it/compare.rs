//! `jumpscope compare`: a sweep from its logs, runs and saved SAEs on one store (numbers equal
//! to `eval`'s), the frontier marks, and inputs that cannot be compared refused in one line.

use crate::common::*;
use jumpscope::sweep::frontier::pareto;
use std::path::Path;
use tempfile::tempdir;

fn sweep(dir: &Path, store: &Path, out: &Path) {
    let cfg = config(
        dir,
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\neval_tokens = 128\n[sae]\nd_sae = 48\nk = 4\n\
             [train]\nsteps = 30\nlog_every = 10\neval_every = 10\nlr = 3e-3\n[run]\nout = \"{}\"\n\
             [sweep]\nvary = {{ \"train.sparsity_coefficient\" = [0.001, 0.3], \"sae.architecture\" = [\"jumprelu\", \"topk\"] }}\n",
            store.display(),
            out.display()
        ),
    );
    let o = run(&["sweep", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn json(o: &std::process::Output) -> Vec<serde_json::Value> {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_sweep_compares_from_its_logs_and_on_a_store_as_eval_measures() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(2048, 5));
    let out = d.path().join("sw");
    sweep(d.path(), &store, &out);
    let rows = json(&run(&["compare", out.to_str().unwrap(), "--json"]));
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["basis"] == serde_json::json!({"kind": "held-out", "step": 30})),
        "{rows:?}"
    );
    // hyperparameters are an object of typed values by key
    let topk = rows.iter().find(|r| r["architecture"] == "topk").unwrap();
    assert!(topk["hyper"]["sae.k"].is_u64(), "{topk}");
    assert!(topk["hyper"]["train.lr"].is_f64(), "{topk}");
    assert!(
        rows.iter()
            .any(|r| r["hyper"]["train.sparsity_coefficient"].as_f64() == Some(1e-3)),
        "{rows:?}"
    );
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r["l0"].as_f64().unwrap(), r["fvu"].as_f64().unwrap()))
        .collect();
    let front = pareto(&points);
    assert!(!front.is_empty());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["on_frontier"].as_bool(), Some(front.contains(&i)), "{r}");
    }
    // on a store: a run, a member and a saved SAE, each as `eval` measures it
    let saved = d.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    for f in std::fs::read_dir(out.join("arch=topk/sae")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, saved.join(f.file_name().unwrap())).unwrap();
    }
    let member = out.join("arch=jumprelu,lambda=1e-3");
    let rows = json(&run(&[
        "compare",
        member.to_str().unwrap(),
        saved.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(rows.len(), 2);
    for (r, sae) in rows.iter().zip([member.join("sae"), saved.clone()]) {
        assert_eq!(
            r["basis"],
            serde_json::json!({"kind": "store", "tokens": 2048, "held_out": false})
        );
        let e: serde_json::Value = serde_json::from_slice(
            &run(&[
                "eval",
                sae.to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
                "--json",
            ])
            .stdout,
        )
        .unwrap();
        for k in ["l0", "mse_norm", "fvu"] {
            let (a, b) = (r[k].as_f64().unwrap(), e[k].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{k}: {a} vs eval {b}"
            );
        }
    }
    assert_eq!(rows[1]["architecture"], "topk");
    // the text table, when stdout is not a terminal
    let o = run(&["compare", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("arch=topk") && text.contains("yes") && text.contains("held-out @ step 30"),
        "{text}"
    );
}

#[test]
fn what_cannot_be_compared_is_one_line() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(2048, 5));
    let out = d.path().join("sw");
    sweep(d.path(), &store, &out);
    let sae = out.join("arch=topk/sae");
    let o = run(&["compare", sae.to_str().unwrap()]);
    assert_user_error(&o, &["--store"]);
    let o = run(&["compare", d.path().join("nothing").to_str().unwrap()]);
    assert_user_error(&o, &["nothing", "not a run"]);
    let wide = d.path().join("wide.h5");
    synth_store(
        &wide,
        &jumpscope::data::synth::SynthSpec {
            d_in: 24,
            ..small_spec(512, 1)
        },
    );
    let o = run(&[
        "compare",
        out.to_str().unwrap(),
        "--store",
        wide.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["d_in = 24", "d_in = 16"]);
    // runs of different widths
    let other = d.path().join("other");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\n[sae]\nd_sae = 48\n[train]\nsteps = 10\n[run]\nout = \"{}\"\n",
            wide.display(),
            other.display()
        ),
    );
    let t = run(&["train", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert_eq!(t.status.code(), Some(0), "{}", stderr(&t));
    let o = run(&["compare", out.to_str().unwrap(), other.to_str().unwrap()]);
    assert_user_error(&o, &["d_in = 16", "d_in = 24", "different widths"]);
}
