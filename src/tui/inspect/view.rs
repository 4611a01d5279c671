//! Drawing the inspection screen from an [`InspectApp`]: the store-wide line, the feature table,
//! the selected feature's histogram (θ marked), statistics, top examples in context, nearest
//! features, the footer and the help. Reads the state, changes nothing.

use crate::inspect::report::{FeatureReport, SaeInfo, TopActivation};
use crate::tui::inspect::app::{COLUMNS, Focus, InspectApp, NEAREST};
use crate::tui::theme::Theme;
use crate::tui::widgets::keys::help_rows;
use crate::tui::widgets::{self, bordered, too_small};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &InspectApp, theme: &Theme) {
    if too_small(f, theme, "q quits") {
        return;
    }
    let area = f.area();
    // the summary wraps to a second line where the terminal is narrow (nothing cut off)
    let summary_h = if area.width >= 120 { 3 } else { 4 };
    let [top, body, footer] = Layout::vertical([
        Constraint::Length(summary_h),
        Constraint::Min(10),
        Constraint::Length(1),
    ])
    .areas(area);
    let table_w = if area.width >= 120 { 58 } else { 46 };
    let [table, detail] =
        Layout::horizontal([Constraint::Length(table_w), Constraint::Min(30)]).areas(body);
    draw_summary(f, top, app, theme);
    draw_table(f, table, app, theme);
    draw_detail(f, detail, app, theme);
    draw_footer(f, footer, app, theme);
    if app.help {
        draw_help(f, area, theme);
    }
}

fn draw_summary(f: &mut Frame, area: Rect, app: &InspectApp, theme: &Theme) {
    let r = &app.report;
    let block = bordered(format!(" {} ({}) ", r.sae.path, r.sae.format), false, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let kv = |k: &str, v: String| {
        vec![
            Span::styled(format!("{k} "), theme.dim),
            Span::styled(format!("{v}  "), theme.text),
        ]
    };
    let mut spans = Vec::new();
    spans.extend(kv("tokens", r.recon.n_tokens.to_string()));
    spans.extend(kv("d_sae", r.sae.d_sae.to_string()));
    spans.extend(kv("L0", format!("{:.2}", r.recon.l0)));
    spans.extend(kv("FVU", format!("{:.4}", r.recon.fvu)));
    spans.extend(kv("nMSE", format!("{:.4}", r.recon.mse_norm)));
    spans.extend(kv("silent", r.recon.inactive().short()));
    spans.extend(kv(
        &format!("dense (≥{})", r.dense_threshold),
        r.dense.to_string(),
    ));
    // features by log10 density, its range named (bars: features per bin)
    spans.push(Span::styled(
        format!(
            "features by log10 density {:.0}…{:.0} ",
            r.density_hist.lo, r.density_hist.hi
        ),
        theme.dim,
    ));
    spans.push(Span::styled(
        sparkline(&r.density_hist.counts),
        theme.series[0],
    ));
    f.render_widget(
        Paragraph::new(Line::from(spans)).wrap(ratatui::widgets::Wrap { trim: true }),
        inner,
    );
}

/// One character per bin, eight heights.
fn sparkline(counts: &[u64]) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                ' '
            } else {
                BARS[((c as f64 / max * 8.0).ceil() as usize).clamp(1, 8)]
            }
        })
        .collect()
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e-3 && v.abs() < 1e4 {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    }
}

