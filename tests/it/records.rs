//! The run log's schema: one record of every type serialises to exactly the keys the
//! metrics.jsonl table of docs/configuration.md lists for it, and reads back as the same record.

use jumpscope::eval::Evaluation;
use jumpscope::metrics::stats::Histogram;
use jumpscope::sae::kernels::Kernels;
use jumpscope::schema::health::Kind as HealthKind;
use jumpscope::schema::record::{Change, MetricsRecord, Record};
use jumpscope::train::memory::{MemoryEstimate, RunSizes};
use std::collections::{BTreeMap, BTreeSet};

fn memory() -> MemoryEstimate {
    jumpscope::train::memory::estimate(RunSizes {
        d_in: 16,
        d_sae: 64,
        transcoder: None,
        batch: 64,
        prefetch_depth: 4,
        shuffle_rows: 1024,
        eval_rows: 0,
        kernels: Kernels::HostFused,
    })
}

/// One record of each type, every field filled.
fn one_of_each() -> Vec<Record> {
    let (step, tokens) = (7, 7 * 64);
    let hist = Histogram::new([0.5], 0.0, 1.0, 4);
    vec![
        Record::Start {
            step,
            tokens,
            d_in: 16,
            d_sae: 64,
            architecture: jumpscope::config::Architecture::JumpRelu,
            // a transcoder's: the keys only transcoders write are listed too
            kind: jumpscope::sae::model::Kind::Transcoder,
            d_out: Some(24),
            scale: 1.5,
            device: "cpu".into(),
            store_attributes: [("model".to_string(), "toy".to_string())].into(),
            memory_estimate: Some(memory()),
            memory_available: Some(1 << 34),
        },
        Record::Resume {
            step,
            tokens,
            checkpoint: "run/checkpoints/step-7".into(),
            d_in: 16,
            d_sae: 64,
            architecture: jumpscope::config::Architecture::JumpRelu,
            // a transcoder's: the keys only transcoders write are listed too
            kind: jumpscope::sae::model::Kind::Transcoder,
            d_out: Some(24),
            scale: 1.5,
            device: "cpu".into(),
            memory_estimate: Some(memory()),
            memory_available: None,
        },
        Record::Metrics(Box::new(MetricsRecord {
            step,
            tokens,
            loss: 1.0,
            mse_scaled: 0.5,
            mse_norm: 0.25,
            sparsity: 10.0,
            pre_act: 0.0,
            l0: 10.0,
            explained_variance: 0.5,
            dead: 1,
            dead_fraction: 1.0 / 64.0,
            dead_window_tokens: 4096,
            lr: 1e-3,
            sparsity_coefficient: 1e-3,
            tokens_per_s: 1e5,
            skipped_rows: 0,
            epoch: 0,
            data_wait_fraction: 0.1,
            sparse_fraction: 0.0,
            firing_hist: hist.clone(),
            theta_hist: hist,
            global_threshold: None,
            matryoshka_fvu: vec![jumpscope::schema::record::WidthFvu {
                width: 16,
                fvu: 0.5,
            }],
            elapsed_s: 2.0,
        })),
        Record::Eval {
            step,
            tokens,
            eval: Evaluation {
                n_tokens: 100,
                l0: 9.0,
                mse_raw: 0.4,
                mse_norm: 0.2,
                fvu: 0.3,
                explained_variance: 0.7,
                silent: 2,
                silent_fraction: 2.0 / 64.0,
            },
        },
        Record::Checkpoint {
            step,
            tokens,
            path: "run/checkpoints/step-7".into(),
        },
        Record::Epoch {
            step,
            tokens,
            epoch: 1,
        },
        Record::Hyper {
            step,
            tokens,
            source: jumpscope::schema::record::EditSource::Key,
            changes: [(
                "lr".to_string(),
                Change {
                    old: 1e-3.into(),
                    new: 2e-3.into(),
                },
            )]
            .into(),
        },
        Record::Pause { step, tokens },
        Record::ResumeSteps { step, tokens },
        Record::NonfiniteLoss {
            step,
            tokens,
            at_step: 6,
        },
        Record::Stop {
            step,
            tokens,
            checkpoint: "run/checkpoints/step-7".into(),
        },
        Record::Finish {
            step,
            tokens,
            sae: "run/sae".into(),
        },
        Record::Warning {
            step,
            tokens,
            kind: HealthKind::L0Collapse,
            message: "L0 is 0.40: almost no feature fires".into(),
            hint: HealthKind::L0Collapse.hint(jumpscope::config::Architecture::JumpRelu),
            values: [("l0".to_string(), 0.4)].into(),
        },
        Record::WarningCleared {
            step,
            tokens,
            kind: HealthKind::L0Collapse,
        },
        Record::LmEval(Box::new(jumpscope::schema::record::LmEvalRecord {
            step,
            tokens,
            scores: jumpscope::lmeval::LmScores {
                ce_clean: 2.0,
                ce_spliced: 2.1,
                ce_ablated: 6.0,
                delta_lm_loss: 0.1,
                ce_recovered: 0.975,
                kl: 0.08,
                l0: 12.0,
                fvu: 0.05,
            },
            eval_tokens: 4096,
            model: "sample_data/tinylm".into(),
            layer: 0,
            site: "resid_post".into(),
            target_site: Some("mlp_out".into()),
        })),
        Record::LmEvalSkipped {
            step,
            tokens,
            running: 5,
        },
        Record::LmEvalFailed {
            step,
            tokens,
            message: "the model companion failed".into(),
        },
    ]
}

