//! The sweep's loop: one reader, one input scale, one set of held-out rows; each batch read once,
//! uploaded once per device and stepped by every running member in turn. Members are ordinary
//! runs (`OUT/<name>/`) driven through [`Trainer::step_on`]; a failing member is marked failed and
//! the others go on. All live members checkpoint after the same batch, which is what
//! `sweep --resume` continues from.

use super::spec::{self, SpecError, SweepSpec};
use crate::data::batches::{Position, Rows};
use crate::data::prefetch::{Prefetched, Prefetcher};
use crate::metrics::log::JsonlLog;
use crate::sae::model::{upload, upload_owned};
use crate::schema::sweep::{self as record, MemberInfo, MemberState, SweepRecord};
use crate::train::checkpoint;
use crate::train::control::{Control, JobControl, JobEvent};
use crate::train::error::TrainError;
use crate::train::memory::{self, Available};
use crate::train::setup::{Claimed, Shared, estimate_memory, open_shared, reader};
use crate::train::trainer::{Fed, Outcome, Trainer};
use burn::tensor::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

/// A sweep that cannot start or go on: one line.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The sweep configuration.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Shared work failed (the store, the scale, the reader).
    #[error(transparent)]
    Train(Box<TrainError>),
    /// A member could not be set up.
    #[error("member {name}: {source}")]
    Member {
        /// The member.
        name: String,
        /// What went wrong.
        source: Box<TrainError>,
    },
    /// The sweep directory was deleted (or replaced) while the sweep ran.
    #[error(
        "{0}: the sweep directory was deleted while the sweep was running: stopped, since nothing written from now on could be found"
    )]
    Gone(PathBuf),
    /// The directory already holds a sweep.
    #[error(
        "{0}: already holds a sweep (its log records a checkpoint): continue it with `jumpscope sweep --resume {0}` or choose another --out"
    )]
    Exists(PathBuf),
    /// `--resume` of a directory that is not a sweep, or one without a checkpoint yet.
    #[error("{path}: {problem}")]
    NotResumable {
        /// The directory.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// The members together need more memory than a device has.
    #[error(
        "the {members} members placed on {device} need about {need_gib:.1} GiB together, but it has {free_gib:.1} GiB free: sweep fewer or narrower members, or place them on more devices (sweep.devices)"
    )]
    OutOfMemory {
        /// The device.
        device: String,
        /// Members on it.
        members: usize,
        /// GiB needed.
        need_gib: f64,
        /// GiB free.
        free_gib: f64,
    },
    /// Another process writes the sweep.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// Writing the sweep's own files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl From<TrainError> for SweepError {
    fn from(e: TrainError) -> Self {
        Self::Train(Box::new(e))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How a sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    /// Every member finished, stopped or failed.
    Done,
    /// Stopped on request; `sweep --resume` continues.
    Stopped,
}

/// One member: its run and where it stands.
pub struct Member {
    /// Its name.
    pub name: String,
    /// The keys set for it.
    pub varied: Vec<(String, toml::Value)>,
    /// Its configuration when it started (or resumed).
    pub config: crate::config::Config,
    /// Its own steps so far.
    pub step: u64,
    /// Its run, while it is live (dropped when it ends, freeing its parameters).
    pub trainer: Option<Trainer>,
    /// Where it stands.
    pub state: MemberState,
    /// Why it failed, if it did.
    pub reason: Option<String>,
}

/// A sweep in progress.
pub struct Sweep {
    dir: PathBuf,
    members: Vec<Member>,
    data: Prefetcher,
    log: JsonlLog,
    /// Batches read from the shared stream.
    step: u64,
    rows_read: u64,
    position: Position,
    checkpoint_every: u64,
    /// The opening record, emitted when the loop starts.
    opening: Option<SweepRecord>,
    /// Controls taken while a member waited for its final evaluation, applied next.
    deferred: Vec<JobControl>,
    /// The model companion all members share (`[lm_eval]`); ends after them.
    _lm: Option<crate::lmeval::LmWorker>,
    /// This process's lock on the sweep directory (one writer).
    lock: crate::lock::DirLock,
}

