//! The run's `config.toml` as one process sees it: written atomically, read as a
//! [`ConfigEdit`], and watched (debounced, with `notify`), skipping the text this process wrote
//! last, so the trainer's rewrite of the configuration in force is not taken for a user's edit.

use super::ConfigEdit;
use crate::config::{self, Config};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Saves closer together than this count as one.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// A run's config.toml, shared (cheaply cloned) by whoever writes it and whoever watches it in
/// one process.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    /// The text this process wrote last. The lock is held while writing, so a watcher never
    /// reads our own new text before it is recorded here.
    written: Arc<Mutex<Option<String>>>,
}

impl ConfigFile {
    /// `RUN_DIR/config.toml`.
    pub fn in_run(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("config.toml"),
            written: Arc::default(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `cfg` as the configuration in force (atomically: a reader never sees half a file).
    pub fn write(&self, cfg: &Config) -> std::io::Result<()> {
        let text = cfg.to_toml();
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        crate::durable::write_file(&self.path, text.as_bytes())?;
        *written = Some(text);
        Ok(())
    }

    /// The file's contents checked as a configuration, or `None` when it holds exactly what this
    /// process wrote last (or is gone).
    pub fn read_edit(&self) -> Option<ConfigEdit> {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                return Some(ConfigEdit::Invalid(format!("{}: {e}", self.path.display())));
            }
        };
        if written.as_deref() == Some(text.as_str()) {
            return None;
        }
        drop(written);
        let origin = self.path.display().to_string();
        Some(
            match config::parse(&text, &origin, &[]).and_then(|f| f.validate(&origin)) {
                Ok(c) => ConfigEdit::Valid(Box::new(c)),
                Err(e) => ConfigEdit::Invalid(e.to_string()),
            },
        )
    }
}

/// Why a file cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The operating system's watch could not be set up.
    #[error("{}: cannot watch: {source}", path.display())]
    Notify {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What `notify` said.
        source: notify::Error,
    },
    /// The watcher's thread could not start.
    #[error("{}: cannot watch: {source}", path.display())]
    Thread {
        /// The file watched.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Watch one file for changes (not reads): a message on the receiver for each event. Its
/// directory is watched, not the file, since editors save by writing a new file and renaming it;
/// events for the directory's other files are dropped here. Dropping the watcher ends the
/// messages (the receiver disconnects).
pub fn watch_file(file: &Path) -> Result<(RecommendedWatcher, Receiver<()>), WatchError> {
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
    .map_err(|source| WatchError::Notify {
        path: file.to_path_buf(),
        source,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Notify {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok((watcher, rx))
}

/// A running watcher of a run's config.toml; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
}

impl ConfigWatch {
    /// Call `on_edit` with each edit of `file` once it has been quiet for [`DEBOUNCE`], except
    /// for saves that leave exactly the text this process wrote last. Events for the directory's
    /// other files (metrics.jsonl is appended all the time) are dropped before the debounce, so
    /// they never hold it up.
    pub fn start(
        file: ConfigFile,
        on_edit: impl Fn(ConfigEdit) + Send + 'static,
    ) -> Result<Self, WatchError> {
        let (watcher, rx) = watch_file(file.path())?;
        let path = file.path().to_path_buf();
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
                    if let Some(edit) = file.read_edit() {
                        on_edit(edit);
                    }
                }
            })
            .map_err(|source| WatchError::Thread { path, source })?;
        Ok(Self { _watcher: watcher })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_write_is_not_an_edit_but_anyone_elses_is() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config::parse("[data]\nstores = [\"a.h5\"]\n", "t", &[])
            .unwrap()
            .validate("t")
            .unwrap();
        let file = ConfigFile::in_run(d.path());
        assert!(file.read_edit().is_none(), "no file yet");
        file.write(&cfg).unwrap();
        assert!(file.clone().read_edit().is_none(), "our own text");
        let mut theirs = cfg.clone();
        theirs.hyper.lr = 1e-3;
        std::fs::write(file.path(), theirs.to_toml()).unwrap();
        match file.read_edit() {
            Some(ConfigEdit::Valid(c)) => assert_eq!(c.hyper.lr, 1e-3),
            other => panic!("{other:?}"),
        }
        std::fs::write(file.path(), "[train\n").unwrap();
        assert!(matches!(file.read_edit(), Some(ConfigEdit::Invalid(_))));
    }
}
