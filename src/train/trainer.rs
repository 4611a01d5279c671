//! The training loop: owns the parameters, the optimizer, the data reader and the run directory,
//! takes [`Control`]s between steps and reports [`TrainEvent`]s to a sink. It knows nothing of
//! terminals: headless mode, the TUI and tests pass different sinks.
//!
//! Statistics stay on the device between reports: each step only queues its `[5]` loss-parts
//! tensor; every `log_every` steps (and before each checkpoint) the queue is read back in one
//! transfer, which is also where a non-finite loss is caught and named by its step.

use crate::config::{Config, ConfigError, Hyper, Normalize, ThresholdParam};
use crate::data::batches::{BatchError, Batcher, Position, Rows};
use crate::data::norm::estimate_scale;
use crate::data::prefetch::{Prefetched, Prefetcher};
use crate::data::store::{Store, StoreError};
use crate::device::{self, DeviceError};
use crate::eval::{Evaluator, InferenceSae};
use crate::metrics::log::JsonlLog;
use crate::metrics::stats::{Histogram, log10_density};
use crate::sae::io::{self, SaeIoError};
use crate::sae::loss::LossParts;
use crate::sae::model::{HostParams, Sae, download, upload, upload_owned};
use crate::train::adam::{AdamState, Moments};
use crate::train::checkpoint::{self, CheckpointError, CheckpointState, CheckpointTensors};
use crate::train::control::{Control, MetricsRecord, TrainEvent};
use crate::train::schedule::{lambda_at, lr_at};
use crate::train::step::{StepPlan, train_step};
use burn::tensor::{Device, Tensor};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Batch problem (NaN rows under "stop", …).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Device not available.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Checkpoint problem.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// SAE file problem.
    #[error(transparent)]
    SaeIo(#[from] SaeIoError),
    /// `init_from` does not fit the store.
    #[error(
        "{path}: SAE has d_in = {sae}, but store {store} (dataset `{dataset}`) has d_in = {data}"
    )]
    InitMismatch {
        /// The SAE file.
        path: PathBuf,
        /// Its d_in.
        sae: usize,
        /// The first store file.
        store: PathBuf,
        /// The dataset.
        dataset: String,
        /// The store's d_in.
        data: usize,
    },
    /// `sae.d_sae` disagrees with `init_from`.
    #[error(
        "{path}: SAE has d_sae = {sae}, but sae.d_sae = {config}: remove sae.d_sae or make them agree"
    )]
    InitWidth {
        /// The SAE file.
        path: PathBuf,
        /// Its d_sae.
        sae: usize,
        /// The configured d_sae.
        config: usize,
    },
    /// The loss became NaN or infinite.
    #[error("loss is not finite at step {step}: training stopped; the last good checkpoint is {}", last_good.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none (no checkpoint was written before)".into()))]
    NonFiniteLoss {
        /// 0-based step whose loss was not finite.
        step: u64,
        /// The newest checkpoint on disk.
        last_good: Option<PathBuf>,
    },
    /// The run directory already holds a run.
    #[error(
        "{0}: already holds a run (checkpoints/ exists): resume it with `jumpscope train --resume {0}` or choose another --out"
    )]
    RunExists(PathBuf),
    /// File-system error in the run directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

/// Batches the prefetch thread reads ahead.
const PREFETCH_DEPTH: usize = 4;

/// Read the held-out tail of the store, and start the prefetch thread over the rest at `position`.
fn start_data(
    store: Store,
    cfg: &Config,
    position: Position,
    scale: f64,
) -> Result<(Prefetcher, Vec<f32>), TrainError> {
    let held = cfg.data.eval_tokens;
    if held >= store.rows() {
        return Err(TrainError::Config(ConfigError::Invalid {
            origin: store.paths()[0].display().to_string(),
            key: "data.eval_tokens".into(),
            value: held.to_string(),
            expected: format!("fewer than the store's {} rows", store.rows()),
        }));
    }
    let mut eval_rows = Vec::new();
    store.read_rows(store.rows() - held, held, &mut eval_rows)?;
    let mut batcher = Batcher::new(
        store,
        cfg.data.shuffle,
        cfg.data.seed,
        cfg.data.on_nonfinite,
        position,
    )
    .hold_out(held);
    let buffer = cfg
        .data
        .shuffle_buffer_tokens
        .unwrap_or_else(|| Batcher::default_block_rows(batcher.store().d_in()));
    batcher = batcher.buffer_rows(buffer);
    batcher.scale = (1.0 / scale) as f32;
    Ok((
        Prefetcher::spawn(batcher, cfg.data.batch_size, PREFETCH_DEPTH),
        eval_rows,
    ))
}

