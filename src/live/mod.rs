//! Live configuration: the one rule for what an edit of a running run's configuration means.
//! A key on the screen, a save of `RUN_DIR/config.toml` (under the screen, headless, or from
//! `watch` in another process) all become either validated hyperparameter changes, computed once
//! and carried to the trainer in a [`HyperEdit`], or a refusal naming the key. The run's
//! config.toml itself is a [`ConfigFile`], which knows what this process wrote last so that its
//! watcher does not react to the trainer's own rewrites.

mod file;

pub use file::{ConfigFile, ConfigWatch, WatchError, watch_file};

use crate::config::{self, Config, Hyper};
use crate::schema::keys;
use crate::schema::record::{Change, EditSource};
use std::collections::BTreeMap;

/// A checked change of the live hyperparameters, as the trainer receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperEdit {
    /// The hyperparameters to train with from the next step.
    pub hyper: Hyper,
    /// What differs from the values in force, by hyperparameter name (never empty).
    pub changes: BTreeMap<String, Change>,
    /// Who asked.
    pub source: EditSource,
}

/// A configuration read from a file, checked as `jumpscope train --config` checks one.
#[derive(Debug)]
pub enum ConfigEdit {
    /// It parses and validates.
    Valid(Box<Config>),
    /// It does not: the one-line reason (names the file and key).
    Invalid(String),
}

/// What an edit means for a run whose configuration in force is `current`.
#[derive(Debug)]
pub enum Verdict {
    /// Only hyperparameters changed: the new configuration, and the edit to send.
    Apply(Box<Config>, Box<HyperEdit>),
    /// Nothing changed.
    Unchanged,
    /// Refused as a whole (syntax, unknown key, bad value, or a structural key): why, in one
    /// line.
    Refused(String),
}

/// A change of a key that cannot change while a run trains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` cannot change while training (restart the run to change it)")]
pub struct Structural {
    /// The first such key that changed (`section.key`).
    pub key: String,
}

/// The hyperparameters that differ from `old` to `new`, by name, or the first structural key
/// that changed, which makes the edit unusable live.
pub fn diff(old: &Config, new: &Config) -> Result<BTreeMap<String, Change>, Structural> {
    let mut same_hyper = new.clone();
    same_hyper.hyper = old.hyper.clone();
    if same_hyper != *old {
        return Err(Structural {
            key: structural_key(old, new),
        });
    }
    let value = |h: &Hyper| match serde_json::to_value(h) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (value(&old.hyper), value(&new.hyper));
    Ok(b.into_iter()
        .filter_map(|(k, new)| {
            let old = a.get(&k).cloned().unwrap_or_default();
            (old != new).then_some((k, Change { old, new }))
        })
        .collect())
}

/// The first key outside [`Hyper`] whose value differs (as the file would show it).
fn structural_key(old: &Config, new: &Config) -> String {
    let table = |c: &Config| match toml::Value::try_from(c.to_file()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let (a, b) = (table(old), table(new));
    let empty = toml::Table::new();
    let mut sections: Vec<&String> = a.keys().chain(b.keys()).collect();
    sections.sort();
    sections.dedup();
    for sec in sections {
        let ta = a.get(sec).and_then(|v| v.as_table()).unwrap_or(&empty);
        let tb = b.get(sec).and_then(|v| v.as_table()).unwrap_or(&empty);
        let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let key = format!("{sec}.{k}");
            if ta.get(k) != tb.get(k) && !keys::is_live(&key) {
                return key;
            }
        }
    }
    // every field is in the file form; reaching here means the two differ only in ways the
    // file cannot show
    "the configuration".into()
}

/// The verdict on `new` replacing `current`, the edit tagged with `source`.
fn verdict(current: &Config, new: Config, source: EditSource) -> Verdict {
    match diff(current, &new) {
        Ok(changes) if changes.is_empty() => Verdict::Unchanged,
        Ok(changes) => {
            let edit = HyperEdit {
                hyper: new.hyper.clone(),
                changes,
                source,
            };
            Verdict::Apply(Box::new(new), Box::new(edit))
        }
        Err(s) => Verdict::Refused(format!("config.toml refused, nothing applied: {s}")),
    }
}

/// A save of the run's config.toml.
pub fn judge_file(current: &Config, edit: ConfigEdit) -> Verdict {
    match edit {
        ConfigEdit::Valid(new) => verdict(current, *new, EditSource::File),
        ConfigEdit::Invalid(e) => {
            Verdict::Refused(format!("config.toml refused, nothing applied: {e}"))
        }
    }
}

