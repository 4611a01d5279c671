//! Watches a run's `config.toml` (debounced, with `notify`) and turns each save into a message:
//! the edited configuration checked exactly as at start-up, or the reason it was refused.
//! The App decides what of it may apply live (`config::live_changes`).

use crate::config::{self, Config};
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::{Path, PathBuf};
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

/// A running watcher; dropping it stops watching.
pub struct ConfigWatch {
    _debouncer: Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>,
}

impl ConfigWatch {
    /// Watch `run_dir/config.toml`, calling `on_edit` after each (debounced) save. The directory
    /// is watched, not the file, since editors save by writing a new file and renaming it.
    pub fn start(
        run_dir: &Path,
        on_edit: impl Fn(ConfigEdit) + Send + 'static,
    ) -> Result<Self, String> {
        let file: PathBuf = run_dir.join("config.toml");
        let target = file.clone();
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
            let Ok(events) = res else { return };
            let touched = events.iter().any(|e| {
                !e.kind.is_access() && e.paths.iter().any(|p| p.file_name() == target.file_name())
            });
            if touched && target.exists() {
                on_edit(read(&target));
            }
        })
        .map_err(|e| format!("{}: cannot watch: {e}", file.display()))?;
        debouncer
            .watch(run_dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: cannot watch: {e}", run_dir.display()))?;
        Ok(Self {
            _debouncer: debouncer,
        })
    }
}
