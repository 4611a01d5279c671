//! The inspection screen's state and update rule: keys in, selection, sort order, filter and
//! the nearest-feature list out. No terminal here, so every rule is unit-testable.

use crate::inspect::report::{FeatureReport, Inspection};
use crate::tui::widgets::keys::{Binding, bind, ch, ctrl, lookup, named};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Columns of the feature table, in order; the table sorts by one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Feature index.
    Index,
    /// Firing frequency.
    Density,
    /// Mean non-zero activation.
    Mean,
    /// Largest activation.
    Max,
    /// Threshold θ.
    Theta,
    /// Decoder norm.
    Norm,
}

/// The columns, in table order.
pub const COLUMNS: [Column; 6] = [
    Column::Index,
    Column::Density,
    Column::Mean,
    Column::Max,
    Column::Theta,
    Column::Norm,
];

impl Column {
    /// Header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Index => "#",
            Column::Density => "density",
            Column::Mean => "mean",
            Column::Max => "max",
            Column::Theta => "θ",
            Column::Norm => "‖d‖",
        }
    }

    /// The column's value for a feature.
    pub fn value(self, f: &FeatureReport) -> f64 {
        match self {
            Column::Index => f.index as f64,
            Column::Density => f.density,
            Column::Mean => f.mean,
            Column::Max => f.max,
            Column::Theta => f.threshold,
            Column::Norm => f.decoder_norm,
        }
    }
}

/// What a key asks for on the inspection screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave.
    Quit,
    /// Select the next feature (or scroll the examples).
    Down,
    /// Select the previous one.
    Up,
    /// A page down.
    PageDown,
    /// A page up.
    PageUp,
    /// The first feature.
    First,
    /// The last feature.
    Last,
    /// Sort by the next column.
    SortNext,
    /// Sort by the previous column.
    SortPrev,
    /// Reverse the order.
    Reverse,
    /// Type a feature number or a filter.
    Prompt,
    /// Clear the filter (and close the help and the prompt).
    Clear,
    /// The arrow keys go to the table or the examples.
    Focus,
    /// The help overlay.
    Help,
}

/// The inspection screen's keys, in help order (a row with nothing shown is the other half of
/// the row before it).
pub const KEYS: &[Binding<Action>] = &[
    bind(
        &[named(KeyCode::Up), ch('k')],
        "↑↓ jk",
        Action::Up,
        "select a feature (or scroll examples)",
        "select",
    ),
    bind(&[named(KeyCode::Down), ch('j')], "", Action::Down, "", ""),
    bind(
        &[named(KeyCode::PageUp)],
        "PgUp PgDn g G",
        Action::PageUp,
        "page, first, last",
        "",
    ),
    bind(&[named(KeyCode::PageDown)], "", Action::PageDown, "", ""),
    bind(&[named(KeyCode::Home), ch('g')], "", Action::First, "", ""),
    bind(&[named(KeyCode::End), ch('G')], "", Action::Last, "", ""),
    bind(
        &[named(KeyCode::Right), ch('l'), ch('s')],
        "← → h l s",
        Action::SortNext,
        "sort by the previous / next column",
        "sort",
    ),
    bind(
        &[named(KeyCode::Left), ch('h')],
        "",
        Action::SortPrev,
        "",
        "",
    ),
    bind(
        &[ch('r')],
        "r",
        Action::Reverse,
        "reverse the order",
        "reverse",
    ),
    bind(
        &[ch('/')],
        "/",
        Action::Prompt,
        "jump to a feature number, or filter: dead, dense, density>X, density<X, X..Y, all",
        "jump/filter",
    ),
    bind(
        &[named(KeyCode::Esc)],
        "Esc",
        Action::Clear,
        "clear the filter / close",
        "",
    ),
    bind(
        &[named(KeyCode::Tab), named(KeyCode::BackTab)],
        "Tab",
        Action::Focus,
        "keys to the table or the examples",
        "focus",
    ),
    bind(&[ch('?')], "?", Action::Help, "this help", "help"),
    bind(
        &[ch('q'), ctrl('c')],
        "q",
        Action::Quit,
        "quit (Ctrl-C too)",
        "quit",
    ),
];

/// Which features the table lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every feature.
    All,
    /// Never fired on the store.
    Dead,
    /// Density at or above the report's dense threshold.
    Dense,
    /// Density within `[lo, hi]`.
    Density(f64, f64),
}

/// What was typed after `/` is neither a feature number nor a filter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// A bound is not a number.
    #[error("`{0}` is not a number")]
    NotANumber(String),
    /// Not a form the filter knows.
    #[error("`{0}`: type a feature number, all, dead, dense, density>X, density<X or X..Y")]
    Unknown(String),
}

