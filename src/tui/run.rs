//! The live training screen's threads: the trainer runs in a background thread and reports into
//! one channel, a thread turns key presses into messages on the same channel, and the UI loop
//! draws, applies messages to the [`App`] and sends [`Control`]s back. The UI never blocks the
//! trainer: its reports go into an unbounded channel and drawing is capped at ~30 frames/s.

use crate::train::control::Control;
use crate::train::trainer::{Outcome, TrainError, Trainer};
use crate::tui::app::{App, Msg};
use crate::tui::theme::Theme;
use crate::tui::view;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// Shortest time between two frames.
const FRAME: Duration = Duration::from_millis(33);

/// Train with the live screen. `msgs` is the UI channel (`tx` its sender, also given to the
/// signal handler, which sends [`Msg::Signal`]). Returns the trainer and its outcome once the
/// screen is closed; the terminal is restored whatever happened.
pub fn train_with_tui(
    trainer: Trainer,
    app: App,
    theme: Theme,
    tx: Sender<Msg>,
    msgs: Receiver<Msg>,
) -> (Trainer, Result<Outcome, TrainError>) {
    let (ctl_tx, ctl_rx) = channel::<Control>();
    let report = tx.clone();
    let worker = std::thread::Builder::new()
        .name("jumpscope-train".into())
        .spawn(move || {
            let mut trainer = trainer;
            let out = trainer.run(&ctl_rx, &mut |ev| {
                let _ = report.send(Msg::Train(ev));
            });
            let summary = match &out {
                Ok(Outcome::Finished { sae_dir, .. }) => {
                    Ok(format!("done: SAE in {}", sae_dir.display()))
                }
                Ok(Outcome::Stopped { step, .. }) => {
                    Ok(format!("stopped at step {step} with a checkpoint"))
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = report.send(Msg::Finished(summary));
            (trainer, out)
        })
        .expect("spawning the training thread");

    let stop_input = Arc::new(AtomicBool::new(false));
    let input = {
        let (tx, stop) = (tx.clone(), stop_input.clone());
        std::thread::Builder::new()
            .name("jumpscope-keys".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if event::poll(Duration::from_millis(100)).unwrap_or(false)
                        && let Ok(Event::Key(k)) = event::read()
                        && k.kind != KeyEventKind::Release
                        && tx.send(Msg::Key(k)).is_err()
                    {
                        break;
                    }
                }
            })
            .expect("spawning the input thread")
    };
    drop(tx);

    let mut terminal = ratatui::init();
    let ui = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ui_loop(&mut terminal, app, &theme, &msgs, &ctl_tx)
    }));
    ratatui::restore();
    stop_input.store(true, Ordering::Relaxed);
    // whatever ended the screen, the trainer stops with a checkpoint before we leave
    let _ = ctl_tx.send(Control::Stop);
    let result = worker
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    let _ = input.join();
    if let Err(p) = ui {
        std::panic::resume_unwind(p);
    }
    result
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut app: App,
    theme: &Theme,
    msgs: &Receiver<Msg>,
    ctl: &Sender<Control>,
) {
    let mut last_draw = Instant::now() - FRAME;
    let mut dirty = true;
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            let _ = terminal.draw(|f| view::draw(f, &app, theme));
            last_draw = Instant::now();
            dirty = false;
        }
        let wait = if dirty {
            FRAME.saturating_sub(last_draw.elapsed())
        } else {
            Duration::from_millis(500)
        };
        match msgs.recv_timeout(wait) {
            Ok(m) => {
                for c in app.update(m) {
                    let _ = ctl.send(c);
                }
                // take whatever else is queued before drawing again
                while let Ok(m) = msgs.try_recv() {
                    for c in app.update(m) {
                        let _ = ctl.send(c);
                    }
                }
                dirty = true;
            }
            // ETA and elapsed times move on even without events
            Err(RecvTimeoutError::Timeout) => dirty = true,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if app.quit {
            break;
        }
    }
}
