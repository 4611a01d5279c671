//! One reader of a JSON-lines log that another thread or process is still appending to (a run's
//! `metrics.jsonl`, a sweep's `sweep.jsonl`): each [`Tail::poll`] returns the records of the
//! complete lines added since the last one, keeps an incomplete last line until its newline
//! arrives, and starts again from the top of a file that shrank (replaced by a new run).

use crate::schema::record::LogError;
use std::io::{Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// A record type one line of a log holds.
pub trait Line: Sized {
    /// The record on `line`, `None` for a kind this version does not know, or why it does not
    /// parse.
    fn parse(line: &[u8]) -> Result<Option<Self>, serde_json::Error>;
}

/// A reader that remembers how far it got in the file.
#[derive(Debug)]
pub struct Tail<R> {
    path: PathBuf,
    offset: u64,
    /// Complete lines read so far.
    lines: usize,
    /// An incomplete last line, kept until its newline arrives.
    partial: Vec<u8>,
    record: PhantomData<fn() -> R>,
}

impl<R: Line> Tail<R> {
    /// Read `path` from its start.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            lines: 0,
            partial: Vec::new(),
            record: PhantomData,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lines appended since the last call, each a record, `None` (a kind this version does
    /// not know) or the reason it is unreadable. A file that shrank is read again from the
    /// start.
    #[allow(clippy::type_complexity)]
    pub fn poll(&mut self) -> Result<Vec<Result<Option<R>, LogError>>, LogError> {
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < self.offset {
            self.offset = 0;
            self.lines = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut bytes = std::mem::take(&mut self.partial);
        let read = file.read_to_end(&mut bytes).map_err(io)?;
        self.offset += read as u64;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(complete);
        let mut out = Vec::new();
        for line in bytes.split(|b| *b == b'\n').take_while(|_| complete > 0) {
            self.lines += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(R::parse(line).map_err(|source| LogError::Line {
                path: self.path.clone(),
                line: self.lines,
                source,
            }));
        }
        // `split` yields one empty piece after the final newline
        self.lines -= usize::from(complete > 0);
        Ok(out)
    }

    /// The records appended since the last call, passing over what cannot be read (a file not
    /// there yet, a torn line).
    pub fn poll_records(&mut self) -> Vec<R> {
        self.poll()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .collect()
    }
}
