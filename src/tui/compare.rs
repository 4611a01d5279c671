//! The `compare` screen: the table of SAEs and their L0–FVU chart with the frontier; ↑/↓
//! select (the selected SAE is highlighted in the chart), q, Esc or Ctrl-C leave.

use crate::compare::{Basis, Entry};
use crate::tui::sweep::frontier::{Labelled, draw_chart};
use crate::tui::theme::Theme;
use crate::tui::tty::{self, Pumped};
use crate::tui::view::too_small;
use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use std::time::Duration;

/// Draw the screen with entry `selected` highlighted.
pub fn draw(f: &mut Frame, entries: &[Entry], selected: usize, theme: &Theme) {
    if too_small(f, theme, "q leaves") {
        return;
    }
    let area = f.area();
    let table_h = (entries.len() as u16 + 3).min(area.height / 2);
    let [table, chart, footer] = Layout::vertical([
        Constraint::Length(table_h),
        Constraint::Min(8),
        Constraint::Length(1),
    ])
    .areas(area);
    let header = [
        "#", "name", "arch", "d_sae", "hyper", "L0", "MSE", "FVU", "dead", "front", "basis",
    ]
    .map(Cell::from);
    let rows = entries.iter().enumerate().map(|(i, e)| {
        let hyper = e.hyper_text();
        let r = Row::new([
            Cell::from(format!("{}", i + 1)),
            Cell::from(e.name.clone()),
            Cell::from(e.architecture.clone()),
            Cell::from(e.d_sae.to_string()),
            Cell::from(hyper),
            Cell::from(format!("{:.1}", e.l0)),
            Cell::from(format!("{:.4}", e.mse)),
            Cell::from(format!("{:.4}", e.fvu)),
            Cell::from(e.dead.map_or("-".into(), |d| d.to_string())),
            Cell::from(if e.on_frontier { "●" } else { "" }),
            Cell::from(e.basis.to_string()),
        ]);
        if i == selected {
            r.style(theme.focus.add_modifier(Modifier::REVERSED))
        } else {
            r.style(theme.text)
        }
    });
    let widths = [
        Constraint::Length(3),
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(22),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(20),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(theme.dim))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border)
                    .title(Span::styled(
                        " SAEs (● on the L0–FVU frontier) ",
                        theme.text,
                    )),
            ),
        table,
    );
    let points: Vec<Labelled> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Labelled {
            label: format!("{}", i + 1),
            point: Some((e.l0, e.fvu)),
            selected: i == selected,
        })
        .collect();
    let store = entries
        .iter()
        .all(|e| matches!(e.basis, Basis::Store { .. }));
    let title = if store {
        " L0 (log) × FVU · every SAE on the same store rows · line: frontier "
    } else {
        " L0 (log) × FVU · each run's own last evaluation (see basis) · line: frontier "
    };
    draw_chart(f, chart, title, &points, &[], theme);
    f.render_widget(
        Paragraph::new("↑↓ select   q / Esc leave").style(theme.dim),
        footer,
    );
}

/// Show the screen until the user leaves (the terminal is restored however it ends).
pub fn show(entries: &[Entry], theme: &Theme) -> std::io::Result<()> {
    let mut terminal = ratatui::init();
    let mut selected = 0usize;
    let n = entries.len().max(1);
    let result = (|| -> std::io::Result<()> {
        loop {
            terminal.draw(|f| draw(f, entries, selected, theme))?;
            let mut leave = false;
            let pumped = tty::pump(Duration::from_millis(500), |ev| {
                if let Event::Key(k) = ev
                    && k.kind != KeyEventKind::Release
                {
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => leave = true,
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            leave = true
                        }
                        KeyCode::Up | KeyCode::Char('k') => selected = (selected + n - 1) % n,
                        KeyCode::Down | KeyCode::Char('j') => selected = (selected + 1) % n,
                        _ => {}
                    }
                }
                !leave
            });
            if leave || pumped != Pumped::Ok {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    result
}