fn draw_table(f: &mut Frame, area: Rect, app: &InspectApp, theme: &Theme) {
    let (col, desc) = app.sort;
    let title = format!(
        " features: {} of {} ({}), by {} {} ",
        app.rows.len(),
        app.report.features.len(),
        app.filter.label(),
        col.title(),
        if desc { "↓" } else { "↑" }
    );
    let block = bordered(title, app.focus == Focus::Table, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let w = (inner.width as usize).saturating_sub(1) / COLUMNS.len();
    let cell = |s: String| format!("{s:>w$}");
    let mut lines = vec![Line::from(
        COLUMNS
            .iter()
            .map(|c| {
                Span::styled(
                    cell(c.title().to_string()),
                    if *c == col { theme.focus } else { theme.dim },
                )
            })
            .collect::<Vec<_>>(),
    )];
    let height = (inner.height as usize).saturating_sub(1).max(1);
    // whole pages, so the selection never jumps within one
    let first = app.selected / height * height;
    for (n, &i) in app.rows.iter().enumerate().skip(first).take(height) {
        let feat = &app.report.features[i];
        let style = if n == app.selected {
            theme.accent
        } else if feat.density == 0.0 {
            theme.dim
        } else {
            theme.text
        };
        let text: String = COLUMNS
            .iter()
            .map(|c| match c {
                crate::tui::inspect::app::Column::Index => cell(feat.index.to_string()),
                _ => cell(num(c.value(feat))),
            })
            .collect();
        lines.push(Line::from(Span::styled(text, style)));
    }
    if app.rows.is_empty() {
        lines.push(Line::from(Span::styled(
            "no feature matches (Esc clears the filter)",
            theme.warn,
        )));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_detail(f: &mut Frame, area: Rect, app: &InspectApp, theme: &Theme) {
    let Some(feat) = app.current() else {
        f.render_widget(bordered(" feature ", false, theme), area);
        return;
    };
    let near_h = if app.decoder.is_some() {
        NEAREST.div_ceil(2) as u16 + 2
    } else {
        3
    };
    let [hist, examples, near] = Layout::vertical([
        Constraint::Length(12),
        Constraint::Min(5),
        Constraint::Length(near_h),
    ])
    .areas(area);
    draw_histogram(f, hist, &app.report.sae, feat, theme);
    draw_examples(f, examples, app, feat, theme);
    draw_nearest(f, near, app, theme);
}

fn draw_histogram(f: &mut Frame, area: Rect, sae: &SaeInfo, feat: &FeatureReport, theme: &Theme) {
    let block = bordered(format!(" feature {} ", feat.index), false, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [stats, inner] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let kv = |k: &str, v: f64| {
        [
            Span::styled(format!("{k} "), theme.dim),
            Span::styled(format!("{}  ", num(v)), theme.text),
        ]
    };
    let marker = sae.theta_marker();
    let mut cells = vec![
        kv("density", feat.density),
        kv("mean", feat.mean),
        kv("max", feat.max),
    ];
    if let Some(m) = marker {
        cells.push(kv(m, feat.threshold));
    }
    cells.push(kv("‖d‖", feat.decoder_norm));
    let spans: Vec<Span> = cells.into_iter().flatten().collect();
    f.render_widget(Paragraph::new(Line::from(spans)), stats);
    let h = &feat.histogram;
    if h.counts.is_empty() {
        f.render_widget(
            Paragraph::new("never fired on this store").style(theme.dim),
            inner,
        );
        return;
    }
    let bins = h.counts.len();
    let rows = inner.height.saturating_sub(2) as usize;
    // each bin gets the same number of columns
    let cw = ((inner.width as usize).saturating_sub(2) / bins).max(1);
    let max = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let hi = *h.edges.last().unwrap_or(&1.0);
    let theta_col = ((feat.threshold / hi * bins as f64).floor() as usize).min(bins - 1) * cw;
    let mut lines = Vec::new();
    for r in 0..rows {
        // eighths of a row, from the top
        let level_top = (rows - r) as f64 * 8.0;
        let text: String = h
            .counts
            .iter()
            .flat_map(|&c| {
                let hgt = c as f64 / max * rows as f64 * 8.0;
                let ch = if hgt >= level_top {
                    '█'
                } else if hgt > level_top - 8.0 && c > 0 {
                    [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇']
                        [((hgt - (level_top - 8.0)) as usize).min(7)]
                } else {
                    ' '
                };
                std::iter::repeat_n(ch, cw)
            })
            .collect();
        lines.push(Line::from(Span::styled(text, theme.series[0])));
    }
    // the θ marker under its bin (where the architecture has a θ), and the range
    match marker {
        Some(m) => {
            let mut line = " ".repeat(theta_col);
            line.push_str(&format!("▲ {m}"));
            lines.push(Line::from(Span::styled(line, theme.warn)));
        }
        None => lines.push(Line::from(Span::styled(
            sae.no_theta_note().unwrap_or_default(),
            theme.dim,
        ))),
    }
    lines.push(Line::from(Span::styled(
        format!(
            "activation, raw units: 0 … {} ({} bins) · tokens per bin, peak {}",
            num(hi),
            bins,
            h.counts.iter().max().unwrap_or(&0)
        ),
        theme.dim,
    )));
    f.render_widget(Paragraph::new(lines), inner);
}

fn context_line<'a>(t: &TopActivation, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled(
        format!("{:>9} @{:<9}", num(t.activation), t.position),
        theme.dim,
    )];
    if let Some(c) = &t.context {
        let words: Vec<String> = match &c.tokens {
            Some(ts) => ts.iter().map(|s| s.replace('\n', "⏎")).collect(),
            None => c.ids.iter().map(|i| format!("#{i}")).collect(),
        };
        // tokens that carry their own spaces (" cat", "Ġcat", "▁cat") are joined as they are
        let spaced = words.iter().any(|w| w.starts_with([' ', 'Ġ', '▁']));
        for (i, w) in words.into_iter().enumerate() {
            let style: Style = if i == c.active {
                theme.accent
            } else {
                theme.text
            };
            // WordPiece continues a word with "##piece"
            let (glued, w) = match w.strip_prefix("##") {
                Some(rest) if i > 0 => (true, rest.to_string()),
                _ => (false, w),
            };
            if !spaced && !glued && i > 0 {
                spans.push(Span::raw(" "));
            }
            spans.push(Span::styled(w.replace(['Ġ', '▁'], " "), style));
        }
    }
    Line::from(spans)
}

fn draw_examples(f: &mut Frame, area: Rect, app: &InspectApp, feat: &FeatureReport, theme: &Theme) {
    let title = match &app.report.context_note {
        Some(note) => format!(" top activations ({note}) "),
        None => format!(
            " top activations ({} of ±{} tokens) ",
            feat.top.len(),
            app.report.context
        ),
    };
    let block = bordered(title, app.focus == Focus::Examples, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines: Vec<Line> = feat
        .top
        .iter()
        .skip(app.example_offset)
        .map(|t| context_line(t, theme))
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_nearest(f: &mut Frame, area: Rect, app: &InspectApp, theme: &Theme) {
    let block = bordered(" nearest features (decoder cosine) ", false, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let text = match (app.nearest_cached(), &app.decoder_note) {
        (Some(list), _) => list
            .chunks(2)
            .map(|row| {
                Line::from(
                    row.iter()
                        .flat_map(|(i, c)| {
                            [
                                Span::styled(format!("{i:>7} "), theme.text),
                                Span::styled(format!("{c:+.3}   "), theme.dim),
                            ]
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .collect(),
        (None, Some(note)) => vec![Line::from(Span::styled(note.clone(), theme.dim))],
        (None, None) => vec![Line::from(Span::styled("…", theme.dim))],
    };
    f.render_widget(Paragraph::new(text), inner);
}

fn draw_footer(f: &mut Frame, area: Rect, app: &InspectApp, theme: &Theme) {
    let line = if let Some(p) = &app.prompt {
        Line::from(vec![
            Span::styled(" / ", theme.accent),
            Span::styled(format!(" {p}▏"), theme.text),
            Span::styled(
                "   feature number, dead, dense, density>X, density<X, X..Y, all — Enter, Esc",
                theme.dim,
            ),
        ])
    } else if let Some(m) = &app.message {
        Line::from(Span::styled(m.clone(), theme.warn))
    } else {
        let keys = [
            ("↑↓", "select"),
            ("←→", "sort"),
            ("r", "reverse"),
            ("/", "jump/filter"),
            ("Tab", "examples"),
            ("?", "help"),
            ("q", "quit"),
        ];
        Line::from(
            keys.iter()
                .flat_map(|(k, h)| {
                    [
                        Span::styled(format!(" {k} "), theme.accent),
                        Span::styled(format!(" {h}  "), theme.dim),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    };
    f.render_widget(Paragraph::new(line), area);
}

fn draw_help(f: &mut Frame, area: Rect, theme: &Theme) {
    let rows = help_rows(super::app::KEYS, |_| true);
    let title = format!(" keys {} ", widgets::HELP_CLOSES);
    widgets::help(f, area, &title, &rows, 14, theme);
}
