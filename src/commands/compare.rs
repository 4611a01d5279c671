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
    let entries = if args.store.is_empty() {
        compare::from_logs(&inputs)?
    } else {
        let dev = args.device.resolve()?;
        let store = Store::open(&args.store, args.dataset.as_deref())?;
        let bar = super::progress_bar(store.rows() as u64 * inputs.len() as u64);
        let rows = store.rows() as u64;
        let e = compare::on_store(&inputs, &store, args.batch.max(1), &dev, |k, _, done, _| {
            bar.set_position(k as u64 * rows + done)
        })?;
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
    println!(
        "{:<w$}  {:>9}  {:>6}  {:<24}  {:>7}  {:>9}  {:>7}  {:>6}  {:>5}  basis",
        "name", "arch", "d_sae", "hyperparameters", "L0", "MSE", "FVU", "dead", "front"
    );
    for e in entries {
        let hyper = e.hyper_text();
        println!(
            "{:<w$}  {:>9}  {:>6}  {:<24}  {:>7.2}  {:>9.5}  {:>7.4}  {:>6}  {:>5}  {}",
            e.name,
            e.architecture,
            e.d_sae,
            hyper,
            e.l0,
            e.mse,
            e.fvu,
            e.dead.map_or("-".into(), |d| d.to_string()),
            if e.on_frontier { "yes" } else { "" },
            e.basis
        );
    }
}