type Sink<'a> = &'a mut dyn FnMut(JobEvent);

/// The member whose configuration the sweep reads its data with: the first transcoder, whose
/// target store the sweep reads beside the input (an SAE member leaves it unread), else the
/// first member.
fn data_base(spec: &SweepSpec) -> &crate::config::Config {
    spec.members
        .iter()
        .map(|m| &m.config)
        .find(|c| c.sae.kind.has_target())
        .unwrap_or(&spec.members[0].config)
}

impl Sweep {
    /// Start the sweep `spec` describes: check what all members need, open the store once,
    /// create `OUT/` (sweep.toml, sweep.jsonl) and every member's run directory.
    pub fn new(spec: &SweepSpec) -> Result<Self, SweepError> {
        let dir = spec.out.clone();
        if has_checkpoint(&dir) {
            return Err(SweepError::Exists(dir));
        }
        let (store, shared) = open_shared(data_base(spec), None)?;
        check_memory(spec, widths(&store, &shared))?;
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = crate::lock::DirLock::take(&dir)?;
        // checked again under the lock: another sweep may have started here meanwhile
        if has_checkpoint(&dir) {
            return Err(SweepError::Exists(dir));
        }
        Self::afresh(spec, lock, Vec::new(), (store, shared))
    }

    /// Start the sweep in `spec.out`, which this process has locked: what an earlier attempt
    /// that never completed a sweep checkpoint wrote there is set aside first.
    fn afresh(
        spec: &SweepSpec,
        lock: crate::lock::DirLock,
        mut notes: Vec<String>,
        (store, shared): (crate::data::store::Store, Shared),
    ) -> Result<Self, SweepError> {
        let dir = spec.out.clone();
        let base = data_base(spec);
        let d_in = store.d_in();
        let memory_estimate = check_memory(spec, widths(&store, &shared))?;
        if let Some(aside) = set_aside_attempt(&dir)? {
            notes.push(crate::train::fresh::note(&dir, Some(&aside)));
        }
        let toml_path = dir.join("sweep.toml");
        crate::durable::write_file(&toml_path, spec.to_toml().as_bytes())
            .map_err(io_err(&toml_path))?;
        let log_path = dir.join("sweep.jsonl");
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let mut members = Vec::new();
        let mut infos = Vec::new();
        for m in &spec.members {
            let trainer = Trainer::member(m.config.clone(), &store, &shared).map_err(|source| {
                SweepError::Member {
                    name: m.name.clone(),
                    source: Box::new(source),
                }
            })?;
            infos.push(MemberInfo {
                name: m.name.clone(),
                varied: m
                    .overrides
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
                dropped: m.dropped.iter().map(|s| s.to_string()).collect(),
                device: m.config.device.to_string(),
                architecture: m.config.sae.architecture.name().to_string(),
                d_sae: m.config.sae.d_sae_for(d_in),
            });
            let mut trainer = trainer;
            // said once, by the first member
            for n in notes.drain(..) {
                trainer.add_note(n);
            }
            members.push(Member {
                name: m.name.clone(),
                varied: m.overrides.clone(),
                config: m.config.clone(),
                step: 0,
                trainer: Some(trainer),
                state: MemberState::Running,
                reason: None,
            });
        }
        let opening = SweepRecord::Start {
            members: infos,
            d_in,
            store_rows: store.rows(),
            scale: shared.scale,
            target_scale: shared.target.as_ref().map(|t| t.scale),
            devices: spec.devices.iter().map(|d| d.to_string()).collect(),
            memory_estimate,
        };
        let data = reader(store, base, Position::default(), shared.scales())?;
        let lm = attach_lm(base, &dir, &mut members);
        Ok(Self {
            dir,
            checkpoint_every: checkpoint_every(&members),
            members,
            data,
            log,
            step: 0,
            rows_read: 0,
            position: Position::default(),
            opening: Some(opening),
            deferred: Vec::new(),
            _lm: lm,
            lock,
        })
    }

