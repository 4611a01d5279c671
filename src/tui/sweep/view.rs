//! Drawing the sweep screen from a [`SweepApp`]: the status line, the member table, the L0–FVU
//! frontier chart (each member's point labelled with its row number, a short trail, the Pareto
//! frontier as a line), the sweep log, the footer, and the help and confirmation overlays; or,
//! with a member opened, that member's training screen under a one-line banner.

use super::{COLUMNS, Column, Row, SweepApp};
use crate::metrics::stats::si;
use crate::schema::sweep::MemberState;
use crate::tui::theme::Theme;
use crate::tui::view as train_view;
use crate::tui::widgets::frontier::{Labelled, YAxis, draw_chart};
use crate::tui::widgets::keys::help_rows;
use crate::tui::widgets::{self, ellipsized, too_small};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Table, Wrap};

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &SweepApp, theme: &Theme) {
    if let Some(i) = app.open {
        train_view::draw(f, &app.rows[i].app, theme);
        banner(f, app, i, theme);
        if let Some(ask) = app.ask {
            confirm(f, &app.question(ask), theme);
        }
        return;
    }
    if too_small(f, theme, "q stops the sweep with checkpoints") {
        return;
    }
    let area = f.area();
    let table_h = (app.rows.len() as u16 + 3).min(area.height / 2);
    let [status, table, lower, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_h),
        Constraint::Min(8),
        Constraint::Length(1),
    ])
    .areas(area);
    let log_w = if area.width >= 120 { 44 } else { 30 };
    let [chart, log] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(log_w)]).areas(lower);
    draw_status(f, status, app, theme);
    draw_table(f, table, app, theme);
    draw_frontier(f, chart, app, theme);
    draw_log(f, log, app, theme);
    // a viewer in another process cannot pause, checkpoint or stop: it does not offer to
    let keys = match (app.watching, area.width >= 110) {
        (false, true) => {
            "↑↓ select  Enter open  s sort  r reverse  ←→ value  A edits→all  p/c/x member  P/C/X all  ? help  q quit"
        }
        (false, false) => {
            "↑↓ Enter open  s/r sort  ←→ value  A to all  p c x / P C X  ? help  q quit"
        }
        (true, true) => {
            "↑↓ select  Enter open  s sort  r reverse  ←→ value  A edits→all  ? help  q leave (the sweep goes on)"
        }
        (true, false) => "↑↓ Enter open  s/r sort  ←→ value  A to all  ? help  q leave",
    };
    f.render_widget(Paragraph::new(keys).style(theme.dim), footer);
    if app.help {
        help(f, area, app.watching, theme);
    }
    if let Some(ask) = app.ask {
        confirm(f, &app.question(ask), theme);
    }
}

/// The member screen's top line: which member of which sweep, and how to come back.
fn banner(f: &mut Frame, app: &SweepApp, i: usize, theme: &Theme) {
    let area = f.area();
    let text = format!(
        " member {}/{} · Esc: sweep · A: edits→all {} ",
        i + 1,
        app.rows.len(),
        if app.to_all { "ON" } else { "off" }
    );
    let w = (text.chars().count() as u16).min(area.width);
    let at = Rect::new(area.x + area.width.saturating_sub(w + 1), area.y, w, 1);
    f.render_widget(
        Paragraph::new(text).style(if app.to_all { theme.warn } else { theme.accent }),
        at,
    );
}

fn counts(app: &SweepApp) -> String {
    let n = |s: MemberState| app.rows.iter().filter(|r| r.state == s).count();
    let mut parts = vec![format!("{} running", n(MemberState::Running))];
    for s in [
        MemberState::Paused,
        MemberState::Finished,
        MemberState::Stopped,
        MemberState::Failed,
    ] {
        if n(s) > 0 {
            parts.push(format!("{} {}", n(s), s.name()));
        }
    }
    parts.join(", ")
}

