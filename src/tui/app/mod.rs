//! The training screen's state and its update rule: trainer events and keys in, state changes
//! and [`Control`]s for the trainer out. No terminal here, so every rule is unit-testable.
//! Keys are handled in `keys`, the keyboard-tunable hyperparameters listed in `tunables`.

mod keys;
mod tunables;

pub use tunables::{TUNABLES, Tunable, tunables};

use crate::config::Config;
use crate::live::{self, ConfigEdit, Verdict};
use crate::metrics::stats::Histogram;
use crate::schema::record::{EditSource, Record};
use crate::train::control::{Control, JobEvent, TrainEvent};
use crate::tui::history::Series;
use crate::tui::keymap::{self, Action};
pub use crate::tui::msg::{Ending, Msg};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Thinned points kept per chart series, and recent points at full resolution.
const SERIES_CAP: usize = 2048;
const RECENT_CAP: usize = 4096;
/// Event-log lines kept.
const LOG_CAP: usize = 500;
/// Held-out evaluations kept (for the status line after a resume).
const HELD_OUT_CAP: usize = 64;

/// What the run is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Started, no metrics yet.
    WarmingUp,
    /// Stepping.
    Training,
    /// Paused by the user.
    Paused,
    /// A checkpoint was asked for and is being written.
    Checkpointing,
    /// Stopping with a checkpoint (quit or a signal).
    Stopping,
    /// All steps done.
    Done,
    /// The trainer failed (the message).
    Failed(String),
}

impl RunState {
    /// How the status pane names it.
    pub fn label(&self) -> &str {
        match self {
            RunState::WarmingUp => "warming up",
            RunState::Training => "training",
            RunState::Paused => "paused",
            RunState::Checkpointing => "checkpointing",
            RunState::Stopping => "stopping (checkpointing)",
            RunState::Done => "done",
            RunState::Failed(_) => "failed",
        }
    }

    /// Whether the trainer is still running.
    pub fn live(&self) -> bool {
        !matches!(self, RunState::Done | RunState::Failed(_))
    }
}

/// The panes, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// Run status.
    Status,
    /// L0 chart.
    L0,
    /// MSE / explained variance chart.
    Loss,
    /// θ histogram.
    Theta,
    /// Dead features.
    Dead,
    /// Hyperparameters.
    Hyper,
    /// Event log.
    Log,
}

const PANES: [Pane; 7] = [
    Pane::Status,
    Pane::L0,
    Pane::Loss,
    Pane::Theta,
    Pane::Dead,
    Pane::Hyper,
    Pane::Log,
];

/// A health warning the screen shows until it is cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveWarning {
    /// The step it was raised at.
    pub step: u64,
    /// What was seen.
    pub message: String,
    /// What to change.
    pub hint: String,
}

/// An overlay on the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// The key help.
    Help,
    /// The active health warnings with their hints.
    Warnings,
    /// "Stop and checkpoint, or cancel?"
    ConfirmQuit,
    /// One event of the log, whole (an index into the log).
    Event(usize),
}

/// The loss pane's charts, in the order `m` steps through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossView {
    /// Training and held-out FVU.
    Fvu,
    /// Normalised MSE.
    Mse,
    /// ΔLM loss of the model in the loop.
    Lm,
}

/// A line of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The step it refers to.
    pub step: u64,
    /// What happened.
    pub text: String,
    /// A warning or error.
    pub alarm: bool,
}

