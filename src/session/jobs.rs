//! The two jobs: a training run ([`Trainer`], one member) and a sweep ([`Sweep`]), each with its
//! screen, its headless printer and its closing line.

use super::{Closing, Job, Output, Printer, Watched};
use crate::schema::record::Record;
use crate::schema::sweep::SweepRecord;
use crate::sweep::driver::{Sweep, SweepError, SweepOutcome};
use crate::train::control::{JobControl, JobEvent, TrainEvent};
use crate::train::trainer::{Outcome, TrainError, Trainer};
use crate::tui::app::TrainApp;
use crate::tui::drive::Screen;
use crate::tui::sweep::SweepApp;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Receiver;

/// The last part of a path, for a screen's title.
fn short_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

impl Job for Trainer {
    type Outcome = Outcome;
    type Error = TrainError;
    type Printer = RunPrinter;
    const THREAD: &'static str = "jumpscope-train";
    const NAME: &'static str = "the trainer";

    fn dir(&self) -> &Path {
        self.run_dir()
    }

    fn watched(&self) -> Vec<Watched> {
        vec![Watched {
            member: 0,
            name: None,
            file: self.config_file(),
            config: self.config().clone(),
        }]
    }

    fn run(
        &mut self,
        controls: &Receiver<JobControl>,
        sink: &mut dyn FnMut(JobEvent),
    ) -> Result<Outcome, TrainError> {
        Trainer::run(self, controls, &mut |ev| sink(JobEvent::Member(0, ev)))
    }

    fn screen(&self) -> Box<dyn Screen> {
        let cfg = self.config().clone();
        let (device, total) = (cfg.device.label(), cfg.total_steps());
        let mut app = TrainApp::new(cfg, short_name(self.run_dir()), device, self.step(), total);
        // resumed: the charts start with the run's history, as `watch` shows it
        if self.step() > 0 {
            app.replay(&self.run_dir().join("metrics.jsonl"));
        }
        Box::new(app)
    }

    fn printer(&self, progress: bool, out: &Output) -> RunPrinter {
        RunPrinter::new(self, progress, out)
    }

    fn closing(&self, outcome: &Outcome) -> Closing {
        match outcome {
            Outcome::Finished {
                sae_dir,
                checkpoint,
            } => Closing {
                code: 0,
                message: format!(
                    "done: SAE in {} (SAELens layout), checkpoint {}{}",
                    sae_dir.display(),
                    checkpoint.display(),
                    numbers(self)
                ),
            },
            Outcome::Stopped { checkpoint, step } => Closing {
                code: 130,
                message: format!(
                    "stopped at step {step}: checkpoint {}; continue with `jumpscope train --resume {}`{}",
                    checkpoint.display(),
                    self.run_dir().display(),
                    numbers(self)
                ),
            },
        }
    }
}

/// The run's final numbers, as `; final L0 …, training FVU …, held-out FVU …` (what it has).
fn numbers(t: &Trainer) -> String {
    match t.last_numbers().line() {
        l if l.is_empty() => l,
        l => format!("; {l}"),
    }
}

/// A run headless: a progress bar (step, tokens/s, L0, EV, dead, epoch, ETA) on a terminal, else
/// one line per report; every other record of the run log as a line `step N: …`; only the first
/// data epoch gets a line (a small store turns over often).
pub struct RunPrinter {
    bar: Option<ProgressBar>,
    total: u64,
    epoch_said: bool,
}

impl RunPrinter {
    fn new(t: &Trainer, progress: bool, out: &Output) -> Self {
        let total = t.config().total_steps();
        let bar = progress.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} steps  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(t.step());
            bar
        });
        let stores: Vec<String> = t
            .config()
            .data
            .stores
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let opening = format!(
            "training {} -> {} ({total} steps, device {})",
            stores.join(", "),
            t.run_dir().display(),
            t.config().device
        );
        match &bar {
            Some(b) => b.println(opening),
            None => out.err(&opening),
        }
        Self {
            bar,
            total,
            epoch_said: false,
        }
    }

    fn say(&self, line: String, out: &Output) {
        match &self.bar {
            Some(b) => b.println(line),
            None => out.err(&line),
        }
    }
}

