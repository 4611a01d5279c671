//! Driving a screen: taking the terminal over (and giving it back however the loop ends, panics
//! included), the UI loop that draws a [`Screen`] at most ~30 times a second and applies its
//! messages, and the thread that turns key presses into messages. Every live screen (training,
//! sweep, and both under `watch`) runs through [`on_screen`]; the threads that feed it belong to
//! the session layer (`crate::session`).

use crate::train::control::JobControl;
use crate::tui::app::TrainApp;
use crate::tui::msg::Msg;
use crate::tui::sweep::SweepApp;
use crate::tui::theme::Theme;
use crate::tui::tty::{self, Pumped};
use crate::tui::view;
use ratatui::crossterm::event::{Event, KeyEventKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Shortest time between two frames.
const FRAME: Duration = Duration::from_millis(33);

/// Run `app`'s UI loop on the terminal (taken over, and restored however the loop ends); the
/// loop's panic, if it had one. A panic of the thread named `worker` is not printed by the
/// hook (the screen shows the worker as failed; the caller prints it once the screen is
/// closed); any other panic restores the terminal and prints, as ratatui's hook does.
pub fn on_screen(
    worker: Option<&'static str>,
    app: &mut dyn Screen,
    theme: &Theme,
    msgs: &Receiver<Msg>,
    on_control: &mut dyn FnMut(JobControl, &mut dyn Screen),
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

/// A panic's message.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Whether the `JUMPSCOPE_TEST_PANIC` seam names this place (`ui` or `trainer`).
pub fn fault_asked(place: &str) -> bool {
    crate::seams::panic_place() == Some(place)
}

/// Panic here if the `JUMPSCOPE_TEST_PANIC` seam names this place.
pub fn injected_fault(place: &str) {
    if fault_asked(place) {
        panic!("injected by JUMPSCOPE_TEST_PANIC={place}");
    }
}

/// A thread that sends [`Msg::Key`] for each key press until `stop` is set, and [`Msg::Signal`]
/// when the terminal goes away.
pub fn spawn_key_thread(tx: Sender<Msg>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("jumpscope-keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let pumped = tty::pump(Duration::from_millis(100), |ev| match ev {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        tx.send(Msg::Key(k)).is_ok()
                    }
                    _ => true,
                });
                match pumped {
                    Pumped::Ok => {}
                    Pumped::Stopped => break,
                    // an SSH drop whose SIGHUP did not reach us: stop as a hang-up would
                    Pumped::Gone => {
                        let _ = tx.send(Msg::Signal);
                        break;
                    }
                }
            }
        })
        .expect("spawning the input thread")
}

/// Show a screen that drives no job (`inspect`, `compare`) until it quits: keys from the
/// terminal and whatever the caller sends on `tx` (a signal's [`Msg::Signal`]).
pub fn show(
    screen: &mut dyn Screen,
    theme: &Theme,
    tx: Sender<Msg>,
    msgs: Receiver<Msg>,
) -> std::thread::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let input = spawn_key_thread(tx, stop.clone());
    let ui = on_screen(None, screen, theme, &msgs, &mut |_, _| {});
    stop.store(true, Ordering::Relaxed);
    join_briefly(input);
    ui
}

/// A screen the UI loop drives: messages in, controls out, drawn from its state.
pub trait Screen {
    /// Apply one message; the controls to send to the job.
    fn update(&mut self, m: Msg) -> Vec<JobControl>;
    /// Whether to leave the loop.
    fn quit(&self) -> bool;
    /// Draw the screen.
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme);
    /// Called before each frame (the training screen's injected fault).
    fn before_frame(&self) {}
    /// The screen as the training screen, to reach its state (`watch` writes its edits).
    fn as_train(&mut self) -> Option<&mut TrainApp> {
        None
    }
    /// The screen as the sweep screen.
    fn as_sweep(&mut self) -> Option<&mut SweepApp> {
        None
    }
}

/// Join `t` if it ends within a second; else leave it (the process is about to exit). The key
/// thread can be caught inside crossterm when the terminal hangs up at the wrong moment (see
/// `tty`), and a stuck join would keep a stopped run from exiting.
pub fn join_briefly(t: std::thread::JoinHandle<()>) {
    let until = Instant::now() + Duration::from_secs(1);
    while !t.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

impl Screen for TrainApp {
    fn update(&mut self, m: Msg) -> Vec<JobControl> {
        TrainApp::update(self, m)
            .into_iter()
            .map(JobControl::all)
            .collect()
    }
    fn quit(&self) -> bool {
        self.quit
    }
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme) {
        view::draw(f, self, theme)
    }
    fn before_frame(&self) {
        if self.step > 0 && fault_asked("ui") {
            injected_fault("ui");
        }
    }
    fn as_train(&mut self) -> Option<&mut TrainApp> {
        Some(self)
    }
}

impl Screen for SweepApp {
    fn update(&mut self, m: Msg) -> Vec<JobControl> {
        SweepApp::update(self, m)
    }
    fn quit(&self) -> bool {
        self.quit
    }
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme) {
        crate::tui::sweep::view::draw(f, self, theme)
    }
    fn as_sweep(&mut self) -> Option<&mut SweepApp> {
        Some(self)
    }
}

/// Draw `app` (at most ~30 frames/s, and only when something changed or a second passed), apply
/// the messages and hand its controls to `on_control`, until it quits or the channel closes.
fn ui_loop<B: ratatui::backend::Backend>(
    terminal: &mut ratatui::Terminal<B>,
    app: &mut dyn Screen,
    theme: &Theme,
    msgs: &Receiver<Msg>,
    on_control: &mut dyn FnMut(JobControl, &mut dyn Screen),
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
                for c in app.update(Msg::Signal) {
                    on_control(c, app);
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
                    on_control(c, app);
                }
                // take whatever else is queued before drawing again
                while let Ok(m) = msgs.try_recv() {
                    for c in app.update(m) {
                        on_control(c, app);
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
    use crate::train::control::Control;
    use crate::tui::msg::Ending;
    use ratatui::backend::{Backend, ClearType, WindowSize};
    use ratatui::buffer::Cell;
    use ratatui::layout::{Position, Size};
    use std::sync::mpsc::channel;

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
        let mut app = TrainApp::new(cfg, "run".into(), "cpu".into(), 0, 100);
        let (tx, rx) = channel();
        let (done_tx, done) = channel();
        // in a thread of its own, so that a loop that never notices fails instead of hanging
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            let mut terminal = ratatui::Terminal::new(HungUp).unwrap();
            // the trainer answers the stop by finishing, which ends the loop
            ui_loop(&mut terminal, &mut app, &Theme::mono(), &rx, &mut |c, _| {
                sent.push(c);
                let _ = tx.send(Msg::Finished(Ending::Done));
            });
            let _ = done_tx.send(sent);
        });
        let sent = done
            .recv_timeout(Duration::from_secs(10))
            .expect("the screen noticed the terminal was gone");
        assert!(
            matches!(
                sent.as_slice(),
                [JobControl {
                    control: Control::Stop,
                    ..
                }]
            ),
            "one stop with a checkpoint: {sent:?}"
        );
    }
}
