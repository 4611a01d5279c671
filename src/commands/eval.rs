//! `jumpscope eval`: load an SAE, stream a store through it, print the report.

use crate::cli::EvalArgs;
use jumpscope::data::store::Store;
use jumpscope::{eval, sae::io};

/// Run the command; returns the process exit code.
pub fn exec(args: EvalArgs) -> anyhow::Result<i32> {
    let dev = args.device.resolve()?;
    let loaded = io::load(&args.sae)?;
    let store = Store::open(&args.store, args.dataset.as_deref())?;
    if store.d_in() != loaded.params.d_in {
        anyhow::bail!(
            "{}: SAE has d_in = {}, but store {} (dataset `{}`) has d_in = {}",
            args.sae.display(),
            loaded.params.d_in,
            store.paths()[0].display(),
            store.dataset(),
            store.d_in()
        );
    }
    let bar = super::progress_bar(store.rows() as u64);
    let report = eval::evaluate(
        &loaded.params,
        &store,
        args.batch.max(1),
        &dev,
        |done, _| bar.set_position(done),
    )?;
    bar.finish_and_clear();
    if report.n_tokens == 0 {
        anyhow::bail!(
            "{}: every one of its {} rows has NaN or Inf: nothing to evaluate",
            store.paths()[0].display(),
            store.rows()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "SAE        {} ({}, d_in {}, d_sae {})",
            args.sae.display(),
            loaded.format,
            loaded.params.d_in,
            loaded.params.d_sae
        );
        println!("tokens     {}", report.n_tokens);
        println!("L0         {:.3}", report.l0);
        println!("MSE        {:.6}", report.mse);
        println!("FVU        {:.6}", report.fvu);
        println!("explained  {:.4}", report.explained_variance);
        println!("dead       {} of {}", report.dead, loaded.params.d_sae);
    }
    Ok(0)
}
