//! The live training screen's threads: the trainer runs in a background thread and reports into
//! one channel, a thread turns key presses into messages on the same channel, and the UI loop
//! draws, applies messages to the [`App`] and sends [`Control`]s back. The UI never blocks the
//! trainer: its reports go into an unbounded channel and drawing is capped at ~30 frames/s.
//! `watch` uses the same loop with a thread that follows another process's metrics.jsonl.

use crate::live::{ConfigFile, WatchError};
use crate::schema::record::Record;
use crate::train::control::{Control, TrainEvent};
use crate::train::trainer::{Outcome, TrainError, Trainer};
use crate::tui::app::{App, Ending, Msg};
use crate::tui::follow::Follower;
use crate::tui::theme::Theme;
use crate::tui::tty::{self, Pumped};
use crate::tui::view;
use ratatui::crossterm::event::{Event, KeyEventKind};
use std::path::Path;
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
        .name(TRAIN_THREAD.into())
        .spawn(move || {
            let mut trainer = trainer;
            let mut first_report = true;
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                trainer.run(&ctl_rx, &mut |ev| {
                    if first_report && matches!(ev, TrainEvent::Record(Record::Metrics(_))) {
                        first_report = false;
                        injected_fault("trainer");
                    }
                    let _ = report.send(Msg::Train(ev));
                })
            }));
            // a run that ended well said so in its `stop` or `finish` record
            let summary = match &out {
                Ok(Ok(_)) => Ending::Done,
                Ok(Err(e)) => Ending::Failed(e.to_string()),
                Err(p) => Ending::Failed(format!(
                    "the trainer panicked ({}); the last checkpoint is the newest saved state",
                    panic_text(p.as_ref())
                )),
            };
            let _ = report.send(Msg::Finished(summary));
            out.map(|o| (trainer, o))
        })
        .expect("spawning the training thread");

    let stop_input = Arc::new(AtomicBool::new(false));
    let input = spawn_keys(tx.clone(), stop_input.clone());
    drop(tx);

    let ui = on_screen(Some(TRAIN_THREAD), app, &theme, &msgs, &mut |c, _| {
        let _ = ctl_tx.send(c);
    });
    stop_input.store(true, Ordering::Relaxed);
    // whatever ended the screen, the trainer stops with a checkpoint before we leave
    let _ = ctl_tx.send(Control::Stop);
    let result = worker.join().unwrap_or_else(Err);
    join_briefly(input);
    match (ui, result) {
        (Ok(()), Ok(r)) => r,
        (Err(p), r) => {
            if let Ok((_, Ok(Outcome::Stopped { checkpoint, .. }))) = &r {
                eprintln!(
                    "the screen failed; training stopped with a checkpoint in {}",
                    checkpoint.display()
                );
            }
            std::panic::resume_unwind(p)
        }
        (Ok(()), Err(p)) => {
            eprintln!(
                "the trainer panicked: {}; the last checkpoint is the newest saved state",
                panic_text(p.as_ref())
            );
            std::panic::resume_unwind(p)
        }
    }
}

/// Run `app`'s UI loop on the terminal (taken over, and restored however the loop ends); the
/// loop's panic, if it had one. A panic of the thread named `worker` is not printed by the
/// hook (the screen shows the worker as failed; the caller prints it once the screen is
/// closed); any other panic restores the terminal and prints, as ratatui's hook does.
pub(crate) fn on_screen<S: Screen>(
    worker: Option<&'static str>,
    app: S,
    theme: &Theme,
    msgs: &Receiver<S::Msg>,
    on_control: &mut dyn FnMut(S::Control, &mut S),
) -> std::thread::Result<()> {
    let mut terminal = ratatui::init();
    if let Some(name) = worker {
        let restore_and_print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(name) {
                restore_and_print(info);
            }
        }));
    }
    let ui = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ui_loop(&mut terminal, app, theme, msgs, on_control)
    }));
    ratatui::restore();
    ui
}

/// The training thread's name (the panic hook tells it apart by it).
const TRAIN_THREAD: &str = "jumpscope-train";

/// A panic's message.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Whether the `JUMPSCOPE_TEST_PANIC` seam names this place (`ui` or `trainer`).
fn fault_asked(place: &str) -> bool {
    crate::seams::panic_place() == Some(place)
}

/// Panic here if the `JUMPSCOPE_TEST_PANIC` seam names this place.
fn injected_fault(place: &str) {
    if fault_asked(place) {
        panic!("injected by JUMPSCOPE_TEST_PANIC={place}");
    }
}