    /// Continue the sweep in `dir` from its last checkpoint of all members: the members that
    /// were live then continue from their checkpoints at that batch; those that had finished,
    /// stopped or failed stay so.
    pub fn resume(dir: &Path) -> Result<Self, SweepError> {
        let not = |problem: &str| SweepError::NotResumable {
            path: dir.to_path_buf(),
            problem: problem.to_string(),
        };
        let toml_path = dir.join("sweep.toml");
        if !toml_path.is_file() {
            return Err(not(
                "not a sweep (no sweep.toml): `jumpscope sweep --resume` takes the --out of a sweep",
            ));
        }
        // before anything is read or tidied: the sweep may be another process's
        let lock = crate::lock::DirLock::take(dir)?;
        let spec = spec::load(&toml_path, &[], Some(dir))?;
        // each member's directory locked and tidied before the record is chosen: a rewrite of a
        // checkpoint cut short between its renames is put back first
        let mut claimed: BTreeMap<String, Claimed> = BTreeMap::new();
        for m in &spec.members {
            let run_dir = dir.join(&m.name);
            if run_dir.is_dir() {
                let c = Claimed::take(&run_dir).map_err(|e| member_err(&m.name, e))?;
                claimed.insert(m.name.clone(), c);
            }
        }
        let log_path = dir.join("sweep.jsonl");
        let records = record::read(&log_path).map_err(io_err(&log_path))?;
        let scale = records.iter().find_map(|r| match r {
            SweepRecord::Start {
                scale,
                target_scale,
                ..
            } => Some((*scale, *target_scale)),
            _ => None,
        });
        // the newest sweep checkpoint whose member checkpoints are all still there (a kill in
        // the middle of one, or a version that pruned them, can leave the last one short)
        let checkpoints: Vec<_> = records
            .iter()
            .rev()
            .filter_map(|r| match r {
                SweepRecord::Checkpoint {
                    step,
                    rows_read,
                    position,
                    members,
                } => {
                    let resolved: BTreeMap<String, PathBuf> = members
                        .iter()
                        .map(|(name, p)| (name.clone(), member_checkpoint(dir, name, p)))
                        .collect();
                    Some((*step, *rows_read, *position, resolved))
                }
                _ => None,
            })
            .collect();
        let whole = checkpoints
            .iter()
            .position(|(_, _, _, m)| m.values().all(|p| checkpoint::intact(p)));
        let mut notes = Vec::new();
        if let Some(k) = whole.filter(|&k| k > 0) {
            notes.push(format!(
                "the sweep's last checkpoint (stream step {}) lacks a member's checkpoint, or one is damaged: continuing from the newest one every member has whole (stream step {})",
                checkpoints[0].0, checkpoints[k].0
            ));
        }
        let last = whole.map(|k| checkpoints[k].clone());
        let (Some(scale), Some((step, rows_read, position, ckpts))) = (scale, last) else {
            // nothing to continue from: this sweep starts afresh, with what it wrote set aside
            drop(claimed);
            let (store, shared) = open_shared(data_base(&spec), None)?;
            return Self::afresh(&spec, lock, Vec::new(), (store, shared));
        };
        // each member's last state change up to the checkpoint … or after it for the ends
        let ended = ended_members(&records);
        let base = data_base(&spec);
        let (store, shared) = open_shared(base, Some(scale))?;
        check_memory(&spec, widths(&store, &shared))?;
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let mut members = Vec::new();
        for m in &spec.members {
            let run_dir = dir.join(&m.name);
            let (trainer, state, reason) = match (ckpts.get(&m.name), claimed.remove(&m.name)) {
                (Some(ckpt), Some(c)) if !ended.contains_key(&m.name) => {
                    let mut t = member_resume(&m.name, &run_dir, c, ckpt, (&store, &shared))?;
                    t.protect_checkpoint(ckpt.clone());
                    // said once, by the first member to continue
                    for n in notes.drain(..) {
                        t.add_note(n);
                    }
                    (Some(t), MemberState::Running, None)
                }
                // ended (finished, stopped, failed): listed, never stepped again
                _ => {
                    let (s, r) = ended
                        .get(&m.name)
                        .cloned()
                        .unwrap_or((MemberState::Stopped, None));
                    (None, s, r)
                }
            };
            let (config, step) = match &trainer {
                Some(t) => (t.config().clone(), t.step()),
                None => (m.config.clone(), 0),
            };
            members.push(Member {
                name: m.name.clone(),
                varied: m.overrides.clone(),
                config,
                step,
                trainer,
                state,
                reason,
            });
        }
        let opening = SweepRecord::Resume {
            step,
            members: members
                .iter()
                .filter(|m| m.state.is_live())
                .map(|m| m.name.clone())
                .collect(),
        };
        let data = reader(store, base, position, scale)?;
        let lm = attach_lm(base, dir, &mut members);
        Ok(Self {
            dir: dir.to_path_buf(),
            checkpoint_every: checkpoint_every(&members),
            members,
            data,
            log,
            step,
            rows_read,
            position,
            opening: Some(opening),
            deferred: Vec::new(),
            _lm: lm,
            lock,
        })
    }

