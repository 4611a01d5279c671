//! Reads a run's `metrics.jsonl` back into the messages the training screen shows, following
//! the file as the trainer appends to it (for `jumpscope watch`).

use crate::train::control::{MetricsRecord, TrainEvent};
use crate::tui::app::Msg;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A reader that remembers how far it got in the file.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
    /// An incomplete last line, kept until its newline arrives.
    partial: Vec<u8>,
    total_steps: u64,
}

impl Follower {
    /// Follow `path`; `total_steps` comes from the run's configuration (the records do not
    /// repeat it).
    pub fn new(path: &Path, total_steps: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
            total_steps,
        }
    }

    /// The messages for every complete line appended since the last call, and the file's
    /// modification time. A file that shrank (replaced by a new run) is read again from the start.
    pub fn poll(&mut self) -> std::io::Result<(Vec<Msg>, Option<SystemTime>)> {
        let mut file = std::fs::File::open(&self.path)?;
        let meta = file.metadata()?;
        if meta.len() < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = std::mem::take(&mut self.partial);
        let read = file.read_to_end(&mut bytes)?;
        self.offset += read as u64;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(complete);
        let msgs = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .filter_map(|l| self.parse(l))
            .collect();
        Ok((msgs, meta.modified().ok()))
    }

    /// One record as a message; `None` for record types the screen does not show.
    fn parse(&self, line: &[u8]) -> Option<Msg> {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return Some(Msg::Train(TrainEvent::Warning(format!(
                    "{}: unreadable line skipped: {e}",
                    self.path.display()
                ))));
            }
        };
        let step = v["step"].as_u64().unwrap_or(0);
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let ev = match v["type"].as_str()? {
            "metrics" => match serde_json::from_value::<MetricsRecord>(v.clone()) {
                Ok(m) => TrainEvent::Metrics(Box::new(m)),
                Err(e) => TrainEvent::Warning(format!("metrics record at step {step}: {e}")),
            },
            "start" | "resume" => TrainEvent::Started {
                step,
                total_steps: self.total_steps,
                d_in: v["d_in"].as_u64().unwrap_or(0) as usize,
                d_sae: v["d_sae"].as_u64().unwrap_or(0) as usize,
                scale: v["scale"].as_f64().unwrap_or(f64::NAN),
            },
            "checkpoint" => TrainEvent::Checkpoint {
                step,
                path: PathBuf::from(text("path")),
            },
            "epoch" => TrainEvent::Epoch {
                epoch: v["epoch"].as_u64().unwrap_or(0),
                step,
            },
            "hyper" => TrainEvent::HyperChanged {
                step,
                source: text("source"),
                changes: v["changes"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, c)| format!("{k}: {} -> {}", c["old"], c["new"]))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            "pause" => TrainEvent::Paused(true),
            "resume-steps" => TrainEvent::Paused(false),
            "eval" => match serde_json::from_value(v["eval"].clone()) {
                Ok(report) => TrainEvent::Eval { step, report },
                Err(e) => TrainEvent::Warning(format!("eval record at step {step}: {e}")),
            },
            "nonfinite-loss" => TrainEvent::Warning(format!(
                "non-finite loss at step {}",
                v["at_step"].as_u64().unwrap_or(step)
            )),
            "finish" => {
                return Some(Msg::Finished(Ok(format!("done: SAE in {}", text("sae")))));
            }
            "stop" => {
                return Some(Msg::Finished(Ok(format!(
                    "stopped at step {step} with a checkpoint"
                ))));
            }
            _ => return None,
        };
        Some(Msg::Train(ev))
    }
}
