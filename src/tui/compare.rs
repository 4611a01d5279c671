//! The `compare` screen: the table of SAEs and their L0–FVU chart with the frontier; ↑/↓
//! select (the selected SAE is highlighted in the chart), y switches the chart between FVU and
//! ΔLM loss, q, Esc or Ctrl-C leave.

use crate::compare::{Basis, Entry};
use crate::train::control::JobControl;
use crate::tui::drive::Screen;
use crate::tui::msg::Msg;
use crate::tui::theme::Theme;
use crate::tui::widgets::frontier::{Labelled, YAxis, draw_chart};
use crate::tui::widgets::keys::{Binding, ch, ctrl, footer_rows, lookup, named};
use crate::tui::widgets::{ellipsized, too_small};
use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

/// The hyperparameter column's width.
const HYPER_W: u16 = 24;

/// Draw the screen with entry `selected` highlighted.
pub fn draw(f: &mut Frame, entries: &[Entry], selected: usize, y: YAxis, theme: &Theme) {
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
    // each column: header, width, cell; where the terminal is narrow only those that fit whole
    // (a cut value would read as another number)
    type Column = (&'static str, u16, fn(usize, &Entry) -> String);
    // a transcoder's architecture carries its kind (`jumprelu/tc`)
    let arch_w = entries
        .iter()
        .map(|e| e.arch_label().chars().count() as u16)
        .fold(9, u16::max);
    let all: [Column; 14] = [
        ("#", 3, |i, _| format!("{}", i + 1)),
        ("name", 10, |_, e| e.name.clone()),
        ("arch", arch_w, |_, e| e.arch_label()),
        ("d_sae", 6, |_, e| e.d_sae.to_string()),
        ("hyper", HYPER_W, |_, e| {
            ellipsized(&e.hyper_text(), HYPER_W as usize)
        }),
        ("L0", 6, |_, e| format!("{:.1}", e.l0)),
        ("nMSE", 7, |_, e| format!("{:.4}", e.mse_norm)),
        ("FVU", 7, |_, e| format!("{:.4}", e.fvu)),
        ("dead/silent", 19, |_, e| e.inactive_text()),
        ("ΔLM", 8, |_, e| {
            e.delta_lm_loss.map_or("-".into(), |v| format!("{v:+.4}"))
        }),
        ("CE rec.", 7, |_, e| {
            e.ce_recovered.map_or("-".into(), |v| format!("{v:.3}"))
        }),
        ("KL", 7, |_, e| {
            e.kl.map_or("-".into(), |v| format!("{v:.4}"))
        }),
        ("front", 5, |_, e| {
            if e.on_frontier { "●" } else { "" }.into()
        }),
        ("basis", 20, |_, e| e.basis.to_string()),
    ];
    let narrow = [
        "#",
        "name",
        "L0",
        "nMSE",
        "FVU",
        "dead/silent",
        "ΔLM",
        "front",
    ];
    let columns: Vec<&Column> = all
        .iter()
        .filter(|c| area.width >= 140 || narrow.contains(&c.0))
        .collect();
    let header = columns.iter().map(|c| Cell::from(c.0));
    let rows = entries.iter().enumerate().map(|(i, e)| {
        let r = Row::new(columns.iter().map(|c| Cell::from((c.2)(i, e))));
        if i == selected {
            r.style(theme.focus.add_modifier(Modifier::REVERSED))
        } else {
            r.style(theme.text)
        }
    });
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|c| {
            if c.0 == "name" {
                Constraint::Min(c.1)
            } else {
                Constraint::Length(c.1)
            }
        })
        .collect();
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
            point: match y {
                YAxis::Fvu => Some((e.l0, e.fvu)),
                YAxis::DeltaLm => e.delta_lm_loss.map(|d| (e.l0, d)),
            },
            selected: i == selected,
        })
        .collect();
    let store = entries
        .iter()
        .all(|e| matches!(e.basis, Basis::Store { .. }));
    let title = if y == YAxis::DeltaLm {
        " L0 (log) × ΔLM loss (each SAE's newest lm-eval, or --model) · line: frontier "
    } else if store {
        " L0 (log) × FVU · every SAE on the same store rows · line: frontier "
    } else {
        " L0 (log) × FVU · each run's own last evaluation (see basis) · line: frontier "
    };
    draw_chart(f, chart, title, &points, &[], y, theme);
    let keys: Vec<String> = footer_rows(KEYS, |_| true)
        .iter()
        .map(|(k, what)| format!("{k} {what}"))
        .collect();
    f.render_widget(Paragraph::new(keys.join("   ")).style(theme.dim), footer);
}

/// What a key asks for on the `compare` screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Select the entry above.
    Up,
    /// Select the entry below.
    Down,
    /// Switch the chart between FVU and ΔLM loss.
    Axis,
    /// Leave.
    Leave,
}

/// The `compare` screen's keys; its footer is drawn from them.
pub const KEYS: &[Binding<Action>] = &[
    Binding {
        keys: &[named(KeyCode::Up), ch('k')],
        shown: "↑↓",
        action: Action::Up,
        help: "select",
        footer: "select",
    },
    Binding {
        keys: &[named(KeyCode::Down), ch('j')],
        shown: "",
        action: Action::Down,
        help: "",
        footer: "",
    },
    Binding {
        keys: &[ch('y')],
        shown: "y",
        action: Action::Axis,
        help: "chart: FVU or ΔLM loss up",
        footer: "FVU/ΔLM",
    },
    Binding {
        keys: &[ch('q'), named(KeyCode::Esc), ctrl('c')],
        shown: "q / Esc",
        action: Action::Leave,
        help: "leave",
        footer: "leave",
    },
];

/// The `compare` screen's state.
#[derive(Debug, Clone)]
pub struct CompareApp {
    /// The SAEs compared.
    pub entries: Vec<Entry>,
    /// The highlighted entry.
    pub selected: usize,
    /// Whether to leave.
    pub quit: bool,
    /// What the chart's vertical axis shows.
    pub y_axis: YAxis,
}

impl CompareApp {
    /// The screen over `entries`, the first selected.
    pub fn new(entries: Vec<Entry>) -> Self {
        Self {
            entries,
            selected: 0,
            quit: false,
            y_axis: YAxis::Fvu,
        }
    }
}

impl Screen for CompareApp {
    fn update(&mut self, m: Msg) -> Vec<JobControl> {
        let n = self.entries.len().max(1);
        match m {
            Msg::Key(k) => match lookup(KEYS, &k) {
                Some(Action::Up) => self.selected = (self.selected + n - 1) % n,
                Some(Action::Down) => self.selected = (self.selected + 1) % n,
                Some(Action::Axis) => self.y_axis = self.y_axis.toggled(),
                Some(Action::Leave) => self.quit = true,
                None => {}
            },
            Msg::Signal => self.quit = true,
            _ => {}
        }
        Vec::new()
    }
    fn quit(&self) -> bool {
        self.quit
    }
    fn draw(&self, f: &mut Frame, theme: &Theme) {
        draw(f, &self.entries, self.selected, self.y_axis, theme)
    }
}