    /// A line to say when the sweep starts (in its log on the screen, on stderr headless),
    /// said by its first live member.
    pub fn add_note(&mut self, note: String) {
        if let Some(t) = self.members.iter_mut().find_map(|m| m.trainer.as_mut()) {
            t.add_note(note);
        }
    }

    /// The members of the sweep in `dir` and how each ended, when every one has ended
    /// (finished, stopped or failed): such a sweep has nothing left to resume. `None` while a
    /// member is live, or when `dir` is not a sweep (which `resume` then says).
    pub fn over(dir: &Path) -> Option<Vec<(String, MemberState)>> {
        let spec = spec::load(&dir.join("sweep.toml"), &[], Some(dir)).ok()?;
        let records = record::read(&dir.join("sweep.jsonl")).ok()?;
        let ended = ended_members(&records);
        spec.members
            .iter()
            .map(|m| ended.get(&m.name).map(|(s, _)| (m.name.clone(), *s)))
            .collect()
    }

    /// The sweep's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member `i`'s run (it must be live).
    fn live(&mut self, i: usize) -> &mut Trainer {
        self.members[i]
            .trainer
            .as_mut()
            .expect("a live member has its run")
    }

    /// Batches read from the shared stream.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Rows read from the store.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    fn emit(&mut self, rec: SweepRecord, sink: Sink<'_>) -> Result<(), SweepError> {
        if !self.lock.in_place() {
            return Err(SweepError::Gone(self.dir.clone()));
        }
        self.log.append(&rec).map_err(io_err(self.log.path()))?;
        sink(JobEvent::Sweep(rec));
        Ok(())
    }

    /// Mark member `i` as `state` (with `reason`) and record it.
    fn set_state(
        &mut self,
        i: usize,
        state: MemberState,
        reason: Option<String>,
        sink: Sink<'_>,
    ) -> Result<(), SweepError> {
        let m = &mut self.members[i];
        m.state = state;
        m.reason = reason.clone();
        if let Some(t) = &m.trainer {
            m.step = t.step();
            m.config = t.config().clone();
        }
        if !state.is_live() {
            m.trainer = None;
        }
        let rec = SweepRecord::Member {
            step: self.step,
            name: m.name.clone(),
            state,
            member_step: m.step,
            reason,
        };
        self.emit(rec, sink)
    }

    /// Run until every member has finished, stopped or failed, or until told to stop.
    pub fn run(
        &mut self,
        controls: &Receiver<JobControl>,
        sink: Sink<'_>,
    ) -> Result<SweepOutcome, SweepError> {
        if let Some(rec) = self.opening.take() {
            self.emit(rec, sink)?;
        }
        for i in 0..self.members.len() {
            if self.members[i].state.is_live() {
                let r = self.live(i).open_fed(&mut |e| sink(JobEvent::Member(i, e)));
                self.member_result(i, r, sink)?;
            }
        }
        loop {
            if self.take_controls(controls, sink)? {
                return self.stop_all(sink);
            }
            if !self.members.iter().any(|m| m.state.is_live()) {
                break;
            }
            if !self.members.iter().any(|m| m.state == MemberState::Running) {
                // all paused: wait for a control rather than read batches nobody trains on
                match controls.recv() {
                    Ok(c) => {
                        if self.apply(c, sink)? {
                            return self.stop_all(sink);
                        }
                    }
                    Err(_) => return self.stop_all(sink),
                }
                continue;
            }
            self.step_all(controls, sink)?;
            if self.checkpoint_every > 0
                && self.step.is_multiple_of(self.checkpoint_every)
                && self.members.iter().any(|m| m.state.is_live())
            {
                self.checkpoint_all(sink)?;
            }
        }
        let states = self
            .members
            .iter()
            .map(|m| (m.name.clone(), m.state))
            .collect();
        let rec = SweepRecord::Finish {
            step: self.step,
            rows_read: self.rows_read,
            states,
        };
        self.emit(rec, sink)?;
        Ok(SweepOutcome::Done)
    }

    /// Take the queued controls; true when the whole sweep is to stop.
    fn take_controls(
        &mut self,
        controls: &Receiver<JobControl>,
        sink: Sink<'_>,
    ) -> Result<bool, SweepError> {
        for c in std::mem::take(&mut self.deferred) {
            if self.apply(c, sink)? {
                return Ok(true);
            }
        }
        loop {
            match controls.try_recv() {
                Ok(c) => {
                    if self.apply(c, sink)? {
                        return Ok(true);
                    }
                }
                Err(TryRecvError::Empty) => return Ok(false),
                // nobody drives the sweep any more: stop with a checkpoint, as `train` does
                Err(TryRecvError::Disconnected) => return Ok(true),
            }
        }
    }

    /// Carry out one control; true when it stops the whole sweep.
    fn apply(&mut self, c: JobControl, sink: Sink<'_>) -> Result<bool, SweepError> {
        let targets: Vec<usize> = match c.member {
            None if matches!(c.control, Control::Stop) => return Ok(true),
            None => (0..self.members.len()).collect(),
            Some(i) if i < self.members.len() => vec![i],
            Some(_) => return Ok(false),
        };
        for i in targets {
            let state = self.members[i].state;
            if !state.is_live() {
                continue;
            }
            let next = match (&c.control, state) {
                (Control::Pause, MemberState::Running) => Some(MemberState::Paused),
                (Control::Resume, MemberState::Paused) => Some(MemberState::Running),
                (Control::Pause, _) | (Control::Resume, _) => continue,
                (Control::Stop, _) => Some(MemberState::Stopped),
                _ => None,
            };
            let r = self
                .live(i)
                .control(c.control.clone(), &mut |e| sink(JobEvent::Member(i, e)));
            if self.member_result(i, r, sink)?
                && let Some(s) = next
            {
                self.set_state(i, s, None, sink)?;
            }
        }
        Ok(false)
    }

    /// A member's call came back: on error the member fails (recorded) and the sweep goes on.
    /// True when it succeeded.
    fn member_result<T>(
        &mut self,
        i: usize,
        r: Result<T, TrainError>,
        sink: Sink<'_>,
    ) -> Result<bool, SweepError> {
        match r {
            Ok(_) => Ok(true),
            Err(e) => {
                self.set_state(i, MemberState::Failed, Some(e.to_string()), sink)?;
                Ok(false)
            }
        }
    }

    /// Read one batch and step every running member on it; a member that reaches its last step
    /// finishes (checkpoint, export).
    fn step_all(
        &mut self,
        controls: &Receiver<JobControl>,
        sink: Sink<'_>,
    ) -> Result<(), SweepError> {
        let t0 = Instant::now();
        let Prefetched { batch, position } = match self.data.next_batch() {
            Ok(p) => p,
            Err(e) => {
                // keep what every member trained before reporting the data problem
                if self.step > 0 {
                    let _ = self.checkpoint_all(sink);
                }
                return Err(TrainError::from(e).into());
            }
        };
        let wait = t0.elapsed();
        self.step += 1;
        self.rows_read += (batch.rows + batch.skipped) as u64;
        self.position = position;
        // one upload per device holding a running member (and per device of a transcoder)
        let mut uploads: Vec<(Device, Tensor<2>)> = Vec::new();
        let mut target_uploads: Vec<(Device, Tensor<2>)> = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i].state != MemberState::Running {
                continue;
            }
            let device = self.live(i).device().clone();
            let x = match uploads.iter().find(|(d, _)| *d == device) {
                Some((_, x)) => x.clone(),
                None => {
                    let d_in = self.live(i).d_in();
                    let x = match &batch.data {
                        Rows::F32(v) => upload(v, [batch.rows, d_in], &device),
                        half => upload_owned(half.to_f32(), [batch.rows, d_in], &device),
                    };
                    uploads.push((device.clone(), x.clone()));
                    x
                }
            };
            let y = match (&batch.target, self.members[i].config.sae.kind.has_target()) {
                (Some(t), true) => Some(match target_uploads.iter().find(|(d, _)| *d == device) {
                    Some((_, y)) => y.clone(),
                    None => {
                        let d_out = t.len() / batch.rows.max(1);
                        let y = upload(t, [batch.rows, d_out], &device);
                        target_uploads.push((device.clone(), y.clone()));
                        y
                    }
                }),
                _ => None,
            };
            let fed = Fed {
                x,
                y,
                rows: batch.rows,
                position,
                new_epochs: batch.new_epochs,
                skipped: batch.skipped,
            };
            let t = self.live(i);
            t.add_fed_wait(wait);
            let r = t.step_on(fed, &mut |e| sink(JobEvent::Member(i, e)));
            self.members[i].step = self.live(i).step();
            if !self.member_result(i, r, sink)? {
                continue;
            }
            if self.live(i).is_done() {
                // a stop of the sweep or of this member while its final evaluation runs stops
                // the waiting; other controls wait for the loop
                let deferred = &mut self.deferred;
                let mut stop = || match controls.try_recv() {
                    Ok(c) if matches!(c.control, Control::Stop) && c.member == Some(i) => true,
                    Ok(c) => {
                        // a stop of all stops the waiting too, and then the sweep
                        let all = matches!(c.control, Control::Stop) && c.member.is_none();
                        deferred.push(c);
                        all
                    }
                    Err(TryRecvError::Empty) => false,
                    Err(TryRecvError::Disconnected) => true,
                };
                let trainer = self.members[i].trainer.as_mut();
                let r = match trainer {
                    Some(t) => t.finish(&mut stop, &mut |e| sink(JobEvent::Member(i, e))),
                    None => continue,
                };
                if self.member_result(i, r, sink)? {
                    self.set_state(i, MemberState::Finished, None, sink)?;
                }
            }
        }
        drop(uploads);
        self.data.recycle(batch.data);
        Ok(())
    }

    /// Checkpoint every live member after the same batch, and record where reading continues.
    fn checkpoint_all(&mut self, sink: Sink<'_>) -> Result<(), SweepError> {
        self.each_live_checkpoint(false, sink)
    }

    /// Stop every live member with a checkpoint, and record the sweep's checkpoint and stop.
    fn stop_all(&mut self, sink: Sink<'_>) -> Result<SweepOutcome, SweepError> {
        // the members stay live in the log: `sweep --resume` continues them from here
        self.each_live_checkpoint(true, sink)?;
        let rec = SweepRecord::Stop {
            step: self.step,
            rows_read: self.rows_read,
        };
        self.emit(rec, sink)?;
        Ok(SweepOutcome::Stopped)
    }

    /// Checkpoint (or, with `stop`, stop with a checkpoint) every live member, failing those
    /// that cannot, and record the sweep checkpoint.
    fn each_live_checkpoint(&mut self, stop: bool, sink: Sink<'_>) -> Result<(), SweepError> {
        let mut paths = BTreeMap::new();
        for i in 0..self.members.len() {
            if !self.members[i].state.is_live() {
                continue;
            }
            let member_sink = &mut |e| sink(JobEvent::Member(i, e));
            let r = if stop {
                self.live(i).stop_now(member_sink).map(|o| match o {
                    Outcome::Stopped { checkpoint, .. } => checkpoint,
                    Outcome::Finished { checkpoint, .. } => checkpoint,
                })
            } else {
                self.live(i).checkpoint_now(member_sink)
            };
            match r {
                Ok(p) => {
                    paths.insert(self.members[i].name.clone(), p);
                }
                Err(e) => self.set_state(i, MemberState::Failed, Some(e.to_string()), sink)?,
            }
        }
        // relative to the sweep directory: `--resume` works from any working directory
        let relative = paths
            .iter()
            .map(|(name, p)| {
                let rel = p.strip_prefix(&self.dir).unwrap_or(p).to_path_buf();
                (name.clone(), rel)
            })
            .collect();
        let rec = SweepRecord::Checkpoint {
            step: self.step,
            rows_read: self.rows_read,
            position: self.position,
            members: relative,
        };
        self.emit(rec, sink)?;
        // the checkpoints the record names are what `--resume` needs: kept until the next
        for m in &mut self.members {
            if let (Some(p), Some(t)) = (paths.get(&m.name), m.trainer.as_mut()) {
                t.protect_checkpoint(p.clone());
            }
        }
        Ok(())
    }
}

