//! The inspection screen: state and update rule ([`app`]), drawing ([`view`]); it is a
//! [`Screen`] that `session::show` drives like every other.

pub mod app;
pub mod view;

use crate::train::control::JobControl;
use crate::tui::drive::Screen;
use crate::tui::msg::Msg;
use crate::tui::theme::Theme;
use app::InspectApp;

impl Screen for InspectApp {
    fn update(&mut self, m: Msg) -> Vec<JobControl> {
        match m {
            Msg::Key(k) => {
                self.on_key(k);
                // the nearest features of a new selection are computed before drawing
                let _ = self.nearest();
            }
            // SIGTERM, SIGHUP, a terminal gone
            Msg::Signal => self.quit = true,
            _ => {}
        }
        Vec::new()
    }
    fn quit(&self) -> bool {
        self.quit
    }
    fn draw(&self, f: &mut ratatui::Frame, theme: &Theme) {
        view::draw(f, self, theme)
    }
}
