//! The sweep screen's state and update rule: member events, sweep records and keys in, state
//! changes and [`JobControl`]s out. Each member keeps a full training-screen [`TrainApp`], shown
//! when the member is opened (Enter) and fed every event of its run; the table and the
//! frontier read from them. No terminal here; drawing is in `view`, the frontier in `frontier`.

pub mod view;

use crate::live::{self, Verdict};
use crate::schema::record::Record;
use crate::schema::sweep::{MemberState, SweepRecord};
use crate::train::control::{Control, TrainEvent};
use crate::train::control::{JobControl, JobEvent};
use crate::tui::app::{Overlay, TrainApp};
use crate::tui::msg::{Ending, Msg};
use crate::tui::widgets::frontier::YAxis;
use crate::tui::widgets::keys::{Binding, bind, ch, ctrl, lookup, named};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use std::collections::VecDeque;

/// Recent (L0, FVU) points kept per member for its trail on the frontier chart.
pub const TRAIL: usize = 12;
/// Sweep-level log lines kept.
const LOG_CAP: usize = 200;

/// What a key asks for on the sweep screen's member table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop every member with a checkpoint and leave (asks first).
    Quit,
    /// The same at once (Ctrl-C).
    Interrupt,
    /// The help overlay.
    Help,
    /// Select the member above.
    Up,
    /// Select the member below.
    Down,
    /// Open the member's own training screen.
    Open,
    /// Sort by the next column.
    Sort,
    /// Sort by the previous column.
    SortBack,
    /// Reverse the order.
    Reverse,
    /// Edits on a member's screen go to every member that takes the key.
    ToAll,
    /// Pause or resume the member (`true`: all), after a question.
    Pause(bool),
    /// Checkpoint the member (`true`: all) now, after a question.
    Checkpoint(bool),
    /// Stop the member (`true`: all) with a checkpoint, after a question.
    Stop(bool),
    /// Step the selected member's selected value (the training screen's ←/→).
    Step,
    /// Switch the frontier chart's vertical axis between FVU and ΔLM loss.
    Axis,
}

impl Action {
    /// Whether it needs the sweep's own process (not offered under `watch`).
    pub fn needs_the_sweep(self) -> bool {
        matches!(
            self,
            Action::Pause(_) | Action::Checkpoint(_) | Action::Stop(_)
        )
    }
}

/// The sweep screen's keys, in help order (a row with nothing shown is the other half of the
/// row before it).
pub const KEYS: &[Binding<Action>] = &[
    bind(
        &[named(KeyCode::Up), ch('k')],
        "↑ k / ↓ j",
        Action::Up,
        "select a member",
        "",
    ),
    bind(&[named(KeyCode::Down), ch('j')], "", Action::Down, "", ""),
    bind(
        &[named(KeyCode::Enter)],
        "Enter",
        Action::Open,
        "open its training screen (Esc comes back)",
        "",
    ),
    bind(
        &[ch('s')],
        "s / S",
        Action::Sort,
        "sort by the next / the previous column (S)",
        "",
    ),
    bind(&[ch('S')], "", Action::SortBack, "", ""),
    bind(&[ch('r')], "r", Action::Reverse, "reverse the order", ""),
    bind(
        &[
            named(KeyCode::Left),
            named(KeyCode::Right),
            ch('h'),
            ch('l'),
        ],
        "← h / → l",
        Action::Step,
        "step the selected member's selected value",
        "",
    ),
    bind(
        &[ch('A')],
        "A",
        Action::ToAll,
        "edits on a member's screen go to every member",
        "",
    ),
    bind(
        &[ch('p')],
        "p / P",
        Action::Pause(false),
        "pause or resume the member / all (asks first)",
        "",
    ),
    bind(&[ch('P')], "", Action::Pause(true), "", ""),
    bind(
        &[ch('c')],
        "c / C",
        Action::Checkpoint(false),
        "checkpoint the member / all now (asks first)",
        "",
    ),
    bind(&[ch('C')], "", Action::Checkpoint(true), "", ""),
    bind(
        &[ch('x')],
        "x / X",
        Action::Stop(false),
        "stop the member / all with a checkpoint (asks)",
        "",
    ),
    bind(&[ch('X')], "", Action::Stop(true), "", ""),
    bind(
        &[ch('y')],
        "y",
        Action::Axis,
        "frontier chart: FVU or ΔLM loss up (the model in the loop)",
        "",
    ),
    bind(&[ch('?')], "?", Action::Help, "this help", ""),
    bind(
        &[ch('q')],
        "q",
        Action::Quit,
        "stop every member with a checkpoint and leave",
        "",
    ),
    bind(
        &[ctrl('c')],
        "Ctrl-C",
        Action::Interrupt,
        "the same, at once",
        "",
    ),
];

