//! The session layer: one owner for a running job, whether it is one run or a sweep of many,
//! headless or on a screen, and for following one that another process runs (`watch`).
//!
//! A [`Job`] (a [`Trainer`](crate::train::trainer::Trainer) or a
//! [`Sweep`](crate::sweep::driver::Sweep)) takes [`JobControl`]s and reports [`JobEvent`]s; a run is
//! a job of one member. The session around it is the same for both:
//! - signals: SIGINT, SIGTERM and SIGHUP stop every member with a checkpoint ([`signals`], the
//!   process's one handler);
//! - each live member's `config.toml` is watched; a save is judged against the configuration in
//!   force by `live`'s one rule and becomes that member's edit (headless), or goes to the screen
//!   as [`Msg::ConfigFile`](crate::tui::msg::Msg::ConfigFile), which judges it itself;
//! - headless ([`headless`]), the job runs on the calling thread and its [`Printer`] turns each
//!   event into lines (a progress bar on a terminal) on an [`Output`], the process's stdout and
//!   stderr or buffers that tests read in-process;
//! - on a screen ([`on_screen`]), the job runs on a thread of its own, keys on another, and the
//!   UI loop (`tui::drive`) draws the job's screen and sends its controls back; whatever ends the
//!   screen, the job stops with a checkpoint before the call returns;
//! - [`watch`] follows a run's or a sweep's logs written by another process, and writes the
//!   screen's edits to the members' `config.toml`, which that process applies.
//!
//! The commands only map arguments to a job and print how it ended ([`Job::closing`]).

pub mod follow;
mod headless;
mod jobs;
mod screen;
pub mod signals;
mod watch;

pub use headless::{Captured, Output, headless};
pub use jobs::{RunPrinter, SweepPrinter};
pub use screen::on_screen;
pub use watch::{FollowError, watch};

use crate::config::Config;
use crate::live::{ConfigFile, WatchError};
use crate::train::control::{JobControl, JobEvent};
use crate::tui::drive::Screen;
use std::path::Path;
use std::sync::mpsc::Receiver;

/// Show a screen that drives no job (`inspect`, `compare`) until the user leaves; SIGTERM and
/// SIGHUP close it. The terminal is restored however it ends.
pub fn show(screen: &mut dyn Screen, theme: &crate::tui::theme::Theme) -> Result<(), ctrlc::Error> {
    let (tx, msgs) = std::sync::mpsc::channel();
    let signal_tx = tx.clone();
    signals::on_signal(move || {
        let _ = signal_tx.send(crate::tui::msg::Msg::Signal);
    })?;
    if let Err(p) = crate::tui::drive::show(screen, theme, tx, msgs) {
        std::panic::resume_unwind(p);
    }
    Ok(())
}

/// A running job: one training run, or a sweep of many.
pub trait Job: Send + Sized + 'static {
    /// How it ends without error.
    type Outcome: Send + 'static;
    /// Why it cannot go on.
    type Error: std::error::Error + Send + Sync + 'static;
    /// What prints it headless.
    type Printer: Printer<Self>;

    /// The name of the thread it runs on under a screen (the panic hook tells it apart by it).
    const THREAD: &'static str;
    /// What it is called in messages ("the trainer", "the sweep").
    const NAME: &'static str;

    /// Its directory.
    fn dir(&self) -> &Path;
    /// The members whose `config.toml` steers them now.
    fn watched(&self) -> Vec<Watched>;
    /// Run until every member has finished or stopped, or until told to stop.
    fn run(
        &mut self,
        controls: &Receiver<JobControl>,
        sink: &mut dyn FnMut(JobEvent),
    ) -> Result<Self::Outcome, Self::Error>;
    /// The screen that shows it.
    fn screen(&self) -> Box<dyn Screen>;
    /// What prints it headless (after saying what starts on `out`); `progress`: a progress bar
    /// on standard error (a terminal).
    fn printer(&self, progress: bool, out: &Output) -> Self::Printer;
    /// The exit code and the closing line for how it ended.
    fn closing(&self, outcome: &Self::Outcome) -> Closing;
}

/// A member's `config.toml`, watched while the job runs.
pub struct Watched {
    /// The member's index.
    pub member: usize,
    /// Its name in messages (`None` for a run, whose messages need none).
    pub name: Option<String>,
    /// The file.
    pub file: ConfigFile,
    /// The configuration in force.
    pub config: Config,
}

/// How a job ended, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// The process's exit code: 0 finished, 130 stopped with checkpoints.
    pub code: i32,
    /// What happened and what to do next, one line.
    pub message: String,
}

/// Turns a job's events into lines headless.
pub trait Printer<J> {
    /// One event.
    fn event(&mut self, ev: JobEvent, out: &Output);
    /// The job has ended: what is left to print (a sweep's member table).
    fn close(&mut self, job: &J, out: &Output);
}

/// A session that could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum SessionError<E: std::error::Error> {
    /// The job's own error.
    #[error(transparent)]
    Job(E),
    /// A `config.toml` cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The signal handler cannot be installed.
    #[error("cannot handle signals: {0}")]
    Signal(#[from] ctrlc::Error),
}
