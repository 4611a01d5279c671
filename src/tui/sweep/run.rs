//! The sweep screen's threads: the sweep runs in a background thread and reports into one
//! channel, a thread turns key presses into messages on the same channel, and the UI loop draws
//! the [`SweepApp`] (at most ~30 frames/s) and sends its [`JobControl`]s to the sweep.

use super::{SweepApp, SweepMsg, view};
use crate::live::WatchError;
use crate::sweep::run::{Sweep, SweepError, SweepOutcome};
use crate::train::control::JobControl;
use crate::tui::app::Ending;
use crate::tui::run::{
    Screen, join_briefly, on_screen, panic_text, send_through_file, spawn_key_thread,
};
use crate::tui::theme::Theme;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// The sweep thread's name.
const SWEEP_THREAD: &str = "jumpscope-sweep";

/// Run the sweep under its screen. `tx`/`msgs` are the UI channel (`tx` is also the signal
/// handler's, which sends [`SweepMsg::Signal`]). `controls` is the sweep's control channel
/// (`control_tx` its sender, which the caller may also have given to config-file watchers).
/// Returns the sweep and its outcome once the screen is closed; the terminal is restored
/// whatever happened, and the sweep is stopped with checkpoints if it was still running.
pub fn sweep_with_tui(
    sweep: Sweep,
    app: SweepApp,
    theme: Theme,
    tx: Sender<SweepMsg>,
    msgs: Receiver<SweepMsg>,
    control_tx: Sender<JobControl>,
    controls: Receiver<JobControl>,
) -> (Option<Sweep>, Result<SweepOutcome, SweepError>) {
    let report = tx.clone();
    let worker = std::thread::Builder::new()
        .name(SWEEP_THREAD.into())
        .spawn(move || {
            let mut sweep = sweep;
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sweep.run(&controls, &mut |ev| {
                    let _ = report.send(SweepMsg::Event(ev));
                })
            }));
            let summary = match &out {
                Ok(Ok(_)) => Ending::Done,
                Ok(Err(e)) => Ending::Failed(e.to_string()),
                Err(p) => {
                    Ending::Failed(format!("the sweep panicked ({})", panic_text(p.as_ref())))
                }
            };
            let _ = report.send(SweepMsg::Finished(summary));
            out.map(|o| (sweep, o))
        })
        .expect("spawning the sweep thread");
    let stop_input = Arc::new(AtomicBool::new(false));
    let input = spawn_key_thread(tx.clone(), stop_input.clone(), SweepMsg::Key, || {
        SweepMsg::Signal
    });
    drop(tx);
    let ui = on_screen(Some(SWEEP_THREAD), app, &theme, &msgs, &mut |c, _| {
        let _ = control_tx.send(c);
    });
    stop_input.store(true, Ordering::Relaxed);
    // whatever ended the screen, every member stops with a checkpoint before we leave
    let _ = control_tx.send(JobControl {
        member: None,
        control: crate::train::control::Control::Stop,
    });
    drop(control_tx);
    let result = worker.join();
    join_briefly(input);
    if let Err(p) = ui {
        std::panic::resume_unwind(p);
    }
    match result {
        Ok(Ok((sweep, outcome))) => (Some(sweep), outcome),
        Ok(Err(p)) | Err(p) => {
            eprintln!(
                "the sweep panicked: {}; each member's last checkpoint is its newest saved state",
                panic_text(p.as_ref())
            );
            std::panic::resume_unwind(p)
        }
    }
}

impl Screen for SweepApp {
    type Msg = SweepMsg;
    type Control = JobControl;
    fn update(&mut self, m: SweepMsg) -> Vec<JobControl> {
        SweepApp::update(self, m)
    }
    fn quit(&self) -> bool {
        self.quit
    }
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme) {
        view::draw(f, self, theme)
    }
    fn hang_up() -> SweepMsg {
        SweepMsg::Signal
    }
}

/// Follow the sweep in `dir` (another process runs it) with the same screen: each member's
/// metrics.jsonl and the sweep's sweep.jsonl are read back as they grow, and edits are written to
/// the members' config.toml (`members[i]` is member `i`'s run directory), which that process
/// watches. `tx`/`msgs` as for [`sweep_with_tui`]. Returns when the user leaves.
pub fn watch_sweep_with_tui(
    dir: &std::path::Path,
    members: Vec<std::path::PathBuf>,
    app: SweepApp,
    theme: Theme,
    tx: Sender<SweepMsg>,
    msgs: Receiver<SweepMsg>,
) -> Result<(), WatchError> {
    use crate::schema::sweep::SweepTail;
    use crate::train::control::JobEvent;
    use crate::tui::app::Msg;
    use crate::tui::follow::Follower;
    let stop = Arc::new(AtomicBool::new(false));
    let (watcher, wake) = crate::live::watch_file(&dir.join("sweep.jsonl"))?;
    let mut followers: Vec<Follower> = members
        .iter()
        .map(|m| Follower::new(&m.join("metrics.jsonl")))
        .collect();
    let mut tail = SweepTail::new(&dir.join("sweep.jsonl"));
    let follow_tx = tx.clone();
    let follow_stop = stop.clone();
    let follower = std::thread::Builder::new()
        .name("jumpscope-follow-sweep".into())
        .spawn(move || {
            let _watcher = watcher;
            while !follow_stop.load(Ordering::Relaxed) {
                for (i, f) in followers.iter_mut().enumerate() {
                    let Ok((got, _)) = f.poll() else { continue };
                    for m in got {
                        if let Msg::Train(ev) = m
                            && follow_tx
                                .send(SweepMsg::Event(JobEvent::Member(i, ev)))
                                .is_err()
                        {
                            return;
                        }
                    }
                }
                for rec in tail.poll_records() {
                    if follow_tx
                        .send(SweepMsg::Event(JobEvent::Sweep(rec)))
                        .is_err()
                    {
                        return;
                    }
                }
                // woken by sweep.jsonl, and at least twice a second for the members' logs
                let _ = wake.recv_timeout(Duration::from_millis(500));
                while wake.try_recv().is_ok() {}
            }
        })
        .map_err(|source| WatchError::Thread {
            path: dir.join("sweep.jsonl"),
            source,
        })?;
    let input = spawn_key_thread(tx, stop.clone(), SweepMsg::Key, || SweepMsg::Signal);
    let ui = on_screen(None, app, &theme, &msgs, &mut |c, app| {
        let (Some(i), crate::train::control::Control::SetHyper(..)) = (c.member, &c.control) else {
            return;
        };
        let file = crate::live::ConfigFile::in_run(&members[i]);
        send_through_file(&mut app.rows[i].app, &file);
    });
    stop.store(true, Ordering::Relaxed);
    join_briefly(input);
    let _ = follower.join();
    if let Err(p) = ui {
        std::panic::resume_unwind(p);
    }
    Ok(())
}

/// A channel pair for the sweep's controls.
pub fn control_channel() -> (Sender<JobControl>, Receiver<JobControl>) {
    channel()
}