impl Printer<Trainer> for RunPrinter {
    fn event(&mut self, ev: JobEvent, out: &Output) {
        let JobEvent::Member(_, ev) = ev else { return };
        match ev {
            TrainEvent::Record(Record::Metrics(m)) => {
                let epoch = if m.epoch > 0 {
                    format!("  epoch {}", m.epoch)
                } else {
                    String::new()
                };
                let msg = format!(
                    "{:.0} tok/s  L0 {:.1}  EV {:.3}  dead {}{epoch}",
                    m.tokens_per_s,
                    m.l0,
                    m.explained_variance,
                    m.inactive().short()
                );
                match &self.bar {
                    Some(b) => {
                        b.set_position(m.step);
                        b.set_message(msg);
                    }
                    None => out.err(&format!(
                        "step {}/{}  loss {:.5}  {msg}",
                        m.step, self.total, m.loss
                    )),
                }
            }
            TrainEvent::Record(Record::Epoch { .. }) if self.epoch_said => {}
            TrainEvent::Record(rec) => {
                self.epoch_said |= matches!(rec, Record::Epoch { .. });
                // the end of the run is said once, by its closing line
                if !matches!(rec, Record::Stop { .. } | Record::Finish { .. })
                    && let Some(line) = rec.summary()
                {
                    self.say(format!("step {}: {line}", rec.step()), out);
                }
            }
            TrainEvent::Warning(w) => self.say(format!("warning: {w}"), out),
            TrainEvent::Info(i) => self.say(i, out),
        }
    }

    fn close(&mut self, _: &Trainer, _: &Output) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Job for Sweep {
    type Outcome = SweepOutcome;
    type Error = SweepError;
    type Printer = SweepPrinter;
    const THREAD: &'static str = "jumpscope-sweep";
    const NAME: &'static str = "the sweep";

    fn dir(&self) -> &Path {
        Sweep::dir(self)
    }

    fn watched(&self) -> Vec<Watched> {
        self.members()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let t = m.trainer.as_ref()?;
                Some(Watched {
                    member: i,
                    name: Some(m.name.clone()),
                    file: t.config_file(),
                    config: t.config().clone(),
                })
            })
            .collect()
    }

    fn run(
        &mut self,
        controls: &Receiver<JobControl>,
        sink: &mut dyn FnMut(JobEvent),
    ) -> Result<SweepOutcome, SweepError> {
        Sweep::run(self, controls, sink)
    }

    fn screen(&self) -> Box<dyn Screen> {
        let members = self
            .members()
            .iter()
            .map(|m| {
                let mut app = TrainApp::new(
                    m.config.clone(),
                    m.name.clone(),
                    m.config.device.label(),
                    m.step,
                    m.config.total_steps(),
                );
                if m.step > 0 {
                    app.replay(&self.dir().join(&m.name).join("metrics.jsonl"));
                }
                (m.name.clone(), m.varied.clone(), app)
            })
            .collect();
        let mut app = SweepApp::new(short_name(self.dir()), members);
        for (i, m) in self.members().iter().enumerate() {
            app.set_state(i, m.state);
        }
        Box::new(app)
    }

    fn printer(&self, _progress: bool, out: &Output) -> SweepPrinter {
        let names: Vec<String> = self.members().iter().map(|m| m.name.clone()).collect();
        out.err(&format!(
            "sweep of {} members -> {} ({})",
            names.len(),
            self.dir().display(),
            names.join(", ")
        ));
        SweepPrinter {
            width: names.iter().map(String::len).max().unwrap_or(4),
            names,
            last: BTreeMap::new(),
            epoch_said: false,
        }
    }

    fn closing(&self, outcome: &SweepOutcome) -> Closing {
        match outcome {
            SweepOutcome::Done => Closing {
                code: 0,
                message: format!(
                    "done: {} rows read once for {} members; each member's SAE in {}/<member>/sae",
                    self.rows_read(),
                    self.members().len(),
                    self.dir().display()
                ),
            },
            SweepOutcome::Stopped => Closing {
                code: 130,
                message: format!(
                    "stopped at step {}: every member checkpointed; continue with `jumpscope sweep --resume {}`",
                    self.step(),
                    self.dir().display()
                ),
            },
        }
    }
}

/// What the table at the end shows of a member: its last report and held-out evaluation.
#[derive(Default, Clone)]
struct Last {
    step: u64,
    l0: f64,
    explained_variance: f64,
    dead: String,
    heldout_fvu: Option<f64>,
}

/// A sweep headless: one line per member report and per member record worth telling, the
/// sweep's own records, and a member table at the end (on `out`).
pub struct SweepPrinter {
    names: Vec<String>,
    width: usize,
    last: BTreeMap<usize, Last>,
    epoch_said: bool,
}

