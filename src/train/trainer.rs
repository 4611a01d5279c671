//! The training loop: owns the parameters, the optimizer, the data reader and the run directory,
//! takes [`Control`]s between steps and reports [`TrainEvent`]s to a sink. It knows nothing of
//! terminals: headless mode, the TUI and tests pass different sinks. Every record goes through
//! [`Trainer::emit`], which appends it to metrics.jsonl and hands it to the sink.
//!
//! Statistics stay on the device between reports: each step only queues its `[5]` loss-parts
//! tensor; every `log_every` steps (and before each checkpoint) the queue is read back in one
//! transfer, which is also where a non-finite loss is caught and named by its step.
//! Starting a run is in `setup`, the report in `report`, checkpoints in `checkpoint`.

use crate::config::Config;
use crate::data::batches::{Position, Rows};
use crate::data::prefetch::{Prefetched, Prefetcher};
use crate::eval::Evaluator;
use crate::health::{Event, Monitor};
use crate::live::{ConfigFile, HyperEdit};
use crate::metrics::log::JsonlLog;
use crate::sae::io;
use crate::sae::kernels::Kernels;
use crate::sae::loss::LossParts;
use crate::sae::model::{HostParams, InferenceSae, Sae, download, upload, upload_owned};
use crate::sae::sparse::switch_density;
use crate::schema::record::Record;
use crate::train::adam::AdamState;
use crate::train::checkpoint::{self, CheckpointState, TrainTensors};
use crate::train::control::{Control, Controls, Next, Steer, TrainEvent, between_steps};
use crate::train::export;
use crate::train::firing::Firing;
use crate::train::report::LossQueue;
use crate::train::step::{StepPlan, train_step};
use burn::tensor::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use crate::train::error::TrainError;
use crate::train::error::io_err;

/// How a run ended without error.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// All steps done; the SAE was exported.
    Finished {
        /// The exported SAELens directory.
        sae_dir: PathBuf,
        /// The final checkpoint.
        checkpoint: PathBuf,
    },
    /// Stopped on request; a checkpoint was written.
    Stopped {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// Steps completed.
        step: u64,
    },
}

/// A training run in progress: what it holds ([`Resources`]) and where it stands ([`State`]).
pub struct Trainer {
    pub(super) res: Resources,
    pub(super) st: State,
}

/// Where a run's batches come from.
pub enum Feed {
    /// Its own reader (a run alone).
    Own(Prefetcher),
    /// A sweep hands them over ([`Trainer::step_on`]); the time spent waiting for them since the
    /// last report.
    Fed(std::time::Duration),
}

/// What a run holds while it trains: its configuration, files, device and data. Set up once;
/// only the configuration changes (by live edits).
pub struct Resources {
    pub(super) cfg: Config,
    pub(super) run_dir: PathBuf,
    /// The run's config.toml, rewritten as the configuration in force after each edit.
    pub(super) config_file: ConfigFile,
    pub(super) device: Device,
    /// The elementwise kernels steps use (chosen once, from the device).
    pub(super) kernels: Kernels,
    /// Where batches come from.
    pub(super) feed: Feed,
    /// Held-out rows (raw, `[eval_tokens, d_in]`), never trained on (shared by a sweep's members).
    pub(super) eval_rows: Arc<Vec<f32>>,
    /// A transcoder's targets of the held-out rows (raw).
    pub(super) eval_targets: Option<Arc<Vec<f32>>>,
    /// The store's file attributes.
    pub(super) store_attributes: std::collections::BTreeMap<String, String>,
    /// Rows of the store training reads: no frequency finer than one in these can be measured.
    pub(super) train_tokens: u64,
    pub(super) log: JsonlLog,
    /// The way to the model companion (`[lm_eval]`), when the model is in the loop.
    pub(super) lm: Option<crate::lmeval::LmPort>,
    /// This process's lock on the run directory (one writer), held until the run is dropped.
    pub(super) lock: crate::lock::DirLock,
}

/// The newest numbers a run reported, said when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LastNumbers {
    /// L0 of the last report.
    pub l0: Option<f64>,
    /// FVU (1 − EV) of the last report's training batches.
    pub train_fvu: Option<f64>,
    /// FVU of the last held-out evaluation.
    pub held_out_fvu: Option<f64>,
}