/// A training run in progress.
pub struct Trainer {
    cfg: Config,
    run_dir: PathBuf,
    device: Device,
    sae: Sae,
    adam: AdamState,
    data: Prefetcher,
    /// Held-out rows (raw, `[eval_tokens, d_in]`), never trained on.
    eval_rows: Vec<f32>,
    /// The store's file attributes.
    store_attributes: std::collections::BTreeMap<String, String>,
    /// Reading position after the last batch trained on (what a checkpoint records).
    position: Position,
    scale: f64,
    step: u64,
    tokens_seen: u64,
    skipped_rows: u64,
    steps_since_fired: Tensor<1>,
    fire_window: Tensor<1>,
    fire_total: Tensor<1>,
    window_tokens: u64,
    log: JsonlLog,
    last_checkpoint: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Tagged<'a, T: serde::Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    record: &'a T,
}

impl Trainer {
    /// Prepare a new run: open the store, estimate the scale, initialise (or load `init_from`),
    /// and create the run directory with its `config.toml` and `metrics.jsonl`.
    pub fn new(cfg: Config) -> Result<Self, TrainError> {
        let device = device::resolve(&cfg.device)?;
        let store = Store::open(&cfg.data.stores, cfg.data.dataset.as_deref())?;
        let d_in = store.d_in();
        let store_attributes = store.attributes();
        let scale = match cfg.data.normalize {
            Normalize::MeanSquaredNorm => {
                let training_rows = store.rows().saturating_sub(cfg.data.eval_tokens);
                estimate_scale(&store, cfg.data.scale_sample_tokens, training_rows)?
            }
            Normalize::None => 1.0,
        };
        let host = match &cfg.sae.init_from {
            Some(path) => {
                let loaded = io::load(path)?;
                if loaded.params.d_in != d_in {
                    return Err(TrainError::InitMismatch {
                        path: path.clone(),
                        sae: loaded.params.d_in,
                        store: store.paths()[0].to_path_buf(),
                        dataset: store.dataset().to_string(),
                        data: d_in,
                    });
                }
                if let Some(m) = cfg.sae.d_sae
                    && m != loaded.params.d_sae
                {
                    return Err(TrainError::InitWidth {
                        path: path.clone(),
                        sae: loaded.params.d_sae,
                        config: m,
                    });
                }
                io::unfold(&loaded.params, scale as f32, cfg.sae.pre_encoder_bias)
            }
            None => HostParams::init(
                d_in,
                cfg.sae.d_sae_for(d_in),
                cfg.sae.threshold_init as f32,
                cfg.data.seed,
            ),
        };
        // before anything is written: the held-out split must fit the store
        let (data, eval_rows) = start_data(store, &cfg, Position::default(), scale)?;
        let run_dir = cfg.out.clone();
        if run_dir.join("checkpoints").exists() {
            return Err(TrainError::RunExists(run_dir));
        }
        std::fs::create_dir_all(&run_dir).map_err(io_err(&run_dir))?;
        let config_path = run_dir.join("config.toml");
        crate::atomic::write_file(&config_path, cfg.to_toml().as_bytes())
            .map_err(io_err(&config_path))?;
        let sae = Sae::from_host(&host, cfg.sae.threshold_param, &device);
        let adam = AdamState::new(&sae);
        let m = host.d_sae;
        let log_path = run_dir.join("metrics.jsonl");
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let mut t = Self {
            steps_since_fired: Tensor::zeros([m], &device),
            fire_window: Tensor::zeros([m], &device),
            fire_total: Tensor::zeros([m], &device),
            cfg,
            run_dir,
            device,
            sae,
            adam,
            data,
            eval_rows,
            store_attributes: store_attributes.clone(),
            position: Position::default(),
            scale,
            step: 0,
            tokens_seen: 0,
            skipped_rows: 0,
            window_tokens: 0,
            log,
            last_checkpoint: None,
        };
        t.log_event(
            "start",
            json!({"d_in": d_in, "d_sae": m, "scale": scale, "device": device::label(&t.cfg.device),
                "store_attributes": store_attributes}),
        )?;
        Ok(t)
    }

