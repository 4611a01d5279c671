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
        // help and an event shown whole close the same way on every screen: Esc, ? or q; other
        // keys do nothing under them (Ctrl-C still stops)
        if matches!(self.overlay, Some(Overlay::Help | Overlay::Event(_)))
            && action != Some(Action::Interrupt)
        {
            if crate::tui::widgets::closes_help(&key) {
                self.overlay = None;
            }
            return Vec::new();
        }
        let Some(action) = action else {
            return Vec::new();
        };
        if self.focus == Pane::Log
            && let Some(controls) = self.on_log_key(action)
        {
            return controls;
        }
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
            // never narrower than two reports: one point is not a trend
            Action::ZoomIn => {
                let least = (2 * self.config.hyper.log_every).max(2);
                self.window = Some((self.window.unwrap_or(self.step.max(8)) / 2).max(least))
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
                    None => Some(
                        (self.step / 10)
                            .max(50)
                            .max(2 * self.config.hyper.log_every),
                    ),
                }
            }
            Action::ToggleLog => self.log_scale = !self.log_scale,
            Action::NextLossChart => {
                // the order the loss pane stacks them in
                self.loss_view = match (self.loss_view, self.has_lm()) {
                    (LossView::Fvu, true) => LossView::Lm,
                    (LossView::Fvu, false) | (LossView::Lm, _) => LossView::Mse,
                    (LossView::Mse, _) => LossView::Fvu,
                }
            }
            // the events pane's keys when it is not focused: Tab there first
            Action::PageUp | Action::PageDown | Action::End => {}
            Action::Pause | Action::Checkpoint => {}
        }
        Vec::new()
    }
}

/// Lines a page key moves in the events pane.
const PAGE: usize = 8;

impl TrainApp {
    /// The events pane's keys while it is focused (`None`: the key is not the pane's). The
    /// arrows move the selected event instead of stepping a value unseen.
    fn on_log_key(&mut self, action: Action) -> Option<Vec<Control>> {
        let n = self.log.len();
        if n == 0 {
            return matches!(
                action,
                Action::Up | Action::Down | Action::Increase | Action::Decrease | Action::Edit
            )
            .then(Vec::new);
        }
        let at = self.log_cursor.unwrap_or(n - 1);
        let to = |i: usize| Some(i.min(n - 1));
        self.log_cursor = match action {
            Action::Up => to(at.saturating_sub(1)),
            Action::Down => to(at + 1),
            Action::PageUp => to(at.saturating_sub(PAGE)),
            Action::PageDown => to(at + PAGE),
            Action::End => None,
            Action::Edit => {
                self.overlay = Some(Overlay::Event(at));
                self.log_cursor
            }
            Action::Increase | Action::Decrease => {
                self.note(
                    "←/→ step values from the other panes: Tab moves the focus off the events",
                    false,
                );
                self.log_cursor
            }
            _ => return None,
        };
        // at the newest line again: follow new events
        if self.log_cursor == Some(n - 1) && matches!(action, Action::Down | Action::PageDown) {
            self.log_cursor = None;
        }
        Some(Vec::new())
    }

    /// Whether the model is in the loop (an `lm-eval` configured or seen).
    pub fn has_lm(&self) -> bool {
        self.config.lm_eval.is_some() || self.last_lm.is_some()
    }
}
