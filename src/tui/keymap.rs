//! The training screen's keys: one table that both the input handling and the help overlay and
//! footer read, so what is shown is what works.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Quit (asks first while training).
    Quit,
    /// Stop with a checkpoint at once (Ctrl-C).
    Interrupt,
    /// Show the help overlay.
    Help,
    /// Show the active health warnings.
    Warnings,
    /// Close an overlay or cancel an edit.
    Close,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Select the previous hyperparameter.
    Up,
    /// Select the next hyperparameter.
    Down,
    /// Step the selected hyperparameter down.
    Decrease,
    /// Step the selected hyperparameter up.
    Increase,
    /// Type a new value for the selected hyperparameter (Enter again applies it).
    Edit,
    /// Pause or resume training.
    Pause,
    /// Write a checkpoint now.
    Checkpoint,
    /// Show fewer steps (a shorter recent window).
    ZoomIn,
    /// Show more steps.
    ZoomOut,
    /// Switch between the whole run and the recent window.
    ToggleWindow,
    /// Log scale for the MSE chart.
    ToggleLog,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys as shown.
    pub keys: &'static str,
    /// What they do.
    pub action: Action,
    /// The help text.
    pub help: &'static str,
    /// Its footer label; empty: not in the footer (the footer shows the most used ones).
    pub footer: &'static str,
}

impl Binding {
    /// Whether it applies on a screen that is (or is not) watching a run in another process.
    pub fn applies(&self, watching: bool) -> bool {
        !(watching && matches!(self.action, Action::Pause | Action::Checkpoint))
    }

    /// Its help text there.
    pub fn help_for(&self, watching: bool) -> &'static str {
        match (watching, self.action) {
            (true, Action::Quit | Action::Interrupt) => "leave the viewer (the run goes on)",
            (true, Action::Increase) => "step the selected value (written to config.toml)",
            (true, Action::Edit) => "type a new value, written to the run's config.toml",
            _ => self.help,
        }
    }
}

/// Every binding of the training screen, in help order.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "q",
        action: Action::Quit,
        help: "quit (asks: stop and checkpoint, or cancel)",
        footer: "quit",
    },
    Binding {
        keys: "Ctrl-C",
        action: Action::Interrupt,
        help: "stop now, writing a checkpoint",
        footer: "",
    },
    Binding {
        keys: "?",
        action: Action::Help,
        help: "this help",
        footer: "help",
    },
    Binding {
        keys: "Esc",
        action: Action::Close,
        help: "close help / cancel an edit",
        footer: "",
    },
    Binding {
        keys: "Tab / Shift-Tab",
        action: Action::NextPane,
        help: "next / previous pane",
        footer: "",
    },
    Binding {
        keys: "↑ k / ↓ j",
        action: Action::Up,
        help: "select a hyperparameter",
        footer: "select",
    },
    Binding {
        keys: "← h / → l",
        action: Action::Increase,
        help: "step the selected value down / up",
        footer: "step",
    },
    Binding {
        keys: "Enter",
        action: Action::Edit,
        help: "type a new value (Enter applies, Esc cancels)",
        footer: "edit",
    },
    Binding {
        keys: "p",
        action: Action::Pause,
        help: "pause / resume",
        footer: "pause",
    },
    Binding {
        keys: "c",
        action: Action::Checkpoint,
        help: "checkpoint now",
        footer: "checkpoint",
    },
    Binding {
        keys: "+ / -",
        action: Action::ZoomIn,
        help: "zoom the step axis in / out (recent window)",
        footer: "",
    },
    Binding {
        keys: "w",
        action: Action::ToggleWindow,
        help: "whole run / recent window",
        footer: "window",
    },
    Binding {
        keys: "L",
        action: Action::ToggleLog,
        help: "log scale for MSE",
        footer: "",
    },
    Binding {
        keys: "W",
        action: Action::Warnings,
        help: "the active health warnings, with what to change",
        footer: "",
    },
];

/// The action of a key press on the main screen, if any.
pub fn action(key: &KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c')).then_some(Action::Interrupt);
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Esc => Action::Close,
        KeyCode::Tab => Action::NextPane,
        KeyCode::BackTab => Action::PrevPane,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Left | KeyCode::Char('h') => Action::Decrease,
        KeyCode::Right | KeyCode::Char('l') => Action::Increase,
        KeyCode::Enter => Action::Edit,
        KeyCode::Char('p') | KeyCode::Char(' ') => Action::Pause,
        KeyCode::Char('c') => Action::Checkpoint,
        KeyCode::Char('+') | KeyCode::Char('=') => Action::ZoomIn,
        KeyCode::Char('-') => Action::ZoomOut,
        KeyCode::Char('w') => Action::ToggleWindow,
        KeyCode::Char('L') => Action::ToggleLog,
        KeyCode::Char('W') => Action::Warnings,
        _ => return None,
    })
}