impl Filter {
    /// Parse what was typed after `/` (a feature number is a jump, not a filter: `None`).
    /// Accepts `all`, `dead`, `dense`, `density>X`, `density<X`, `X..Y`.
    pub fn parse(s: &str) -> Result<Option<Filter>, FilterError> {
        let s = s.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<f64>()
                .map_err(|_| FilterError::NotANumber(t.trim().to_string()))
        };
        Ok(Some(match s {
            "" | "all" => Filter::All,
            "dead" => Filter::Dead,
            "dense" => Filter::Dense,
            _ if s.parse::<usize>().is_ok() => return Ok(None),
            _ if s.starts_with("density>") => Filter::Density(num(&s[8..])?, f64::INFINITY),
            _ if s.starts_with("density<") => Filter::Density(0.0, num(&s[8..])?),
            _ if s.contains("..") => {
                let (a, b) = s.split_once("..").unwrap_or_default();
                Filter::Density(num(a)?, num(b)?)
            }
            _ => {
                return Err(FilterError::Unknown(s.to_string()));
            }
        }))
    }

    fn keeps(&self, f: &FeatureReport, dense: f64) -> bool {
        match self {
            Filter::All => true,
            Filter::Dead => f.density == 0.0,
            Filter::Dense => f.density >= dense,
            Filter::Density(lo, hi) => f.density >= *lo && f.density <= *hi,
        }
    }

    /// How the table title names it.
    pub fn label(&self) -> String {
        match self {
            Filter::All => "all".into(),
            Filter::Dead => "dead".into(),
            Filter::Dense => "dense".into(),
            Filter::Density(lo, hi) if hi.is_infinite() => format!("density ≥ {lo}"),
            Filter::Density(lo, hi) => format!("density {lo}..{hi}"),
        }
    }
}

/// Which part has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The feature table (↑/↓ select).
    Table,
    /// The top examples (↑/↓ scroll).
    Examples,
}

/// Everything the inspection screen shows.
#[derive(Debug)]
pub struct InspectApp {
    /// The report.
    pub report: Inspection,
    /// Decoder rows `[d_sae, d_in]`, for nearest features (None: the SAE is not at hand).
    pub decoder: Option<Vec<f32>>,
    /// Why `decoder` is missing, when it is.
    pub decoder_note: Option<String>,
    /// Feature indices listed, in table order.
    pub rows: Vec<usize>,
    /// Selected row of `rows`.
    pub selected: usize,
    /// Sort column and direction.
    pub sort: (Column, bool),
    /// The filter in force.
    pub filter: Filter,
    /// The text typed after `/`, while typing.
    pub prompt: Option<String>,
    /// A one-line message (a refused prompt, a jump that found nothing).
    pub message: Option<String>,
    /// Who has the keys.
    pub focus: Focus,
    /// First example shown.
    pub example_offset: usize,
    /// The help overlay is shown.
    pub help: bool,
    /// Leave.
    pub quit: bool,
    nearest_cache: Option<(usize, Vec<(usize, f64)>)>,
}

/// Nearest features listed.
pub const NEAREST: usize = 8;

impl InspectApp {
    /// The screen for `report`, sorted by density (densest first).
    pub fn new(
        report: Inspection,
        decoder: Option<Vec<f32>>,
        decoder_note: Option<String>,
    ) -> Self {
        let mut app = Self {
            report,
            decoder,
            decoder_note,
            rows: Vec::new(),
            selected: 0,
            sort: (Column::Density, true),
            filter: Filter::All,
            prompt: None,
            message: None,
            focus: Focus::Table,
            example_offset: 0,
            help: false,
            quit: false,
            nearest_cache: None,
        };
        app.relist(None);
        app
    }

    /// The selected feature, if the list is not empty.
    pub fn current(&self) -> Option<&FeatureReport> {
        self.rows
            .get(self.selected)
            .map(|&i| &self.report.features[i])
    }

    /// Rebuild the list from filter and sort, keeping `keep` selected if it is listed.
    fn relist(&mut self, keep: Option<usize>) {
        let dense = self.report.dense_threshold;
        let (col, desc) = self.sort;
        let mut rows: Vec<usize> = self
            .report
            .features
            .iter()
            .filter(|f| self.filter.keeps(f, dense))
            .map(|f| f.index)
            .collect();
        let feats = &self.report.features;
        rows.sort_by(|&a, &b| {
            let o = col.value(&feats[a]).total_cmp(&col.value(&feats[b]));
            (if desc { o.reverse() } else { o }).then(a.cmp(&b))
        });
        self.rows = rows;
        self.selected = keep
            .and_then(|k| self.rows.iter().position(|&r| r == k))
            .unwrap_or(0);
        self.example_offset = 0;
    }