/// Follow the run in `run_dir` (another process trains it) with the same screen: its
/// metrics.jsonl is read back as it grows, and hyperparameter changes are written to its
/// config.toml (`config`, whose watcher the caller feeds into `tx`), which that process watches.
/// `tx`/`msgs` as for [`train_with_tui`]. Returns when the user leaves.
pub fn watch_with_tui(
    run_dir: &Path,
    config: ConfigFile,
    app: App,
    theme: Theme,
    tx: Sender<Msg>,
    msgs: Receiver<Msg>,
) -> Result<(), WatchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let follower = spawn_follower(run_dir, tx.clone(), stop.clone())?;
    let input = spawn_keys(tx, stop.clone());
    let ui = on_screen(None, app, &theme, &msgs, &mut |c, app| {
        if let Control::SetHyper(..) = c {
            send_through_file(app, &config);
        }
    });
    stop.store(true, Ordering::Relaxed);
    join_briefly(input);
    let _ = follower.join();
    if let Err(p) = ui {
        std::panic::resume_unwind(p);
    }
    Ok(())
}

/// A watched run's edit: `app` already holds the checked configuration; write it to the run's
/// `config.toml`, which the training process applies and logs (that comes back through its
/// metrics.jsonl), and say so (or why not) in the screen's log.
pub(crate) fn send_through_file(app: &mut App, file: &ConfigFile) {
    match file.write(&app.config) {
        Ok(()) => app.notice("sent through config.toml", false),
        Err(e) => app.notice(
            format!("{}: cannot write: {e}", file.path().display()),
            true,
        ),
    }
}

/// A thread that turns key presses into [`Msg::Key`] until `stop` is set.
fn spawn_keys(tx: Sender<Msg>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    spawn_key_thread(tx, stop, Msg::Key, || Msg::Signal)
}

/// A thread that sends `key(k)` for each key press until `stop` is set, and `gone()` when the
/// terminal goes away (a screen's own message types: the training, sweep screens).
pub(crate) fn spawn_key_thread<M: Send + 'static>(
    tx: Sender<M>,
    stop: Arc<AtomicBool>,
    key: fn(ratatui::crossterm::event::KeyEvent) -> M,
    gone: fn() -> M,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("jumpscope-keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let pumped = tty::pump(Duration::from_millis(100), |ev| match ev {
                    Event::Key(k) if k.kind != KeyEventKind::Release => tx.send(key(k)).is_ok(),
                    _ => true,
                });
                match pumped {
                    Pumped::Ok => {}
                    Pumped::Stopped => break,
                    // an SSH drop whose SIGHUP did not reach us: stop as a hang-up would
                    Pumped::Gone => {
                        let _ = tx.send(gone());
                        break;
                    }
                }
            }
        })
        .expect("spawning the input thread")
}

/// A thread that reads what is appended to `run_dir/metrics.jsonl`, woken by `notify` and, in
/// case events are lost (network file systems), at least once a second.
fn spawn_follower(
    run_dir: &Path,
    tx: Sender<Msg>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, WatchError> {
    let path = run_dir.join("metrics.jsonl");
    let (watcher, wake) = crate::live::watch_file(&path)?;
    let mut follower = Follower::new(&path);
    std::thread::Builder::new()
        .name("jumpscope-follow".into())
        .spawn(move || {
            let _watcher = watcher;
            while !stop.load(Ordering::Relaxed) {
                match follower.poll() {
                    Ok((msgs, touched)) => {
                        let any = !msgs.is_empty();
                        for m in msgs {
                            if tx.send(m).is_err() {
                                return;
                            }
                        }
                        if let (true, Some(t)) = (any, touched) {
                            let _ = tx.send(Msg::LogTouched(t));
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Train(TrainEvent::Warning(e.to_string())));
                    }
                }
                let _ = wake.recv_timeout(Duration::from_secs(1));
                // a burst of appends is read in one go
                while wake.try_recv().is_ok() {}
            }
        })
        .map_err(|source| WatchError::Thread {
            path: run_dir.join("metrics.jsonl"),
            source,
        })
}

/// A screen the UI loop drives: messages in, controls out, drawn from its state.
pub(crate) trait Screen {
    /// What arrives on the UI channel.
    type Msg;
    /// What it sends back.
    type Control;
    /// Apply one message; the controls to send.
    fn update(&mut self, m: Self::Msg) -> Vec<Self::Control>;
    /// Whether to leave the loop.
    fn quit(&self) -> bool;
    /// Draw the screen.
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme);
    /// Called before each frame (the training screen's injected fault).
    fn before_frame(&self) {}
    /// The message a hang-up is (SIGHUP's): also sent when the terminal refuses a frame.
    fn hang_up() -> Self::Msg;
}

