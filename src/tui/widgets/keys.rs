//! A screen's key table: each row names the keys that do one thing, how the help shows them,
//! what they do and the footer's label. The screen's key handling looks keys up in the same
//! table its help overlay and footer are drawn from, so what is shown is what works.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A key as a table matches it: a code, with Ctrl or without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Whether Ctrl is held.
    pub ctrl: bool,
}

/// A character key without Ctrl.
pub const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}

/// A named key (arrows, Enter, Esc, Tab, …) without Ctrl.
pub const fn named(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

/// A character key with Ctrl.
pub const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

/// One row of a key table.
#[derive(Debug, Clone, Copy)]
pub struct Binding<A: 'static> {
    /// The keys that do it.
    pub keys: &'static [Key],
    /// How the help shows them; empty: shown with the row before (its other half: ↑ and ↓).
    pub shown: &'static str,
    /// What they ask for.
    pub action: A,
    /// The help text (empty with an empty `shown`).
    pub help: &'static str,
    /// Its footer label; empty: not in the footer (the footer shows the most used ones).
    pub footer: &'static str,
}

/// A row of a key table (`const`, for the tables' statics).
pub const fn bind<A>(
    keys: &'static [Key],
    shown: &'static str,
    action: A,
    help: &'static str,
    footer: &'static str,
) -> Binding<A> {
    Binding {
        keys,
        shown,
        action,
        help,
        footer,
    }
}

/// The action `table` binds to the key pressed, if any.
pub fn lookup<A: Copy>(table: &[Binding<A>], ev: &KeyEvent) -> Option<A> {
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    table
        .iter()
        .find(|b| b.keys.iter().any(|k| k.code == ev.code && k.ctrl == ctrl))
        .map(|b| b.action)
}

/// The help overlay's rows (keys, what they do) of the bindings `keep` accepts.
pub fn help_rows<A>(
    table: &[Binding<A>],
    keep: impl Fn(&Binding<A>) -> bool,
) -> Vec<(&'static str, &'static str)> {
    table
        .iter()
        .filter(|b| !b.shown.is_empty() && keep(b))
        .map(|b| (b.shown, b.help))
        .collect()
}

/// The footer's (keys, label) pairs of the bindings `keep` accepts.
pub fn footer_rows<A>(
    table: &[Binding<A>],
    keep: impl Fn(&Binding<A>) -> bool,
) -> Vec<(&'static str, &'static str)> {
    table
        .iter()
        .filter(|b| !b.footer.is_empty() && !b.shown.is_empty() && keep(b))
        .map(|b| (b.shown, b.footer))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum A {
        Up,
        Down,
        Quit,
    }

    const T: &[Binding<A>] = &[
        Binding {
            keys: &[named(KeyCode::Up), ch('k')],
            shown: "↑ k / ↓ j",
            action: A::Up,
            help: "select",
            footer: "select",
        },
        Binding {
            keys: &[named(KeyCode::Down), ch('j')],
            shown: "",
            action: A::Down,
            help: "",
            footer: "",
        },
        Binding {
            keys: &[ch('q'), ctrl('c')],
            shown: "q",
            action: A::Quit,
            help: "quit",
            footer: "",
        },
    ];

    fn press(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn keys_are_looked_up_in_the_table_the_help_shows() {
        assert_eq!(
            lookup(T, &press(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(A::Down)
        );
        assert_eq!(
            lookup(T, &press(KeyCode::Up, KeyModifiers::NONE)),
            Some(A::Up)
        );
        assert_eq!(
            lookup(T, &press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(A::Quit)
        );
        assert_eq!(
            lookup(T, &press(KeyCode::Char('c'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            lookup(T, &press(KeyCode::Char('k'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(
            help_rows(T, |_| true),
            [("↑ k / ↓ j", "select"), ("q", "quit")]
        );
        assert_eq!(footer_rows(T, |_| true), [("↑ k / ↓ j", "select")]);
    }
}