    /// Continue the run in `run_dir` from its newest checkpoint.
    pub fn resume(run_dir: &Path) -> Result<Self, TrainError> {
        let ckpt = checkpoint::latest(run_dir)?;
        let (state, mut tensors) = checkpoint::read(&ckpt)?;
        let mut cfg = state.config.clone();
        cfg.out = run_dir.to_path_buf();
        let device = device::resolve(&cfg.device)?;
        let store = Store::open(&cfg.data.stores, cfg.data.dataset.as_deref())?;
        let (w_enc, shape) = tensors.take("W_enc")?;
        let [d_in, m] = shape[..] else {
            return Err(TrainError::Checkpoint(CheckpointError::State {
                path: ckpt.join("tensors.safetensors"),
                reason: format!("W_enc has shape {shape:?}: expected [d_in, d_sae]"),
            }));
        };
        if d_in != store.d_in() {
            return Err(TrainError::InitMismatch {
                path: ckpt.clone(),
                sae: d_in,
                store: store.paths()[0].to_path_buf(),
                dataset: store.dataset().to_string(),
                data: store.d_in(),
            });
        }
        let mut vec1 = |name: &str, len: usize| -> Result<Tensor<1>, TrainError> {
            Ok(upload(&tensors.take_len(name, len)?, [len], &device))
        };
        let b_enc = vec1("b_enc", m)?;
        let b_dec = vec1("b_dec", d_in)?;
        let theta_param = vec1("theta_param", m)?;
        let steps_since_fired = vec1("steps_since_fired", m)?;
        let fire_window = vec1("fire_window", m)?;
        let fire_total = vec1("fire_total", m)?;
        let w_dec = tensors.take_len("W_dec", m * d_in)?;
        let mut moments = |prefix: &str| -> Result<Moments, TrainError> {
            let mut get =
                |name: &str, len: usize| tensors.take_len(&format!("{prefix}.{name}"), len);
            Ok(Moments {
                w_enc: upload(&get("W_enc", d_in * m)?, [d_in, m], &device),
                b_enc: upload(&get("b_enc", m)?, [m], &device),
                w_dec: upload(&get("W_dec", m * d_in)?, [m, d_in], &device),
                b_dec: upload(&get("b_dec", d_in)?, [d_in], &device),
                theta_param: upload(&get("theta_param", m)?, [m], &device),
            })
        };
        let am = moments("adam_m")?;
        let av = moments("adam_v")?;
        let sae = Sae {
            w_enc: upload(&w_enc, [d_in, m], &device),
            b_enc,
            w_dec: upload(&w_dec, [m, d_in], &device),
            b_dec,
            theta_param,
            threshold_param: cfg.sae.threshold_param,
        };
        let adam = AdamState {
            steps: state.step,
            m: am,
            v: av,
        };
        let (data, eval_rows) = start_data(store, &cfg, state.position, state.scale)?;
        let log_path = run_dir.join("metrics.jsonl");
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let mut t = Self {
            cfg,
            run_dir: run_dir.to_path_buf(),
            device,
            sae,
            adam,
            data,
            eval_rows,
            store_attributes: state.store_attributes.clone(),
            position: state.position,
            scale: state.scale,
            step: state.step,
            tokens_seen: state.tokens_seen,
            skipped_rows: state.skipped_rows,
            steps_since_fired,
            fire_window,
            fire_total,
            window_tokens: state.window_tokens,
            log,
            last_checkpoint: Some(ckpt.clone()),
        };
        t.log_event(
            "resume",
            json!({"checkpoint": ckpt, "d_in": d_in, "d_sae": m, "scale": t.scale,
                "device": device::label(&t.cfg.device)}),
        )?;
        Ok(t)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Input scale C.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The current parameters on the host (training form).
    pub fn host_params(&self) -> HostParams {
        self.sae.to_host()
    }

    fn log_event(&mut self, kind: &str, body: serde_json::Value) -> Result<(), TrainError> {
        let mut obj = json!({"type": kind, "step": self.step, "tokens": self.tokens_seen});
        if let (Some(o), serde_json::Value::Object(b)) = (obj.as_object_mut(), body) {
            o.extend(b);
        }
        let path = self.log.path().to_path_buf();
        self.log.append(&obj).map_err(io_err(&path))
    }

    fn dead_steps(&self) -> f64 {
        (self.cfg.hyper.dead_window_tokens as f64 / self.cfg.data.batch_size as f64).ceil()
    }

    /// Run until the configured number of steps, or until told to stop.
    pub fn run(
        &mut self,
        controls: &Receiver<Control>,
        report: &mut dyn FnMut(TrainEvent),
    ) -> Result<Outcome, TrainError> {
        let total = self.cfg.total_steps();
        let (d_in, d_sae) = self.sae.dims();
        report(TrainEvent::Started {
            step: self.step,
            total_steps: total,
            d_in,
            d_sae,
            scale: self.scale,
        });
        let started = Instant::now();
        let mut window_start = Instant::now();
        let mut window_tokens_start = self.tokens_seen;
        let mut pending: Vec<(u64, Tensor<1>)> = Vec::new();
        while self.step < total {
            let mut checkpoint_now = false;
            loop {
                let msg = match controls.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => Control::Stop,
                };
                match msg {
                    Control::SetHyper(h, source) => self.set_hyper(*h, &source, report)?,
                    Control::Checkpoint => checkpoint_now = true,
                    Control::Stop => return self.stop(&mut pending, report),
                    Control::Resume => {}
                    Control::Pause => {
                        report(TrainEvent::Paused(true));
                        self.log_event("pause", json!({}))?;
                        loop {
                            match controls.recv() {
                                Ok(Control::Resume) => break,
                                Ok(Control::SetHyper(h, source)) => {
                                    self.set_hyper(*h, &source, report)?
                                }
                                Ok(Control::Checkpoint) => {
                                    self.checkpoint(&mut pending, report)?;
                                }
                                Ok(Control::Pause) => {}
                                Ok(Control::Stop) | Err(_) => {
                                    return self.stop(&mut pending, report);
                                }
                            }
                        }
                        report(TrainEvent::Paused(false));
                        self.log_event("resume-steps", json!({}))?;
                        window_start = Instant::now();
                        window_tokens_start = self.tokens_seen;
                    }
                }
            }
            if checkpoint_now {
                self.checkpoint(&mut pending, report)?;
            }

            let Prefetched { batch, position } = match self.data.next_batch() {
                Ok(p) => p,
                Err(e) => {
                    // keep what was trained so far before reporting the data problem
                    if self.step > 0 {
                        let _ = self.checkpoint(&mut pending, report);
                    }
                    return Err(e.into());
                }
            };
            self.position = position;
            if batch.skipped > 0 {
                self.skipped_rows += batch.skipped as u64;
                report(TrainEvent::Warning(format!(
                    "step {}: skipped {} rows with NaN/Inf ({} so far)",
                    self.step, batch.skipped, self.skipped_rows
                )));
            }
            if batch.new_epochs > 0 {
                let epoch = self.position.epoch;
                self.log_event("epoch", json!({"epoch": epoch}))?;
                report(TrainEvent::Epoch {
                    epoch,
                    step: self.step,
                });
            }
            let x = match &batch.data {
                Rows::F32(v) => upload(v, [batch.rows, d_in], &self.device),
                half => upload_owned(half.to_f32(), [batch.rows, d_in], &self.device),
            };
            let batch_rows = batch.rows;
            self.data.recycle(batch.data);
            let is_log =
                (self.step + 1).is_multiple_of(self.cfg.hyper.log_every) || self.step + 1 == total;
            let x_for_metrics = is_log.then(|| x.clone());
            let dead = (self.cfg.hyper.pre_act_coefficient > 0.0).then(|| {
                self.steps_since_fired
                    .clone()
                    .greater_equal_elem(self.dead_steps())
            });
            let plan = StepPlan {
                t: self.step,
                total_steps: total,
                hyper: &self.cfg.hyper,
                sae: &self.cfg.sae,
                fused_host: device::fused_host(&self.device),
            };
            let out = train_step(&mut self.sae, &mut self.adam, x, plan, dead.as_ref());
            let fired = out.fire_counts.clone().greater_elem(0.0);
            self.steps_since_fired = (self.steps_since_fired.clone() + 1.0).mask_fill(fired, 0.0);
            self.fire_window = self.fire_window.clone() + out.fire_counts.clone();
            self.fire_total = self.fire_total.clone() + out.fire_counts;
            self.window_tokens += batch_rows as u64;
            pending.push((self.step, out.parts));
            self.step += 1;
            self.tokens_seen += batch_rows as u64;

            if let Some(x) = x_for_metrics {
                let parts = self.flush(&mut pending)?;
                let secs = window_start.elapsed().as_secs_f64().max(1e-9);
                let tps = (self.tokens_seen - window_tokens_start) as f64 / secs;
                let elapsed = started.elapsed().as_secs_f64();
                let rec = self.metrics(parts, x, out.residual, tps, secs, elapsed);
                let path = self.log.path().to_path_buf();
                self.log
                    .append(&Tagged {
                        kind: "metrics",
                        record: &rec,
                    })
                    .map_err(io_err(&path))?;
                report(TrainEvent::Metrics(Box::new(rec)));
                window_start = Instant::now();
                window_tokens_start = self.tokens_seen;
            }
            let eval_every = self.cfg.hyper.eval_every;
            if !self.eval_rows.is_empty()
                && ((eval_every > 0 && self.step.is_multiple_of(eval_every)) || self.step == total)
            {
                self.validate(report)?;
            }
            let every = self.cfg.hyper.checkpoint_every;
            if every > 0 && self.step.is_multiple_of(every) && self.step < total {
                self.checkpoint(&mut pending, report)?;
            }
        }
        let checkpoint = self.checkpoint(&mut pending, report)?;
        let sae_dir = self.run_dir.join("sae");
        self.export(&sae_dir)?;
        self.log_event("finish", json!({"sae": sae_dir}))?;
        Ok(Outcome::Finished {
            sae_dir,
            checkpoint,
        })
    }