    /// The features whose decoder rows are closest in direction to the selected one's:
    /// (index, cosine), most similar first; computed once per selection.
    pub fn nearest(&mut self) -> Option<&[(usize, f64)]> {
        let k = self.current()?.index;
        if self.nearest_cache.as_ref().is_none_or(|c| c.0 != k) {
            let w = self.decoder.as_ref()?;
            // decoder rows have the reconstructed width (a report of an earlier version: d_in)
            let d = match self.report.sae.d_out {
                0 => self.report.sae.d_in,
                d => d,
            };
            let row = |i: usize| &w[i * d..(i + 1) * d];
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let (q, qn) = (row(k), norm(row(k)));
            let mut sims: Vec<(usize, f64)> = (0..self.report.sae.d_sae)
                .filter(|&i| i != k)
                .map(|i| {
                    let r = row(i);
                    let dot: f64 = q.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum();
                    (i, dot / (qn * norm(r)).max(1e-30))
                })
                .collect();
            sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            sims.truncate(NEAREST);
            self.nearest_cache = Some((k, sims));
        }
        self.nearest_cache.as_ref().map(|c| c.1.as_slice())
    }

    /// The nearest features if already computed for the selection (drawing takes `&self`).
    pub fn nearest_cached(&self) -> Option<&[(usize, f64)]> {
        let k = self.current()?.index;
        self.nearest_cache
            .as_ref()
            .filter(|c| c.0 == k)
            .map(|c| c.1.as_slice())
    }

    /// Apply a key.
    pub fn on_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(buf) = self.prompt.as_mut() {
            match key.code {
                KeyCode::Char(c) if !ctrl => buf.push(c),
                KeyCode::Backspace => {
                    buf.pop();
                }
                KeyCode::Esc => self.prompt = None,
                KeyCode::Enter => {
                    let text = self.prompt.take().unwrap_or_default();
                    self.submit(&text);
                }
                _ => {}
            }
            return;
        }
        if self.help {
            if crate::tui::widgets::closes_help(&key) {
                self.help = false;
            }
            return;
        }
        self.message = None;
        let page = 10;
        let Some(action) = lookup(KEYS, &key) else {
            return;
        };
        match action {
            Action::Quit => self.quit = true,
            // Esc closes: here, the filter
            Action::Clear => {
                if self.filter != Filter::All {
                    let keep = self.current().map(|f| f.index);
                    self.filter = Filter::All;
                    self.relist(keep);
                }
            }
            Action::Help => self.help = true,
            Action::Prompt => self.prompt = Some(String::new()),
            Action::Focus => {
                self.focus = match self.focus {
                    Focus::Table => Focus::Examples,
                    Focus::Examples => Focus::Table,
                }
            }
            Action::Down => self.move_by(1),
            Action::Up => self.move_by(-1),
            Action::PageDown => self.move_by(page),
            Action::PageUp => self.move_by(-page),
            Action::First => self.move_by(-(isize::MAX / 2)),
            Action::Last => self.move_by(isize::MAX / 2),
            Action::SortNext => self.sort_by(1),
            Action::SortPrev => self.sort_by(-1),
            Action::Reverse => {
                let keep = self.current().map(|f| f.index);
                self.sort.1 = !self.sort.1;
                self.relist(keep);
            }
        }
    }

    fn move_by(&mut self, by: isize) {
        match self.focus {
            Focus::Table => {
                let last = self.rows.len().saturating_sub(1) as isize;
                self.selected = (self.selected as isize).saturating_add(by).clamp(0, last) as usize;
                self.example_offset = 0;
            }
            Focus::Examples => {
                let n = self.current().map_or(0, |f| f.top.len()) as isize;
                self.example_offset = (self.example_offset as isize)
                    .saturating_add(by)
                    .clamp(0, (n - 1).max(0)) as usize;
            }
        }
    }

    fn sort_by(&mut self, step: isize) {
        let keep = self.current().map(|f| f.index);
        let i = COLUMNS.iter().position(|c| *c == self.sort.0).unwrap_or(0) as isize;
        let n = COLUMNS.len() as isize;
        let col = COLUMNS[((i + step).rem_euclid(n)) as usize];
        // the index ascends by default, the statistics descend
        self.sort = (col, col != Column::Index);
        self.relist(keep);
    }

    /// Select feature `k` (clearing a filter that hides it); false if there is no such feature.
    pub fn jump(&mut self, k: usize) -> bool {
        if k >= self.report.features.len() {
            return false;
        }
        if !self.rows.contains(&k) {
            self.filter = Filter::All;
        }
        self.relist(Some(k));
        true
    }

    /// What was typed after `/`: a feature number jumps to it (clearing a filter that hides
    /// it), anything else is a filter.
    fn submit(&mut self, text: &str) {
        match Filter::parse(text) {
            Ok(Some(f)) => {
                let keep = self.current().map(|f| f.index);
                self.filter = f;
                self.relist(keep);
                if self.rows.is_empty() {
                    self.message = Some(format!("no feature is {}", self.filter.label()));
                }
            }
            Ok(None) => {
                let k: usize = text.trim().parse().unwrap_or(0);
                if !self.jump(k) {
                    self.message = Some(format!(
                        "feature {k}: the SAE has {} features (0 to {})",
                        self.report.features.len(),
                        self.report.features.len().saturating_sub(1)
                    ));
                }
            }
            Err(e) => self.message = Some(e.to_string()),
        }
    }
}