/// Where a member's checkpoint named in a sweep record is: `OUT/<member>/checkpoints/step-N`,
/// whatever directory the record's path was written relative to (earlier versions wrote it
/// relative to the working directory of the command).
fn member_checkpoint(dir: &Path, name: &str, recorded: &Path) -> PathBuf {
    match recorded.file_name() {
        Some(step) => dir.join(name).join("checkpoints").join(step),
        None => dir.join(recorded),
    }
}

fn member_resume(
    name: &str,
    run_dir: &Path,
    claimed: Claimed,
    ckpt: &Path,
    (store, shared): (&crate::data::store::Store, &Shared),
) -> Result<Trainer, SweepError> {
    Trainer::resume_member(run_dir, claimed, ckpt, store, shared)
        .map_err(|source| member_err(name, source))
}

/// Each member's last end (finished, stopped, failed) in a sweep's log, with its reason.
fn ended_members(records: &[SweepRecord]) -> BTreeMap<String, (MemberState, Option<String>)> {
    let mut ended = BTreeMap::new();
    for r in records {
        if let SweepRecord::Member {
            name,
            state,
            reason,
            ..
        } = r
            && !state.is_live()
        {
            ended.insert(name.clone(), (*state, reason.clone()));
        }
    }
    ended
}

/// Whether `dir` holds a sweep that `--resume` can continue (a checkpoint record in its log).
fn has_checkpoint(dir: &Path) -> bool {
    dir.join("sweep.toml").exists()
        && record::read(&dir.join("sweep.jsonl")).is_ok_and(|recs| {
            recs.iter()
                .any(|r| matches!(r, SweepRecord::Checkpoint { .. }))
        })
}

