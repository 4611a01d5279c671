//! The L0–FVU frontier chart (the sweep screen's and `compare`'s): log10 L0 across, FVU (or
//! ΔLM loss, [`YAxis`]) up, each point labelled, trails as dots, the frontier
//! (`sweep::frontier`) as a line.

use crate::sweep::frontier::pareto;
use crate::tui::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::canvas::{Canvas, Line as CLine, Points};
use ratatui::widgets::{Block, Borders, Paragraph};

/// What the chart's vertical axis shows (the `y` key switches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum YAxis {
    /// Fraction of variance unexplained.
    #[default]
    Fvu,
    /// ΔLM loss with the SAE spliced into the model (`lm-eval`).
    DeltaLm,
}

impl YAxis {
    /// The other one.
    pub fn toggled(self) -> Self {
        match self {
            YAxis::Fvu => YAxis::DeltaLm,
            YAxis::DeltaLm => YAxis::Fvu,
        }
    }

    /// How the axis is named.
    pub fn name(self) -> &'static str {
        match self {
            YAxis::Fvu => "FVU",
            YAxis::DeltaLm => "ΔLM loss",
        }
    }
}

/// A point of the chart with its label.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// What is printed at the point.
    pub label: String,
    /// (L0, FVU or ΔLM loss), if there is one yet.
    pub point: Option<(f64, f64)>,
    /// Drawn highlighted.
    pub selected: bool,
}

/// Draw the chart of `points` (the frontier is theirs) and `trails` in `area`.
pub fn draw_chart(
    f: &mut Frame,
    area: Rect,
    title: &str,
    points: &[Labelled],
    trails: &[(f64, f64)],
    y: YAxis,
    theme: &Theme,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border)
        .title(Span::styled(title.to_string(), theme.text));
    let good = |(l, v): &(f64, f64)| *l > 0.0 && l.is_finite() && v.is_finite();
    let all: Vec<(f64, f64)> = trails
        .iter()
        .copied()
        .chain(points.iter().filter_map(|p| p.point))
        .filter(good)
        .collect();
    if all.is_empty() {
        f.render_widget(
            Paragraph::new(match y {
                YAxis::Fvu => "no reports yet",
                YAxis::DeltaLm => {
                    "no lm-eval yet (the model in the loop: [lm_eval], or jumpscope lm-eval)"
                }
            })
            .style(theme.dim)
            .block(block),
            area,
        );
        return;
    }
    let lx = |l: f64| l.max(1e-3).log10();
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for (l, v) in &all {
        x0 = x0.min(lx(*l));
        x1 = x1.max(lx(*l));
        y0 = y0.min(*v);
        y1 = y1.max(*v);
    }
    let pad = |a: f64, b: f64| {
        let d = (b - a).max(1e-6) * 0.08;
        (a - d, b + d)
    };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    let current: Vec<(f64, f64)> = points
        .iter()
        .map(|p| p.point.filter(good).unwrap_or((f64::NAN, f64::NAN)))
        .collect();
    let front = pareto(&current);
    let trail: Vec<(f64, f64)> = trails
        .iter()
        .filter(|p| good(p))
        .map(|(l, v)| (lx(*l), *v))
        .collect();
    let front_line: Vec<(f64, f64)> = front
        .iter()
        .map(|&i| (lx(current[i].0), current[i].1))
        .collect();
    let labels: Vec<(f64, f64, String, ratatui::style::Style)> = points
        .iter()
        .enumerate()
        .filter(|(i, _)| current[*i].0.is_finite())
        .map(|(i, p)| {
            let style = if p.selected {
                theme
                    .focus
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED)
            } else if front.contains(&i) {
                theme.accent
            } else {
                theme.text
            };
            (lx(current[i].0), current[i].1, p.label.clone(), style)
        })
        .collect();
    let dim = theme.dim.fg.unwrap_or_default();
    let accent = theme.accent.fg.unwrap_or_default();
    let canvas = Canvas::default()
        .block(block)
        .marker(theme.marker)
        .x_bounds([x0, x1])
        .y_bounds([y0, y1])
        .paint(move |ctx| {
            ctx.draw(&Points {
                coords: &trail,
                color: dim,
            });
            for w in front_line.windows(2) {
                ctx.draw(&CLine {
                    x1: w[0].0,
                    y1: w[0].1,
                    x2: w[1].0,
                    y2: w[1].1,
                    color: accent,
                });
            }
            ctx.layer();
            for (x, y, s, style) in &labels {
                ctx.print(*x, *y, Span::styled(s.clone(), *style));
            }
        });
    f.render_widget(canvas, area);
    // the axes' ends, on the bottom border
    let axis = format!(
        " L0 {:.3}–{:.3} · {} {:.3}–{:.3} ",
        10f64.powf(x0),
        10f64.powf(x1),
        y.name(),
        y0,
        y1
    );
    let w = (axis.chars().count() as u16).min(area.width.saturating_sub(2));
    f.render_widget(
        Paragraph::new(axis).style(theme.dim),
        Rect::new(area.x + 1, area.y + area.height - 1, w, 1),
    );
}