/// Join `t` if it ends within a second; else leave it (the process is about to exit). The key
/// thread can be caught inside crossterm when the terminal hangs up at the wrong moment (see
/// `tty`), and a stuck join would keep a stopped run from exiting.
pub(crate) fn join_briefly(t: std::thread::JoinHandle<()>) {
    let until = Instant::now() + Duration::from_secs(1);
    while !t.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

impl Screen for App {
    type Msg = Msg;
    type Control = Control;
    fn update(&mut self, m: Msg) -> Vec<Control> {
        App::update(self, m)
    }
    fn quit(&self) -> bool {
        self.quit
    }
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme) {
        view::draw(f, self, theme)
    }
    fn hang_up() -> Msg {
        Msg::Signal
    }
    fn before_frame(&self) {
        // read once, not on every pass of the loop
        static UI_FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if self.step > 0 && *UI_FAULT.get_or_init(|| fault_asked("ui")) {
            injected_fault("ui");
        }
    }
}

/// Draw `app` (at most ~30 frames/s, and only when something changed or a second passed), apply
/// the messages and hand its controls to `on_control`, until it quits or the channel closes.
fn ui_loop<S: Screen, B: ratatui::backend::Backend>(
    terminal: &mut ratatui::Terminal<B>,
    mut app: S,
    theme: &Theme,
    msgs: &Receiver<S::Msg>,
    on_control: &mut dyn FnMut(S::Control, &mut S),
) {
    let mut last_draw = Instant::now() - FRAME;
    let mut dirty = true;
    let mut hung_up = false;
    loop {
        app.before_frame();
        if dirty && last_draw.elapsed() >= FRAME {
            // a terminal that refuses a frame has gone (an SSH drop): stop as a hang-up would,
            // whether or not SIGHUP or the key thread said so
            if terminal.draw(|f| app.draw(f, theme)).is_err() && !hung_up {
                hung_up = true;
                for c in app.update(S::hang_up()) {
                    on_control(c, &mut app);
                }
            }
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
                    on_control(c, &mut app);
                }
                // take whatever else is queued before drawing again
                while let Ok(m) = msgs.try_recv() {
                    for c in app.update(m) {
                        on_control(c, &mut app);
                    }
                }
                dirty = true;
            }
            // ETA and elapsed times move on even without events
            Err(RecvTimeoutError::Timeout) => dirty = true,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if app.quit() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::{Backend, ClearType, WindowSize};
    use ratatui::buffer::Cell;
    use ratatui::layout::{Position, Size};

    /// A terminal that has hung up: every frame written to it fails, as writes to a closed pty
    /// fail with EIO.
    struct HungUp;

    fn eio() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EIO)
    }

    impl Backend for HungUp {
        type Error = std::io::Error;
        fn draw<'a, I>(&mut self, _content: I) -> std::io::Result<()>
        where
            I: Iterator<Item = (u16, u16, &'a Cell)>,
        {
            Err(eio())
        }
        fn hide_cursor(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn show_cursor(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn get_cursor_position(&mut self) -> std::io::Result<Position> {
            Ok(Position::ORIGIN)
        }
        fn set_cursor_position<P: Into<Position>>(&mut self, _p: P) -> std::io::Result<()> {
            Ok(())
        }
        fn clear(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn clear_region(&mut self, _t: ClearType) -> std::io::Result<()> {
            Ok(())
        }
        fn size(&self) -> std::io::Result<Size> {
            Ok(Size::new(120, 40))
        }
        fn window_size(&mut self) -> std::io::Result<WindowSize> {
            Ok(WindowSize {
                columns_rows: Size::new(120, 40),
                pixels: Size::new(0, 0),
            })
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(eio())
        }
    }

    #[test]
    fn a_terminal_that_refuses_frames_stops_the_run_as_a_hang_up_would() {
        let cfg = crate::config::parse("", "t", &["data.stores=[\"a.h5\"]".to_string()])
            .unwrap()
            .validate("t")
            .unwrap();
        let app = App::new(cfg, "run".into(), "cpu".into(), 0, 100);
        let (tx, rx) = channel();
        let (done_tx, done) = channel();
        // in a thread of its own, so that a loop that never notices fails instead of hanging
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            let mut terminal = ratatui::Terminal::new(HungUp).unwrap();
            // the trainer answers the stop by finishing, which ends the loop
            ui_loop(&mut terminal, app, &Theme::mono(), &rx, &mut |c, _| {
                sent.push(c);
                let _ = tx.send(Msg::Finished(Ending::Done));
            });
            let _ = done_tx.send(sent);
        });
        let sent = done
            .recv_timeout(Duration::from_secs(10))
            .expect("the screen noticed the terminal was gone");
        assert!(
            matches!(sent.as_slice(), [Control::Stop]),
            "one stop with a checkpoint: {sent:?}"
        );
    }
}