/// docs/configuration.md's metrics.jsonl table: each type with its keys. A key is a backticked name in the
/// second column (`{...}` sub-schemas and values like `key` in parentheses are not keys: the
/// parentheses are dropped first).
fn readme_table() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let section = doc
        .split("\n## metrics.jsonl")
        .nth(1)
        .expect("docs/configuration.md has a metrics.jsonl section");
    let section = section.split("\n## ").next().unwrap();
    let backticked = |text: &str| -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut out = BTreeMap::new();
    // the rows after the header and its |---| line
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.split('|').collect();
        let kind = backticked(cells[1]);
        assert_eq!(kind.len(), 1, "one type per row: {line}");
        // drop parenthesised explanations, which may hold backticked values
        let mut keys_text = String::new();
        let mut depth = 0;
        for c in cells[2].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => keys_text.push(c),
                _ => {}
            }
        }
        let keys = backticked(&keys_text).into_iter().collect();
        assert!(
            out.insert(kind[0].clone(), keys).is_none(),
            "{} listed twice",
            kind[0]
        );
    }
    out
}

#[test]
fn every_record_type_has_exactly_the_keys_the_readme_lists() {
    let records = one_of_each();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind()).collect();
    assert_eq!(kinds, Record::KINDS, "one record of every type, in order");
    let table = readme_table();
    assert_eq!(
        table.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        Record::KINDS.into_iter().collect::<BTreeSet<_>>(),
        "docs/configuration.md lists every type and no other"
    );
    for rec in &records {
        let v = serde_json::to_value(rec).unwrap();
        let mut keys: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(v["type"], rec.kind());
        for common in ["type", "step", "tokens"] {
            assert!(keys.remove(common), "{}: no `{common}`", rec.kind());
        }
        assert_eq!(keys, table[rec.kind()], "keys of `{}`", rec.kind());
        // and it reads back as itself, through the same type `watch` uses
        let line = serde_json::to_vec(rec).unwrap();
        assert_eq!(Record::parse(&line).unwrap().as_ref(), Some(rec));
    }
}

#[test]
fn every_record_but_metrics_has_a_summary() {
    for rec in one_of_each() {
        assert_eq!(
            rec.summary().is_none(),
            rec.kind() == "metrics",
            "{}",
            rec.kind()
        );
    }
    let hyper = &one_of_each()[6];
    assert_eq!(hyper.summary().unwrap(), "[key] lr: 0.001 -> 0.002");
}