/// Set aside what an attempt that never completed a sweep checkpoint left in `dir`: its log,
/// its model companion's log, and every member's run directory (its `sweep.toml` is copied,
/// since the new one is written over it).
fn set_aside_attempt(dir: &Path) -> Result<Option<PathBuf>, SweepError> {
    let mut names: Vec<String> = vec!["sweep.jsonl".into(), "lm-eval.log".into()];
    for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let a_run = ["config.toml", "metrics.jsonl", "checkpoints"]
            .iter()
            .any(|f| p.join(f).exists());
        if p.is_dir() && a_run && !name.starts_with("abandoned-") {
            names.push(name);
        }
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let aside = crate::train::fresh::set_aside(dir, &refs).map_err(io_err(dir))?;
    if let Some(a) = &aside {
        let toml = dir.join("sweep.toml");
        if toml.is_file() {
            std::fs::copy(&toml, a.join("sweep.toml")).map_err(io_err(&toml))?;
        }
    }
    Ok(aside)
}

fn member_err(name: &str, source: TrainError) -> SweepError {
    SweepError::Member {
        name: name.to_string(),
        source: Box::new(source),
    }
}

/// The sweep checkpoints all members together, every `train.checkpoint_every` stream steps
/// (the smallest a member asks for; 0 in all: only at the end).
/// Start the one model companion of a sweep with `[lm_eval]` (its log in `OUT/lm-eval.log`) and
/// give each live member its port.
fn attach_lm(
    base: &crate::config::Config,
    dir: &Path,
    members: &mut [Member],
) -> Option<crate::lmeval::LmWorker> {
    let (worker, ports) = crate::train::lm::start_worker(base, dir, members.len())?;
    for (m, port) in members.iter_mut().zip(ports) {
        if let Some(t) = m.trainer.as_mut() {
            t.attach_lm(port);
        }
    }
    Some(worker)
}