impl Printer<Sweep> for SweepPrinter {
    fn event(&mut self, ev: JobEvent, out: &Output) {
        let w = self.width;
        let name = |i: usize| self.names.get(i).cloned().unwrap_or_default();
        match ev {
            JobEvent::Member(i, TrainEvent::Record(Record::Metrics(m))) => {
                let l = self.last.entry(i).or_default();
                (l.step, l.l0, l.explained_variance, l.dead) =
                    (m.step, m.l0, m.explained_variance, m.inactive().short());
                out.err(&format!(
                    "{:<w$}  step {:>6}  loss {:.5}  L0 {:.1}  EV {:.3}  dead {}  {:.0} tok/s",
                    name(i),
                    m.step,
                    m.loss,
                    m.l0,
                    m.explained_variance,
                    m.inactive().short(),
                    m.tokens_per_s
                ));
            }
            JobEvent::Member(i, TrainEvent::Record(Record::Eval { eval, .. })) => {
                self.last.entry(i).or_default().heldout_fvu = Some(eval.fvu);
            }
            // the stream's epochs are every member's: said once, for the first epoch
            JobEvent::Member(_, TrainEvent::Record(Record::Epoch { .. })) if self.epoch_said => {}
            JobEvent::Member(i, TrainEvent::Record(rec)) => {
                self.epoch_said |= matches!(rec, Record::Epoch { .. });
                // checkpoints are said once per sweep checkpoint
                if !matches!(rec, Record::Checkpoint { .. } | Record::Stop { .. })
                    && let Some(line) = rec.summary()
                {
                    out.err(&format!("{:<w$}  step {}: {line}", name(i), rec.step()));
                }
            }
            JobEvent::Member(i, TrainEvent::Warning(s)) => {
                out.err(&format!("{:<w$}  warning: {s}", name(i)))
            }
            JobEvent::Member(i, TrainEvent::Info(s)) => out.err(&format!("{:<w$}  {s}", name(i))),
            JobEvent::Sweep(rec) => {
                if let Some(line) = sweep_summary(&rec) {
                    out.err(&line);
                }
            }
        }
    }

    fn close(&mut self, sweep: &Sweep, out: &Output) {
        let w = self.width;
        out.out(&format!(
            "{:<w$}  {:>9}  {:>8}  {:>7}  {:>6}  {:>11}  {:>11}",
            "member", "state", "step", "L0", "EV", "heldout FVU", "dead"
        ));
        for (i, m) in sweep.members().iter().enumerate() {
            let (step, l0, ev, dead) = match self.last.get(&i) {
                Some(l) if l.l0.is_finite() => (
                    m.step.max(l.step).to_string(),
                    format!("{:.2}", l.l0),
                    format!("{:.3}", l.explained_variance),
                    l.dead.clone(),
                ),
                _ => (m.step.to_string(), "-".into(), "-".into(), "-".into()),
            };
            let fvu = self
                .last
                .get(&i)
                .and_then(|l| l.heldout_fvu)
                .map_or("-".into(), |f| format!("{f:.4}"));
            out.out(&format!(
                "{:<w$}  {:>9}  {step:>8}  {l0:>7}  {ev:>6}  {fvu:>11}  {dead:>11}",
                m.name,
                m.state.name(),
            ));
            if let Some(r) = &m.reason {
                out.out(&format!("{:<w$}  failed: {r}", ""));
            }
        }
    }
}

/// One line for a sweep record worth telling.
fn sweep_summary(rec: &SweepRecord) -> Option<String> {
    match rec {
        SweepRecord::Start {
            d_in,
            scale,
            devices,
            ..
        } => Some(format!(
            "started: d_in {d_in}, input scale C = {scale:.4}, devices {}",
            devices.join(", ")
        )),
        SweepRecord::Resume { step, members } => {
            Some(format!("resumed at step {step}: {}", members.join(", ")))
        }
        SweepRecord::Member {
            step,
            name,
            state,
            reason,
            member_step,
        } => Some(format!(
            "step {step}: {name} {} at its step {member_step}{}",
            state.name(),
            reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
        )),
        SweepRecord::Checkpoint { step, members, .. } => Some(format!(
            "step {step}: checkpoint of {} members",
            members.len()
        )),
        SweepRecord::Finish { .. } | SweepRecord::Stop { .. } => None,
    }
}