    fn set_hyper(
        &mut self,
        h: Hyper,
        source: &str,
        report: &mut dyn FnMut(TrainEvent),
    ) -> Result<(), TrainError> {
        let old = serde_json::to_value(&self.cfg.hyper).unwrap_or_default();
        let new = serde_json::to_value(&h).unwrap_or_default();
        let mut changes = Vec::new();
        let mut diff = serde_json::Map::new();
        if let (Some(o), Some(n)) = (old.as_object(), new.as_object()) {
            for (k, nv) in n {
                let ov = o.get(k).cloned().unwrap_or_default();
                if ov != *nv {
                    changes.push(format!("{k}: {ov} -> {nv}"));
                    diff.insert(k.clone(), json!({"old": ov, "new": nv}));
                }
            }
        }
        self.cfg.hyper = h;
        if !changes.is_empty() {
            // config.toml stays the effective configuration, so an edit of it starts from the
            // values in force (a key tweak is not undone by the next file save)
            let path = self.run_dir.join("config.toml");
            crate::atomic::write_file(&path, self.cfg.to_toml().as_bytes())
                .map_err(io_err(&path))?;
            self.log_event("hyper", json!({"source": source, "changes": diff}))?;
            report(TrainEvent::HyperChanged {
                step: self.step,
                source: source.to_string(),
                changes,
            });
        }
        Ok(())
    }