impl LastNumbers {
    /// `final L0 …, training FVU …, held-out FVU …` (what is known), or nothing.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.l0 {
            parts.push(format!("L0 {v:.1}"));
        }
        if let Some(v) = self.train_fvu {
            parts.push(format!("training FVU {v:.4}"));
        }
        if let Some(v) = self.held_out_fvu {
            parts.push(format!("held-out FVU {v:.4}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("final {}", parts.join(", "))
        }
    }
}

/// Where a run stands: its parameters and optimizer, its counters and report window, its
/// health; what a checkpoint and a report record.
pub struct State {
    pub(super) sae: Sae,
    pub(super) adam: AdamState,
    /// Reading position after the last batch trained on (what a checkpoint records).
    pub(super) position: Position,
    pub(super) scale: f64,
    /// A transcoder's target scale C_y.
    pub(super) target_scale: Option<f64>,
    pub(super) step: u64,
    pub(super) tokens_seen: u64,
    pub(super) skipped_rows: u64,
    pub(super) firing: Firing,
    /// Loss parts not read back yet.
    pub(super) losses: LossQueue,
    /// Start of the current report window: when, and tokens seen then.
    pub(super) window: (Instant, u64),
    /// Steps of the current report window that ran sparse.
    pub(super) sparse_steps: u64,
    pub(super) last_checkpoint: Option<PathBuf>,
    /// The `start` or `resume` record, emitted when the loop starts.
    pub(super) opening: Option<Record>,
    /// Lines for the sink when the loop starts (what setup cleaned up).
    pub(super) notes: Vec<String>,
    /// The training-health rules and their memory of this run.
    pub(super) health: Monitor,
    /// log10 θ (raw units) and the step of the previous report, for θ's rate of change.
    pub(super) last_theta: Option<(u64, Vec<f64>)>,
    /// When the run (or resume) started, for the records' elapsed time.
    pub(super) started: Instant,
    /// The step and tokens of the evaluation sent to the model companion and not back yet.
    pub(super) lm_pending: Option<(u64, u64)>,
    /// The last step sent for evaluation.
    pub(super) lm_last: Option<u64>,
    /// A checkpoint pruning must keep (a sweep's: the one its last record names).
    pub(super) protected: Option<PathBuf>,
    /// Edits a resume was asked for (the stopped run's config.toml, `--set`), applied and logged
    /// when the run starts.
    pub(super) resume_edits: Vec<crate::live::HyperEdit>,
    /// The newest numbers reported, for the line said when the run ends.
    pub(super) last: LastNumbers,
}

/// One batch a sweep hands to each of its members: already on the member's device.
pub struct Fed {
    /// The rows, `[rows, d_in]`, scaled.
    pub x: Tensor<2>,
    /// A transcoder's targets, `[rows, d_out]`, scaled.
    pub y: Option<Tensor<2>>,
    /// Rows in `x`.
    pub rows: usize,
    /// Reading position after this batch (what a checkpoint records).
    pub position: Position,
    /// Data epochs that began while this batch was read.
    pub new_epochs: u64,
    /// Rows dropped for NaN/Inf while filling it.
    pub skipped: usize,
}

/// The sink the loop reports to.
type Sink<'a> = &'a mut dyn FnMut(TrainEvent);

