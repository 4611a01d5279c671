//! Colours and chart markers of the TUI. The built-in dark theme for now, and a colourless one
//! when `NO_COLOR` is set (modifiers only). Theme files (`themes/*.toml`, `--theme`) are the
//! next step of the TUI issue.

use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;

/// The styles the screens use.
#[derive(Debug, Clone)]
pub struct Theme {
    /// Ordinary text.
    pub text: Style,
    /// Secondary text (labels, axes).
    pub dim: Style,
    /// Pane borders.
    pub border: Style,
    /// The focused pane's border.
    pub focus: Style,
    /// Selection and highlights.
    pub accent: Style,
    /// Warnings and refusals.
    pub warn: Style,
    /// Chart series, in order.
    pub series: [Style; 3],
    /// Marker for line charts (braille, or dots for fonts without braille).
    pub marker: Marker,
}

impl Theme {
    /// The default dark theme.
    pub fn dark() -> Self {
        Self {
            text: Style::new().fg(Color::Gray),
            dim: Style::new().fg(Color::DarkGray),
            border: Style::new().fg(Color::DarkGray),
            focus: Style::new().fg(Color::Cyan),
            accent: Style::new().fg(Color::Black).bg(Color::Cyan),
            warn: Style::new().fg(Color::Yellow),
            series: [
                Style::new().fg(Color::Cyan),
                Style::new().fg(Color::Magenta),
                Style::new().fg(Color::Green),
            ],
            marker: Marker::Braille,
        }
    }

    /// No colour at all (`NO_COLOR`): emphasis through bold and reversed text.
    pub fn mono() -> Self {
        let plain = Style::new();
        Self {
            text: plain,
            dim: plain,
            border: plain,
            focus: plain.add_modifier(Modifier::BOLD),
            accent: plain.add_modifier(Modifier::REVERSED),
            warn: plain.add_modifier(Modifier::BOLD),
            series: [plain, plain, plain],
            marker: Marker::Braille,
        }
    }

    /// The theme the environment asks for: mono under `NO_COLOR`, else dark.
    pub fn from_env() -> Self {
        match std::env::var_os("NO_COLOR") {
            Some(v) if !v.is_empty() => Self::mono(),
            _ => Self::dark(),
        }
    }
}
