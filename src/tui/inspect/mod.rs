//! The inspection screen: state and update rule ([`app`]), drawing ([`view`]), and the loop
//! that ties them to the terminal ([`show`]).

pub mod app;
pub mod view;

use crate::tui::theme::Theme;
use crate::tui::tty::{self, Pumped};
use app::InspectApp;
use ratatui::crossterm::event::{Event, KeyEventKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Show `app` until the user quits, `stop` is set (SIGTERM, SIGHUP) or the terminal goes away;
/// the terminal is restored whatever happens.
pub fn show(mut app: InspectApp, theme: &Theme, stop: &AtomicBool) {
    let mut terminal = ratatui::init();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut dirty = true;
        let mut size = terminal.size().ok();
        while !app.quit && !stop.load(Ordering::Relaxed) {
            if dirty {
                // the nearest features of a new selection are computed before drawing
                let _ = app.nearest();
                let _ = terminal.draw(|f| view::draw(f, &app, theme));
                dirty = false;
            }
            let pumped = tty::pump(Duration::from_millis(250), |ev| {
                if let Event::Key(k) = ev
                    && k.kind != KeyEventKind::Release
                {
                    app.on_key(k);
                    dirty = true;
                }
                !app.quit
            });
            if pumped == Pumped::Gone {
                break;
            }
            // a resize is seen here (crossterm only reports it while keys are read)
            let now = terminal.size().ok();
            if now != size {
                size = now;
                dirty = true;
            }
        }
    }));
    ratatui::restore();
    if let Err(p) = run {
        std::panic::resume_unwind(p);
    }
}
