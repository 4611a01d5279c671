//! `jumpscope eval`: load an SAE, stream a store through it, print the report.

use crate::cli::EvalArgs;
use jumpscope::data::store::Store;
use jumpscope::eval;
use jumpscope::train::export::load_any;
use std::path::Path;

/// Run the command; returns the process exit code.
pub fn exec(args: EvalArgs) -> anyhow::Result<i32> {
    let dev = args.device.resolve()?;
    // a saved SAE, a run (its sae/, or its newest checkpoint while it trains), a checkpoint
    let (loaded, from) = load_any(&args.sae)?;
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
    let kind = loaded.params.kind();
    let target = jumpscope::eval::target_for(
        &loaded.params,
        &args.sae,
        &store,
        (
            &args.target_store,
            args.target_dataset.as_deref().or(args.dataset.as_deref()),
        ),
    )?;
    let rows = if args.held_out {
        eval::held_out_rows(store.rows(), held_out_tokens(&args.sae, &from)?)
    } else {
        0..store.rows()
    };
    let bar = super::progress_bar(rows.len() as u64);
    let report = eval::evaluate(
        &loaded.params,
        (&store, target.as_ref()),
        rows,
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
        let width = match kind.has_target() {
            true => format!("d_in {}, d_out {}", loaded.params.d_in, loaded.params.d_out),
            false => format!("d_in {}", loaded.params.d_in),
        };
        println!(
            "{:<10} {} ({}, {width}, d_sae {})",
            if kind.has_target() {
                kind.name()
            } else {
                "SAE"
            },
            from.display(),
            loaded.format,
            loaded.params.d_sae
        );
        println!("tokens     {}", report.n_tokens);
        println!("L0         {:.3}", report.l0);
        println!(
            "nMSE       {:.6}  (normalised: Σ‖x−x̂‖² / Σ‖x‖²)",
            report.mse_norm
        );
        println!(
            "MSE raw    {:.6}  (mean ‖x−x̂‖², raw activation units)",
            report.mse_raw
        );
        println!("FVU        {:.6}", report.fvu);
        println!("explained  {:.4}", report.explained_variance);
        println!(
            "silent     {} of {}  (never fired on these {} tokens)",
            report.inactive().short(),
            loaded.params.d_sae,
            report.n_tokens
        );
    }
    Ok(0)
}

/// How many rows at the end of the store the SAE's run held out of training
/// (`data.eval_tokens` of the run: `given` itself, the run of its `sae/`, or of a checkpoint).
fn held_out_tokens(given: &Path, from: &Path) -> anyhow::Result<usize> {
    let run = [Some(given), from.parent(), from.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
        .find(|d| d.join("config.toml").is_file() && d.join("metrics.jsonl").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: --held-out needs a run's SAE (a run's configuration says which rows it held out of training)",
                given.display()
            )
        })?;
    let path = run.join("config.toml");
    let origin = path.display().to_string();
    let cfg = jumpscope::config::load(&path, &[])?.validate(&origin)?;
    match cfg.data.eval_tokens {
        0 => anyhow::bail!(
            "{}: --held-out: the run held out no rows (data.eval_tokens = 0)",
            run.display()
        ),
        n => Ok(n),
    }
}