/// Two members' varied values in order: key by key, numbers as numbers, anything else as text.
fn cmp_varied(a: &[(String, toml::Value)], b: &[(String, toml::Value)]) -> std::cmp::Ordering {
    let num = |v: &toml::Value| match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    };
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        let o = ka.cmp(kb).then_with(|| match (num(va), num(vb)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => va.to_string().cmp(&vb.to_string()),
        });
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// A member's varied values as the table shows them: `short=value`, by the keys' short names.
/// A member's health as its badge: `ok`, or its first active warning's kind, with how many
/// more (`l0-collapse+1`).
pub fn health_badge(app: &crate::tui::app::TrainApp) -> String {
    match app.warnings.keys().next() {
        None => "ok".into(),
        Some(k) if app.warnings.len() == 1 => k.name().to_string(),
        Some(k) => format!("{}+{}", k.name(), app.warnings.len() - 1),
    }
}

/// The varied values alone (the column's header names their keys: [`varied_keys`]).
pub fn varied_values(varied: &[(String, toml::Value)]) -> String {
    varied
        .iter()
        .map(|(_, v)| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The short names of the keys every member varies, when all vary the same keys in the same
/// order (a grid): the column's header then names them once and its cells hold values alone.
/// `None` when members vary different keys (each cell then says `key=value`).
pub fn varied_keys(rows: &[Row]) -> Option<String> {
    let names = |r: &Row| -> Vec<String> { r.varied.iter().map(|(k, _)| k.clone()).collect() };
    let first = names(rows.first()?);
    if first.is_empty() || rows.iter().any(|r| names(r) != first) {
        return None;
    }
    Some(
        first
            .iter()
            .map(|k| crate::schema::keys::find(k).map_or(k.as_str(), |key| key.short()))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The varied keys and values as `key=value, …`.
pub fn varied_text(varied: &[(String, toml::Value)]) -> String {
    varied
        .iter()
        .map(|(k, v)| {
            let short = crate::schema::keys::find(k).map_or(k.as_str(), |key| key.short());
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{short}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table's columns, in order; `s` cycles the sort through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The member's number (sweep order).
    Index,
    /// Member name.
    Name,
    /// The values that make it differ.
    Varied,
    /// Architecture.
    Arch,
    /// Own steps.
    Step,
    /// L0.
    L0,
    /// MSE.
    Mse,
    /// Explained variance.
    Ev,
    /// FVU (held-out where there is one).
    Fvu,
    /// ΔLM loss of the newest `lm-eval`.
    DeltaLm,
    /// Dead fraction.
    Dead,
    /// Tokens per second.
    Rate,
    /// State.
    State,
    /// Its health: `ok`, or the first active warning (and how many more).
    Health,
}

/// Every column, in table order.
pub const COLUMNS: [Column; 14] = [
    Column::Index,
    Column::Name,
    Column::Varied,
    Column::Arch,
    Column::Step,
    Column::L0,
    Column::Mse,
    Column::Ev,
    Column::Fvu,
    Column::DeltaLm,
    Column::Dead,
    Column::Rate,
    Column::State,
    Column::Health,
];

impl Column {
    /// The header.
    pub fn title(self) -> &'static str {
        match self {
            Column::Index => "#",
            Column::Name => "member",
            Column::Varied => "varied",
            Column::Arch => "arch",
            Column::Step => "step",
            Column::L0 => "L0",
            Column::Mse => "nMSE",
            Column::Ev => "EV",
            Column::Fvu => "FVU",
            Column::DeltaLm => "ΔLM",
            Column::Dead => "dead",
            Column::Rate => "tok/s",
            Column::State => "state",
            Column::Health => "health",
        }
    }
}

/// What a confirmation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Pause (or resume) the member, or all (`None`).
    Pause(Option<usize>),
    /// Checkpoint now.
    Checkpoint(Option<usize>),
    /// Stop with a checkpoint.
    Stop(Option<usize>),
    /// Quit: stop every member with a checkpoint.
    Quit,
}

/// One member as the screen holds it.
#[derive(Debug)]
pub struct Row {
    /// Its name.
    pub name: String,
    /// The keys set for it, with their values (typed: numbers sort as numbers).
    pub varied: Vec<(String, toml::Value)>,
    /// Its training screen (every event of its run goes through it).
    pub app: TrainApp,
    /// Where it stands in the sweep.
    pub state: MemberState,
    /// Its latest held-out FVU.
    pub heldout_fvu: Option<f64>,
    /// Its recent (L0, FVU) points, oldest first.
    pub trail: VecDeque<(f64, f64)>,
}

impl Row {
    /// FVU shown: held-out when evaluated, else 1 − EV of the training batches; with which.
    pub fn fvu(&self) -> Option<(f64, bool)> {
        match self.heldout_fvu {
            Some(f) => Some((f, true)),
            None => self.app.ev.last().map(|ev| (1.0 - ev, false)),
        }
    }

    /// The member's current (L0, FVU) point, if it has reported; with `YAxis::DeltaLm`, its
    /// newest lm-eval's (L0 at the site, ΔLM loss).
    pub fn point(&self, y: YAxis) -> Option<(f64, f64)> {
        let (l0, v) = match y {
            YAxis::Fvu => (self.app.l0.last()?, self.fvu()?.0),
            YAxis::DeltaLm => {
                let lm = self.app.last_lm.as_ref()?;
                (lm.scores.l0, lm.scores.delta_lm_loss)
            }
        };
        (l0.is_finite() && v.is_finite()).then_some((l0, v))
    }

    fn value(&self, c: Column) -> f64 {
        let or = |v: Option<f64>| v.filter(|x| x.is_finite()).unwrap_or(f64::NEG_INFINITY);
        match c {
            Column::Index | Column::Name | Column::Varied | Column::Arch | Column::State => 0.0,
            Column::Health => self.app.warnings.len() as f64,
            Column::Step => self.app.step as f64,
            Column::L0 => or(self.app.l0.last()),
            Column::Mse => or(self.app.mse.last()),
            Column::Ev => or(self.app.ev.last()),
            Column::Fvu => or(self.fvu().map(|f| f.0)),
            Column::DeltaLm => or(self.app.delta_lm.last()),
            Column::Dead => or(self.app.dead.last()),
            Column::Rate => self.app.tokens_per_s,
        }
    }
}

/// Everything the sweep screen shows.
#[derive(Debug)]
pub struct SweepApp {
    /// The sweep directory's name.
    pub name: String,
    /// The members, in sweep order.
    pub rows: Vec<Row>,
    /// Selected member (index into `rows`).
    pub selected: usize,
    /// Sort column and whether descending.
    pub sort: (Column, bool),
    /// The member whose training screen is open.
    pub open: Option<usize>,
    /// A confirmation being asked.
    pub ask: Option<Ask>,
    /// Edits made on a member's screen go to every member that takes the key.
    pub to_all: bool,
    /// Help overlay shown.
    pub help: bool,
    /// Stream steps (batches read).
    pub step: u64,
    /// Rows read from the store.
    pub rows_read: u64,
    /// Sweep-level log, newest last.
    pub log: VecDeque<String>,
    /// The sweep thread has returned.
    pub done: bool,
    /// Stopping every member.
    pub stopping: bool,
    /// Leave the UI loop.
    pub quit: bool,
    /// Watching a sweep another process runs (`jumpscope watch OUT`): edits go to the members'
    /// config.toml; pause, checkpoint and stop need that process; leaving leaves it running.
    pub watching: bool,
    /// What the frontier chart's vertical axis shows.
    pub y_axis: YAxis,
}

impl SweepApp {
    /// A screen for the sweep `name` with these members: (name, varied values, its screen).
    #[allow(clippy::type_complexity)]
    pub fn new(name: String, members: Vec<(String, Vec<(String, toml::Value)>, TrainApp)>) -> Self {
        Self {
            name,
            rows: members
                .into_iter()
                .map(|(name, varied, app)| Row {
                    name,
                    varied,
                    app,
                    state: MemberState::Running,
                    heldout_fvu: None,
                    trail: VecDeque::new(),
                })
                .collect(),
            selected: 0,
            sort: (Column::Index, false),
            open: None,
            ask: None,
            to_all: false,
            help: false,
            step: 0,
            rows_read: 0,
            log: VecDeque::new(),
            done: false,
            stopping: false,
            quit: false,
            watching: false,
            y_axis: YAxis::Fvu,
        }
    }

    /// The screen for `jumpscope watch OUT`: a sweep in another process.
    pub fn watching(mut self) -> Self {
        self.watching = true;
        for r in &mut self.rows {
            r.app.watching = true;
        }
        self
    }

    /// Mark member `i` as it stands when the screen opens (a resumed sweep's ended members).
    pub fn set_state(&mut self, i: usize, state: MemberState) {
        if let Some(r) = self.rows.get_mut(i) {
            r.state = state;
            if !state.is_live() {
                r.app.update(Msg::Finished(Ending::Done));
            }
        }
    }

    /// The rows in table order (sorted): indices into `rows`.
    pub fn order(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.rows.len()).collect();
        let (col, desc) = self.sort;
        idx.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rows[a], &self.rows[b]);
            let o = match col {
                Column::Index => a.cmp(&b),
                Column::Name => ra.name.cmp(&rb.name),
                Column::Varied => cmp_varied(&ra.varied, &rb.varied),
                Column::Arch => ra
                    .app
                    .config
                    .sae
                    .architecture
                    .name()
                    .cmp(rb.app.config.sae.architecture.name()),
                Column::State => ra.state.name().cmp(rb.state.name()),
                c => ra.value(c).total_cmp(&rb.value(c)),
            };
            let o = if desc { o.reverse() } else { o };
            o.then(a.cmp(&b))
        });
        idx
    }

    fn note(&mut self, line: String) {
        if self.log.len() == LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Apply one message; returns the controls to send to the sweep.
    pub fn update(&mut self, msg: Msg) -> Vec<JobControl> {
        match msg {
            Msg::Job(JobEvent::Member(i, ev)) => {
                self.on_member(i, ev);
                Vec::new()
            }
            Msg::Job(JobEvent::Sweep(rec)) => {
                self.on_sweep(rec);
                Vec::new()
            }
            Msg::Key(k) => self.on_key(k),
            Msg::Finished(r) => {
                self.done = true;
                if let Ending::Failed(e) = r {
                    self.note(format!("the sweep failed: {e}"));
                }
                for row in &mut self.rows {
                    row.app.update(Msg::Finished(Ending::Done));
                }
                if self.stopping {
                    self.quit = true;
                }
                Vec::new()
            }
            Msg::Signal => self.stop_all(),
            Msg::LogTouched(_) => Vec::new(),
            Msg::ConfigFile(i, edit) => match self.rows.get_mut(i) {
                Some(row) if row.state.is_live() => row
                    .app
                    .update(Msg::ConfigFile(i, edit))
                    .into_iter()
                    .map(|control| JobControl {
                        member: Some(i),
                        control,
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }

    fn on_member(&mut self, i: usize, ev: TrainEvent) {
        let Some(row) = self.rows.get_mut(i) else {
            return;
        };
        let mut said = None;
        match &ev {
            TrainEvent::Record(Record::Eval { eval, .. }) => row.heldout_fvu = Some(eval.fvu),
            // what a member says at its start (the sweep's own notes, a resume's) reaches the
            // sweep's log, not only the member's screen
            TrainEvent::Info(line) => said = Some(format!("{}: {line}", row.name)),
            _ => {}
        }
        let is_metrics = matches!(ev, TrainEvent::Record(Record::Metrics(_)));
        row.app.update(Msg::Job(JobEvent::Member(i, ev)));
        if is_metrics && let Some(p) = row.point(YAxis::Fvu) {
            if row.trail.len() == TRAIL {
                row.trail.pop_front();
            }
            row.trail.push_back(p);
        }
        if let Some(line) = said {
            self.note(line);
        }
    }

    fn on_sweep(&mut self, rec: SweepRecord) {
        match rec {
            SweepRecord::Member {
                name,
                state,
                reason,
                member_step,
                ..
            } => {
                if let Some(row) = self.rows.iter_mut().find(|r| r.name == name) {
                    row.state = state;
                    if state == MemberState::Failed {
                        let why = reason.clone().unwrap_or_default();
                        row.app.update(Msg::Finished(Ending::Failed(why)));
                    }
                }
                self.note(format!(
                    "{name}: {} at its step {member_step}{}",
                    state.name(),
                    reason.map_or(String::new(), |r| format!(": {r}"))
                ));
            }
            SweepRecord::Checkpoint {
                step,
                rows_read,
                members,
                ..
            } => {
                self.step = step;
                self.rows_read = rows_read;
                self.note(format!(
                    "step {step}: checkpoint of {} members",
                    members.len()
                ));
            }
            SweepRecord::Finish {
                step, rows_read, ..
            }
            | SweepRecord::Stop { step, rows_read } => {
                self.step = step;
                self.rows_read = rows_read;
            }
            SweepRecord::Resume { step, .. } => self.step = step,
            SweepRecord::Start { .. } => {}
        }
    }

    /// Stop every member with a checkpoint, then leave once the sweep has returned.
    fn stop_all(&mut self) -> Vec<JobControl> {
        self.ask = None;
        if self.done || self.watching {
            self.quit = true;
            return Vec::new();
        }
        self.stopping = true;
        self.note("stopping: every member writes a checkpoint".into());
        vec![JobControl {
            member: None,
            control: Control::Stop,
        }]
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<JobControl> {
        let action = lookup(KEYS, &key);
        if action == Some(Action::Interrupt) {
            return self.stop_all();
        }
        if let Some(ask) = self.ask {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Enter => {
                    self.ask = None;
                    self.confirmed(ask)
                }
                _ => {
                    self.ask = None;
                    Vec::new()
                }
            };
        }
        if let Some(i) = self.open {
            return self.member_key(i, key);
        }
        if self.help {
            // as on every screen: Esc, ? or q close the help; other keys do nothing under it
            if crate::tui::widgets::closes_help(&key) {
                self.help = false;
            }
            return Vec::new();
        }
        let Some(action) = action else {
            return Vec::new();
        };
        if self.watching && action.needs_the_sweep() {
            self.note("pause, checkpoint and stop: only in the sweep's own screen".into());
            return Vec::new();
        }
        let order = self.order();
        let pos = order.iter().position(|&i| i == self.selected).unwrap_or(0);
        let member = |all: bool| (!all).then_some(self.selected);
        match action {
            Action::Quit => {
                if self.done || self.watching {
                    self.quit = true;
                } else {
                    self.ask = Some(Ask::Quit);
                }
            }
            Action::Interrupt => {}
            Action::Help => self.help = true,
            Action::Up => self.selected = order[(pos + order.len() - 1) % order.len()],
            Action::Down => self.selected = order[(pos + 1) % order.len()],
            Action::Open => self.open = Some(self.selected),
            Action::Sort | Action::SortBack => {
                let c = COLUMNS.iter().position(|c| *c == self.sort.0).unwrap_or(0);
                let n = COLUMNS.len();
                let next = if action == Action::Sort {
                    c + 1
                } else {
                    c + n - 1
                };
                self.sort.0 = COLUMNS[next % n];
            }
            Action::Reverse => self.sort.1 = !self.sort.1,
            Action::ToAll => self.to_all = !self.to_all,
            Action::Pause(all) => self.ask = Some(Ask::Pause(member(all))),
            Action::Checkpoint(all) => self.ask = Some(Ask::Checkpoint(member(all))),
            Action::Stop(all) => self.ask = Some(Ask::Stop(member(all))),
            // the training screen's value keys, on the selected member's selected value
            Action::Step => return self.member_key(self.selected, key),
            Action::Axis => self.y_axis = self.y_axis.toggled(),
        }
        Vec::new()
    }

    /// A key on member `i`'s own screen (or a value key from the table): the training screen's
    /// rule, its controls sent to that member (and, with `to_all`, the same value to every
    /// member that takes the key). Esc (with nothing open on that screen) comes back; `q` asks
    /// to stop the sweep.
    fn member_key(&mut self, i: usize, key: KeyEvent) -> Vec<JobControl> {
        let app = &mut self.rows[i].app;
        let idle = app.overlay.is_none() && app.editing.is_none();
        if self.open.is_some() && idle {
            match key.code {
                KeyCode::Esc => {
                    self.open = None;
                    return Vec::new();
                }
                KeyCode::Char('q') if self.watching => {
                    self.quit = true;
                    return Vec::new();
                }
                KeyCode::Char('q') => {
                    self.ask = Some(Ask::Quit);
                    return Vec::new();
                }
                KeyCode::Char('A') => {
                    self.to_all = !self.to_all;
                    return Vec::new();
                }
                _ => {}
            }
        }
        let controls = app.update(Msg::Key(key));
        if app.overlay == Some(Overlay::ConfirmQuit) {
            // the member's own quit question is the sweep's
            app.overlay = None;
            self.ask = Some(Ask::Quit);
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in controls {
            // an edit is never invisible: each change goes to the sweep log too
            if let Control::SetHyper(edit) = &c {
                let name = self.rows[i].name.clone();
                for (key, ch) in &edit.changes {
                    self.note(format!("{name}: {key} {} → {}", ch.old, ch.new));
                }
            }
            if let (true, Control::SetHyper(_)) = (self.to_all, &c) {
                out.extend(self.same_for_all(i));
            }
            out.push(JobControl {
                member: Some(i),
                control: c,
            });
        }
        out
    }

    /// The value member `i` just took for its selected tunable, sent to every other live member
    /// that takes that key (each judged against its own configuration).
    fn same_for_all(&mut self, i: usize) -> Vec<JobControl> {
        let src = &self.rows[i].app;
        let t = src.tunables()[src.selected];
        let Some(v) = t.get(&src.config.hyper) else {
            return Vec::new();
        };
        let value = t.format(v);
        let mut out = Vec::new();
        let mut refused = Vec::new();
        for (j, row) in self.rows.iter_mut().enumerate() {
            if j == i || !row.state.is_live() {
                continue;
            }
            if !row.app.tunables().iter().any(|u| u.key == t.key) {
                continue;
            }
            match live::judge_key(&row.app.config, &t.key.path(), &value) {
                Verdict::Apply(cfg, edit) => {
                    row.app.config = *cfg;
                    out.push(JobControl {
                        member: Some(j),
                        control: Control::SetHyper(edit),
                    });
                }
                Verdict::Unchanged => {}
                Verdict::Refused(why) => refused.push(format!("{}: {why}", row.name)),
            }
        }
        self.note(format!(
            "{} = {value} sent to {} more members",
            t.key,
            out.len()
        ));
        for r in refused {
            self.note(r);
        }
        out
    }

    fn confirmed(&mut self, ask: Ask) -> Vec<JobControl> {
        let send = |member: Option<usize>, control: Control| vec![JobControl { member, control }];
        match ask {
            Ask::Quit => self.stop_all(),
            Ask::Stop(None) => self.stop_all(),
            Ask::Stop(m) => send(m, Control::Stop),
            Ask::Checkpoint(m) => send(m, Control::Checkpoint),
            Ask::Pause(Some(i)) => {
                let c = if self.rows[i].state == MemberState::Paused {
                    Control::Resume
                } else {
                    Control::Pause
                };
                send(Some(i), c)
            }
            Ask::Pause(None) => {
                // all paused: resume all; else pause all
                let all_paused = self
                    .rows
                    .iter()
                    .filter(|r| r.state.is_live())
                    .all(|r| r.state == MemberState::Paused);
                send(
                    None,
                    if all_paused {
                        Control::Resume
                    } else {
                        Control::Pause
                    },
                )
            }
        }
    }

    /// The question a confirmation asks.
    pub fn question(&self, ask: Ask) -> String {
        let who = |m: Option<usize>| match m {
            Some(i) => self.rows[i].name.clone(),
            None => "every member".into(),
        };
        match ask {
            Ask::Pause(Some(i)) if self.rows[i].state == MemberState::Paused => {
                format!("resume {}?", who(Some(i)))
            }
            Ask::Pause(m) => format!("pause (or resume) {}?", who(m)),
            Ask::Checkpoint(m) => format!("write a checkpoint of {} now?", who(m)),
            Ask::Stop(m) => format!("stop {} with a checkpoint?", who(m)),
            Ask::Quit => "stop the sweep (every member writes a checkpoint) and leave?".into(),
        }
    }
}
