//! `jumpscope watch RUN_DIR`: the training screen for a run another process trains, following
//! its metrics.jsonl and steering it through its config.toml; for a sweep's directory, the
//! sweep screen over its members' logs.

use crate::cli::WatchArgs;
use anyhow::bail;
use jumpscope::live::{self, ConfigEdit, ConfigFile, ConfigWatch};
use jumpscope::tui::{app, run};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::mpsc;

/// Run the command; returns the process exit code.
pub fn run(args: WatchArgs) -> anyhow::Result<i32> {
    let dir = &args.run_dir;
    if dir.join("sweep.toml").is_file() {
        return watch_sweep(&args);
    }
    check_run_dir(dir)?;
    let config = ConfigFile::in_run(dir);
    let cfg = match live::read(config.path()) {
        ConfigEdit::Valid(c) => *c,
        ConfigEdit::Invalid(reason) => {
            bail!("{} is not a usable run directory: {reason}", dir.display())
        }
    };
    let theme = super::theme(&args.look)?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "watch draws a screen and needs a terminal; for a log use `tail -f {}`",
            dir.join("metrics.jsonl").display()
        );
    }
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let device = cfg.device.label();
    let total = cfg.total_steps();
    let screen = app::App::new(cfg, name, device, 0, total).watching();
    let (tx, rx) = mpsc::channel();
    let signal_tx = tx.clone();
    // SIGTERM and SIGHUP close the viewer; the run is another process and goes on
    ctrlc::set_handler(move || {
        let _ = signal_tx.send(app::Msg::Signal);
    })?;
    let edits = tx.clone();
    let _watch = ConfigWatch::start(config.clone(), move |e| {
        let _ = edits.send(app::Msg::ConfigFile(e));
    })
    .map_err(anyhow::Error::msg)?;
    run::watch_with_tui(dir, config, screen, theme, tx, rx).map_err(anyhow::Error::msg)?;
    Ok(0)
}

/// `watch OUT` of a sweep: the sweep screen over its members' logs.
fn watch_sweep(args: &WatchArgs) -> anyhow::Result<i32> {
    use jumpscope::tui::sweep::{SweepApp, SweepMsg, run::watch_sweep_with_tui};
    let dir = &args.run_dir;
    let spec = jumpscope::sweep::spec::load(&dir.join("sweep.toml"), &[], Some(dir))?;
    let theme = super::theme(&args.look)?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "watch draws a screen and needs a terminal; for a log use `tail -f {}`",
            dir.join("sweep.jsonl").display()
        );
    }
    let (tx, rx) = mpsc::channel();
    let signal_tx = tx.clone();
    ctrlc::set_handler(move || {
        let _ = signal_tx.send(SweepMsg::Signal);
    })?;
    let mut members = Vec::new();
    let mut dirs = Vec::new();
    let mut watches = Vec::new();
    for (i, m) in spec.members.iter().enumerate() {
        let run_dir = dir.join(&m.name);
        let file = ConfigFile::in_run(&run_dir);
        // the member's configuration in force, as its process last wrote it
        let cfg = match live::read(file.path()) {
            ConfigEdit::Valid(c) => *c,
            ConfigEdit::Invalid(_) => m.config.clone(),
        };
        let varied = m
            .overrides
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let device = cfg.device.label();
        let total = cfg.total_steps();
        members.push((
            m.name.clone(),
            varied,
            app::App::new(cfg, m.name.clone(), device, 0, total),
        ));
        if file.path().is_file() {
            let edits = tx.clone();
            watches.push(
                ConfigWatch::start(file, move |e| {
                    let _ = edits.send(SweepMsg::ConfigFile(i, e));
                })
                .map_err(anyhow::Error::msg)?,
            );
        }
        dirs.push(run_dir);
    }
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let screen = SweepApp::new(name, members).watching();
    watch_sweep_with_tui(dir, dirs, screen, theme, tx, rx).map_err(anyhow::Error::msg)?;
    drop(watches);
    Ok(0)
}

/// A run directory has the config.toml and metrics.jsonl that `jumpscope train` writes.
fn check_run_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!(
            "{}: not a directory (expected a run directory written by `jumpscope train`)",
            dir.display()
        );
    }
    let missing: Vec<&str> = ["config.toml", "metrics.jsonl"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a run directory: no {} (expected the directory `jumpscope train` writes)",
            dir.display(),
            missing.join(" or ")
        );
    }
    Ok(())
}