fn checkpoint_every(members: &[Member]) -> u64 {
    members
        .iter()
        .map(|m| m.config.hyper.checkpoint_every)
        .filter(|&e| e > 0)
        .min()
        .unwrap_or(0)
}

/// The input width, and the width a transcoder member reconstructs (the input's without one).
fn widths(store: &crate::data::store::Store, shared: &Shared) -> (usize, usize) {
    let d_in = store.d_in();
    (d_in, shared.target.as_ref().map_or(d_in, |t| t.d_out))
}

/// What all members need, by device; refused in one line when a device has less free. Members
/// step one at a time, so their parameters and optimizer states add up while the working set
/// of one step and the data buffers (shared) count once.
fn check_memory(
    spec: &SweepSpec,
    (d_in, d_out): (usize, usize),
) -> Result<BTreeMap<String, u64>, SweepError> {
    let mut by_device: BTreeMap<crate::device::DeviceName, (u64, u64, u64, usize)> =
        BTreeMap::new();
    for m in &spec.members {
        let e = estimate_memory(&m.config, (d_in, d_out), m.config.sae.d_sae_for(d_in));
        let slot = by_device.entry(m.config.device).or_default();
        slot.0 += e.parameters + e.adam_moments + e.gradients;
        slot.1 = slot.1.max(e.working_set);
        slot.2 = slot.2.max(e.data_buffers);
        slot.3 += 1;
    }
    let mut out = BTreeMap::new();
    for (device, (model, working, data, members)) in by_device {
        let need = model + working + data;
        if let Available::Bytes(free) = memory::available_on(device)
            && need > free
        {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(SweepError::OutOfMemory {
                device: device.to_string(),
                members,
                need_gib: gib(need),
                free_gib: gib(free),
            });
        }
        out.insert(device.to_string(), need);
    }
    Ok(out)
}
