//! `jumpscope inspect`: run the inspection pass (or reopen a saved report), then print it as
//! JSON, save it, or summarise it.

use crate::cli::InspectArgs;
use anyhow::bail;
use jumpscope::data::store::Store;
use jumpscope::inspect::report::{FeatureReport, Inspection, SaeInfo};
use jumpscope::inspect::{self, Options};
use jumpscope::train::export::load_any;
use jumpscope::tui::inspect::app::InspectApp;
use std::io::IsTerminal;
use std::time::Instant;

/// Run the command; returns the process exit code.
pub fn exec(args: InspectArgs) -> anyhow::Result<i32> {
    let screen = !args.json && std::io::stdout().is_terminal();
    // a bad theme is reported before the pass
    let theme = super::theme(&args.look)?;
    let (report, decoder) = if is_report(&args.sae) {
        if !args.store.is_empty() {
            bail!(
                "{}: a saved report is reopened as it is; leave out --store (or inspect the SAE itself)",
                args.sae.display()
            );
        }
        (Inspection::read(&args.sae)?, None)
    } else {
        match pass(&args)? {
            Some((r, w_dec)) => (r, Some(w_dec)),
            None => return Ok(0),
        }
    };
    let d_sae = report.features.len();
    let feature = match args.feature {
        Some(k) if k >= d_sae => bail!(
            "--feature {k}: the SAE has {d_sae} features (0 to {})",
            d_sae.saturating_sub(1)
        ),
        Some(k) => Some(&report.features[k]),
        None => None,
    };
    if let Some(out) = &args.out {
        report.write(out)?;
        eprintln!(
            "report saved to {} (reopen: jumpscope inspect {})",
            out.display(),
            out.display()
        );
    }
    if args.json {
        let text = match feature {
            Some(f) => serde_json::to_string(f)?,
            None => serde_json::to_string(&report)?,
        };
        println!("{text}");
    } else if screen {
        let jump = feature.map(|f| f.index);
        let (decoder, note) = match decoder {
            Some(w) => (Some(w), None),
            None => decoder_of(&report),
        };
        let mut app = InspectApp::new(report, decoder, note);
        if let Some(k) = jump {
            app.jump(k);
        }
        // SIGTERM and SIGHUP close the screen cleanly (in raw mode Ctrl-C is a key)
        let _ = app.nearest();
        jumpscope::session::show(&mut app, &theme)?;
    } else {
        summary(&report, feature);
    }
    Ok(0)
}

/// The decoder rows of the report's SAE, for the nearest features, if it is still where it was.
fn decoder_of(report: &Inspection) -> (Option<Vec<f32>>, Option<String>) {
    match load_any(std::path::Path::new(&report.sae.path)).map(|(l, _)| l) {
        Ok(l) if l.params.d_sae == report.sae.d_sae && l.params.d_in == report.sae.d_in => {
            (Some(l.params.w_dec), None)
        }
        Ok(_) => (
            None,
            Some(format!(
                "{}: no longer the SAE of this report (other sizes)",
                report.sae.path
            )),
        ),
        Err(e) => (None, Some(format!("nearest features need the SAE: {e}"))),
    }
}

/// A saved report: a `.json` file (an SAE is a directory, a .npz, or .safetensors/cfg.json).
fn is_report(path: &std::path::Path) -> bool {
    path.is_file()
        && path.extension().is_some_and(|e| e == "json")
        && path.file_name().is_some_and(|n| n != "cfg.json")
}

