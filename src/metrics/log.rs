//! `RUN_DIR/metrics.jsonl`: one JSON object per line, appended and flushed as records arrive.

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct JsonlLog {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlLog {
    /// Open (creating or appending to) `path`. A last line without its newline (a write cut
    /// short by a crash or a full disk) is cut off first, so that what is appended starts a line
    /// of its own.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        cut_torn_line(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append one record.
    pub fn append<T: Serialize>(&mut self, record: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Truncate `path` (if it exists) after its last newline, and before its last line if that
/// is not JSON (a write cut short that a newline was later appended to).
fn cut_torn_line(path: &Path) -> std::io::Result<()> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let keep = after_last_newline(&mut f, len)?;
    let last_start = if keep > 0 {
        after_last_newline(&mut f, keep - 1)?
    } else {
        0
    };
    let mut last = vec![0u8; (keep - last_start) as usize];
    {
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(last_start))?;
        f.read_exact(&mut last)?;
    }
    let whole = last.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Value>(&last).is_ok();
    let keep = if whole { keep } else { last_start };
    if keep < len {
        f.set_len(keep)?;
        f.sync_all()?;
    }
    Ok(())
}

/// The offset just after the last newline before `end` (0 when there is none).
fn after_last_newline(f: &mut std::fs::File, end: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut end = end;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_before_appending() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"a\":2}\n{\"a\":3, \"b\"").unwrap();
        let mut log = JsonlLog::open(&p).unwrap();
        log.append(&serde_json::json!({"a": 4})).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":4}\n"
        );
        // a file that is one torn line is emptied; a whole file is left as it is
        std::fs::write(&p, "{\"a\":").unwrap();
        JsonlLog::open(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        std::fs::write(&p, "{}\n").unwrap();
        JsonlLog::open(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}\n");
        // a cut-short line a newline was appended to is cut too (one line only)
        std::fs::write(&p, "{}\n{\"a\":\n").unwrap();
        JsonlLog::open(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}\n");
    }
}
