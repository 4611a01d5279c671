//! `jumpscope lm-eval`: SAEs spliced into their language model, one companion for all of them;
//! a table (or JSON), and an `lm-eval` record appended to each run evaluated.

use crate::cli::LmEvalArgs;
use jumpscope::compare::{Input, expand};
use jumpscope::lmeval::{self, LmScores, LmTarget, TokenSource};
use jumpscope::metrics::log::JsonlLog;
use jumpscope::sae::io;
use jumpscope::sae::model::HostParams;
use jumpscope::schema::record::{LmEvalRecord, Record, read_log};
use jumpscope::train::export::checkpoint_inference;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One SAE to evaluate: its name, parameters, and the run it belongs to (with its step, tokens).
struct Subject {
    name: String,
    params: HostParams,
    run: Option<(PathBuf, u64, u64)>,
}

/// One line of `--json`.
#[derive(Serialize)]
struct Row<'a> {
    sae: &'a str,
    #[serde(flatten)]
    scores: &'a LmScores,
    tokens: u64,
}

/// Run the command; returns the process exit code.
pub fn exec(args: LmEvalArgs) -> anyhow::Result<i32> {
    let target = LmTarget {
        model: args.model.clone(),
        layer: args.layer,
        site: args.site.clone(),
        target_site: args.target_site.clone(),
        tokens: match (&args.token_ids, &args.texts) {
            (Some(ids), _) => TokenSource::TokenIds(ids.clone()),
            (None, Some(t)) => TokenSource::Texts {
                path: t.clone(),
                tokens: args.tokens,
                seq_len: args.seq_len,
            },
            (None, None) => anyhow::bail!("give --token-ids or --texts"),
        },
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        batch_size: args.batch_size.max(1),
    };
    target.check()?;
    let subjects = subjects(&args.saes)?;
    let python = lmeval::python(args.python.as_deref(), None);
    let bar = super::progress_bar(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} sequences")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let saes: Vec<(String, HostParams)> = subjects
        .iter()
        .map(|s| (s.name.clone(), s.params.clone()))
        .collect();
    let (base, scores) = lmeval::evaluate(&python, &target, &saes, &mut |what, done, total| {
        bar.set_message(what.to_string());
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if !args.no_record {
        for (s, sc) in subjects.iter().zip(&scores) {
            if let Some((run, step, tokens)) = &s.run {
                record(run, *step, *tokens, sc, base.positions, &target)?;
            }
        }
    }
    if args.json {
        let rows: Vec<Row> = subjects
            .iter()
            .zip(&scores)
            .map(|(s, sc)| Row {
                sae: &s.name,
                scores: sc,
                tokens: base.positions,
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    println!(
        "model {} ({} sequences x {} tokens; CE clean {:.4}, ablated {:.4})",
        target.describe(),
        base.n_seq,
        base.seq_len,
        base.ce_clean,
        base.ce_ablated
    );
    let width = subjects
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}  {:>7}",
        "SAE", "ΔLM loss", "CE spl.", "CE rec.", "KL", "L0", "FVU"
    );
    for (s, sc) in subjects.iter().zip(&scores) {
        println!(
            "{:<width$}  {:>+9.4}  {:>9.4}  {:>8.4}  {:>8.4}  {:>8.2}  {:>7.4}",
            s.name, sc.delta_lm_loss, sc.ce_spliced, sc.ce_recovered, sc.kl, sc.l0, sc.fvu
        );
    }
    Ok(0)
}

/// The SAEs the arguments name: saved SAEs as they are, runs (and sweeps' members) by their
/// exported SAE or, while they train, their newest checkpoint.
fn subjects(paths: &[PathBuf]) -> anyhow::Result<Vec<Subject>> {
    let mut out = Vec::new();
    for input in expand(paths)? {
        match input {
            Input::Sae(p) if p.join("state.json").is_file() => {
                // a checkpoint: its run (two levels up) records the result
                let (params, step, tokens) = checkpoint_inference(&p)?;
                let run = p
                    .parent()
                    .and_then(Path::parent)
                    .filter(|r| r.join("metrics.jsonl").is_file())
                    .map(|r| (r.to_path_buf(), step, tokens));
                out.push(Subject {
                    name: p.display().to_string(),
                    params,
                    run,
                });
            }
            Input::Sae(p) => out.push(Subject {
                name: p.display().to_string(),
                params: io::load(&p)?.params,
                run: None,
            }),
            Input::Run(dir) => {
                let finished = read_log(&dir.join("metrics.jsonl")).ok().and_then(|log| {
                    log.iter().rev().find_map(|r| match r {
                        Record::Finish { step, tokens, .. } => Some((*step, *tokens)),
                        _ => None,
                    })
                });
                let (params, step, tokens) = match finished {
                    Some((step, tokens)) if dir.join("sae").is_dir() => {
                        (io::load(&dir.join("sae"))?.params, step, tokens)
                    }
                    _ => checkpoint_inference(&dir).map_err(|e| {
                        anyhow::anyhow!(
                            "{}: the run has no exported SAE and no checkpoint to evaluate ({e})",
                            dir.display()
                        )
                    })?,
                };
                out.push(Subject {
                    name: dir.display().to_string(),
                    params,
                    run: Some((dir, step, tokens)),
                });
            }
        }
    }
    Ok(out)
}

/// Append the result to the run's metrics.jsonl (one line, appended whole).
fn record(
    run: &Path,
    step: u64,
    tokens: u64,
    scores: &LmScores,
    eval_tokens: u64,
    t: &LmTarget,
) -> anyhow::Result<()> {
    let path = run.join("metrics.jsonl");
    let mut log = JsonlLog::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let rec = Record::LmEval(Box::new(LmEvalRecord {
        step,
        tokens,
        scores: *scores,
        eval_tokens,
        model: t.model.clone(),
        layer: t.layer,
        site: t.site.clone(),
        target_site: t.target_site.clone(),
    }));
    log.append(&rec)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