/// `key = value` typed on the screen (`key` is `section.key`, `value` TOML or a bare string),
/// checked exactly as a config file is.
pub fn judge_key(current: &Config, key: &str, value: &str) -> Verdict {
    if !keys::is_live(key) {
        return Verdict::Refused(format!(
            "refused: `{key}` cannot change while training (restart the run to change it)"
        ));
    }
    match current.with_edit(key, value, "key") {
        Ok(new) => verdict(current, new, EditSource::Key),
        Err(e) => Verdict::Refused(format!("refused: {e}")),
    }
}

/// Read and check the configuration file at `path`.
pub fn read(path: &std::path::Path) -> ConfigEdit {
    let origin = path.display().to_string();
    // an editor that truncates before it writes, or a save of nothing: not "every key changed"
    if std::fs::read_to_string(path).is_ok_and(|t| t.trim().is_empty()) {
        return ConfigEdit::Invalid(format!(
            "{origin}: the file is empty: the run goes on with the configuration in force (save the whole file to change it)"
        ));
    }
    match config::load(path, &[]).and_then(|f| f.validate(&origin)) {
        Ok(c) => ConfigEdit::Valid(Box::new(c)),
        Err(e) => ConfigEdit::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn an_empty_file_is_said_to_be_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        std::fs::write(&p, "\n  \n").unwrap();
        match read(&p) {
            ConfigEdit::Invalid(why) => {
                assert!(
                    why.contains("the file is empty") && !why.contains("cannot change"),
                    "{why}"
                )
            }
            ConfigEdit::Valid(_) => panic!("an empty file is not a configuration"),
        }
    }

    fn base() -> Config {
        parse("[data]\nstores = [\"a.h5\"]\n", "t.toml", &[])
            .unwrap()
            .validate("t.toml")
            .unwrap()
    }

    fn applied(v: Verdict) -> (Config, HyperEdit) {
        match v {
            Verdict::Apply(c, e) => (*c, *e),
            other => panic!("expected changes, got {other:?}"),
        }
    }

    fn refusal(v: Verdict) -> String {
        match v {
            Verdict::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_key_edit_carries_its_one_change_by_hyperparameter_name() {
        let cfg = base();
        let (new, edit) = applied(judge_key(&cfg, "train.lr", "3e-4"));
        assert_eq!(new.hyper.lr, 3e-4);
        assert_eq!(edit.hyper, new.hyper);
        assert_eq!(edit.source, EditSource::Key);
        assert_eq!(edit.changes.len(), 1);
        assert_eq!(edit.changes["lr"].old, serde_json::json!(7e-5));
        assert_eq!(edit.changes["lr"].new, serde_json::json!(3e-4));
        let (_, bw) = applied(judge_key(&cfg, "sae.bandwidth", "0.01"));
        assert_eq!(bw.changes.keys().collect::<Vec<_>>(), ["bandwidth"]);
        assert!(matches!(
            judge_key(&cfg, "train.lr", "7e-5"),
            Verdict::Unchanged
        ));
    }

    #[test]
    fn bad_values_and_structural_keys_are_refused_by_name() {
        let cfg = base();
        let bad = refusal(judge_key(&cfg, "train.lr", "-1"));
        assert!(bad.contains("train.lr") && bad.contains("> 0"), "{bad}");
        assert!(refusal(judge_key(&cfg, "sae.d_sae", "64")).contains("`sae.d_sae`"));
        for (key, value) in [
            ("sae.d_sae", "64"),
            ("data.batch_size", "8"),
            ("train.steps", "8"),
            ("run.device", "\"tch-cpu\""),
        ] {
            let new = cfg.with_edit(key, value, "file").unwrap();
            assert_eq!(diff(&cfg, &new).unwrap_err().key, key);
            let r = refusal(judge_file(&cfg, ConfigEdit::Valid(Box::new(new))));
            assert!(r.contains(&format!("`{key}` cannot change")), "{r}");
        }
        let r = refusal(judge_file(&cfg, ConfigEdit::Invalid("t.toml: oops".into())));
        assert_eq!(r, "config.toml refused, nothing applied: t.toml: oops");
    }

    #[test]
    fn a_file_edit_of_several_keys_is_one_edit() {
        let cfg = base();
        let mut new = cfg.clone();
        new.hyper.lr = 1e-4;
        new.hyper.log_every = 7;
        let (_, edit) = applied(judge_file(&cfg, ConfigEdit::Valid(Box::new(new))));
        assert_eq!(edit.source, EditSource::File);
        assert_eq!(edit.changes.keys().collect::<Vec<_>>(), ["log_every", "lr"]);
        assert_eq!(edit.changes["log_every"].new, serde_json::json!(7));
    }
}
