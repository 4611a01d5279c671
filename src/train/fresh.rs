//! Directories whose run or sweep never completed a checkpoint: what the earlier attempt wrote
//! is set aside under `DIR/abandoned-K/` (never deleted, never appended to), so that the
//! directory starts afresh from step 0, whether it is resumed or started again.

use std::path::{Path, PathBuf};

/// Move the entries of `dir` named in `names` (those that exist) into a new
/// `dir/abandoned-K/`; returns that directory when anything moved.
pub fn set_aside(dir: &Path, names: &[&str]) -> std::io::Result<Option<PathBuf>> {
    let present: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| dir.join(n).symlink_metadata().is_ok())
        .collect();
    if present.is_empty() {
        return Ok(None);
    }
    let aside = free(dir);
    std::fs::create_dir(&aside)?;
    for n in present {
        std::fs::rename(dir.join(n), aside.join(n))?;
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Some(aside))
}

/// `dir/abandoned-1`, or the first `dir/abandoned-K` that does not exist.
fn free(dir: &Path) -> PathBuf {
    (1..)
        .map(|k| dir.join(format!("abandoned-{k}")))
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// The line a run or sweep starting afresh says.
pub fn note(dir: &Path, aside: Option<&Path>) -> String {
    let moved = aside.map_or(String::new(), |a| {
        format!(": what it wrote is in {}", a.display())
    });
    format!(
        "{}: the earlier attempt stopped before it completed a checkpoint, so this one starts from step 0{moved}",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_exists_moves_into_a_new_directory_each_time() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(set_aside(d.path(), &["metrics.jsonl"]).unwrap(), None);
        std::fs::write(d.path().join("metrics.jsonl"), "a\n").unwrap();
        std::fs::create_dir(d.path().join("checkpoints")).unwrap();
        let first = set_aside(d.path(), &["metrics.jsonl", "checkpoints", "lm-eval.log"])
            .unwrap()
            .unwrap();
        assert_eq!(first, d.path().join("abandoned-1"));
        assert_eq!(
            std::fs::read_to_string(first.join("metrics.jsonl")).unwrap(),
            "a\n"
        );
        assert!(first.join("checkpoints").is_dir() && !d.path().join("checkpoints").exists());
        std::fs::write(d.path().join("metrics.jsonl"), "b\n").unwrap();
        let second = set_aside(d.path(), &["metrics.jsonl"]).unwrap().unwrap();
        assert_eq!(second, d.path().join("abandoned-2"));
        assert!(note(d.path(), Some(&second)).contains("abandoned-2"));
    }
}
