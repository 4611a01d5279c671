//! `jumpscope compare`: expand the inputs, evaluate them (on a store, or from their logs), and
//! show the table with its frontier chart on a terminal, or print it.

use crate::cli::CompareArgs;
use jumpscope::compare::{self, Entry};
use jumpscope::data::store::Store;
use std::io::IsTerminal;

/// Run the command; returns the process exit code.
pub fn exec(args: CompareArgs) -> anyhow::Result<i32> {
    let theme = super::theme(&args.look)?;
    let inputs = compare::expand(&args.inputs)?;
    let entries = if let Some(model) = &args.model {
        let tokens = match (&args.token_ids, &args.texts) {
            (Some(ids), _) => jumpscope::lmeval::TokenSource::TokenIds(ids.clone()),
            (None, Some(t)) => jumpscope::lmeval::TokenSource::Texts {
                path: t.clone(),
                tokens: args.tokens,
                seq_len: args.seq_len,
            },
            (None, None) => anyhow::bail!("--model needs the tokens: --token-ids or --texts"),
        };
        let target = jumpscope::lmeval::LmTarget {
            model: model.clone(),
            layer: args.layer.unwrap_or(0),
            site: args.site.clone(),
            target_site: args.target_site.clone(),
            tokens,
            device: args.model_device.clone(),
            dtype: "float32".into(),
            batch_size: 8,
        };
        let python = jumpscope::lmeval::python(args.python.as_deref(), None);
        let bar = super::progress_bar(0);
        let e = compare::on_model(&inputs, &python, &target, &mut |what, done, total| {
            bar.set_message(what.to_string());
            bar.set_length(total);
            bar.set_position(done);
        })?;
        bar.finish_and_clear();
        e
    } else if args.store.is_empty() {
        compare::from_logs(&inputs)?
    } else {
        let dev = args.device.resolve()?;
        let store = Store::open(&args.store, args.dataset.as_deref())?;
        let target = match args.target_store.is_empty() {
            true => None,
            false => {
                let t = Store::open(
                    &args.target_store,
                    args.target_dataset.as_deref().or(args.dataset.as_deref()),
                )?;
                jumpscope::data::pair::check(&store, &t)?;
                Some(t)
            }
        };
        let bar = super::progress_bar(store.rows() as u64 * inputs.len() as u64);
        let rows = store.rows() as u64;
        let how = (args.batch.max(1), args.held_out);
        let e = compare::on_store(
            &inputs,
            (&store, target.as_ref()),
            how,
            &dev,
            |k, _, done, _| bar.set_position(k as u64 * rows + done),
        )?;
        bar.finish_and_clear();
        e
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if std::io::stdout().is_terminal() {
        let mut app = jumpscope::tui::compare::CompareApp::new(entries);
        jumpscope::session::show(&mut app, &theme)?;
    } else {
        print_table(&entries);
    }
    Ok(0)
}

fn print_table(entries: &[Entry]) {
    let w = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    // a transcoder's architecture carries its kind (`jumprelu/tc`)
    let a = entries
        .iter()
        .map(|e| e.arch_label().chars().count())
        .fold(9, usize::max);
    let lm = |v: Option<f64>, prec: usize| v.map_or("-".into(), |v| format!("{v:.prec$}"));
    println!(
        "{:<w$}  {:>a$}  {:>6}  {:<24}  {:>7}  {:>7}  {:>7}  {:<19}  {:>8}  {:>7}  {:>7}  {:>5}  basis",
        "name",
        "arch",
        "d_sae",
        "hyperparameters",
        "L0",
        "nMSE",
        "FVU",
        "dead/silent",
        "ΔLM",
        "CE rec.",
        "KL",
        "front"
    );
    for e in entries {
        let hyper = e.hyper_text();
        println!(
            "{:<w$}  {:>a$}  {:>6}  {:<24}  {:>7.2}  {:>7.4}  {:>7.4}  {:<19}  {:>8}  {:>7}  {:>7}  {:>5}  {}",
            e.name,
            e.arch_label(),
            e.d_sae,
            hyper,
            e.l0,
            e.mse_norm,
            e.fvu,
            e.inactive_text(),
            lm(e.delta_lm_loss, 4),
            lm(e.ce_recovered, 3),
            lm(e.kl, 4),
            if e.on_frontier { "yes" } else { "" },
            e.basis
        );
    }
    println!("{}", jumpscope::compare::LEGEND);
}
