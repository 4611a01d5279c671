//! `jumpscope watch RUN_DIR`: the training screen for a run another process trains, following
//! its metrics.jsonl and steering it through its config.toml.

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
    let device = jumpscope::device::label(&cfg.device);
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