/// The pass over the store; `None` after `--encode-only` (which prints its own line).
fn pass(args: &InspectArgs) -> anyhow::Result<Option<(Inspection, Vec<f32>)>> {
    if args.store.is_empty() {
        bail!(
            "{}: --store is needed to inspect an SAE (or give a report saved with --out)",
            args.sae.display()
        );
    }
    if !(2..=1024).contains(&args.bins) || !args.bins.is_power_of_two() {
        bail!(
            "--bins {}: expected a power of two from 2 to 1024",
            args.bins
        );
    }
    let dev = args.device.resolve()?;
    let (loaded, from) = load_any(&args.sae)?;
    let mut store = Store::open(&args.store, args.dataset.as_deref())?;
    if let Some(v) = &args.vocab {
        store.set_vocab(jumpscope::data::vocab::load(v)?);
    }
    let p = &loaded.params;
    if store.d_in() != p.d_in {
        bail!(
            "{}: SAE has d_in = {}, but store {} (dataset `{}`) has d_in = {}",
            args.sae.display(),
            p.d_in,
            store.paths()[0].display(),
            store.dataset(),
            store.d_in()
        );
    }
    if let Some(k) = args.feature
        && k >= p.d_sae
    {
        bail!(
            "--feature {k}: the SAE has {} features (0 to {})",
            p.d_sae,
            p.d_sae - 1
        );
    }
    // a transcoder's numbers are of its target: the store of the site it reconstructs
    let target = match args.encode_only {
        true => None,
        false => jumpscope::eval::target_for(
            p,
            &args.sae,
            &store,
            (
                &args.target_store,
                args.target_dataset.as_deref().or(args.dataset.as_deref()),
            ),
        )?,
    };
    let bar = super::progress_bar(store.rows() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} tokens  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let batch = args.batch.max(1);
    if args.encode_only {
        let n = inspect::encode_only(p, &store, batch, &dev, |done, _| bar.set_position(done))?;
        bar.finish_and_clear();
        let s = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"mode": "encode-only", "n_tokens": n, "seconds": s,
                "tokens_per_s": n as f64 / s})
        );
        return Ok(None);
    }
    let opts = Options {
        batch,
        bins: args.bins,
        top_k: args.top_k,
        context: args.context,
        dense: args.dense,
    };
    let info = SaeInfo {
        path: from.display().to_string(),
        format: loaded.format.to_string(),
        d_in: p.d_in,
        d_out: p.d_out,
        kind: p.kind,
        d_sae: p.d_sae,
        architecture: loaded.architecture,
    };
    let report = inspect::inspect(
        p,
        info,
        (&store, target.as_ref()),
        &opts,
        &dev,
        |done, _| bar.set_position(done),
    )?;
    bar.finish_and_clear();
    let s = t0.elapsed().as_secs_f64();
    eprintln!(
        "inspected {} tokens in {:.1} s ({:.0} tokens/s)",
        report.recon.n_tokens,
        s,
        report.recon.n_tokens as f64 / s
    );
    if let Some(note) = &report.context_note {
        eprintln!("note: {note}");
    }
    Ok(Some((report, loaded.params.w_dec)))
}

/// A plain-text summary (for pipes and logs; the screen shows the same interactively).
fn summary(r: &Inspection, feature: Option<&FeatureReport>) {
    println!(
        "SAE        {} ({} {}, d_in {}, d_sae {})",
        r.sae.path,
        r.sae.format,
        r.sae.architecture.name(),
        r.sae.d_in,
        r.sae.d_sae
    );
    if let Some(note) = r.sae.no_theta_note() {
        println!("           {note}");
    }
    println!(
        "store      {} (dataset `{}`)",
        r.stores.join(", "),
        r.dataset
    );
    println!("tokens     {}", r.recon.n_tokens);
    println!("L0         {:.3}", r.recon.l0);
    println!(
        "FVU        {:.6}  (explained variance {:.4})",
        r.recon.fvu, r.recon.explained_variance
    );
    println!(
        "nMSE       {:.6}  (normalised: Σ‖x−x̂‖² / Σ‖x‖²)",
        r.recon.mse_norm
    );
    println!(
        "silent     {} of {} (never fired on these tokens)    dense (density >= {}) {}",
        r.recon.inactive().short(),
        r.sae.d_sae,
        r.dense_threshold,
        r.dense
    );
    let marker = r.sae.theta_marker();
    let show = |f: &FeatureReport| {
        let theta = marker
            .map(|m| format!("  {m} {:.4}", f.threshold))
            .unwrap_or_default();
        println!(
            "feature {:>6}  density {:.3e}  mean {:.4}  max {:.4}{theta}  ‖d‖ {:.3}",
            f.index, f.density, f.mean, f.max, f.decoder_norm
        );
    };
    match feature {
        Some(f) => {
            show(f);
            for t in &f.top {
                let ctx = t.context.as_ref().map(|c| {
                    let words: Vec<String> = match &c.tokens {
                        Some(ts) => ts.clone(),
                        None => c.ids.iter().map(|i| format!("#{i}")).collect(),
                    };
                    words
                        .iter()
                        .enumerate()
                        .map(|(i, w)| {
                            if i == c.active {
                                format!("[[{w}]]")
                            } else {
                                w.clone()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                println!(
                    "  {:>10.4} at {:>10}  {}",
                    t.activation,
                    t.position,
                    ctx.unwrap_or_default()
                );
            }
        }
        None => {
            let mut by_density: Vec<&FeatureReport> = r.features.iter().collect();
            by_density.sort_by(|a, b| b.density.total_cmp(&a.density));
            println!("densest features:");
            for f in by_density.iter().take(10) {
                show(f);
            }
        }
    }
}
