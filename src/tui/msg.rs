//! What a screen's loop receives, for every live screen alike: the job's events (a run's are
//! member 0's), keys, the job thread's end, signals, saves of a member's config.toml, and
//! (`watch`) when the followed log was last written.

use crate::live::ConfigEdit;
use crate::train::control::{JobEvent, TrainEvent};
use ratatui::crossterm::event::KeyEvent;

/// How a job's worker thread ended, as its screen is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// It returned normally (its `stop` or `finish` records came before).
    Done,
    /// It failed or panicked: the one-line reason.
    Failed(String),
}

/// One message for a screen.
#[derive(Debug)]
pub enum Msg {
    /// From the job (or, under `watch`, read back from its logs).
    Job(JobEvent),
    /// A key press.
    Key(KeyEvent),
    /// The job's thread returned.
    Finished(Ending),
    /// SIGTERM / SIGHUP, or a terminal that went away: stop with a checkpoint and leave.
    Signal,
    /// Member `i`'s config.toml was saved (a run is member 0).
    ConfigFile(usize, ConfigEdit),
    /// `watch`: the followed metrics.jsonl was last written at this time.
    LogTouched(std::time::SystemTime),
}

impl Msg {
    /// A single run's event.
    pub fn train(ev: TrainEvent) -> Self {
        Msg::Job(JobEvent::Member(0, ev))
    }
}
