//! A job under its screen: the job runs on a thread of its own and reports into the screen's one
//! channel, a thread turns key presses into messages on the same channel, saves of the members'
//! `config.toml` and signals arrive there too, and the UI loop draws the screen and sends its
//! controls back. The UI never blocks the job: reports go into an unbounded channel and drawing
//! is capped at ~30 frames/s.

use super::{Job, SessionError, signals};
use crate::live::{ConfigFile, ConfigWatch, WatchError};
use crate::schema::record::Record;
use crate::train::control::{Control, JobControl, JobEvent, TrainEvent};
use crate::tui::drive::{self, injected_fault, join_briefly, panic_text, spawn_key_thread};
use crate::tui::msg::{Ending, Msg};
use crate::tui::theme::Theme;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};

/// Watch every live member's `config.toml`, each save going to the screen as
/// [`Msg::ConfigFile`] (the screen judges it against what it shows as in force).
pub(super) fn watch_for_screen<J: Job>(
    job: &J,
    tx: &Sender<Msg>,
) -> Result<Vec<ConfigWatch>, SessionError<J::Error>> {
    let mut watches = Vec::new();
    for w in job.watched() {
        watches.push(watch_one(w.member, w.file, tx)?);
    }
    Ok(watches)
}

/// The same for `files` by member index, those that exist (a member not started yet has none).
pub(super) fn watch_for_screen_files(
    files: &[ConfigFile],
    tx: &Sender<Msg>,
) -> Result<Vec<ConfigWatch>, WatchError> {
    let mut watches = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.path().is_file() {
            watches.push(watch_one(i, f.clone(), tx)?);
        }
    }
    Ok(watches)
}

fn watch_one(member: usize, file: ConfigFile, tx: &Sender<Msg>) -> Result<ConfigWatch, WatchError> {
    let edits = tx.clone();
    ConfigWatch::start(file, move |e| {
        let _ = edits.send(Msg::ConfigFile(member, e));
    })
}

/// Run `job` under its screen until the user leaves or the job ends and the screen closes;
/// whatever ended the screen, the job stops with checkpoints first. The terminal is restored
/// whatever happened. Returns the job and how it ended.
pub fn on_screen<J: Job>(job: J, theme: Theme) -> Result<(J, J::Outcome), SessionError<J::Error>> {
    let (tx, msgs) = channel::<Msg>();
    let signal_tx = tx.clone();
    // SIGTERM and SIGHUP (an SSH drop) stop with checkpoints; in raw mode Ctrl-C is a key
    signals::on_signal(move || {
        let _ = signal_tx.send(Msg::Signal);
    })?;
    let mut screen = job.screen();
    let watches = watch_for_screen(&job, &tx)?;
    let (ctl_tx, controls) = channel::<JobControl>();
    let report = tx.clone();
    let worker = std::thread::Builder::new()
        .name(J::THREAD.into())
        .spawn(move || {
            let mut job = job;
            let mut first_report = true;
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.run(&controls, &mut |ev| {
                    if first_report
                        && matches!(
                            ev,
                            JobEvent::Member(_, TrainEvent::Record(Record::Metrics(_)))
                        )
                    {
                        first_report = false;
                        injected_fault("trainer");
                    }
                    let _ = report.send(Msg::Job(ev));
                })
            }));
            // a job that ended well said so in its records
            let ending = match &out {
                Ok(Ok(_)) => Ending::Done,
                Ok(Err(e)) => Ending::Failed(e.to_string()),
                Err(p) => Ending::Failed(format!(
                    "{} panicked ({}); the last checkpoint is the newest saved state",
                    J::NAME,
                    panic_text(p.as_ref())
                )),
            };
            let _ = report.send(Msg::Finished(ending));
            out.map(|o| (job, o))
        })
        .expect("spawning the job's thread");
    let stop_input = Arc::new(AtomicBool::new(false));
    let input = spawn_key_thread(tx.clone(), stop_input.clone());
    drop(tx);
    let ui = drive::on_screen(Some(J::THREAD), &mut *screen, &theme, &msgs, &mut |c, _| {
        let _ = ctl_tx.send(c);
    });
    stop_input.store(true, Ordering::Relaxed);
    // whatever ended the screen, the job stops with checkpoints before we leave
    let _ = ctl_tx.send(JobControl::all(Control::Stop));
    let result = worker.join().unwrap_or_else(Err);
    drop(ctl_tx);
    join_briefly(input);
    drop(watches);
    match (ui, result) {
        (Ok(()), Ok((job, r))) => r.map(|o| (job, o)).map_err(SessionError::Job),
        (Err(p), r) => {
            if let Ok((job, Ok(o))) = &r
                && job.closing(o).code == 130
            {
                eprintln!(
                    "the screen failed; training stopped with a checkpoint (in {})",
                    job.dir().display()
                );
            }
            std::panic::resume_unwind(p)
        }
        (Ok(()), Err(p)) => {
            eprintln!(
                "{} panicked: {}; the last checkpoint is the newest saved state",
                J::NAME,
                panic_text(p.as_ref())
            );
            std::panic::resume_unwind(p)
        }
    }
}
