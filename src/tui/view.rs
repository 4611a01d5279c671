//! Drawing the training screen from an [`TrainApp`]: status, the four charts, hyperparameters, the
//! event log, the footer, and the help / quit overlays. Reads the state, changes nothing.

use crate::metrics::stats::{Histogram, si};
use crate::sae::model::Architecture;
use crate::schema::health::Kind;
use crate::tui::app::{LossView, Overlay, Pane, RunState, TUNABLES, TrainApp};
use crate::tui::history::Series;
use crate::tui::keymap::{BINDINGS, applies, help_for};
use crate::tui::theme::Theme;
use crate::tui::widgets::keys::footer_rows;
use crate::tui::widgets::{self, centered, ellipsized, ticks, too_small};
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
        Constraint::Length(6),
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
        Some(Overlay::Event(i)) => draw_event(f, area, app, i, theme),
        None => {}
    }
}

/// A title's parts: text and style (a series' name in its colour stands in for a legend).
type Parts = Vec<(String, Style)>;

fn width_of(p: &Parts) -> usize {
    p.iter().map(|(t, _)| t.chars().count()).sum::<usize>() + 2
}

/// A pane's block titled with `long`, or `short` where `long` does not fit `width`; a chart an
/// active health warning is about says so first (just `!` where its name would not fit).
fn titled<'a>(
    long: Parts,
    short: Parts,
    width: u16,
    app: &TrainApp,
    which: Pane,
    theme: &Theme,
) -> Block<'a> {
    let marks: Vec<&str> = app
        .warnings
        .keys()
        .filter(|k| warned_pane(**k) == Some(which))
        .map(|k| k.name())
        .collect();
    let room = (width as usize).saturating_sub(2);
    let full = if marks.is_empty() {
        String::new()
    } else {
        format!(" ! {}", marks.join(", "))
    };
    let bang = if marks.is_empty() { "" } else { " !" };
    let fits = |m: &str, p: &Parts| m.chars().count() + width_of(p) <= room;
    let (mark, parts) = if fits(&full, &long) {
        (full, long)
    } else if fits(&full, &short) {
        (full, short)
    } else if fits(bang, &long) {
        (bang.to_string(), long)
    } else {
        (bang.to_string(), short)
    };
    let mut spans = Vec::new();
    if !mark.is_empty() {
        spans.push(Span::styled(mark, theme.warn));
    }
    spans.push(Span::raw(" "));
    for (t, st) in parts {
        spans.push(Span::styled(t, st));
    }
    spans.push(Span::raw(" "));
    Block::default()
        .borders(Borders::ALL)
        .border_style(if app.focus == which {
            theme.focus
        } else {
            theme.border
        })
        .title(Line::from(spans))
}

