//! `jumpscope train`: build or resume a run, wire Ctrl-C/SIGTERM/SIGHUP to a checkpointing stop,
//! and show progress: the live screen when stdout is a terminal (unless `--headless`), else a
//! progress bar on a terminal or one line per report.

use crate::cli::TrainArgs;
use indicatif::ProgressStyle;
use jumpscope::config;
use jumpscope::live::{self, ConfigWatch, Verdict};
use jumpscope::schema::record::Record;
use jumpscope::train::control::{Control, TrainEvent};
use jumpscope::train::trainer::{Outcome, Trainer};
use std::io::IsTerminal;
use std::sync::mpsc;

/// Run the command; returns the process exit code.
pub fn run(args: TrainArgs) -> anyhow::Result<i32> {
    // a bad theme is reported before the run directory is made, even when it is not needed
    let theme = super::theme(&args.look)?;
    let screen = !args.headless && std::io::stdout().is_terminal();
    let mut trainer = match &args.resume {
        Some(dir) => Trainer::resume(dir)?,
        None => {
            let path = args
                .config
                .as_ref()
                .expect("clap requires --config or --resume");
            let mut sets = args.sets.clone();
            if let Some(out) = &args.out {
                sets.push(format!(
                    "{}={}",
                    jumpscope::schema::keys::OUT,
                    toml_string(&out.display().to_string())
                ));
            }
            if let Some(dev) = &args.device {
                sets.push(format!(
                    "{}={}",
                    jumpscope::schema::keys::DEVICE,
                    toml_string(&dev.to_string())
                ));
            }
            let origin = path.display().to_string();
            let cfg = config::load(path, &sets)?.validate(&origin)?;
            Trainer::new(cfg)?
        }
    };
    if screen {
        return live(trainer, theme);
    }
    let (tx, rx) = mpsc::channel();
    let stop_tx = tx.clone();
    // edits of RUN_DIR/config.toml steer a headless run too (e.g. one started under nohup),
    // judged against the configuration in force by the same rule as under the screen
    let in_force = std::sync::Mutex::new(trainer.config().clone());
    let edit_tx = tx.clone();
    let _watch = ConfigWatch::start(trainer.config_file(), move |e| {
        let Ok(mut cur) = in_force.lock() else { return };
        match live::judge_file(&cur, e) {
            Verdict::Apply(new, edit) => {
                *cur = *new;
                let _ = edit_tx.send(Control::SetHyper(edit));
            }
            Verdict::Unchanged => {}
            Verdict::Refused(reason) => eprintln!("warning: {reason}"),
        }
    })
    .map_err(anyhow::Error::msg)?;
    // SIGINT, SIGTERM and SIGHUP all ask for a checkpoint and a clean stop
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(Control::Stop);
    })?;
    let total = trainer.config().total_steps();
    let bar = super::progress_bar(total);
    let fancy = !bar.is_hidden();
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step());
    eprintln!(
        "training {} -> {} ({} steps, device {})",
        trainer
            .config()
            .data
            .stores
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        trainer.run_dir().display(),
        total,
        trainer.config().device
    );
    let say = |s: String| {
        if fancy {
            bar.println(s)
        } else {
            eprintln!("{s}")
        }
    };
    // only the first data epoch gets a line; the rest are counted in the progress line
    let mut epoch_said = false;
    let mut sink = |ev: TrainEvent| match ev {
        TrainEvent::Record(Record::Metrics(m)) => {
            bar.set_position(m.step);
            let epoch = if m.epoch > 0 {
                format!("  epoch {}", m.epoch)
            } else {
                String::new()
            };
            let msg = format!(
                "{:.0} tok/s  L0 {:.1}  EV {:.3}  dead {}{epoch}",
                m.tokens_per_s, m.l0, m.explained_variance, m.dead
            );
            if fancy {
                bar.set_message(msg);
            } else {
                eprintln!("step {}/{}  loss {:.5}  {msg}", m.step, total, m.loss);
            }
        }
        TrainEvent::Record(Record::Epoch { .. }) if epoch_said => {}
        TrainEvent::Record(rec) => {
            epoch_said |= matches!(rec, Record::Epoch { .. });
            // the end of the run is said once, below, with what to do next
            if !matches!(rec, Record::Stop { .. } | Record::Finish { .. })
                && let Some(line) = rec.summary()
            {
                say(format!("step {}: {line}", rec.step()));
            }
        }
        TrainEvent::Warning(w) => say(format!("warning: {w}")),
        TrainEvent::Info(i) => say(i),
    };
    let outcome = trainer.run(&rx, &mut sink);
    bar.finish_and_clear();
    drop(tx);
    finish(&trainer, outcome?)
}

/// Train under the live screen.
fn live(trainer: Trainer, theme: jumpscope::tui::theme::Theme) -> anyhow::Result<i32> {
    use jumpscope::tui::{app, run};
    let (tx, rx) = mpsc::channel();
    let signal_tx = tx.clone();
    // SIGTERM and SIGHUP (an SSH drop) stop with a checkpoint; in raw mode Ctrl-C is a key
    ctrlc::set_handler(move || {
        let _ = signal_tx.send(app::Msg::Signal);
    })?;
    let cfg = trainer.config().clone();
    let name = trainer
        .run_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| trainer.run_dir().display().to_string());
    let device = cfg.device.label();
    let (step, total) = (trainer.step(), cfg.total_steps());
    let screen = app::App::new(cfg, name, device, step, total);
    let edits = tx.clone();
    let _watch = ConfigWatch::start(trainer.config_file(), move |e| {
        let _ = edits.send(app::Msg::ConfigFile(e));
    })
    .map_err(anyhow::Error::msg)?;
    let (trainer, outcome) = run::train_with_tui(trainer, screen, theme, tx, rx);
    finish(&trainer, outcome?)
}

/// Say how the run ended; the exit code.
fn finish(trainer: &Trainer, outcome: Outcome) -> anyhow::Result<i32> {
    match outcome {
        Outcome::Finished {
            sae_dir,
            checkpoint,
        } => {
            eprintln!(
                "done: SAE in {} (SAELens layout), checkpoint {}",
                sae_dir.display(),
                checkpoint.display()
            );
            Ok(0)
        }
        Outcome::Stopped { checkpoint, step } => {
            eprintln!(
                "stopped at step {step}: checkpoint {}; continue with `jumpscope train --resume {}`",
                checkpoint.display(),
                trainer.run_dir().display()
            );
            Ok(130)
        }
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
