//! Keys on the training screen: typing a value, and each [`Action`] of the keymap.

use super::*;

impl TrainApp {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Control> {
        // typing a value takes every key but Enter, Esc and Ctrl-C
        if let Some(buf) = self.editing.as_mut() {
            match key.code {
                KeyCode::Char(c)
                    if !key
                        .modifiers
                        .contains(ratatui::crossterm::event::KeyModifiers::CONTROL) =>
                {
                    buf.push(c);
                    return Vec::new();
                }
                KeyCode::Backspace => {
                    buf.pop();
                    return Vec::new();
                }
                KeyCode::Enter => {
                    let value = self.editing.take().unwrap_or_default();
                    return self.apply(self.tunables()[self.selected], value.trim());
                }
                KeyCode::Esc => {
                    self.editing = None;
                    return Vec::new();
                }
                _ => {}
            }
        }
        let action = keymap::action(&key);
        if self.overlay == Some(Overlay::ConfirmQuit) {
            return match (action, key.code) {
                (Some(Action::Interrupt), _) => self.stop(),
                // y/n/Esc, as every question: `c` means "checkpoint" everywhere else
                (_, KeyCode::Char('y') | KeyCode::Enter) => self.stop(),
                (_, KeyCode::Char('n') | KeyCode::Esc) => {
                    self.overlay = None;
                    Vec::new()
                }
                _ => Vec::new(),
            };
        }
        let Some(action) = action else {
            return Vec::new();
        };
        match action {
            Action::Interrupt => return self.stop(),
            Action::Quit => {
                if self.state.live() && !self.watching {
                    self.overlay = Some(Overlay::ConfirmQuit);
                } else {
                    self.quit = true;
                }
            }
            Action::Help => self.overlay = Some(Overlay::Help),
            Action::Warnings => self.overlay = Some(Overlay::Warnings),
            Action::Close => self.overlay = None,
            Action::NextPane | Action::PrevPane => {
                let i = PANES.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = PANES.len();
                let j = if action == Action::NextPane {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.focus = PANES[j];
            }
            // the events pane focused: the arrows do not step a value unseen
            Action::Increase | Action::Decrease | Action::Up | Action::Down
                if self.focus == Pane::Log =>
            {
                self.note(
                    "the arrows step values from the other panes: Tab moves the focus off the events",
                    false,
                );
            }
            Action::Up => {
                let n = self.tunables().len();
                self.selected = (self.selected + n - 1) % n
            }
            Action::Down => self.selected = (self.selected + 1) % self.tunables().len(),
            Action::Increase | Action::Decrease => {
                let t = self.tunables()[self.selected];
                let Some(v) = t.get(&self.config.hyper) else {
                    self.note(
                        format!("{} is not set: press Enter to type a value", t.key),
                        true,
                    );
                    return Vec::new();
                };
                let next = t.stepped(v, action == Action::Increase);
                return self.apply(t, &t.format(next));
            }
            Action::Edit => {
                let t = self.tunables()[self.selected];
                self.editing = Some(
                    t.get(&self.config.hyper)
                        .map(|v| t.format(v))
                        .unwrap_or_default(),
                );
            }
            Action::Pause | Action::Checkpoint if self.watching => self.note(
                "pause/checkpoint: only in the training process's own screen",
                true,
            ),
            Action::Pause if self.state.live() => {
                return if self.state == RunState::Paused {
                    vec![Control::Resume]
                } else {
                    vec![Control::Pause]
                };
            }
            Action::Checkpoint if self.state.live() => {
                self.state = RunState::Checkpointing;
                return vec![Control::Checkpoint];
            }
            Action::ZoomIn => {
                self.window = Some((self.window.unwrap_or(self.step.max(8)) / 2).max(4))
            }
            Action::ZoomOut => {
                self.window = self
                    .window
                    .map(|w| w.saturating_mul(2))
                    .filter(|w| *w < self.step.max(1))
            }
            Action::ToggleWindow => {
                self.window = match self.window {
                    Some(_) => None,
                    None => Some((self.step / 10).max(50)),
                }
            }
            Action::ToggleLog => self.log_scale = !self.log_scale,
            Action::Pause | Action::Checkpoint => {}
        }
        Vec::new()
    }
}