/// Everything the training screen shows.
#[derive(Debug)]
pub struct TrainApp {
    /// The run directory's name.
    pub run_name: String,
    /// Health warnings raised and not yet cleared: the step, message and hint of each.
    pub warnings: std::collections::BTreeMap<crate::schema::health::Kind, ActiveWarning>,
    /// The device label.
    pub device: String,
    /// The live configuration (edits are checked against it and replace it).
    pub config: Config,
    /// Run state.
    pub state: RunState,
    /// Steps done.
    pub step: u64,
    /// Steps in all.
    pub total_steps: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Last throughput report.
    pub tokens_per_s: f64,
    /// Last checkpoint (step, directory).
    pub last_checkpoint: Option<(u64, PathBuf)>,
    /// L0 per report.
    pub l0: Series,
    /// Normalised MSE (Σ‖x − x̂‖² / Σ‖x‖²) per report.
    pub mse: Series,
    /// Explained variance per report.
    pub ev: Series,
    /// Held-out FVU per held-out evaluation.
    pub held_fvu: Series,
    /// Matryoshka: the last report's FVU of each inner width's prefix, narrowest first.
    pub matryoshka_fvu: Vec<crate::schema::record::WidthFvu>,
    /// The recent held-out evaluations with their steps, newest last (a resume drops those
    /// of the steps trained again, and the one before is the newest again).
    held_outs: VecDeque<(u64, crate::eval::Evaluation)>,
    /// The newest dead count, with its window.
    pub inactive: Option<crate::metrics::stats::Inactive>,
    /// Dead features per report.
    pub dead: Series,
    /// BatchTopK's global threshold over steps.
    pub global_threshold: Series,
    /// ΔLM loss of each `lm-eval` (the model in the loop), by step.
    pub delta_lm: Series,
    /// CE loss recovered of each `lm-eval`, by step.
    pub ce_recovered: Series,
    /// The newest `lm-eval`.
    pub last_lm: Option<crate::schema::record::LmEvalRecord>,
    /// Latest log10 θ histogram.
    pub theta_hist: Option<Histogram>,
    /// Latest log10 firing-frequency histogram.
    pub firing_hist: Option<Histogram>,
    /// d_sae (for the dead fraction).
    pub d_sae: usize,
    /// Event log, newest last.
    pub log: VecDeque<LogLine>,
    /// Focused pane.
    pub focus: Pane,
    /// Selected tunable (index into [`TUNABLES`]).
    pub selected: usize,
    /// The value being typed, if editing.
    pub editing: Option<String>,
    /// Show only the last `window` steps (None: the whole run).
    pub window: Option<u64>,
    /// Log scale for MSE.
    pub log_scale: bool,
    /// The loss chart shown first (FVU, nMSE, ΔLM: as many as fit, from this one).
    pub loss_view: LossView,
    /// The events pane's selected line (an index into `log`); `None` follows the newest.
    pub log_cursor: Option<usize>,
    /// Overlay shown.
    pub overlay: Option<Overlay>,
    /// Leave the UI loop.
    pub quit: bool,
    /// Leave once the trainer has finished (after a stop).
    quit_when_finished: bool,
    /// Attached to a run in another process (`jumpscope watch`): quitting leaves the run
    /// alone, tweaks are written to its config.toml, pause and checkpoint are not available.
    pub watching: bool,
    /// `watch`: when metrics.jsonl was last written.
    pub log_touched: Option<std::time::SystemTime>,
    /// The data epoch (0 until the store is first exhausted).
    pub epoch: u64,
    /// Whether the event log has shown a data epoch (only the first gets a line).
    epoch_noted: bool,
}

