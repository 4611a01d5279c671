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
    // the axes: y ticks (and the quantity's name) in a column on the left, the x axis (L0 on a
    // log scale) in two rows at the bottom, drawn beside the canvas so they never cover a point
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [yt0, yt1] = super::ticks(y0, y1);
    let y_name = match y {
        YAxis::Fvu => "FVU",
        YAxis::DeltaLm => "ΔLM",
    };
    let yw = [yt0.as_str(), yt1.as_str(), y_name]
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(3) as u16
        + 1;
    if inner.width <= yw + 4 || inner.height < 4 {
        return;
    }
    let plot = Rect::new(inner.x + yw, inner.y, inner.width - yw, inner.height - 2);
    let (xt0, xt1) = (l0_tick(10f64.powf(x0)), l0_tick(10f64.powf(x1)));
    {
        let buf = f.buffer_mut();
        let bottom = plot.bottom() - 1;
        buf.set_string(
            inner.x,
            plot.y,
            format!("{yt1:>w$}", w = (yw - 1) as usize),
            theme.dim,
        );
        buf.set_string(
            inner.x,
            plot.y + plot.height / 2,
            format!("{y_name:>w$}", w = (yw - 1) as usize),
            theme.dim,
        );
        buf.set_string(
            inner.x,
            bottom,
            format!("{yt0:>w$}", w = (yw - 1) as usize),
            theme.dim,
        );
        for r in plot.y..plot.bottom() {
            buf.set_string(inner.x + yw - 1, r, "│", theme.dim);
        }
        let axis_row = plot.bottom();
        buf.set_string(inner.x + yw - 1, axis_row, "└", theme.dim);
        buf.set_string(plot.x, axis_row, "─".repeat(plot.width as usize), theme.dim);
        let labels_row = axis_row + 1;
        buf.set_string(plot.x, labels_row, &xt0, theme.dim);
        let name = "L0 (log scale)";
        let room = plot.width as usize;
        if room > xt0.len() + xt1.len() + name.len() + 4 {
            let at = plot.x + ((room - name.len()) / 2) as u16;
            buf.set_string(at, labels_row, name, theme.dim);
        }
        buf.set_string(
            plot.right().saturating_sub(xt1.chars().count() as u16),
            labels_row,
            &xt1,
            theme.dim,
        );
    }
    // trail dots leave the cells of the labels (and a cell either side) clear
    let (pw, ph) = (plot.width.max(1) as f64, plot.height.max(1) as f64);
    let cell = |x: f64, y: f64| {
        (
            ((x - x0) / (x1 - x0) * (pw - 1.0)).round() as i64,
            ((y1 - y) / (y1 - y0) * (ph - 1.0)).round() as i64,
        )
    };
    let taken: Vec<(i64, i64, i64)> = labels
        .iter()
        .map(|(x, y, s, _)| {
            let (c, r) = cell(*x, *y);
            (r, c - 1, c + s.chars().count() as i64)
        })
        .collect();
    let trail: Vec<(f64, f64)> = trail
        .into_iter()
        .filter(|(x, y)| {
            let (c, r) = cell(*x, *y);
            !taken
                .iter()
                .any(|(tr, from, to)| *tr == r && c >= *from && c <= *to)
        })
        .collect();
    let dim = theme.dim.fg.unwrap_or_default();
    let accent = theme.accent.fg.unwrap_or_default();
    let canvas = Canvas::default()
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
    f.render_widget(canvas, plot);
}

/// An L0 tick: `3.2`, `64`, `1.2k`.
fn l0_tick(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        crate::metrics::stats::si(v)
    }
}
