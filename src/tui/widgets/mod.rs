//! The parts every screen shares: the key table ([`keys`]), the L0–FVU frontier chart
//! ([`frontier`]), the "terminal too small" note, a bordered block, a centred box, the help
//! overlay (drawn from a key table), the yes/no question, and chart tick labels.

pub mod frontier;
pub mod keys;

use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

/// The smallest usable terminal.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// Below [`MIN_SIZE`], say so (with `hint`, e.g. what `q` does) instead of drawing; true then.
pub fn too_small(f: &mut Frame, theme: &Theme, hint: &str) -> bool {
    let area = f.area();
    if area.width >= MIN_SIZE.0 && area.height >= MIN_SIZE.1 {
        return false;
    }
    let msg = format!(
        "terminal too small: {}x{}, needs at least {}x{}\n({hint})",
        area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
    );
    f.render_widget(
        Paragraph::new(msg)
            .style(theme.warn)
            .wrap(Wrap { trim: true }),
        area,
    );
    true
}

/// A pane's block: borders in the focus colour when `focused`, the title in the text colour.
pub fn bordered<'a>(title: impl Into<String>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused { theme.focus } else { theme.border })
        .title(Span::styled(title.into(), theme.text))
}

/// A `w`×`h` box in the middle of `area` (smaller if `area` is).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// A box over the screen: cleared, bordered in `border`, titled, holding `lines` (wrapped).
pub fn overlay(
    f: &mut Frame,
    area: Rect,
    width: u16,
    title: &str,
    lines: Vec<Line<'_>>,
    border: Style,
) {
    let r = centered(area, width, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(border)
                .title(title.to_string()),
        ),
        r,
    );
}

/// Tick labels for the ends of `[lo, hi]` with just enough decimals that they differ, and no
/// `-0`.
pub fn ticks(lo: f64, hi: f64) -> [String; 2] {
    let span = (hi - lo).abs().max(1e-12);
    let mut d = (1.0 - span.log10().floor()).clamp(0.0, 12.0) as usize;
    // small numbers keep a decimal (L0 12.4, not 12)
    if lo.abs().max(hi.abs()) < 100.0 {
        d = d.max(1);
    }
    loop {
        let [a, b] = [lo, hi].map(|v| {
            let t = format!("{v:.d$}");
            // -0, -0.00: a zero
            if t.trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                t.trim_start_matches('-').to_string()
            } else {
                t
            }
        });
        if a != b || d >= 12 {
            return [a, b];
        }
        d += 1;
    }
}

/// `text` cut to `width` characters, its end marked with "…" when it was cut (so a cut value
/// never reads as a different number).
pub fn ellipsized(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Whether `key` closes a help overlay: Esc, `?` or `q`, on every screen.
pub fn closes_help(key: &ratatui::crossterm::event::KeyEvent) -> bool {
    use ratatui::crossterm::event::KeyCode;
    matches!(
        key.code,
        KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
    )
}

/// How every help overlay's title says it closes.
pub const HELP_CLOSES: &str = "(Esc, ? or q closes)";

/// The help overlay: one line per row of a screen's key table (keys, what they do).
pub fn help(
    f: &mut Frame,
    area: Rect,
    title: &str,
    rows: &[(&str, &str)],
    key_width: usize,
    theme: &Theme,
) {
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, h)| {
            Line::from(vec![
                Span::styled(format!("{k:>key_width$}  "), theme.focus),
                Span::styled(h.to_string(), theme.text),
            ])
        })
        .collect();
    let width = rows
        .iter()
        .map(|(_, h)| key_width + 6 + h.chars().count())
        .max()
        .unwrap_or(40) as u16;
    overlay(f, area, width.max(40), title, lines, theme.focus);
}

/// A question over the screen: `question`, then the answers `(key, meaning)`.
pub fn confirm(
    f: &mut Frame,
    area: Rect,
    title: &str,
    question: &str,
    answers: &[(&str, &str)],
    theme: &Theme,
) {
    let mut spans = Vec::new();
    for (k, meaning) in answers {
        spans.push(Span::styled(format!(" {k} "), theme.accent));
        spans.push(Span::styled(format!(" {meaning}   "), theme.text));
    }
    let width = question
        .chars()
        .count()
        .max(spans.iter().map(|s| s.content.chars().count()).sum())
        + 4;
    overlay(
        f,
        area,
        (width as u16).max(30),
        title,
        vec![
            Line::styled(question.to_string(), theme.text),
            Line::from(spans),
        ],
        theme.warn,
    );
}
