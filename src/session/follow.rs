//! Reads a run's `metrics.jsonl` back into the events its trainer reported, following the file
//! as the trainer appends to it (for `jumpscope watch`). The records are read through the log's
//! own type ([`LogTail`]); the screen treats them as it treats its own trainer's.

use crate::schema::record::{LogError, LogTail};
use crate::train::control::TrainEvent;
use std::path::Path;
use std::time::SystemTime;

/// A reader that remembers how far it got in the file.
#[derive(Debug)]
pub struct Follower {
    tail: LogTail,
}

impl Follower {
    /// Follow `path` from its start.
    pub fn new(path: &Path) -> Self {
        Self {
            tail: LogTail::new(path),
        }
    }

    /// The events for every complete line appended since the last call, and the file's
    /// modification time. A file that shrank (replaced by a new run) is read again from the start.
    pub fn poll(&mut self) -> Result<(Vec<TrainEvent>, Option<SystemTime>), LogError> {
        let lines = self.tail.poll()?;
        let touched = std::fs::metadata(self.tail.path())
            .and_then(|m| m.modified())
            .ok();
        let msgs = lines
            .into_iter()
            .filter_map(|line| match line {
                Ok(Some(rec)) => Some(TrainEvent::Record(rec)),
                // a kind written by a newer version: nothing to show
                Ok(None) => None,
                Err(e) => Some(TrainEvent::Warning(format!("unreadable line skipped: {e}"))),
            })
            .collect();
        Ok((msgs, touched))
    }
}
