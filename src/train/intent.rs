//! What a resume is asked to change: the stopped run's `config.toml` edited by hand, and
//! `train --resume DIR --set key=value`. Live keys apply from the first step, logged as edits
//! (source `file` or `set`); the run's length (`train.steps`, `train.tokens`) may change too, so
//! a finished run can be extended; any other change is refused in one line, never ignored.

use crate::config::{Config, TrainLength};
use crate::live::{self, ConfigEdit, HyperEdit};
use crate::schema::keys;
use crate::schema::record::{Change, EditSource};
use std::collections::BTreeMap;
use std::path::Path;

/// A change a resume cannot make.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The stopped run's config.toml changes a key that cannot change on resume, or is not a
    /// configuration.
    #[error(
        "{path}: {why}: restore it to resume this run (or start a new run with it); nothing was changed"
    )]
    File {
        /// The run's config.toml.
        path: String,
        /// Which key, or what is wrong with the file.
        why: String,
    },
    /// A `--set` that cannot apply on resume.
    #[error("--set {set}: {why}")]
    Set {
        /// The `key=value` given.
        set: String,
        /// Why.
        why: String,
    },
}

/// The configuration a resume continues with, and the edits to log when it starts.
#[derive(Debug)]
pub struct Intent {
    /// The configuration in force from the first step.
    pub config: Config,
    /// The edits, in order (the file's, then `--set`'s), each with what it changed.
    pub edits: Vec<HyperEdit>,
}

/// Apply, to `current` (the checkpoint's configuration), the run's `config.toml` as the user
/// left it, then each of `sets`.
pub fn on_resume(current: &Config, run_dir: &Path, sets: &[String]) -> Result<Intent, IntentError> {
    let mut config = current.clone();
    let mut edits = Vec::new();
    let path = run_dir.join("config.toml");
    if path.is_file() {
        let bad = |why: String| IntentError::File {
            path: path.display().to_string(),
            why,
        };
        match live::read(&path) {
            ConfigEdit::Valid(mut new) => {
                // where the run lives now, wherever it was made
                new.out = config.out.clone();
                let edit = step(&mut config, *new, EditSource::File).map_err(|key| {
                    bad(format!(
                        "`{key}` was changed while the run was stopped, and cannot change on resume"
                    ))
                })?;
                edits.extend(edit);
            }
            ConfigEdit::Invalid(why) => return Err(bad(why)),
        }
    }
    for set in sets {
        let bad = |why: String| IntentError::Set {
            set: set.clone(),
            why,
        };
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| bad("expected section.key=value".into()))?;
        let key = key.trim();
        if !keys::is_live(key) && !keys::STEPS.is(key) && !keys::TOKENS.is(key) {
            return Err(bad(format!(
                "`{key}` cannot change on resume (live keys, train.steps and train.tokens can)"
            )));
        }
        let new = config
            .with_edit(key, value.trim(), "--set")
            .map_err(|e| bad(e.to_string()))?;
        let edit = step(&mut config, new, EditSource::Set)
            .map_err(|k| bad(format!("`{k}` cannot change on resume")))?;
        edits.extend(edit);
    }
    Ok(Intent { config, edits })
}

/// Move `config` to `new` if only live keys and the run's length differ; the edit saying so
/// (`None` when nothing changed), or the first key that cannot change.
fn step(config: &mut Config, new: Config, source: EditSource) -> Result<Option<HyperEdit>, String> {
    let mut changes = length_changes(&config.length, &new.length);
    let mut same_length = config.clone();
    same_length.length = new.length.clone();
    let hyper = live::diff(&same_length, &new).map_err(|s| s.key)?;
    changes.extend(hyper);
    *config = new;
    Ok((!changes.is_empty()).then(|| HyperEdit {
        hyper: config.hyper.clone(),
        changes,
        source,
    }))
}

fn length_changes(old: &TrainLength, new: &TrainLength) -> BTreeMap<String, Change> {
    let json = |v: Option<u64>| v.map_or(serde_json::Value::Null, serde_json::Value::from);
    [
        ("steps", old.steps, new.steps),
        ("tokens", old.tokens, new.tokens),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(name, a, b)| {
        (
            name.to_string(),
            Change {
                old: json(a),
                new: json(b),
            },
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> Config {
        let mut c = crate::config::parse(
            "[data]\nstores = [\"a.h5\"]\n[train]\nsteps = 20\n",
            "t",
            &[],
        )
        .unwrap()
        .validate("t")
        .unwrap();
        c.out = dir.to_path_buf();
        c
    }

    #[test]
    fn the_files_edits_then_sets_apply_and_structural_changes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let cfg = base(d.path());
        // unchanged file: nothing to do
        std::fs::write(d.path().join("config.toml"), cfg.to_toml()).unwrap();
        let i = on_resume(&cfg, d.path(), &[]).unwrap();
        assert!(i.edits.is_empty());
        // a live key and the length edited by hand, then a --set
        let text = cfg
            .to_toml()
            .replace("steps = 20", "steps = 40")
            .replace("\nlr = 0.00007\n", "\nlr = 0.001\n");
        assert_ne!(text, cfg.to_toml(), "the edit reached the text");
        std::fs::write(d.path().join("config.toml"), &text).unwrap();
        let i = on_resume(&cfg, d.path(), &["train.sparsity_coefficient=3".into()]).unwrap();
        assert_eq!(i.edits.len(), 2);
        assert_eq!(i.edits[0].source, EditSource::File);
        assert!(i.edits[0].changes.contains_key("steps") && i.edits[0].changes.contains_key("lr"));
        assert_eq!(i.edits[1].source, EditSource::Set);
        assert_eq!(i.config.total_steps(), 40);
        assert_eq!(i.config.hyper.sparsity_coefficient, 3.0);
        // a structural key in the file, or in --set, is refused
        let other = cfg.with_edit("data.batch_size", "64", "t").unwrap();
        std::fs::write(d.path().join("config.toml"), other.to_toml()).unwrap();
        let e = on_resume(&cfg, d.path(), &[]).unwrap_err().to_string();
        assert!(
            e.contains("data.batch_size") && e.contains("cannot change on resume"),
            "{e}"
        );
        std::fs::write(d.path().join("config.toml"), cfg.to_toml()).unwrap();
        let e = on_resume(&cfg, d.path(), &["sae.d_sae=8".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--set sae.d_sae=8") && e.contains("cannot change on resume"),
            "{e}"
        );
    }
}
