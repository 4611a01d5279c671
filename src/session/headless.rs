//! A job run headless: on the calling thread, stopped with checkpoints by a signal, steered by
//! saves of its members' `config.toml`, and printed by its [`Printer`] into an [`Output`] (the
//! process's stdout and stderr, or buffers a test reads).

use super::{Closing, Job, Printer, SessionError, signals};
use crate::live::{self, ConfigWatch, Verdict};
use crate::train::control::{Control, JobControl};
use std::io::Write;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

/// Where headless output goes: results to `out`, progress and messages to `err`. Cloned into
/// the config watchers, which say a refused edit at once.
#[derive(Clone)]
pub struct Output {
    out: Arc<Mutex<dyn Write + Send>>,
    err: Arc<Mutex<dyn Write + Send>>,
}

/// The text a captured [`Output`] received.
#[derive(Clone, Default)]
pub struct Captured {
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    /// What went to `out`.
    pub fn out(&self) -> String {
        self.out
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
    /// What went to `err`.
    pub fn err(&self) -> String {
        self.err
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Output {
    /// The process's standard output and error.
    pub fn std() -> Self {
        Self {
            out: Arc::new(Mutex::new(std::io::stdout())),
            err: Arc::new(Mutex::new(std::io::stderr())),
        }
    }

    /// Buffers, and the handle that reads them.
    pub fn capture() -> (Self, Captured) {
        let c = Captured::default();
        let out = Self {
            out: c.out.clone(),
            err: c.err.clone(),
        };
        (out, c)
    }

    /// One line to `out`.
    pub fn out(&self, line: &str) {
        if let Ok(mut w) = self.out.lock() {
            let _ = writeln!(w, "{line}");
        }
    }

    /// One line to `err`.
    pub fn err(&self, line: &str) {
        if let Ok(mut w) = self.err.lock() {
            let _ = writeln!(w, "{line}");
        }
    }
}

/// Run `job` headless to its end (or to a stop by signal); `progress`: draw a progress bar on
/// standard error. Returns how it ended.
pub fn headless<J: Job>(
    mut job: J,
    progress: bool,
    out: &Output,
) -> Result<Closing, SessionError<J::Error>> {
    let (tx, rx) = channel::<JobControl>();
    let stop = tx.clone();
    signals::on_signal(move || {
        let _ = stop.send(JobControl::all(Control::Stop));
    })?;
    let mut printer = job.printer(progress, out);
    let mut watches = Vec::new();
    for w in job.watched() {
        // judged against the configuration in force by the same rule as under the screen
        let in_force = Mutex::new(w.config);
        let (edits, say, name, member) = (tx.clone(), out.clone(), w.name, w.member);
        watches.push(ConfigWatch::start(w.file, move |e| {
            let Ok(mut cur) = in_force.lock() else { return };
            match live::judge_file(&cur, e) {
                Verdict::Apply(new, edit) => {
                    *cur = *new;
                    let _ = edits.send(JobControl {
                        member: Some(member),
                        control: Control::SetHyper(edit),
                    });
                }
                Verdict::Unchanged => {}
                Verdict::Refused(reason) => match &name {
                    Some(n) => say.err(&format!("warning: {n}: {reason}")),
                    None => say.err(&format!("warning: {reason}")),
                },
            }
        })?);
    }
    let outcome = job.run(&rx, &mut |ev| printer.event(ev, out));
    drop(watches);
    // a disconnected control channel means "stop": keep it open until the job has returned
    drop(tx);
    let outcome = outcome.map_err(SessionError::Job)?;
    printer.close(&job, out);
    Ok(job.closing(&outcome))
}