impl TrainApp {
    /// The hyperparameters the keys step for this run's architecture.
    pub fn tunables(&self) -> &'static [Tunable] {
        tunables(self.config.sae.architecture)
    }

    /// A screen for a run about to start at `step` of `total_steps`.
    pub fn new(
        config: Config,
        run_name: String,
        device: String,
        step: u64,
        total_steps: u64,
    ) -> Self {
        Self {
            run_name,
            device,
            config,
            state: RunState::WarmingUp,
            step,
            total_steps,
            tokens: 0,
            tokens_per_s: 0.0,
            last_checkpoint: None,
            l0: Series::new(SERIES_CAP, RECENT_CAP),
            mse: Series::new(SERIES_CAP, RECENT_CAP),
            ev: Series::new(SERIES_CAP, RECENT_CAP),
            held_fvu: Series::new(SERIES_CAP, RECENT_CAP),
            matryoshka_fvu: Vec::new(),
            held_outs: VecDeque::new(),
            inactive: None,
            dead: Series::new(SERIES_CAP, RECENT_CAP),
            global_threshold: Series::new(SERIES_CAP, RECENT_CAP),
            delta_lm: Series::new(SERIES_CAP, RECENT_CAP),
            ce_recovered: Series::new(SERIES_CAP, RECENT_CAP),
            last_lm: None,
            theta_hist: None,
            firing_hist: None,
            d_sae: 0,
            log: VecDeque::new(),
            focus: Pane::Hyper,
            selected: 0,
            editing: None,
            window: None,
            log_scale: false,
            loss_view: LossView::Fvu,
            log_cursor: None,
            overlay: None,
            quit: false,
            quit_when_finished: false,
            watching: false,
            log_touched: None,
            epoch: 0,
            epoch_noted: false,
            warnings: Default::default(),
        }
    }

    /// The screen for `jumpscope watch`: a run in another process, followed through its
    /// metrics.jsonl and steered through its config.toml.
    pub fn watching(mut self) -> Self {
        self.watching = true;
        self
    }

    /// Add a line to the event log at the current step.
    pub fn notice(&mut self, text: impl Into<String>, alarm: bool) {
        self.note(text, alarm);
    }

    /// The last training FVU (1 − EV).
    pub fn fvu(&self) -> Option<f64> {
        self.ev.last().map(|ev| 1.0 - ev)
    }

    /// The newest held-out evaluation and its step (`None`: none yet, or no held-out rows).
    pub fn held_out(&self) -> Option<&(u64, crate::eval::Evaluation)> {
        self.held_outs.back()
    }

    /// Seconds left at the last throughput, if known.
    pub fn eta_s(&self) -> Option<f64> {
        (self.tokens_per_s > 0.0 && self.state.live()).then(|| {
            let left = self.total_steps.saturating_sub(self.step) as f64;
            left * self.config.data.batch_size as f64 / self.tokens_per_s
        })
    }

    fn note(&mut self, text: impl Into<String>, alarm: bool) {
        self.note_at(self.step, text, alarm);
    }

    fn note_at(&mut self, step: u64, text: impl Into<String>, alarm: bool) {
        if self.log.len() == LOG_CAP {
            self.log.pop_front();
            self.log_cursor = self.log_cursor.map(|c| c.saturating_sub(1));
        }
        // the step column never goes backwards: a record about an earlier step (an lm-eval
        // that finished later) is listed when it arrived, and says which step it is about
        let last = self.log.back().map_or(0, |l| l.step);
        let (step, text) = if step < last {
            (last, format!("{} (of step {step})", text.into()))
        } else {
            (step, text.into())
        };
        self.log.push_back(LogLine { step, text, alarm });
    }

    /// Apply one message; returns the controls to send to the trainer.
    pub fn update(&mut self, msg: Msg) -> Vec<Control> {
        match msg {
            Msg::Job(JobEvent::Member(_, ev)) => {
                self.on_train(ev);
                Vec::new()
            }
            Msg::Key(k) => self.on_key(k),
            Msg::Finished(r) => {
                match r {
                    Ending::Done => self.state = RunState::Done,
                    Ending::Failed(e) => {
                        self.note(format!("failed: {e}"), true);
                        self.state = RunState::Failed(e);
                    }
                }
                if self.quit_when_finished {
                    self.quit = true;
                }
                Vec::new()
            }
            Msg::Signal => self.stop(),
            Msg::ConfigFile(_, edit) => self.on_config_file(edit),
            Msg::Job(JobEvent::Sweep(_)) => Vec::new(),
            Msg::LogTouched(t) => {
                self.log_touched = Some(t);
                Vec::new()
            }
        }
    }

    fn stop(&mut self) -> Vec<Control> {
        self.overlay = None;
        // a viewer leaves; the run in the other process goes on
        if !self.state.live() || self.watching {
            self.quit = true;
            return Vec::new();
        }
        self.state = RunState::Stopping;
        self.quit_when_finished = true;
        self.note("stopping: writing a checkpoint", false);
        vec![Control::Stop]
    }

    fn on_train(&mut self, ev: TrainEvent) {
        match ev {
            TrainEvent::Record(rec) => self.on_record(rec),
            TrainEvent::Warning(w) => self.note(w, true),
            TrainEvent::Info(i) => self.note(i, false),
        }
    }

    fn on_record(&mut self, rec: Record) {
        let step = rec.step();
        let line = rec.summary();
        match &rec {
            Record::Start { d_sae, .. } | Record::Resume { d_sae, .. } => {
                if matches!(rec, Record::Resume { .. }) {
                    self.rewind(step);
                }
                self.step = step;
                self.tokens = rec.tokens();
                self.d_sae = *d_sae;
                // a new training process starts its health rules afresh (as `doctor` reads it)
                self.warnings.clear();
                // `watch` sees a stopped run resumed by a later process
                if !self.state.live() {
                    self.state = RunState::WarmingUp;
                }
            }
            Record::Metrics(m) => {
                self.step = m.step;
                self.tokens = m.tokens;
                self.tokens_per_s = m.tokens_per_s;
                self.epoch = m.epoch;
                let x = m.step as f64;
                self.l0.push(x, m.l0);
                self.mse.push(x, m.mse_norm);
                self.ev.push(x, m.explained_variance);
                self.dead.push(x, m.dead as f64);
                self.inactive = Some(m.inactive());
                if let Some(t) = m.global_threshold {
                    self.global_threshold.push(x, t);
                }
                self.theta_hist = Some(m.theta_hist.clone());
                self.firing_hist = Some(m.firing_hist.clone());
                self.matryoshka_fvu = m.matryoshka_fvu.clone();
                if self.state == RunState::WarmingUp {
                    self.state = RunState::Training;
                }
            }
            Record::Checkpoint { path, .. } => {
                self.last_checkpoint = Some((step, path.clone()));
                if self.state == RunState::Checkpointing {
                    self.state = RunState::Training;
                }
            }
            Record::Epoch { epoch, .. } => {
                if step > self.step {
                    // the status line's step, tokens and tok/s come from one record
                    (self.step, self.tokens) = (step, rec.tokens());
                }
                self.epoch = *epoch;
                // a small store turns over every few steps: the first epoch gets a line, the
                // rest are counted in the status pane
                if self.epoch_noted {
                    return;
                }
                self.epoch_noted = true;
            }
            Record::Pause { .. } | Record::ResumeSteps { .. } => {
                if self.state.live() && self.state != RunState::Stopping {
                    self.state = if matches!(rec, Record::Pause { .. }) {
                        RunState::Paused
                    } else {
                        RunState::Training
                    };
                }
            }
            Record::Stop { .. } | Record::Finish { .. } => self.state = RunState::Done,
            Record::Warning {
                kind,
                message,
                hint,
                ..
            } => {
                let w = ActiveWarning {
                    step,
                    message: message.clone(),
                    hint: hint.clone(),
                };
                self.warnings.insert(*kind, w);
            }
            Record::WarningCleared { kind, .. } => {
                self.warnings.remove(kind);
            }
            Record::LmEval(r) => {
                let x = r.step as f64;
                self.delta_lm.push(x, r.scores.delta_lm_loss);
                self.ce_recovered.push(x, r.scores.ce_recovered);
                self.last_lm = Some((**r).clone());
            }
            Record::Eval { eval, .. } => {
                self.held_fvu.push(step as f64, eval.fvu);
                if self.held_outs.len() == HELD_OUT_CAP {
                    self.held_outs.pop_front();
                }
                self.held_outs.push_back((step, eval.clone()));
            }
            Record::Hyper { .. }
            | Record::NonfiniteLoss { .. }
            | Record::LmEvalSkipped { .. }
            | Record::LmEvalFailed { .. } => {}
        }
        if let Some(text) = line {
            self.note_at(step, text, rec.is_alarm());
        }
    }

    /// A resume at `step` trains the steps after it again: their points leave the charts and
    /// their events the log (they stay in metrics.jsonl), so that nothing goes backwards.
    fn rewind(&mut self, step: u64) {
        let x = step as f64;
        for s in [
            &mut self.l0,
            &mut self.mse,
            &mut self.ev,
            &mut self.held_fvu,
            &mut self.dead,
            &mut self.global_threshold,
        ] {
            s.truncate_after(x);
        }
        // a held-out evaluation of a step up to the resume stays true
        self.held_outs.retain(|(s, _)| *s <= step);
        let before = self.log.len();
        self.log.retain(|l| l.step <= step);
        let dropped = before - self.log.len();
        self.log_cursor = None;
        if dropped > 0 {
            self.note_at(
                step,
                format!(
                    "{dropped} events after step {step} are of steps trained again (metrics.jsonl keeps them)"
                ),
                false,
            );
        }
    }

    /// Read a run's metrics.jsonl so far into the screen (a resumed run's history), as `watch`
    /// does: charts, events, the last checkpoint. A log that cannot be read is said in the log.
    pub fn replay(&mut self, path: &std::path::Path) {
        match crate::schema::record::read_log(path) {
            Ok(records) => {
                for r in records {
                    self.on_record(r);
                }
            }
            Err(e) => self.note(format!("history not shown: {e}"), true),
        }
    }

    /// A save of config.toml: apply the hyperparameters that changed, or refuse the whole edit
    /// (syntax, unknown key, bad value, or a structural key) and keep the old values.
    fn on_config_file(&mut self, edit: ConfigEdit) -> Vec<Control> {
        if !self.state.live() {
            return Vec::new();
        }
        let verdict = live::judge_file(&self.config, edit);
        self.take(verdict)
    }

    /// Check `key = value` as a config edit would be and, if valid, send the new hyperparameters.
    fn apply(&mut self, t: Tunable, value: &str) -> Vec<Control> {
        if !self.state.live() {
            self.note("the run has ended: nothing to change", true);
            return Vec::new();
        }
        let verdict = live::judge_key(&self.config, &t.key.path(), value);
        self.take(verdict)
    }

    /// Hold the configuration an accepted edit makes and send the edit on, or log the refusal.
    fn take(&mut self, verdict: Verdict) -> Vec<Control> {
        match verdict {
            Verdict::Unchanged => Vec::new(),
            Verdict::Apply(config, edit) => {
                self.config = *config;
                // `watch`: the training process reads the same file and applies it itself
                if self.watching && edit.source == EditSource::File {
                    return Vec::new();
                }
                vec![Control::SetHyper(edit)]
            }
            Verdict::Refused(reason) => {
                self.note(reason, true);
                Vec::new()
            }
        }
    }
}
