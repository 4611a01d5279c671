//! Drawing the training screen from an [`TrainApp`]: status, the four charts, hyperparameters, the
//! event log, the footer, and the help / quit overlays. Reads the state, changes nothing.

use crate::metrics::stats::Histogram;
use crate::sae::model::Architecture;
use crate::schema::health::Kind;
use crate::tui::app::{Overlay, Pane, RunState, TUNABLES, TrainApp};
use crate::tui::history::Series;
use crate::tui::keymap::{BINDINGS, applies, help_for};
use crate::tui::theme::Theme;
use crate::tui::widgets::keys::footer_rows;
use crate::tui::widgets::{self, centered, too_small};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Clear, Dataset, Gauge, GraphType, Paragraph};

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &TrainApp, theme: &Theme) {
    if too_small(f, theme, "q quits; training goes on") {
        return;
    }
    let area = f.area();
    let [status, body, footer] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(10),
        Constraint::Length(1),
    ])
    .areas(area);
    let side = if area.width >= 120 { 42 } else { 32 };
    let [charts, right] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(side)]).areas(body);
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let [c_l0, c_loss] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let [c_theta, c_dead] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let [hyper, log] = Layout::vertical([
        Constraint::Length(TUNABLES.len() as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(right);

    draw_status(f, status, app, theme);
    draw_l0(f, c_l0, app, theme);
    draw_loss(f, c_loss, app, theme);
    draw_theta(f, c_theta, app, theme);
    draw_dead(f, c_dead, app, theme);
    draw_hyper(f, hyper, app, theme);
    draw_log(f, log, app, theme);
    draw_footer(f, footer, app, theme);
    match app.overlay {
        Some(Overlay::Help) => draw_help(f, area, app, theme),
        Some(Overlay::Warnings) => draw_warnings(f, area, app, theme),
        Some(Overlay::ConfirmQuit) => draw_confirm(f, area, theme),
        None => {}
    }
}

fn pane<'a>(title: String, app: &TrainApp, which: Pane, theme: &Theme) -> Block<'a> {
    // a chart an active health warning is about carries its name in the title
    let marks: Vec<&str> = app
        .warnings
        .keys()
        .filter(|k| warned_pane(**k) == Some(which))
        .map(|k| k.name())
        .collect();
    // first, so that a long title is what gets cut
    let mut spans = Vec::new();
    if !marks.is_empty() {
        spans.push(Span::styled(format!(" ! {}", marks.join(", ")), theme.warn));
    }
    spans.push(Span::styled(title, theme.text));
    Block::default()
        .borders(Borders::ALL)
        .border_style(if app.focus == which {
            theme.focus
        } else {
            theme.border
        })
        .title(Line::from(spans))
}

/// The chart a health warning is about (`None`: no chart shows it; the badge does).
fn warned_pane(kind: Kind) -> Option<Pane> {
    match kind {
        Kind::ThresholdFrozen => Some(Pane::Theta),
        Kind::DeadRising => Some(Pane::Dead),
        Kind::L0Collapse | Kind::L0Runaway => Some(Pane::L0),
        Kind::LossSpike | Kind::Overfitting | Kind::SparsityDominates => Some(Pane::Loss),
        Kind::DataBound => None,
    }
}

fn si(v: f64) -> String {
    match v.abs() {
        x if x >= 1e9 => format!("{:.2}G", v / 1e9),
        x if x >= 1e6 => format!("{:.2}M", v / 1e6),
        x if x >= 1e4 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn draw_status(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let block = pane(
        format!(
            " {} · {} ",
            app.run_name,
            app.config.sae.architecture.name()
        ),
        app,
        Pane::Status,
        theme,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [l1, l2, g] = Layout::vertical([Constraint::Length(1); 3]).areas(inner);
    let state_style = match app.state {
        RunState::Failed(_) => theme.warn,
        RunState::Paused | RunState::Stopping | RunState::Checkpointing => theme.warn,
        _ => theme.focus,
    };
    let line1 = Line::from(vec![
        Span::styled("state ", theme.dim),
        Span::styled(app.state.label().to_string(), state_style),
        Span::styled("  device ", theme.dim),
        Span::styled(app.device.clone(), theme.text),
        Span::styled("  step ", theme.dim),
        Span::styled(format!("{}/{}", app.step, app.total_steps), theme.text),
        Span::styled("  tokens ", theme.dim),
        Span::styled(si(app.tokens as f64), theme.text),
        Span::styled("  tok/s ", theme.dim),
        Span::styled(si(app.tokens_per_s), theme.text),
    ]);
    let ckpt = match &app.last_checkpoint {
        Some((s, _)) => format!("step {s}"),
        None => "none yet".into(),
    };
    // the health badge: `ok`, or how many warnings are active, in the warning colour (short,
    // so that the line still fits 80 columns)
    let (badge, badge_style) = match app.warnings.len() {
        0 => ("ok".to_string(), theme.text),
        n => (n.to_string(), theme.warn),
    };
    let line2 = Line::from(vec![
        Span::styled("health ", theme.dim),
        Span::styled(badge, badge_style),
        Span::styled("  ETA ", theme.dim),
        Span::styled(
            app.eta_s().map(duration).unwrap_or_else(|| "-".into()),
            theme.text,
        ),
        Span::styled("  last checkpoint ", theme.dim),
        Span::styled(ckpt, theme.text),
        Span::styled("  L0 ", theme.dim),
        Span::styled(
            app.l0.last().map_or("-".into(), |v| format!("{v:.1}")),
            theme.text,
        ),
        Span::styled("  EV ", theme.dim),
        Span::styled(
            app.ev.last().map_or("-".into(), |v| format!("{v:.3}")),
            theme.text,
        ),
    ]);
    let mut line2 = line2;
    if app.epoch > 0 {
        // data epochs are counted here rather than logged one line each
        line2.push_span(Span::styled("  epoch ", theme.dim));
        line2.push_span(Span::styled(app.epoch.to_string(), theme.text));
    }
    if app.watching {
        // a run killed without a chance to say so stays "training": show how old the news is
        let age = app
            .log_touched
            .and_then(|t| t.elapsed().ok())
            .map_or("-".into(), |d| duration(d.as_secs_f64()));
        line2.push_span(Span::styled("  watching, last record ", theme.dim));
        line2.push_span(Span::styled(format!("{age} ago"), theme.text));
    }
    f.render_widget(Paragraph::new(line1), l1);
    f.render_widget(Paragraph::new(line2), l2);
    let ratio = if app.total_steps > 0 {
        (app.step as f64 / app.total_steps as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(format!("{:.1}%", ratio * 100.0))
            .gauge_style(theme.series[0]),
        g,
    );
}

/// The points of `s` inside the time window.
fn points(s: &Series, app: &TrainApp) -> Vec<(f64, f64)> {
    match app.window {
        None => s.full().to_vec(),
        Some(w) => {
            let from = app.step.saturating_sub(w) as f64;
            let recent = s.recent();
            if recent.first().is_some_and(|p| p.0 <= from) {
                recent.into_iter().filter(|p| p.0 >= from).collect()
            } else {
                s.full().iter().copied().filter(|p| p.0 >= from).collect()
            }
        }
    }
}

fn bounds(sets: &[&[(f64, f64)]], pick: impl Fn(&(f64, f64)) -> f64) -> [f64; 2] {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in sets.iter().flat_map(|s| s.iter()) {
        lo = lo.min(pick(p));
        hi = hi.max(pick(p));
    }
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    if hi - lo < 1e-12 {
        let pad = lo.abs().max(1.0) * 0.05;
        return [lo - pad, hi + pad];
    }
    [lo, hi]
}

fn axis<'a>(b: [f64; 2], theme: &Theme, fmt: impl Fn(f64) -> String) -> Axis<'a> {
    Axis::default()
        .bounds(b)
        .style(theme.dim)
        .labels([fmt(b[0]), fmt(b[1])])
}

/// A named series with its style.
type Named<'a> = (&'a str, Vec<(f64, f64)>, Style);

fn line_chart(
    f: &mut Frame,
    area: Rect,
    block: Block,
    sets: Vec<Named>,
    theme: &Theme,
    yfmt: fn(f64) -> String,
) {
    let refs: Vec<&[(f64, f64)]> = sets.iter().map(|s| s.1.as_slice()).collect();
    let xb = bounds(&refs, |p| p.0);
    let yb = bounds(&refs, |p| p.1);
    let datasets = sets
        .iter()
        .map(|(name, pts, style)| {
            Dataset::default()
                .name(name.to_string())
                .marker(theme.marker)
                .graph_type(GraphType::Line)
                .style(*style)
                .data(pts)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(axis(xb, theme, |v| format!("{v:.0}")))
        .y_axis(axis(yb, theme, yfmt))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)));
    f.render_widget(chart, area);
}

fn draw_l0(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let pts = points(&app.l0, app);
    let mut sets = vec![("L0", pts, theme.series[0])];
    let target = app.config.hyper.target_l0;
    if let (Some(t), Some(first), Some(last)) = (target, sets[0].1.first(), sets[0].1.last()) {
        let line = vec![(first.0, t), (last.0.max(first.0 + 1.0), t)];
        sets.push(("target", line, theme.series[1]));
    }
    let title = match (app.l0.last(), target) {
        (Some(v), Some(t)) => format!(" L0 {v:.2} (target {t}) "),
        (Some(v), None) => format!(" L0 {v:.2} "),
        _ => " L0 ".into(),
    };
    line_chart(
        f,
        area,
        pane(title, app, Pane::L0, theme),
        sets,
        theme,
        |v| format!("{v:.1}"),
    );
}

fn draw_loss(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    // the model in the loop: ΔLM loss and CE recovered below MSE/EV
    let area = if app.config.lm_eval.is_some() || app.last_lm.is_some() {
        let [top, lm] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
        draw_lm(f, lm, app, theme);
        top
    } else {
        area
    };
    let mut mse = points(&app.mse, app);
    if app.log_scale {
        mse.retain(|p| p.1 > 0.0);
        mse.iter_mut().for_each(|p| p.1 = p.1.log10());
    }
    let ev = points(&app.ev, app);
    let title = format!(
        " {}MSE {} · EV {} ",
        if app.log_scale { "log10 " } else { "" },
        app.mse.last().map_or("-".into(), |v| format!("{v:.4}")),
        app.ev.last().map_or("-".into(), |v| format!("{v:.3}")),
    );
    let sets = vec![("MSE", mse, theme.series[0]), ("EV", ev, theme.series[2])];
    line_chart(
        f,
        area,
        pane(title, app, Pane::Loss, theme),
        sets,
        theme,
        |v| format!("{v:.2}"),
    );
}

/// ΔLM loss and CE recovered of each `lm-eval` so far, by step.
fn draw_lm(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let title = match &app.last_lm {
        Some(r) => format!(
            " ΔLM {:+.4} · CE rec. {:.3} · KL {:.4} @ {} ",
            r.scores.delta_lm_loss, r.scores.ce_recovered, r.scores.kl, r.step
        ),
        None => " ΔLM loss · CE recovered (model in the loop: waiting) ".into(),
    };
    let sets = vec![
        ("ΔLM", points(&app.delta_lm, app), theme.series[0]),
        ("CE rec.", points(&app.ce_recovered, app), theme.series[2]),
    ];
    line_chart(
        f,
        area,
        pane(title, app, Pane::Loss, theme),
        sets,
        theme,
        |v| format!("{v:.2}"),
    );
}

/// A histogram as bars: one point per bin centre, drawn as vertical bars.
fn histogram_chart(
    f: &mut Frame,
    area: Rect,
    block: Block,
    h: Option<&Histogram>,
    theme: &Theme,
    style: Style,
) {
    let Some(h) = h.filter(|h| !h.counts.is_empty()) else {
        f.render_widget(
            Paragraph::new("waiting for the first report")
                .style(theme.dim)
                .block(block),
            area,
        );
        return;
    };
    let w = (h.hi - h.lo) / h.counts.len() as f64;
    let pts: Vec<(f64, f64)> = h
        .counts
        .iter()
        .enumerate()
        .map(|(i, &c)| (h.lo + (i as f64 + 0.5) * w, c as f64))
        .collect();
    let top = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let chart = Chart::new(vec![
        Dataset::default()
            .graph_type(GraphType::Bar)
            .marker(theme.marker)
            .style(style)
            .data(&pts),
    ])
    .block(block)
    .x_axis(axis([h.lo, h.hi], theme, |v| format!("{v:.1}")))
    .y_axis(axis([0.0, top], theme, |v| format!("{v:.0}")));
    f.render_widget(chart, area);
}

fn draw_theta(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let title = match app.config.sae.architecture {
        Architecture::JumpRelu => " log10 θ (features) ",
        Architecture::TopK => " log10 k-th pre-activation (tokens) ",
        Architecture::BatchTopK => " global threshold θ ",
        Architecture::Relu => " log10 mean activation (features) ",
    };
    let block = pane(title.into(), app, Pane::Theta, theme);
    if app.config.sae.architecture == Architecture::BatchTopK {
        let sets = vec![("θ", points(&app.global_threshold, app), theme.series[1])];
        line_chart(f, area, block, sets, theme, |v| format!("{v:.3}"));
        return;
    }
    histogram_chart(
        f,
        area,
        block,
        app.theta_hist.as_ref(),
        theme,
        theme.series[1],
    );
}

fn draw_dead(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let dead = app.dead.last().unwrap_or(0.0);
    let frac = if app.d_sae > 0 {
        dead / app.d_sae as f64 * 100.0
    } else {
        0.0
    };
    let block = pane(
        format!(" dead {dead:.0} ({frac:.1}%) · log10 firing freq "),
        app,
        Pane::Dead,
        theme,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [over_time, hist] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(inner);
    let sets = vec![("dead", points(&app.dead, app), theme.series[1])];
    line_chart(f, over_time, Block::default(), sets, theme, |v| {
        format!("{v:.0}")
    });
    histogram_chart(
        f,
        hist,
        Block::default(),
        app.firing_hist.as_ref(),
        theme,
        theme.series[2],
    );
}

fn draw_hyper(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let block = pane(" hyperparameters ".into(), app, Pane::Hyper, theme);
    let width = block.inner(area).width as usize;
    let lines: Vec<Line> = app
        .tunables()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let selected = i == app.selected;
            let value = match (&app.editing, selected) {
                (Some(buf), true) => format!("{buf}▏"),
                _ => t
                    .get(&app.config.hyper)
                    .map_or("unset".into(), |v| t.format(v)),
            };
            let label = format!("{:<18}", t.label());
            let pad = width.saturating_sub(label.chars().count() + value.chars().count());
            let style = if selected { theme.accent } else { theme.text };
            Line::from(vec![
                Span::styled(label, if selected { theme.accent } else { theme.dim }),
                Span::styled(format!("{}{value}", " ".repeat(pad)), style),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_log(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let block = pane(" events ".into(), app, Pane::Log, theme);
    let rows = block.inner(area).height as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .rev()
        .take(rows)
        .rev()
        .map(|l| {
            Line::from(vec![
                Span::styled(format!("{:>6} ", l.step), theme.dim),
                Span::styled(
                    l.text.clone(),
                    if l.alarm { theme.warn } else { theme.text },
                ),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let keys: Vec<(&str, &str)> = if app.editing.is_some() {
        vec![("type", "a value"), ("Enter", "apply"), ("Esc", "cancel")]
    } else if app.overlay == Some(Overlay::ConfirmQuit) {
        vec![("y", "stop with a checkpoint"), ("n/Esc", "keep training")]
    } else if app.overlay == Some(Overlay::Help) {
        vec![("Esc", "close help")]
    } else {
        footer_rows(BINDINGS, |b| applies(b, app.watching))
    };
    let mut spans = Vec::new();
    for (k, h) in keys {
        spans.push(Span::styled(format!(" {k} "), theme.accent));
        spans.push(Span::styled(format!(" {h}  "), theme.dim));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_help(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let rows: Vec<(&str, &str)> = BINDINGS
        .iter()
        .filter(|b| !b.shown.is_empty() && applies(b, app.watching))
        .map(|b| (b.shown, help_for(b, app.watching)))
        .collect();
    widgets::help(f, area, " keys (Esc closes) ", &rows, 16, theme);
}

fn draw_warnings(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let mut lines: Vec<Line> = Vec::new();
    for (kind, w) in &app.warnings {
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", kind.name()), theme.warn),
            Span::styled(format!("(step {}) ", w.step), theme.dim),
            Span::styled(w.message.clone(), theme.text),
        ]));
        lines.push(Line::from(vec![
            Span::styled("  → ", theme.dim),
            Span::styled(w.hint.clone(), theme.text),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            "no active warnings: every health rule is satisfied",
            theme.text,
        )));
    }
    let width = area.width.saturating_sub(4).min(110);
    let r = centered(area, width, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.warn)
                    .title(" health warnings (Esc closes) "),
            ),
        r,
    );
}

fn draw_confirm(f: &mut Frame, area: Rect, theme: &Theme) {
    widgets::confirm(
        f,
        area,
        " quit? ",
        "Training is running.",
        &[("y", "stop with a checkpoint"), ("n/Esc", "keep training")],
        theme,
    );
}
