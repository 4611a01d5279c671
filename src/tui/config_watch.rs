//! Watches a run's `config.toml` (debounced, with `notify`) and turns each save into a message:
//! the edited configuration checked exactly as at start-up, or the reason it was refused.
//! The App decides what of it may apply live (`config::live_changes`).

use crate::config::{self, Config};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// Saves closer together than this count as one.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// An edit of the watched file.
#[derive(Debug)]
pub enum ConfigEdit {
    /// The file parses and validates.
    Valid(Box<Config>),
    /// It does not: the one-line reason (names the file and key).
    Invalid(String),
}

/// Read and check `path` as `jumpscope train --config` would.
pub fn read(path: &Path) -> ConfigEdit {
    let origin = path.display().to_string();
    match config::load(path, &[]).and_then(|f| f.validate(&origin)) {
        Ok(c) => ConfigEdit::Valid(Box::new(c)),
        Err(e) => ConfigEdit::Invalid(e.to_string()),
    }
}

/// What a save means for a run whose live configuration is `current`: `Ok(Some(new))` to apply
/// (only hyperparameters changed), `Ok(None)` if nothing changed, `Err(reason)` if the edit is
/// refused as a whole (syntax, unknown key, bad value, or a structural key).
pub fn judge(current: &Config, edit: ConfigEdit) -> Result<Option<Config>, String> {
    let new = match edit {
        ConfigEdit::Valid(c) => *c,
        ConfigEdit::Invalid(e) => return Err(format!("config.toml refused, nothing applied: {e}")),
    };
    match config::live_changes(current, &new) {
        Ok(changes) if changes.is_empty() => Ok(None),
        Ok(_) => Ok(Some(new)),
        Err(key) => Err(format!(
            "config.toml refused, nothing applied: `{key}` cannot change while training (restart the run to change it)"
        )),
    }
}

/// Watch one file for changes (not reads): a message on the receiver for each event. Its
/// directory is watched, not the file, since editors save by writing a new file and renaming it;
/// events for the directory's other files are dropped here. Dropping the watcher ends the
/// messages (the receiver disconnects).
pub fn watch_file(file: &Path) -> Result<(RecommendedWatcher, Receiver<()>), String> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().map(|n| n.to_os_string());
    let (tx, rx) = channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res
            && !matches!(e.kind, notify::EventKind::Access(_))
            && e.paths.iter().any(|p| p.file_name() == name.as_deref())
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("{}: cannot watch: {e}", file.display()))?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("{}: cannot watch: {e}", dir.display()))?;
    Ok((watcher, rx))
}

/// A running watcher; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
}

impl ConfigWatch {
    /// Watch `run_dir/config.toml`, calling `on_edit` once the file has been quiet for
    /// [`DEBOUNCE`] after a change. The directory is watched, not the file, since editors save by
    /// writing a new file and renaming it; events for the directory's other files (metrics.jsonl
    /// is appended all the time) are dropped before the debounce, so they never hold it up.
    pub fn start(
        run_dir: &Path,
        on_edit: impl Fn(ConfigEdit) + Send + 'static,
    ) -> Result<Self, String> {
        let file: PathBuf = run_dir.join("config.toml");
        let (watcher, rx) = watch_file(&file)?;
        let path = file.clone();
        std::thread::Builder::new()
            .name("jumpscope-config-watch".into())
            .spawn(move || {
                // ends when the watcher (and with it the sender) is dropped
                while rx.recv().is_ok() {
                    loop {
                        match rx.recv_timeout(DEBOUNCE) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    if path.exists() {
                        on_edit(read(&path));
                    }
                }
            })
            .map_err(|e| format!("{}: cannot watch: {e}", file.display()))?;
        Ok(Self { _watcher: watcher })
    }
}