    /// Read back the queued loss parts; fail on the first non-finite loss.
    fn flush(
        &mut self,
        pending: &mut Vec<(u64, Tensor<1>)>,
    ) -> Result<Option<LossParts>, TrainError> {
        if pending.is_empty() {
            return Ok(None);
        }
        let steps: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
        let all = Tensor::cat(pending.drain(..).map(|(_, t)| t).collect(), 0);
        let v = download(&all);
        for (k, chunk) in v.chunks(5).enumerate() {
            if !chunk[0].is_finite() {
                let step = steps[k];
                let _ = self.log_event("nonfinite-loss", json!({"at_step": step}));
                return Err(TrainError::NonFiniteLoss {
                    step,
                    last_good: self.last_checkpoint.clone(),
                });
            }
        }
        let last = &v[v.len() - 5..];
        Ok(Some(LossParts {
            loss: last[0] as f64,
            mse: last[1] as f64,
            sparsity: last[2] as f64,
            l0: last[3] as f64,
            pre_act: last[4] as f64,
        }))
    }

    fn metrics(
        &mut self,
        parts: Option<LossParts>,
        x: Tensor<2>,
        residual: Tensor<2>,
        tokens_per_s: f64,
        window_seconds: f64,
        elapsed_s: f64,
    ) -> MetricsRecord {
        let p = parts.unwrap_or(LossParts {
            loss: f64::NAN,
            mse: f64::NAN,
            sparsity: f64::NAN,
            l0: f64::NAN,
            pre_act: f64::NAN,
        });
        let (_, m) = self.sae.dims();
        let window_s = window_seconds.max(1e-9);
        let data_wait_fraction = (self.data.take_wait().as_secs_f64() / window_s).min(1.0);
        let centred = x.clone() - x.mean_dim(0);
        let dead = self
            .steps_since_fired
            .clone()
            .greater_equal_elem(self.dead_steps())
            .float()
            .sum();
        let window = self.window_tokens.max(1) as f64;
        let log_freq = (self.fire_window.clone() / window + 1e-10).log() / std::f64::consts::LN_10;
        let log_theta = (self.sae.theta() * self.scale).log() / std::f64::consts::LN_10;
        let packed = Tensor::cat(
            vec![
                residual.square().sum(),
                centred.square().sum(),
                dead,
                log_freq,
                log_theta,
            ],
            0,
        );
        let v = download(&packed);
        let fvu = v[0] as f64 / v[1] as f64;
        let dead = v[2] as u64;
        let firing_hist = Histogram::new(v[3..3 + m].iter().map(|&x| x as f64), -10.0, 0.0, 40);
        let theta: Vec<f64> = v[3 + m..].iter().map(|&x| x as f64).collect();
        let finite = theta.iter().copied().filter(|t| t.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), t| {
            (a.min(t), b.max(t))
        });
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else if lo.is_finite() {
            (lo - 0.5, lo + 0.5)
        } else {
            (-4.0, 0.0)
        };
        let theta_hist = Histogram::new(theta, lo, hi, 40);
        self.fire_window = self.fire_window.zeros_like();
        self.window_tokens = 0;
        let t = self.step.saturating_sub(1);
        MetricsRecord {
            step: self.step,
            tokens: self.tokens_seen,
            loss: p.loss,
            mse: p.mse,
            sparsity: p.sparsity,
            pre_act: p.pre_act,
            l0: p.l0,
            explained_variance: 1.0 - fvu,
            dead,
            dead_fraction: dead as f64 / m as f64,
            lr: lr_at(t, &self.cfg.hyper, self.cfg.total_steps()),
            sparsity_coefficient: lambda_at(t, &self.cfg.hyper),
            tokens_per_s,
            skipped_rows: self.skipped_rows,
            epoch: self.position.epoch,
            data_wait_fraction,
            firing_hist,
            theta_hist,
            elapsed_s,
        }
    }

    /// L0, MSE and FVU of the current SAE on the held-out rows (raw activation space).
    fn validate(&mut self, report: &mut dyn FnMut(TrainEvent)) -> Result<(), TrainError> {
        let folded = io::fold(
            &self.sae.to_host(),
            self.scale as f32,
            self.cfg.sae.pre_encoder_bias,
        );
        let sae = InferenceSae::new(&folded, &self.device);
        let mut ev = Evaluator::new(&sae, folded.d_in, folded.d_sae);
        for chunk in self
            .eval_rows
            .chunks(self.cfg.data.batch_size * folded.d_in)
        {
            ev.add(chunk, &self.device);
        }
        let r = ev.report();
        let path = self.log.path().to_path_buf();
        let rec = json!({"type": "eval", "step": self.step, "tokens": self.tokens_seen, "eval": r});
        self.log.append(&rec).map_err(io_err(&path))?;
        report(TrainEvent::Eval {
            step: self.step,
            report: r,
        });
        Ok(())
    }

    fn checkpoint_tensors(&self) -> CheckpointTensors {
        let (d_in, m) = self.sae.dims();
        let mut tensors = vec![
            (
                "W_enc".to_string(),
                download(&self.sae.w_enc),
                vec![d_in, m],
            ),
            ("b_enc".to_string(), download(&self.sae.b_enc), vec![m]),
            (
                "W_dec".to_string(),
                download(&self.sae.w_dec),
                vec![m, d_in],
            ),
            ("b_dec".to_string(), download(&self.sae.b_dec), vec![d_in]),
            (
                "theta_param".to_string(),
                download(&self.sae.theta_param),
                vec![m],
            ),
            (
                "steps_since_fired".to_string(),
                download(&self.steps_since_fired),
                vec![m],
            ),
            (
                "fire_window".to_string(),
                download(&self.fire_window),
                vec![m],
            ),
            (
                "fire_total".to_string(),
                download(&self.fire_total),
                vec![m],
            ),
        ];
        for (prefix, mom) in [("adam_m", &self.adam.m), ("adam_v", &self.adam.v)] {
            tensors.push((
                format!("{prefix}.W_enc"),
                download(&mom.w_enc),
                vec![d_in, m],
            ));
            tensors.push((format!("{prefix}.b_enc"), download(&mom.b_enc), vec![m]));
            tensors.push((
                format!("{prefix}.W_dec"),
                download(&mom.w_dec),
                vec![m, d_in],
            ));
            tensors.push((format!("{prefix}.b_dec"), download(&mom.b_dec), vec![d_in]));
            tensors.push((
                format!("{prefix}.theta_param"),
                download(&mom.theta_param),
                vec![m],
            ));
        }
        CheckpointTensors { tensors }
    }

    /// Write a checkpoint now (after checking that every queued loss is finite).
    fn checkpoint(
        &mut self,
        pending: &mut Vec<(u64, Tensor<1>)>,
        report: &mut dyn FnMut(TrainEvent),
    ) -> Result<PathBuf, TrainError> {
        self.flush(pending)?;
        let tensors = self.checkpoint_tensors();
        if tensors.tensors[..5]
            .iter()
            .any(|(_, v, _)| v.iter().any(|x| !x.is_finite()))
        {
            return Err(TrainError::NonFiniteLoss {
                step: self.step.saturating_sub(1),
                last_good: self.last_checkpoint.clone(),
            });
        }
        let state = CheckpointState {
            version: checkpoint::VERSION,
            step: self.step,
            tokens_seen: self.tokens_seen,
            position: self.position,
            scale: self.scale,
            skipped_rows: self.skipped_rows,
            window_tokens: self.window_tokens,
            config: self.cfg.clone(),
            store_attributes: self.store_attributes.clone(),
        };
        let path = checkpoint::write(
            &self.run_dir,
            &state,
            &tensors,
            self.cfg.hyper.keep_checkpoints,
        )?;
        self.last_checkpoint = Some(path.clone());
        self.log_event("checkpoint", json!({"path": path}))?;
        report(TrainEvent::Checkpoint {
            step: self.step,
            path: path.clone(),
        });
        Ok(path)
    }

    fn stop(
        &mut self,
        pending: &mut Vec<(u64, Tensor<1>)>,
        report: &mut dyn FnMut(TrainEvent),
    ) -> Result<Outcome, TrainError> {
        let checkpoint = self.checkpoint(pending, report)?;
        self.log_event("stop", json!({"checkpoint": checkpoint}))?;
        Ok(Outcome::Stopped {
            checkpoint,
            step: self.step,
        })
    }

    /// Export the current SAE in inference form (SAELens layout) to `dir`.
    pub fn export(&self, dir: &Path) -> Result<(), TrainError> {
        let total = download(&self.fire_total);
        let (params, sparsity) = inference_form(
            self.sae.to_host(),
            self.scale,
            &self.cfg,
            &total,
            self.tokens_seen,
        );
        io::write_saelens(
            dir,
            &params,
            Some(&sparsity),
            export_metadata(&self.cfg, self.step, self.scale, &self.store_attributes),
        )?;
        Ok(())
    }
}