fn plain(t: &str, theme: &Theme) -> Parts {
    vec![(t.to_string(), theme.text)]
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

fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `label value` pairs of a status line.
fn kv<'a>(spans: &mut Vec<Span<'a>>, label: &str, value: String, theme: &Theme) {
    if !spans.is_empty() {
        spans.push(Span::raw("  "));
    }
    spans.push(Span::styled(format!("{label} "), theme.dim));
    spans.push(Span::styled(value, theme.text));
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn draw_status(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let sae = &app.config.sae;
    let name = match sae.kind.has_target() {
        true => format!(
            "{} · {} {}",
            app.run_name,
            sae.architecture.name(),
            sae.kind.name()
        ),
        false => format!("{} · {}", app.run_name, sae.architecture.name()),
    };
    let block = titled(
        plain(&name, theme),
        plain(&name, theme),
        area.width,
        app,
        Pane::Status,
        theme,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [l1, l2, l3, l4] = Layout::vertical([Constraint::Length(1); 4]).areas(inner);
    let state_style = match app.state {
        RunState::Failed(_) => theme.warn,
        RunState::Paused | RunState::Stopping | RunState::Checkpointing => theme.warn,
        _ => theme.focus,
    };
    let mut line1 = vec![
        Span::styled("state ", theme.dim),
        Span::styled(app.state.label().to_string(), state_style),
    ];
    kv(&mut line1, "device", app.device.clone(), theme);
    kv(
        &mut line1,
        "step",
        format!("{}/{}", app.step, app.total_steps),
        theme,
    );
    kv(&mut line1, "tokens", si(app.tokens as f64), theme);
    // a throughput is news only while steps are being taken
    let rate = if app.state == RunState::Training && app.tokens_per_s > 0.0 {
        si(app.tokens_per_s)
    } else {
        "-".into()
    };
    kv(&mut line1, "tok/s", rate, theme);

    // training's numbers and the held-out ones, in the same order and units
    let mut line2 = vec![Span::styled(format!("{:<9}", "train"), theme.dim)];
    line2.push(Span::styled("L0 ", theme.dim));
    line2.push(Span::styled(num(app.l0.last(), 1), theme.text));
    kv(&mut line2, "FVU", num(app.fvu(), 3), theme);
    kv(&mut line2, "nMSE", num(app.mse.last(), 4), theme);
    if let Some(d) = &app.inactive {
        kv(
            &mut line2,
            "dead",
            format!("{} {}", d.short(), d.over()),
            theme,
        );
    }
    let line3 = held_out_line(app, theme);

    let mut line4 = Vec::new();
    // the health badge: `ok`, or how many warnings are active, in the warning colour
    let (badge, badge_style) = match app.warnings.len() {
        0 => ("ok".to_string(), theme.text),
        n => (format!("{n} (W)"), theme.warn),
    };
    line4.push(Span::styled("health ", theme.dim));
    line4.push(Span::styled(badge, badge_style));
    let ckpt = match &app.last_checkpoint {
        Some((s, _)) => format!("step {s}"),
        None => "none yet".into(),
    };
    kv(&mut line4, "checkpoint", ckpt, theme);
    kv(
        &mut line4,
        "ETA",
        app.eta_s().map(duration).unwrap_or_else(|| "-".into()),
        theme,
    );
    if app.epoch > 0 {
        // data epochs are counted here rather than logged one line each
        kv(&mut line4, "epoch", app.epoch.to_string(), theme);
    }
    if app.watching {
        // a run killed without a chance to say so stays "training": show how old the news is
        let age = app
            .log_touched
            .and_then(|t| t.elapsed().ok())
            .map_or("-".into(), |d| duration(d.as_secs_f64()));
        kv(
            &mut line4,
            "watching, last record",
            format!("{age} ago"),
            theme,
        );
    }
    f.render_widget(Paragraph::new(Line::from(line1)), l1);
    f.render_widget(Paragraph::new(Line::from(line2)), l2);
    f.render_widget(Paragraph::new(line3), l3);
    let text_w = Line::from(line4.clone()).width() as u16 + 2;
    let [text, gauge] =
        Layout::horizontal([Constraint::Length(text_w), Constraint::Min(0)]).areas(l4);
    f.render_widget(Paragraph::new(Line::from(line4)), text);
    let ratio = if app.total_steps > 0 {
        (app.step as f64 / app.total_steps as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    if gauge.width >= 8 {
        f.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(format!("{:.1}%", ratio * 100.0))
                .gauge_style(theme.series[0]),
            gauge,
        );
    }
}

/// The held-out numbers (L0, FVU, nMSE, silent) of the newest evaluation and its step; what
/// is awaited before the first; why there are none when the run holds no rows out.
fn held_out_line<'a>(app: &TrainApp, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled(format!("{:<9}", "held-out"), theme.dim)];
    if app.config.data.eval_tokens == 0 && app.held_out().is_none() {
        spans.push(Span::styled(
            "none: no rows held out (data.eval_tokens = 0)",
            theme.dim,
        ));
        return Line::from(spans);
    }
    match app.held_out() {
        Some((step, e)) => {
            spans.push(Span::styled("L0 ", theme.dim));
            spans.push(Span::styled(format!("{:.1}", e.l0), theme.text));
            kv(&mut spans, "FVU", num(Some(e.fvu), 3), theme);
            kv(&mut spans, "nMSE", num(Some(e.mse_norm), 4), theme);
            kv(&mut spans, "@ step", step.to_string(), theme);
        }
        None => spans.push(Span::styled(
            format!(
                "first evaluation at step {} ({} tokens)",
                app.config.hyper.eval_every,
                si(app.config.data.eval_tokens as f64)
            ),
            theme.dim,
        )),
    }
    Line::from(spans)
}

/// The step range every step chart shows: the whole run, or the recent window (at least two
/// reports, so zooming never narrows to a single point).
fn x_range(app: &TrainApp) -> [f64; 2] {
    let first = app.l0.full().first().map_or(0.0, |p| p.0);
    let last = (app.step as f64).max(app.l0.last_x().unwrap_or(0.0));
    let lo = match app.window {
        None => first,
        Some(w) => (last - w as f64).max(first),
    };
    if last - lo < 1.0 {
        [lo, lo + 1.0]
    } else {
        [lo, last]
    }
}

/// The points of `s` inside the step range `x`.
fn points(s: &Series, x: [f64; 2]) -> Vec<(f64, f64)> {
    let recent = s.recent();
    let src: Vec<(f64, f64)> = if recent.first().is_some_and(|p| p.0 <= x[0]) {
        recent
    } else {
        s.full().to_vec()
    };
    src.into_iter()
        .filter(|p| p.0 >= x[0] && p.0 <= x[1])
        .collect()
}

fn bounds(sets: &[&[(f64, f64)]]) -> [f64; 2] {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in sets.iter().flat_map(|s| s.iter()) {
        lo = lo.min(p.1);
        hi = hi.max(p.1);
    }
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    if hi - lo < 1e-12 {
        let pad = lo.abs().max(1e-3) * 0.05;
        return [lo - pad, hi + pad];
    }
    [lo, hi]
}

/// A series of a chart: points, style, how drawn.
struct Set {
    pts: Vec<(f64, f64)>,
    style: Style,
    kind: GraphType,
}

impl Set {
    fn line(pts: Vec<(f64, f64)>, style: Style) -> Self {
        Set {
            pts,
            style,
            kind: GraphType::Line,
        }
    }
}

/// A chart whose axes are named on themselves: the x name between the x axis's end labels,
/// the y name between the y axis's; the title carries the series' names in their colours (no
/// legend box over the data, so the newest points are never covered).
struct Plot<'a> {
    long: Parts,
    short: Parts,
    x_name: &'a str,
    y_name: String,
    x: [f64; 2],
    y: Option<[f64; 2]>,
    sets: Vec<Set>,
    pane: Pane,
    /// The y axis counts (whole numbers).
    counts: bool,
}

fn draw_plot(f: &mut Frame, area: Rect, app: &TrainApp, plot: Plot, theme: &Theme) {
    let block = titled(plot.long, plot.short, area.width, app, plot.pane, theme);
    let inner = block.inner(area);
    let refs: Vec<&[(f64, f64)]> = plot.sets.iter().map(|s| s.pts.as_slice()).collect();
    let y = plot.y.unwrap_or_else(|| bounds(&refs));
    // steps are counts: 10, 400, 12.5k
    let [x0, x1] = if plot.x_name == "step" {
        plot.x.map(si)
    } else {
        ticks(plot.x[0], plot.x[1])
    };
    // a histogram's y axis counts features or tokens: whole numbers
    let [y0, y1] = if plot.counts {
        y.map(si)
    } else {
        ticks(y[0], y[1])
    };
    let datasets = plot
        .sets
        .iter()
        .map(|s| {
            Dataset::default()
                .marker(theme.marker)
                .graph_type(s.kind)
                .style(s.style)
                .data(&s.pts)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(block)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds(plot.x)
                .style(theme.dim)
                .labels([x0, x1]),
        )
        .y_axis(
            Axis::default()
                .bounds(y)
                .style(theme.dim)
                .labels([y0, plot.y_name, y1]),
        );
    f.render_widget(chart, area);
    name_x_axis(f, inner, plot.x_name, theme);
}

/// Write the x axis's name into the widest gap of its label row (between the end labels),
/// when it fits there with a space either side.
fn name_x_axis(f: &mut Frame, inner: Rect, name: &str, theme: &Theme) {
    if inner.height < 3 || name.is_empty() {
        return;
    }
    let y = inner.bottom() - 1;
    let buf = f.buffer_mut();
    let (mut best, mut run_start, mut run) = ((0u16, 0u16), inner.x, 0u16);
    for x in inner.x..inner.right() {
        if buf[(x, y)].symbol() == " " {
            if run == 0 {
                run_start = x;
            }
            run += 1;
            if run > best.1 {
                best = (run_start, run);
            }
        } else {
            run = 0;
        }
    }
    let w = name.chars().count() as u16;
    if best.1 >= w + 2 {
        let x = best.0 + (best.1 - w) / 2;
        buf.set_string(x, y, name, theme.dim);
    }
}

fn draw_l0(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let x = x_range(app);
    let mut sets = vec![Set::line(points(&app.l0, x), theme.series[0])];
    let mut short = vec![(format!("L0 {}", num(app.l0.last(), 2)), theme.series[0])];
    if let Some(t) = app.config.hyper.target_l0 {
        sets.push(Set::line(vec![(x[0], t), (x[1], t)], theme.series[1]));
        short.push((" · ".into(), theme.dim));
        short.push((format!("target {t}"), theme.series[1]));
    }
    let mut long = short.clone();
    long.push((" (features per token)".into(), theme.dim));
    let plot = Plot {
        long,
        short,
        x_name: "step",
        y_name: "L0".into(),
        x,
        y: None,
        sets,
        pane: Pane::L0,
        counts: false,
    };
    draw_plot(f, area, app, plot, theme);
}

/// The loss charts this run has, in `m` order.
fn loss_charts(app: &TrainApp) -> Vec<LossView> {
    // with the model in the loop, its ΔLM loss (the paper's own y-axis) comes second
    if app.has_lm() {
        vec![LossView::Fvu, LossView::Lm, LossView::Mse]
    } else {
        vec![LossView::Fvu, LossView::Mse]
    }
}

/// Rows a chart needs to be read: borders, three rows of plot, the axis and its labels.
const CHART_ROWS: u16 = 7;

fn draw_loss(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    // FVU, nMSE and ΔLM never share an axis: stacked when they fit, else `m` steps through them
    let all = loss_charts(app);
    let fit = (area.height / CHART_ROWS).clamp(1, all.len() as u16) as usize;
    let first = all.iter().position(|v| *v == app.loss_view).unwrap_or(0);
    let shown: Vec<LossView> = (0..fit).map(|i| all[(first + i) % all.len()]).collect();
    let areas = Layout::vertical(vec![Constraint::Ratio(1, fit as u32); fit]).split(area);
    let hidden = fit < all.len();
    for (view, r) in shown.into_iter().zip(areas.iter()) {
        match view {
            LossView::Fvu => draw_fvu(f, *r, app, theme, hidden),
            LossView::Mse => draw_mse(f, *r, app, theme, hidden),
            LossView::Lm => draw_lm(f, *r, app, theme, hidden),
        }
    }
}

/// `(m: next chart)` at the end of a loss chart's long title when not every one is shown.
fn more(parts: &mut Parts, hidden: bool, theme: &Theme) {
    if hidden {
        parts.push((" (m: next chart)".into(), theme.dim));
    }
}

fn draw_fvu(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme, hidden: bool) {
    let x = x_range(app);
    let mut long = vec![(format!("FVU train {}", num(app.fvu(), 3)), theme.series[0])];
    let mut short = vec![("FVU train".to_string(), theme.series[0])];
    // training's FVU is 1 − its explained variance
    let fvu = points(&app.ev, x).into_iter().map(|(s, ev)| (s, 1.0 - ev));
    let mut sets = vec![Set::line(fvu.collect(), theme.series[0])];
    if let Some((_, e)) = app.held_out() {
        long.push((" · ".into(), theme.dim));
        long.push((format!("held-out {:.3}", e.fvu), theme.series[2]));
        short.push((" · ".into(), theme.dim));
        short.push(("held-out".into(), theme.series[2]));
        sets.push(Set::line(points(&app.held_fvu, x), theme.series[2]));
    }
    // Matryoshka: each inner width's prefix FVU on the last batch (where the title fits it)
    for w in &app.matryoshka_fvu {
        long.push((" · ".into(), theme.dim));
        long.push((
            format!("first {} {}", w.width, num(Some(w.fvu), 3)),
            theme.series[1],
        ));
    }
    long.push((" (1 − EV)".into(), theme.dim));
    more(&mut long, hidden, theme);
    let plot = Plot {
        long,
        short,
        x_name: "step",
        y_name: "FVU".into(),
        x,
        y: None,
        sets,
        pane: Pane::Loss,
        counts: false,
    };
    draw_plot(f, area, app, plot, theme);
}

fn draw_mse(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme, hidden: bool) {
    let x = x_range(app);
    let mut mse = points(&app.mse, x);
    if app.log_scale {
        mse.retain(|p| p.1 > 0.0);
        mse.iter_mut().for_each(|p| p.1 = p.1.log10());
    }
    let value = (format!("nMSE {}", num(app.mse.last(), 4)), theme.series[0]);
    let mut long = vec![
        value.clone(),
        (
            if app.log_scale {
                " normalised, log10 axis".into()
            } else {
                " normalised: Σ‖x−x̂‖²/Σ‖x‖²".into()
            },
            theme.dim,
        ),
    ];
    more(&mut long, hidden, theme);
    let short = vec![(
        format!("norm. MSE {}", num(app.mse.last(), 4)),
        theme.series[0],
    )];
    let plot = Plot {
        long,
        short,
        x_name: "step",
        y_name: if app.log_scale { "log" } else { "nMSE" }.into(),
        x,
        y: None,
        sets: vec![Set::line(mse, theme.series[0])],
        pane: Pane::Loss,
        counts: false,
    };
    draw_plot(f, area, app, plot, theme);
}

/// ΔLM loss of each `lm-eval` so far, by step; CE recovered and KL in the title.
fn draw_lm(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme, hidden: bool) {
    let x = x_range(app);
    let (mut long, short) = match &app.last_lm {
        Some(r) => {
            let value = (
                format!("ΔLM {:+.4} nats", r.scores.delta_lm_loss),
                theme.series[0],
            );
            (
                vec![
                    value.clone(),
                    (
                        format!(
                            " · CE rec. {:.3} · KL {:.4} @ {}",
                            r.scores.ce_recovered, r.scores.kl, r.step
                        ),
                        theme.dim,
                    ),
                ],
                vec![value],
            )
        }
        None => (
            vec![(
                "ΔLM loss, nats (model in the loop: waiting)".into(),
                theme.series[0],
            )],
            vec![("ΔLM loss, nats".into(), theme.series[0])],
        ),
    };
    more(&mut long, hidden, theme);
    let plot = Plot {
        long,
        short,
        x_name: "step",
        y_name: "ΔLM".into(),
        x,
        y: None,
        sets: vec![Set::line(points(&app.delta_lm, x), theme.series[0])],
        pane: Pane::Loss,
        counts: false,
    };
    draw_plot(f, area, app, plot, theme);
}

/// A histogram as bars (one per bin centre); `x_name` names its x axis, `y_name` what it counts.
fn draw_histogram(
    f: &mut Frame,
    area: Rect,
    app: &TrainApp,
    (long, short, x_name, y_name): (Parts, Parts, &str, &str),
    h: Option<&Histogram>,
    (which, style): (Pane, Style),
    theme: &Theme,
) {
    let Some(h) = h.filter(|h| !h.counts.is_empty()) else {
        f.render_widget(
            Paragraph::new("waiting for the first report")
                .style(theme.dim)
                .block(titled(long, short, area.width, app, which, theme)),
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
    let plot = Plot {
        long,
        short,
        x_name,
        y_name: y_name.into(),
        x: [h.lo, h.hi],
        y: Some([0.0, top]),
        sets: vec![Set {
            pts,
            style,
            kind: GraphType::Bar,
        }],
        pane: which,
        counts: true,
    };
    draw_plot(f, area, app, plot, theme);
}

fn draw_theta(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let (long, short, x_name, y_name) = match app.config.sae.architecture {
        Architecture::JumpRelu => (
            "θ per feature, raw units, log10",
            "θ per feature, raw",
            "log10 θ",
            "feat",
        ),
        Architecture::TopK => (
            "k-th pre-activation per token, raw units, log10",
            "k-th pre-act., raw",
            "log10",
            "tok",
        ),
        Architecture::BatchTopK => (
            "global threshold θ, raw units",
            "global θ, raw",
            "step",
            "θ",
        ),
        Architecture::Relu => (
            "mean activation per feature, raw units, log10",
            "mean act., raw",
            "log10",
            "feat",
        ),
    };
    let long = vec![(long.to_string(), theme.series[1])];
    let short = vec![(short.to_string(), theme.series[1])];
    if app.config.sae.architecture == Architecture::BatchTopK {
        let x = x_range(app);
        let plot = Plot {
            long,
            short,
            x_name,
            y_name: y_name.into(),
            x,
            y: None,
            sets: vec![Set::line(points(&app.global_threshold, x), theme.series[1])],
            pane: Pane::Theta,
            counts: false,
        };
        draw_plot(f, area, app, plot, theme);
        return;
    }
    draw_histogram(
        f,
        area,
        app,
        (long, short, x_name, y_name),
        app.theta_hist.as_ref(),
        (Pane::Theta, theme.series[1]),
        theme,
    );
}

fn draw_dead(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    // the count over its window in the title; below, how often each feature fired over the
    // last report's tokens (the histogram's left end: those that never did)
    let freq_tokens = app.config.hyper.log_every * app.config.data.batch_size as u64;
    let count = match &app.inactive {
        Some(d) => (format!("dead {}", d.short()), theme.series[1]),
        None => ("dead".into(), theme.series[1]),
    };
    let window = app.inactive.map(|d| d.over()).unwrap_or_default();
    let firing = format!("firing freq over {} tok", si(freq_tokens as f64));
    // the dead count over steps, above the histogram, where there is room for both; else the
    // count (and its window) titles the histogram
    let (hist_area, long, short) = if area.height >= 2 * CHART_ROWS + 4 {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
        let x = x_range(app);
        let plot = Plot {
            long: vec![count.clone(), (format!(" {window}"), theme.dim)],
            short: vec![count],
            x_name: "step",
            y_name: "dead".into(),
            x,
            y: None,
            sets: vec![Set::line(points(&app.dead, x), theme.series[1])],
            pane: Pane::Dead,
            counts: true,
        };
        draw_plot(f, top, app, plot, theme);
        (
            bottom,
            vec![(format!("features by {firing}"), theme.series[2])],
            vec![("features by firing freq".into(), theme.series[2])],
        )
    } else {
        let long = vec![
            count.clone(),
            (format!(" {window}"), theme.dim),
            (format!(" · {firing}"), theme.series[2]),
        ];
        (area, long, vec![count])
    };
    draw_histogram(
        f,
        hist_area,
        app,
        (long, short, "log10 freq", "feat"),
        app.firing_hist.as_ref(),
        (Pane::Dead, theme.series[2]),
        theme,
    );
}

fn draw_hyper(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let block = titled(
        plain("hyperparameters", theme),
        plain("hyperparameters", theme),
        area.width,
        app,
        Pane::Hyper,
        theme,
    );
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
    let focused = app.focus == Pane::Log;
    let mut long = plain("events", theme);
    if focused {
        long.push((" ↑↓ PgUp PgDn End · Enter: whole".into(), theme.dim));
    }
    let block = titled(
        long,
        plain("events", theme),
        area.width,
        app,
        Pane::Log,
        theme,
    );
    let inner = block.inner(area);
    let rows = inner.height as usize;
    let width = inner.width as usize;
    let n = app.log.len();
    // the window of lines that holds the selected one (the newest when following)
    let at = app.log_cursor.unwrap_or(n.saturating_sub(1));
    let end = (at + 1).max(rows.min(n)).min(n);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = app
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(end - start)
        .map(|(i, l)| {
            let step = format!("{:>6} ", l.step);
            let room = width.saturating_sub(step.chars().count());
            // a cut line says so; Enter on it shows it whole
            let text = ellipsized(&l.text, room);
            let mut style = if l.alarm { theme.warn } else { theme.text };
            if focused && app.log_cursor.is_some() && i == at {
                style = style.add_modifier(ratatui::style::Modifier::REVERSED);
            }
            Line::from(vec![
                Span::styled(step, theme.dim),
                Span::styled(text, style),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(block), area);
}

/// Rows `text` takes wrapped at word boundaries to `width` (long words broken), as a
/// wrapping paragraph lays it out.
fn wrapped_rows(text: &str, width: usize) -> usize {
    let width = width.max(1);
    let (mut rows, mut cur) = (1, 0);
    for word in text.split(' ') {
        let mut w = word.chars().count();
        if cur > 0 && cur + 1 + w <= width {
            cur += 1 + w;
            continue;
        }
        if cur > 0 {
            rows += 1;
        }
        while w > width {
            rows += 1;
            w -= width;
        }
        cur = w;
    }
    rows
}

/// One event whole, wrapped, over the screen.
fn draw_event(f: &mut Frame, area: Rect, app: &TrainApp, i: usize, theme: &Theme) {
    let Some(l) = app.log.get(i) else { return };
    let width = area.width.saturating_sub(4).min(100);
    let text_w = width.saturating_sub(2).max(1) as usize;
    let rows = wrapped_rows(&l.text, text_w) as u16;
    let r = centered(area, width, rows + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(Span::styled(
            l.text.clone(),
            if l.alarm { theme.warn } else { theme.text },
        ))
        .wrap(ratatui::widgets::Wrap { trim: false })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.focus)
                .title(format!(
                    " event at step {} {} ",
                    l.step,
                    widgets::HELP_CLOSES
                )),
        ),
        r,
    );
}

fn draw_footer(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let keys: Vec<(&str, &str)> = if app.editing.is_some() {
        vec![("type", "a value"), ("Enter", "apply"), ("Esc", "cancel")]
    } else if app.overlay == Some(Overlay::ConfirmQuit) {
        vec![("y", "stop with a checkpoint"), ("n/Esc", "keep training")]
    } else if matches!(app.overlay, Some(Overlay::Help | Overlay::Event(_))) {
        vec![("Esc ? q", "close")]
    } else {
        footer_rows(BINDINGS, |b| applies(b, app.watching))
    };
    // whole entries only: a key cut from what it does says nothing (`?` lists them all)
    let mut spans = Vec::new();
    let mut used = 0;
    for (k, h) in keys {
        let (key, what) = (format!(" {k} "), format!(" {h}  "));
        used += key.chars().count() + what.chars().count();
        if used > area.width as usize + 2 {
            break;
        }
        spans.push(Span::styled(key, theme.accent));
        spans.push(Span::styled(what, theme.dim));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_help(f: &mut Frame, area: Rect, app: &TrainApp, theme: &Theme) {
    let rows: Vec<(&str, &str)> = BINDINGS
        .iter()
        .filter(|b| !b.shown.is_empty() && applies(b, app.watching))
        .map(|b| (b.shown, help_for(b, app.watching)))
        .collect();
    let title = format!(" keys {} ", widgets::HELP_CLOSES);
    widgets::help(f, area, &title, &rows, 16, theme);
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