impl Trainer {
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.res.cfg
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.res.run_dir
    }

    /// The run's config.toml, as this process writes it (watch it through this handle, so the
    /// trainer's own rewrites are not taken for edits).
    pub fn config_file(&self) -> ConfigFile {
        self.res.config_file.clone()
    }

    /// The newest L0 and training FVU reported, and the newest held-out FVU.
    pub fn last_numbers(&self) -> LastNumbers {
        self.st.last
    }

    /// Steps completed.
    pub fn step(&self) -> u64 {
        self.st.step
    }

    /// Input scale C.
    pub fn scale(&self) -> f64 {
        self.st.scale
    }

    /// The input's scale and the output's (a transcoder's target's; the input's for an SAE).
    pub fn scales(&self) -> io::Scales {
        io::Scales::of(self.st.scale, self.st.target_scale)
    }

    /// The current parameters on the host (training form).
    pub fn host_params(&self) -> HostParams {
        self.st.sae.to_host()
    }

    /// Append `rec` to metrics.jsonl and hand it to the sink.
    pub(super) fn emit(&mut self, rec: Record, sink: Sink<'_>) -> Result<(), TrainError> {
        match &rec {
            Record::Metrics(m) => {
                self.st.last.l0 = Some(m.l0);
                self.st.last.train_fvu = Some(1.0 - m.explained_variance);
            }
            Record::Eval { eval, .. } => self.st.last.held_out_fvu = Some(eval.fvu),
            _ => {}
        }
        // a log or a checkpoint written into a directory that was deleted is lost unseen
        if !self.res.lock.in_place() {
            return Err(TrainError::RunDirGone(self.res.run_dir.clone()));
        }
        self.res.log.append(&rec).map_err(|source| TrainError::Io {
            path: self.res.log.path().to_path_buf(),
            source,
        })?;
        sink(TrainEvent::Record(rec));
        Ok(())
    }

    pub(super) fn dead_steps(&self) -> f64 {
        (self.res.cfg.hyper.dead_window_tokens as f64 / self.res.cfg.data.batch_size as f64).ceil()
    }

    /// Run until the configured number of steps, or until told to stop.
    pub fn run(&mut self, controls: &impl Controls, sink: Sink<'_>) -> Result<Outcome, TrainError> {
        for note in std::mem::take(&mut self.st.notes) {
            sink(TrainEvent::Info(note));
        }
        if let Some(rec) = self.st.opening.take() {
            self.emit(rec, sink)?;
        }
        for edit in std::mem::take(&mut self.st.resume_edits) {
            self.set_hyper(edit, sink)?;
        }
        let total = self.res.cfg.total_steps();
        if self.res.lm.is_none() {
            self.start_own_lm();
        }
        self.st.started = Instant::now();
        self.st.window = (Instant::now(), self.st.tokens_seen);
        while self.st.step < total {
            let next = between_steps(
                controls,
                &mut Steering {
                    trainer: self,
                    sink,
                },
            )?;
            if next == Next::Stop {
                return self.stop(sink);
            }
            self.train_one(sink)?;
            let every = self.res.cfg.hyper.checkpoint_every;
            if every > 0 && self.st.step.is_multiple_of(every) && self.st.step < total {
                self.checkpoint(sink)?;
            }
        }
        // a stop while the final evaluation runs stops the waiting (the run is done anyway)
        let mut stop = || {
            matches!(
                controls.try_take(),
                Ok(Control::Stop) | Err(std::sync::mpsc::TryRecvError::Disconnected)
            )
        };
        self.finish(&mut stop, sink)
    }

    /// Start the clock of a run a sweep drives, and emit its opening records.
    pub fn open_fed(&mut self, sink: Sink<'_>) -> Result<(), TrainError> {
        for note in std::mem::take(&mut self.st.notes) {
            sink(TrainEvent::Info(note));
        }
        if let Some(rec) = self.st.opening.take() {
            self.emit(rec, sink)?;
        }
        for edit in std::mem::take(&mut self.st.resume_edits) {
            self.set_hyper(edit, sink)?;
        }
        self.st.started = Instant::now();
        self.st.window = (Instant::now(), self.st.tokens_seen);
        Ok(())
    }

    /// Whether every configured step is done.
    pub fn is_done(&self) -> bool {
        self.st.step >= self.res.cfg.total_steps()
    }

    /// The end of a run: a last checkpoint, the final evaluation with the model in the loop
    /// (waited for unless `stop` says so), the SAE exported, the `finish` record.
    pub fn finish(
        &mut self,
        stop: &mut dyn FnMut() -> bool,
        sink: Sink<'_>,
    ) -> Result<Outcome, TrainError> {
        let checkpoint = self.checkpoint(sink)?;
        self.lm_final(stop, sink)?;
        let sae_dir = self.res.run_dir.join("sae");
        self.export(&sae_dir)?;
        let finish = Record::Finish {
            step: self.st.step,
            tokens: self.st.tokens_seen,
            sae: sae_dir.clone(),
        };
        self.emit(finish, sink)?;
        Ok(Outcome::Finished {
            sae_dir,
            checkpoint,
        })
    }

    /// Read a batch from the run's own reader, take one step on it (see [`Trainer::step_on`]).
    fn train_one(&mut self, sink: Sink<'_>) -> Result<(), TrainError> {
        let (d_in, _) = self.st.sae.dims();
        let Feed::Own(data) = &mut self.res.feed else {
            unreachable!("a sweep steps its members through step_on, never through run")
        };
        let Prefetched { batch, position } = match data.next_batch() {
            Ok(p) => p,
            Err(e) => {
                // keep what was trained so far before reporting the data problem
                if self.st.step > 0 {
                    let _ = self.checkpoint(sink);
                }
                return Err(e.into());
            }
        };
        let x = match &batch.data {
            Rows::F32(v) => upload(v, [batch.rows, d_in], &self.res.device),
            half => upload_owned(half.to_f32(), [batch.rows, d_in], &self.res.device),
        };
        let d_out = self.st.sae.d_out();
        let y = batch
            .target
            .map(|t| upload_owned(t, [batch.rows, d_out], &self.res.device));
        let fed = Fed {
            x,
            y,
            rows: batch.rows,
            position,
            new_epochs: batch.new_epochs,
            skipped: batch.skipped,
        };
        data.recycle(batch.data);
        self.step_on(fed, sink)
    }

    /// Take one step on `fed`, report when a report is due, and validate when due. A sweep
    /// calls this for each member with the batch it read once.
    pub fn step_on(&mut self, fed: Fed, sink: Sink<'_>) -> Result<(), TrainError> {
        let total = self.res.cfg.total_steps();
        let Fed {
            x,
            y,
            rows,
            position,
            new_epochs,
            skipped,
        } = fed;
        self.st.position = position;
        if skipped > 0 {
            self.st.skipped_rows += skipped as u64;
            sink(TrainEvent::Warning(format!(
                "step {}: skipped {} rows with NaN/Inf ({} so far)",
                self.st.step, skipped, self.st.skipped_rows
            )));
        }
        if new_epochs > 0 {
            let rec = Record::Epoch {
                step: self.st.step,
                tokens: self.st.tokens_seen,
                epoch: self.st.position.epoch,
            };
            self.emit(rec, sink)?;
        }
        let is_log = (self.st.step + 1).is_multiple_of(self.res.cfg.hyper.log_every)
            || self.st.step + 1 == total;
        // the batch's target (the input for an SAE) is what the explained variance is of
        let y_for_metrics = is_log.then(|| y.clone().unwrap_or_else(|| x.clone()));
        let x_for_metrics = is_log.then(|| x.clone());
        // the dead-feature losses: the pre-activation loss (JumpReLU), AuxK (TopK, BatchTopK)
        let h = &self.res.cfg.hyper;
        let wants_dead = if self.res.cfg.sae.architecture.is_topk() {
            h.aux_coefficient > 0.0
        } else {
            h.pre_act_coefficient > 0.0
        };
        let dead = wants_dead.then(|| self.st.firing.dead(self.dead_steps()));
        let plan = StepPlan {
            t: self.st.step,
            total_steps: total,
            hyper: &self.res.cfg.hyper,
            sae: &self.res.cfg.sae,
            kernels: self.res.kernels,
            sparse_below: switch_density(self.res.kernels),
        };
        let out = train_step(
            &mut self.st.sae,
            &mut self.st.adam,
            (x, y),
            plan,
            dead.as_ref(),
        );
        self.st.firing.record(out.fire_counts, rows);
        self.st.sparse_steps += u64::from(out.sparse);
        self.st.losses.push(self.st.step, out.parts);
        self.st.step += 1;
        self.st.tokens_seen += rows as u64;
        if let (Some(x), Some(y)) = (x_for_metrics, y_for_metrics) {
            let parts = self.flush(sink)?;
            let rec =
                self.metrics_record(parts, (x, y), (out.residual, out.inner_sq), self.st.started);
            let events = self.st.health.observe(&rec);
            self.emit(Record::Metrics(Box::new(rec)), sink)?;
            for e in events {
                self.emit(self.health_record(e), sink)?;
            }
        }
        let eval_every = self.res.cfg.hyper.eval_every;
        if !self.res.eval_rows.is_empty()
            && ((eval_every > 0 && self.st.step.is_multiple_of(eval_every))
                || self.st.step == total)
        {
            self.validate(sink)?;
        }
        self.lm_tick(sink)
    }

    /// Count time spent waiting for a batch a sweep fed (reported as `data_wait_fraction`).
    pub fn add_fed_wait(&mut self, wait: std::time::Duration) {
        if let Feed::Fed(waited) = &mut self.res.feed {
            *waited += wait;
        }
    }

    /// Activation width.
    pub fn d_in(&self) -> usize {
        self.st.sae.dims().0
    }

    /// The device the run trains on.
    pub fn device(&self) -> &Device {
        &self.res.device
    }

    /// Carry out one control a sweep received for this member: edits, checkpoint-now, and the
    /// pause and resume records (a sweep pauses a member by not stepping it).
    pub fn control(&mut self, c: Control, sink: Sink<'_>) -> Result<(), TrainError> {
        let mut s = Steering {
            trainer: self,
            sink,
        };
        match c {
            Control::SetHyper(edit) => s.set_hyper(*edit),
            Control::Checkpoint => s.checkpoint(),
            Control::Pause => s.paused(true),
            Control::Resume => s.paused(false),
            Control::Stop => self.stop(sink).map(|_| ()),
        }
    }

    /// Stop with a checkpoint (a sweep stopping one member or all).
    pub fn stop_now(&mut self, sink: Sink<'_>) -> Result<Outcome, TrainError> {
        self.stop(sink)
    }

    /// Write a checkpoint now (a sweep's checkpoint of all members at one step).
    pub fn checkpoint_now(&mut self, sink: Sink<'_>) -> Result<PathBuf, TrainError> {
        self.checkpoint(sink)
    }

    /// A line for the sink when the run starts (what its setup or its sweep has to say).
    pub fn add_note(&mut self, note: String) {
        self.st.notes.push(note);
    }

    /// Keep `ckpt` whatever `train.keep_checkpoints` says, until another is named (a sweep
    /// names the checkpoint its last record points to).
    pub fn protect_checkpoint(&mut self, ckpt: PathBuf) {
        self.st.protected = Some(ckpt);
    }

    /// Apply a checked edit from the next step on: config.toml is rewritten as the configuration
    /// in force (so an edit of it starts from these values), and the change is logged.
    fn set_hyper(&mut self, edit: HyperEdit, sink: Sink<'_>) -> Result<(), TrainError> {
        self.res.cfg.hyper = edit.hyper;
        self.st.health.set_config(self.res.cfg.hyper.health.clone());
        if edit.changes.is_empty() {
            return Ok(());
        }
        use crate::schema::keys::{
            PRE_ACT_COEFFICIENT, SPARSITY_COEFFICIENT, SPARSITY_LOSS, TANH_SCALE, TARGET_L0,
        };
        // the changes are named as the hyperparameters are, by their keys' names
        let loss_terms = [
            &SPARSITY_COEFFICIENT,
            &SPARSITY_LOSS,
            &TARGET_L0,
            &TANH_SCALE,
            &PRE_ACT_COEFFICIENT,
        ];
        if loss_terms.iter().any(|k| edit.changes.contains_key(k.name)) {
            self.st.health.loss_redefined(self.st.step);
        }
        self.res
            .config_file
            .write(&self.res.cfg)
            .map_err(io_err(self.res.config_file.path()))?;
        let rec = Record::Hyper {
            step: self.st.step,
            tokens: self.st.tokens_seen,
            source: edit.source,
            changes: edit.changes,
        };
        self.emit(rec, sink)
    }

    /// The record of a health event at this step.
    fn health_record(&self, e: Event) -> Record {
        let (step, tokens) = (self.st.step, self.st.tokens_seen);
        match e {
            Event::Raised(w) => Record::Warning {
                step,
                tokens,
                kind: w.kind,
                message: w.message,
                hint: w.hint,
                values: w.values,
            },
            Event::Cleared(kind) => Record::WarningCleared { step, tokens, kind },
        }
    }

    /// Read back the queued loss parts; fail on the first non-finite loss.
    fn flush(&mut self, sink: Sink<'_>) -> Result<Option<LossParts>, TrainError> {
        match self.st.losses.read() {
            Ok(parts) => Ok(parts),
            Err(step) => {
                let rec = Record::NonfiniteLoss {
                    step: self.st.step,
                    tokens: self.st.tokens_seen,
                    at_step: step,
                };
                // the loss is the error to report, even if the log cannot take the record
                let _ = self.emit(rec, sink);
                Err(TrainError::NonFiniteLoss {
                    step,
                    last_good: self.st.last_checkpoint.clone(),
                })
            }
        }
    }

    /// The current SAE in inference form (raw activations, as saved).
    pub(super) fn inference_params(&self) -> HostParams {
        let mut folded = io::fold(
            &self.st.sae.to_host(),
            self.scales(),
            self.res.cfg.sae.pre_encoder_bias,
        );
        folded.topk = self.res.cfg.topk_inference();
        folded
    }

    /// L0, MSE and FVU of the current SAE on the held-out rows (raw activation space).
    fn validate(&mut self, sink: Sink<'_>) -> Result<(), TrainError> {
        let folded = self.inference_params();
        let sae = InferenceSae::new(&folded, &self.res.device);
        let mut ev = Evaluator::new(&sae, &folded);
        let batch = self.res.cfg.data.batch_size;
        let inputs = self.res.eval_rows.chunks(batch * folded.d_in);
        match &self.res.eval_targets {
            Some(t) => {
                for (x, y) in inputs.zip(t.chunks(batch * folded.d_out)) {
                    ev.add(x, Some(y), &self.res.device);
                }
            }
            None => inputs.for_each(|x| ev.add(x, None, &self.res.device)),
        }
        let eval = ev.finish();
        self.st.health.observe_heldout_fvu(eval.fvu);
        let rec = Record::Eval {
            step: self.st.step,
            tokens: self.st.tokens_seen,
            eval,
        };
        self.emit(rec, sink)
    }

    /// What a checkpoint records besides its tensors.
    fn state(&self) -> CheckpointState {
        CheckpointState {
            version: checkpoint::VERSION,
            step: self.st.step,
            tokens_seen: self.st.tokens_seen,
            position: self.st.position,
            scale: self.st.scale,
            target_scale: self.st.target_scale,
            skipped_rows: self.st.skipped_rows,
            window_tokens: self.st.firing.window_tokens,
            config: self.res.cfg.clone(),
            store_attributes: self.res.store_attributes.clone(),
        }
    }

    /// Write a checkpoint now (after checking that every queued loss is finite).
    fn checkpoint(&mut self, sink: Sink<'_>) -> Result<PathBuf, TrainError> {
        if !self.res.lock.in_place() {
            return Err(TrainError::RunDirGone(self.res.run_dir.clone()));
        }
        self.flush(sink)?;
        let tensors = TrainTensors::gather(&self.st.sae, &self.st.adam, &self.st.firing);
        if !tensors.params_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: self.st.step.saturating_sub(1),
                last_good: self.st.last_checkpoint.clone(),
            });
        }
        let path = checkpoint::write(
            &self.res.run_dir,
            &self.state(),
            &tensors,
            self.res.cfg.hyper.keep_checkpoints,
            self.st.protected.as_deref(),
        )?;
        self.st.last_checkpoint = Some(path.clone());
        let rec = Record::Checkpoint {
            step: self.st.step,
            tokens: self.st.tokens_seen,
            path: path.clone(),
        };
        self.emit(rec, sink)?;
        Ok(path)
    }

    fn stop(&mut self, sink: Sink<'_>) -> Result<Outcome, TrainError> {
        let checkpoint = self.checkpoint(sink)?;
        let rec = Record::Stop {
            step: self.st.step,
            tokens: self.st.tokens_seen,
            checkpoint: checkpoint.clone(),
        };
        self.emit(rec, sink)?;
        Ok(Outcome::Stopped {
            checkpoint,
            step: self.st.step,
        })
    }

    /// Export the current SAE in inference form (SAELens layout) to `dir`.
    pub fn export(&self, dir: &Path) -> Result<(), TrainError> {
        let total = download(&self.st.firing.total);
        export::write(dir, self.st.sae.to_host(), &total, &self.state())
    }
}

/// The trainer as the control rule sees it between steps.
struct Steering<'a, 'b> {
    trainer: &'a mut Trainer,
    sink: Sink<'b>,
}

impl Steer for Steering<'_, '_> {
    type Error = TrainError;

    fn set_hyper(&mut self, edit: HyperEdit) -> Result<(), TrainError> {
        self.trainer.set_hyper(edit, self.sink)
    }

    fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.trainer.checkpoint(self.sink).map(|_| ())
    }

    fn paused(&mut self, paused: bool) -> Result<(), TrainError> {
        let t = &mut *self.trainer;
        let (step, tokens) = (t.st.step, t.st.tokens_seen);
        if paused {
            t.emit(Record::Pause { step, tokens }, self.sink)
        } else {
            // the pause is not part of the next report's throughput
            t.st.window = (Instant::now(), tokens);
            t.emit(Record::ResumeSteps { step, tokens }, self.sink)
        }
    }
}