/// Fold training-form parameters into inference form, with per-feature log10 density.
pub fn inference_form(
    host: HostParams,
    scale: f64,
    cfg: &Config,
    fire_total: &[f32],
    tokens: u64,
) -> (HostParams, Vec<f32>) {
    let params = io::fold(&host, scale as f32, cfg.sae.pre_encoder_bias);
    let sparsity = fire_total
        .iter()
        .map(|&c| log10_density(c as f64 / tokens.max(1) as f64) as f32)
        .collect();
    (params, sparsity)
}

fn export_metadata(
    cfg: &Config,
    step: u64,
    scale: f64,
    store_attributes: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    json!({
        "store_attributes": store_attributes,
        "trained_with": "jumpscope",
        "version": env!("CARGO_PKG_VERSION"),
        "step": step,
        "input_scale": scale,
        "pre_encoder_bias_folded": cfg.sae.pre_encoder_bias,
        "stores": cfg.data.stores,
        "dataset": cfg.data.dataset,
        "hyper": cfg.hyper,
    })
}

/// Export a checkpoint directory to a SAELens directory.
pub fn export_checkpoint(ckpt: &Path, out: &Path) -> Result<(), TrainError> {
    let ckpt = if ckpt.join("state.json").exists() {
        ckpt.to_path_buf()
    } else {
        checkpoint::latest(ckpt)?
    };
    let (state, mut t) = checkpoint::read(&ckpt)?;
    let (w_enc, shape) = t.take("W_enc")?;
    let [d_in, d_sae] = shape[..] else {
        return Err(TrainError::Checkpoint(CheckpointError::State {
            path: ckpt.join("tensors.safetensors"),
            reason: format!("W_enc has shape {shape:?}: expected [d_in, d_sae]"),
        }));
    };
    let theta_param = t.take_len("theta_param", d_sae)?;
    let threshold = match state.config.sae.threshold_param {
        ThresholdParam::Log => theta_param.iter().map(|v| v.exp()).collect(),
        ThresholdParam::Raw => theta_param.iter().map(|v| v.max(0.0)).collect(),
    };
    let host = HostParams {
        d_in,
        d_sae,
        w_enc,
        b_enc: t.take_len("b_enc", d_sae)?,
        w_dec: t.take_len("W_dec", d_sae * d_in)?,
        b_dec: t.take_len("b_dec", d_in)?,
        threshold,
    };
    let fire_total = t.take_len("fire_total", d_sae)?;
    let (params, sparsity) = inference_form(
        host,
        state.scale,
        &state.config,
        &fire_total,
        state.tokens_seen,
    );
    io::write_saelens(
        out,
        &params,
        Some(&sparsity),
        export_metadata(
            &state.config,
            state.step,
            state.scale,
            &state.store_attributes,
        ),
    )?;
    Ok(())
}