fn draw_status(f: &mut Frame, area: Rect, app: &SweepApp, theme: &Theme) {
    let rate = app
        .rows
        .iter()
        .filter(|r| r.state == MemberState::Running)
        .map(|r| r.app.tokens_per_s)
        .fold(0.0, f64::max);
    let state = if app.stopping && !app.done {
        "stopping (checkpointing)".to_string()
    } else if app.done {
        "done".to_string()
    } else {
        counts(app)
    };
    let line = Line::from(vec![
        Span::styled(format!(" sweep {} ", app.name), theme.focus),
        Span::styled(format!(" {} members: ", app.rows.len()), theme.dim),
        Span::styled(state, theme.text),
        Span::styled("  stream tok/s ", theme.dim),
        Span::styled(format!("{rate:.0}"), theme.text),
        Span::styled("  sort ", theme.dim),
        Span::styled(
            format!(
                "{}{}",
                app.sort.0.title(),
                if app.sort.1 { " ↓" } else { " ↑" }
            ),
            theme.text,
        ),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

/// The columns shown at `width`, with their widths: all from 140 columns, without the varied
/// values (the names usually say them) from 100, the essentials below (ΔLM then lives on the
/// frontier chart's `y` axis).
fn shown(width: u16) -> Vec<(Column, Constraint)> {
    let wide = width >= 100;
    COLUMNS
        .iter()
        // narrow: the health column stays (a member in trouble must not look merely
        // "finished"); the architecture, said by most names, goes
        .filter(|c| {
            wide || !matches!(
                c,
                Column::Mse | Column::Rate | Column::DeltaLm | Column::Arch
            )
        })
        .filter(|c| width >= 140 || **c != Column::Varied)
        .map(|&c| {
            let w = match c {
                Column::Index => Constraint::Length(3),
                Column::Name => Constraint::Min(10),
                Column::Varied => Constraint::Length(VARIED_W as u16),
                Column::Arch => Constraint::Length(9),
                Column::Step if wide => Constraint::Length(11),
                Column::Step => Constraint::Length(7),
                Column::Dead if wide => Constraint::Length(13),
                Column::L0 | Column::Ev | Column::Dead => Constraint::Length(6),
                Column::Mse | Column::Rate => Constraint::Length(7),
                Column::Fvu | Column::State | Column::DeltaLm => Constraint::Length(8),
                Column::Health if wide => Constraint::Length(HEALTH_W as u16),
                Column::Health => Constraint::Length(13),
            };
            (c, w)
        })
        .collect()
}

/// The varied column's width.
const VARIED_W: usize = 30;

/// The health column's width where the table is wide (the longest kind, `threshold-frozen`).
const HEALTH_W: usize = 16;

fn cell(i: usize, row: &Row, c: Column, (wide, uniform): (bool, bool)) -> String {
    let num = |v: Option<f64>, p: usize| {
        v.filter(|x| x.is_finite())
            .map_or("-".to_string(), |x| format!("{x:.p$}"))
    };
    match c {
        Column::Index => format!("{}", i + 1),
        Column::Name => row.name.clone(),
        // a value too long for the column ends in "…", never cut into another number
        Column::Varied if uniform => ellipsized(&super::varied_values(&row.varied), VARIED_W),
        Column::Varied => ellipsized(&super::varied_text(&row.varied), VARIED_W),
        Column::Arch => row.app.config.sae.architecture.name().to_string(),
        // "step/total" where it fits the column, else the step alone (never a cut number)
        Column::Step if wide && format!("{}/{}", row.app.step, row.app.total_steps).len() <= 11 => {
            format!("{}/{}", row.app.step, row.app.total_steps)
        }
        Column::Step => row.app.step.to_string(),
        Column::L0 => num(row.app.l0.last(), 1),
        Column::Mse => num(row.app.mse.last(), 4),
        Column::Ev => num(row.app.ev.last(), 3),
        Column::Fvu => match row.fvu() {
            Some((v, true)) => format!("{v:.4}"),
            Some((v, false)) => format!("{v:.4}*"),
            None => "-".into(),
        },
        Column::DeltaLm => row
            .app
            .delta_lm
            .last()
            .filter(|x| x.is_finite())
            .map_or("-".to_string(), |x| format!("{x:+.4}")),
        // a count with its percentage, as on the training screen (narrow: the percentage)
        Column::Dead => match &row.app.inactive {
            Some(d) if wide => d.short(),
            Some(d) => format!("{:.1}%", d.fraction * 100.0),
            None => "-".into(),
        },
        Column::Rate => {
            if row.app.tokens_per_s > 0.0 {
                format!("{:.0}", row.app.tokens_per_s)
            } else {
                "-".into()
            }
        }
        Column::State => row.state.name().to_string(),
        Column::Health => ellipsized(
            &super::health_badge(&row.app),
            if wide { HEALTH_W } else { 13 },
        ),
    }
}

fn draw_table(f: &mut Frame, area: Rect, app: &SweepApp, theme: &Theme) {
    let columns = shown(area.width);
    let wide = area.width >= 100;
    let header = columns.iter().map(|(c, _)| {
        // the varied column is headed by the keys it varies; its cells hold values only
        let mut t = match c {
            Column::Varied => super::varied_keys(&app.rows)
                .map_or("varied".to_string(), |k| ellipsized(&k, VARIED_W - 1)),
            _ => c.title().to_string(),
        };
        if *c == app.sort.0 {
            t.push(if app.sort.1 { '↓' } else { '↑' });
        }
        Cell::from(t)
    });
    let uniform = super::varied_keys(&app.rows).is_some();
    let order = app.order();
    let rows = order.iter().map(|&i| {
        let r = &app.rows[i];
        let style = match r.state {
            MemberState::Failed => theme.warn,
            MemberState::Paused | MemberState::Stopped => theme.dim,
            _ => theme.text,
        };
        let cells: Vec<Cell> = columns
            .iter()
            .map(|(c, _)| Cell::from(cell(i, r, *c, (wide, uniform))))
            .collect();
        let row = ratatui::widgets::Row::new(cells).style(style);
        if i == app.selected {
            row.style(theme.focus.add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let widths: Vec<Constraint> = columns.iter().map(|(_, w)| *w).collect();
    let head: Vec<Cell> = header.collect();
    // what the dead column counts over, when every member says the same
    let windows: std::collections::BTreeSet<u64> = app
        .rows
        .iter()
        .filter_map(|r| r.app.inactive.map(|d| d.tokens))
        .collect();
    let window = match windows.iter().collect::<Vec<_>>().as_slice() {
        [w] if **w > 0 => Some(si(**w as f64)),
        _ => None,
    };
    let long = format!(
        " members (FVU held-out; * = training batches, 1 − EV{}) ",
        window.as_ref().map_or(String::new(), |w| format!(
            "; dead: not fired in {w} training tok"
        ))
    );
    let short = format!(
        " members (FVU held-out, * training{}) ",
        window
            .as_ref()
            .map_or(String::new(), |w| format!("; dead over {w} tok"))
    );
    // a title is never cut inside a number
    let title = [long, short]
        .into_iter()
        .find(|t| t.chars().count() + 2 <= area.width as usize)
        .unwrap_or_else(|| " members ".into());
    let t = Table::new(rows, widths)
        .header(ratatui::widgets::Row::new(head).style(theme.dim))
        .column_spacing(1)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border)
                .title(Span::styled(title, theme.text)),
        );
    f.render_widget(t, area);
}

/// The frontier chart of the members' current points and trails.
fn draw_frontier(f: &mut Frame, area: Rect, app: &SweepApp, theme: &Theme) {
    let heldout = app.rows.iter().filter(|r| r.heldout_fvu.is_some()).count();
    let n = app.rows.len();
    let y = app.y_axis;
    let title = match heldout {
        _ if y == YAxis::DeltaLm => {
            " L0 (log) × ΔLM loss, each member's newest lm-eval · line: frontier · y: FVU "
                .to_string()
        }
        0 => " L0 (log) × FVU of training batches · line: frontier ".to_string(),
        h if h == n => " L0 (log) × held-out FVU · line: frontier ".to_string(),
        h => format!(
            " L0 (log) × FVU: held-out {h}, training {} · line: frontier ",
            n - h
        ),
    };
    let points: Vec<Labelled> = app
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| Labelled {
            label: format!("{}", i + 1),
            // a failed member's last point is not where it stands: out of the chart
            point: r.point(y).filter(|_| r.state != MemberState::Failed),
            selected: i == app.selected,
        })
        .collect();
    // the trails are of (L0, FVU) reports
    let trails: Vec<(f64, f64)> = app
        .rows
        .iter()
        .filter(|r| r.state != MemberState::Failed && y == YAxis::Fvu)
        .flat_map(|r| r.trail.iter().copied())
        .collect();
    draw_chart(f, area, &title, &points, &trails, y, theme);
}

fn draw_log(f: &mut Frame, area: Rect, app: &SweepApp, theme: &Theme) {
    let h = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .rev()
        .take(h)
        .rev()
        .map(|l| Line::styled(l.clone(), theme.text))
        .collect();
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border)
                .title(Span::styled(" sweep log ", theme.text)),
        ),
        area,
    );
}

fn confirm(f: &mut Frame, question: &str, theme: &Theme) {
    widgets::confirm(
        f,
        f.area(),
        " sweep ",
        question,
        &[("y / Enter", "yes"), ("any other key", "no")],
        theme,
    );
}

fn help(f: &mut Frame, area: Rect, watching: bool, theme: &Theme) {
    let rows: Vec<(&str, &str)> =
        help_rows(super::KEYS, |b| !(watching && b.action.needs_the_sweep()))
            .into_iter()
            .map(|(keys, text)| match (watching, keys) {
                (true, "q") => (keys, "leave the viewer (the sweep goes on)"),
                (true, "Ctrl-C") => (keys, "the same"),
                _ => (keys, text),
            })
            .collect();
    let title = format!(" sweep keys {} ", widgets::HELP_CLOSES);
    widgets::help(f, area, &title, &rows, 12, theme);
}
