//! Starting a run: a new one (open the store, estimate the input scale, initialise or load
//! `init_from`, create the run directory) or one resumed from its newest checkpoint; both start
//! the prefetch thread and read the held-out rows.

use crate::config::{Config, ConfigError, Normalize};
use crate::data::batches::{Batcher, Position};
use crate::data::norm::estimate_scale;
use crate::data::prefetch::Prefetcher;
use crate::data::store::Store;
use crate::health::{Monitor, RunFacts};
use crate::live::ConfigFile;
use crate::lock::DirLock;
use crate::metrics::log::JsonlLog;
use crate::sae::io;
use crate::sae::kernels::Kernels;
use crate::sae::model::{HostParams, Sae};
use crate::schema::record::Record;
use crate::train::adam::AdamState;
use crate::train::checkpoint;
use crate::train::error::{TrainError, io_err};
use crate::train::firing::Firing;
use crate::train::fresh;
use crate::train::intent;
use crate::train::memory::{self, Available, MemoryEstimate, RunSizes};
use crate::train::report::LossQueue;
use crate::train::trainer::{Feed, Resources, State, Trainer};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Batches the prefetch thread reads ahead.
const PREFETCH_DEPTH: usize = 4;

/// What a sweep's members share, read and computed once: the input scale, the held-out rows
/// and the store's attributes.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Input scale C.
    pub scale: f64,
    /// The held-out rows (raw).
    pub eval_rows: Arc<Vec<f32>>,
    /// The store's file attributes.
    pub store_attributes: std::collections::BTreeMap<String, String>,
    /// Rows of the store training reads (all but the held-out ones).
    pub train_tokens: u64,
    /// A transcoder's target store: its scale, width and held-out rows.
    pub target: Option<TargetShared>,
}

/// What a transcoder's runs share of its target store (`data.target_stores`).
#[derive(Debug, Clone)]
pub struct TargetShared {
    /// The target's scale C_y.
    pub scale: f64,
    /// The target's width, d_out.
    pub d_out: usize,
    /// The targets of the held-out rows (raw), paired with [`Shared::eval_rows`].
    pub eval_rows: Arc<Vec<f32>>,
}

/// The scale factor of `store`'s training rows under `cfg`'s normalisation.
fn scale_of(store: &Store, cfg: &Config) -> Result<f64, TrainError> {
    Ok(match cfg.data.normalize {
        Normalize::MeanSquaredNorm => {
            let training_rows = store.rows().saturating_sub(cfg.data.eval_tokens);
            estimate_scale(store, cfg.data.scale_sample_tokens, training_rows)?
        }
        Normalize::None => 1.0,
    })
}

/// Open the store of `cfg` and compute what every run on it starts from: the input scale (or
/// `scales` when resuming: the input's and a transcoder's target's) and the held-out rows; for a
/// transcoder, its target store checked to pair with the input, with its own scale and rows.
pub fn open_shared(
    cfg: &Config,
    scales: Option<(f64, Option<f64>)>,
) -> Result<(Store, Shared), TrainError> {
    let store = open_store(cfg)?;
    let scale = match scales {
        Some((s, _)) => s,
        None => scale_of(&store, cfg)?,
    };
    let eval_rows = Arc::new(held_out(&store, cfg)?);
    let target = match open_target(cfg, &store)? {
        Some(t) => {
            let scale = match scales.and_then(|(_, t)| t) {
                Some(s) => s,
                None => scale_of(&t, cfg)?,
            };
            let held = cfg.data.eval_tokens;
            let mut rows = Vec::new();
            // kept and left out with their inputs: the input store's mask decides
            t.read_kept_rows_by(&store, t.rows() - held, held, &mut rows)?;
            Some(TargetShared {
                scale,
                d_out: t.d_in(),
                eval_rows: Arc::new(rows),
            })
        }
        None => None,
    };
    let store_attributes = store.attributes();
    let train_tokens = store.rows().saturating_sub(cfg.data.eval_tokens) as u64;
    Ok((
        store,
        Shared {
            scale,
            eval_rows,
            store_attributes,
            train_tokens,
            target,
        },
    ))
}

/// A transcoder's target store (`data.target_stores`), checked to pair with `input` row for
/// row; `None` for an SAE.
pub fn open_target(cfg: &Config, input: &Store) -> Result<Option<Store>, TrainError> {
    if !cfg.sae.kind.has_target() {
        return Ok(None);
    }
    let target = Store::open(
        &cfg.data.target_stores,
        cfg.data
            .target_dataset
            .as_deref()
            .or(cfg.data.dataset.as_deref()),
    )
    .map_err(|e| missing_store(e, &crate::schema::keys::TARGET_STORES))?;
    crate::data::pair::check(input, &target)?;
    Ok(Some(target))
}

impl Shared {
    /// The input scale and a transcoder's target scale.
    pub fn scales(&self) -> (f64, Option<f64>) {
        (self.scale, self.target.as_ref().map(|t| t.scale))
    }

    /// What a run of `cfg` uses of it: an SAE member of a sweep that reads a target store
    /// (for its transcoders) leaves the target out.
    pub fn for_kind(&self, cfg: &Config) -> Shared {
        Shared {
            target: self.target.clone().filter(|_| cfg.sae.kind.has_target()),
            ..self.clone()
        }
    }
}

/// Open the store `data.stores` names; a file or pattern that finds nothing is named with the
/// key, and a relative one with the directory it was looked for in (a sample configuration run
/// from outside the repository finds nothing).
pub fn open_store(cfg: &Config) -> Result<Store, TrainError> {
    Store::open(&cfg.data.stores, cfg.data.dataset.as_deref())
        .map_err(|e| missing_store(e, &crate::schema::keys::STORES))
}

/// A store that could not be opened: a file or pattern that finds nothing is named with `key`.
fn missing_store(
    e: crate::data::store::StoreError,
    key: &'static crate::schema::keys::Key,
) -> TrainError {
    let missing = match &e {
        crate::data::store::StoreError::Open { path, reason } if reason == "no such file" => {
            Some(path.display().to_string())
        }
        crate::data::store::StoreError::NoMatch { pattern } => Some(pattern.clone()),
        _ => None,
    };
    match missing {
        Some(path) => TrainError::MissingStore {
            key,
            relative_to: Path::new(&path)
                .is_relative()
                .then(|| std::env::current_dir().ok())
                .flatten()
                .map(|d| {
                    format!(
                        " (a relative path is taken from the current directory, {})",
                        d.display()
                    )
                })
                .unwrap_or_default(),
            path,
        },
        None => e.into(),
    }
}

/// Start the prefetch thread over the store (less its held-out tail) at `position`, with a
/// transcoder's target store read beside it at `target_scale`.
pub fn reader(
    store: Store,
    cfg: &Config,
    position: Position,
    (scale, target_scale): (f64, Option<f64>),
) -> Result<Prefetcher, TrainError> {
    let target = match target_scale {
        Some(ts) => open_target(cfg, &store)?.map(|t| (t, ts)),
        None => None,
    };
    let mut batcher = Batcher::new(
        store,
        cfg.data.shuffle,
        cfg.data.seed,
        cfg.data.on_nonfinite,
        position,
    )
    .hold_out(cfg.data.eval_tokens);
    let buffer = cfg
        .data
        .shuffle_buffer_tokens
        .unwrap_or_else(|| Batcher::default_block_rows(batcher.store().d_in()));
    batcher = batcher.buffer_rows(buffer);
    batcher.scale = (1.0 / scale) as f32;
    if let Some((t, ts)) = target {
        batcher = batcher.with_target(t, (1.0 / ts) as f32);
    }
    Ok(Prefetcher::spawn(
        batcher,
        cfg.data.batch_size,
        PREFETCH_DEPTH,
    ))
}

/// The memory estimate of a run of `cfg` on rows of width `d_in` (for a sweep's sum).
pub fn estimate_memory(cfg: &Config, widths: (usize, usize), d_sae: usize) -> MemoryEstimate {
    let device = cfg.device.resolve().ok();
    let kernels = device
        .as_ref()
        .map_or(Kernels::HostFused, Kernels::for_device);
    memory::estimate(sizes(cfg, widths, d_sae, kernels))
}

/// The held-out tail of the store (less the positions a `mask` leaves out).
fn held_out(store: &Store, cfg: &Config) -> Result<Vec<f32>, TrainError> {
    let held = cfg.data.eval_tokens;
    if held >= store.rows() {
        return Err(TrainError::Config(ConfigError::Invalid {
            origin: store.paths()[0].display().to_string(),
            key: crate::schema::keys::EVAL_TOKENS.path(),
            value: held.to_string(),
            expected: format!("fewer than the store's {} rows", store.rows()),
        }));
    }
    let mut eval_rows = Vec::new();
    // the positions a `mask` leaves out of training are left out of validation too
    store.read_kept_rows(store.rows() - held, held, &mut eval_rows)?;
    Ok(eval_rows)
}

fn sizes(cfg: &Config, (d_in, d_out): (usize, usize), d_sae: usize, kernels: Kernels) -> RunSizes {
    RunSizes {
        d_in,
        d_sae,
        transcoder: cfg
            .sae
            .kind
            .has_target()
            .then_some((d_out, cfg.sae.kind.has_skip())),
        batch: cfg.data.batch_size,
        prefetch_depth: PREFETCH_DEPTH,
        shuffle_rows: cfg
            .data
            .shuffle_buffer_tokens
            .unwrap_or_else(|| Batcher::default_block_rows(d_in)),
        eval_rows: cfg.data.eval_tokens,
        kernels,
    }
}

/// Estimate what the run needs and refuse it when that exceeds what the device has free;
/// returns the estimate and the bytes free (`None` where they could not be checked) for the
/// opening record.
fn check_memory(
    cfg: &Config,
    widths: (usize, usize),
    d_sae: usize,
    kernels: Kernels,
) -> Result<(MemoryEstimate, Option<u64>), TrainError> {
    let need = memory::estimate(sizes(cfg, widths, d_sae, kernels));
    let available = match memory::available_on(cfg.device) {
        Available::Bytes(b) => b,
        Available::Unknown(_) => return Ok((need, None)),
    };
    if need.total > available {
        let model = need.parameters + need.adam_moments + need.gradients;
        let advice = if need.working_set >= model.max(need.data_buffers) {
            "lower data.batch_size (or sae.d_sae / sae.expansion_factor)"
        } else if model >= need.data_buffers {
            "lower sae.d_sae (or sae.expansion_factor)"
        } else {
            "lower data.eval_tokens or data.shuffle_buffer_tokens"
        };
        return Err(TrainError::OutOfMemory {
            device: cfg.device.label(),
            need,
            available,
            advice: advice.into(),
        });
    }
    Ok((need, Some(available)))
}

/// The health rules for a run of this configuration.
fn monitor(cfg: &Config, d_sae: usize) -> Monitor {
    let facts = RunFacts {
        d_sae,
        sparsity_warmup_steps: cfg.hyper.sparsity_warmup_steps,
        target_l0: cfg.hyper.target_l0,
        architecture: cfg.sae.architecture,
    };
    Monitor::new(cfg.hyper.health.clone(), facts)
}

/// The initial parameters of a new run: `init_from` checked against the store (and brought into
/// training space), or the recipe's initialisation.
fn initial_params(cfg: &Config, store: &Store, shared: &Shared) -> Result<HostParams, TrainError> {
    let d_in = store.d_in();
    let d_out = shared.target.as_ref().map_or(d_in, |t| t.d_out);
    let (input, target) = shared.scales();
    let scales = io::Scales::of(input, target);
    let Some(path) = &cfg.sae.init_from else {
        return Ok(HostParams::init_kind(
            cfg.sae.kind,
            (d_in, d_out, cfg.sae.d_sae_for(d_in)),
            cfg.sae.threshold_init as f32,
            cfg.data.seed,
        ));
    };
    let loaded = io::load(path)?;
    let kind = loaded.params.kind();
    if kind != cfg.sae.kind {
        return Err(TrainError::InitKind {
            path: path.clone(),
            sae: kind.name(),
            config: cfg.sae.kind.name(),
        });
    }
    if loaded.architecture != cfg.sae.architecture {
        return Err(TrainError::InitArchitecture {
            path: path.clone(),
            sae: loaded.architecture.name(),
            config: cfg.sae.architecture.name(),
        });
    }
    if loaded.params.d_in != d_in {
        return Err(TrainError::InitMismatch {
            path: path.clone(),
            sae: loaded.params.d_in,
            store: store.paths()[0].to_path_buf(),
            dataset: store.dataset().to_string(),
            data: d_in,
        });
    }
    if kind.has_target() && loaded.params.d_out != d_out {
        let target = open_target(cfg, store)?;
        return Err(TrainError::InitOutput {
            path: path.clone(),
            sae: loaded.params.d_out,
            store: target
                .map(|t| t.paths()[0].to_path_buf())
                .unwrap_or_default(),
            data: d_out,
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
    Ok(io::unfold(&loaded.params, scales, cfg.sae.pre_encoder_bias))
}

/// k and the Matryoshka widths must not exceed the dictionary (checked when d_sae comes from
/// the expansion factor).
fn check_k(cfg: &Config, d_sae: usize) -> Result<(), TrainError> {
    if cfg.hyper.k > d_sae {
        return Err(TrainError::KTooLarge {
            k: cfg.hyper.k,
            d_sae,
        });
    }
    if let Some(&w) = cfg.sae.matryoshka_widths.last()
        && w > d_sae
    {
        return Err(TrainError::WidthsTooLarge { width: w, d_sae });
    }
    Ok(())
}

impl Trainer {
    /// Prepare a new run: open the store, estimate the scale, initialise (or load `init_from`),
    /// and create the run directory with its `config.toml` and `metrics.jsonl`.
    pub fn new(cfg: Config) -> Result<Self, TrainError> {
        Self::new_in(cfg, None)
    }

    /// [`Trainer::new`] in a directory this process may already have claimed (a resume that
    /// found no complete checkpoint starts afresh under the lock it took).
    fn new_in(cfg: Config, claimed: Option<Claimed>) -> Result<Self, TrainError> {
        let device = cfg.device.resolve()?;
        // checked before the scale pass, which can take a while on a big store
        let store = open_store(&cfg)?;
        // a transcoder's target store pairs with it, or nothing starts
        let d_out = open_target(&cfg, &store)?.map_or(store.d_in(), |t| t.d_in());
        let d_in = store.d_in();
        let d_sae = cfg.sae.d_sae_for(d_in);
        check_k(&cfg, d_sae)?;
        let memory = check_memory(&cfg, (d_in, d_out), d_sae, Kernels::for_device(&device))?;
        drop(store);
        // the held-out split is checked against the store before anything is written
        let (store, shared) = open_shared(&cfg, None)?;
        let host = initial_params(&cfg, &store, &shared)?;
        let data = reader(store, &cfg, Position::default(), shared.scales())?;
        Self::start(
            cfg,
            device,
            host,
            d_in,
            shared,
            (Some(data), claimed),
            memory,
        )
    }

    /// Prepare a new member of a sweep: like [`Trainer::new`], but reading nothing itself (the
    /// sweep feeds each batch to [`Trainer::step_on`]) and sharing what the sweep computed once.
    /// The sweep checked the memory of all members together.
    pub fn member(cfg: Config, store: &Store, shared: &Shared) -> Result<Self, TrainError> {
        let shared = &shared.for_kind(&cfg);
        let device = cfg.device.resolve()?;
        let d_in = store.d_in();
        let d_sae = cfg.sae.d_sae_for(d_in);
        check_k(&cfg, d_sae)?;
        let d_out = shared.target.as_ref().map_or(d_in, |t| t.d_out);
        let estimate = estimate_memory(&cfg, (d_in, d_out), d_sae);
        let host = initial_params(&cfg, store, shared)?;
        Self::start(
            cfg,
            device,
            host,
            d_in,
            shared.clone(),
            (None, None),
            (estimate, None),
        )
    }

    /// Create the run directory and the trainer of a new run.
    fn start(
        cfg: Config,
        device: burn::tensor::Device,
        host: HostParams,
        d_in: usize,
        shared: Shared,
        (data, claimed): (Option<Prefetcher>, Option<Claimed>),
        (memory_estimate, memory_available): (MemoryEstimate, Option<u64>),
    ) -> Result<Self, TrainError> {
        let Shared {
            scale,
            eval_rows,
            store_attributes,
            train_tokens,
            target,
        } = shared;
        let kernels = Kernels::for_device(&device);
        let run_dir = cfg.out.clone();
        let Claimed { lock, mut notes } = match claimed {
            Some(c) => c,
            None => {
                check_run_dir(&run_dir)?;
                std::fs::create_dir_all(&run_dir).map_err(io_err(&run_dir))?;
                // one writer: a run still being written by another process is named as such
                Claimed::take(&run_dir)?
            }
        };
        // a run with a checkpoint to resume, or a finished one (its checkpoints since deleted)
        if !checkpoint::list(&run_dir).is_empty() || run_dir.join("sae").exists() {
            return Err(TrainError::RunExists(run_dir));
        }
        // an attempt that never completed a checkpoint: set aside, not appended to
        if let Some(aside) =
            fresh::set_aside(&run_dir, EARLIER_ATTEMPT).map_err(io_err(&run_dir))?
        {
            // its configuration too (this run writes its own over it)
            let config = run_dir.join("config.toml");
            if config.is_file() {
                std::fs::copy(&config, aside.join("config.toml")).map_err(io_err(&config))?;
            }
            notes.push(fresh::note(&run_dir, Some(&aside)));
        }
        let config_file = ConfigFile::in_run(&run_dir);
        config_file
            .write(&cfg)
            .map_err(io_err(config_file.path()))?;
        let sae = Sae::from_host(&host, cfg.sae.threshold_param, &device);
        let adam = AdamState::new(&sae);
        let log_path = run_dir.join("metrics.jsonl");
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let opening = Record::Start {
            step: 0,
            tokens: 0,
            d_in,
            d_sae: host.d_sae,
            architecture: cfg.sae.architecture,
            kind: cfg.sae.kind,
            d_out: cfg.sae.kind.has_target().then_some(host.d_out),
            scale,
            device: cfg.device.label(),
            store_attributes: store_attributes.clone(),
            memory_estimate: Some(memory_estimate),
            memory_available,
        };
        let health = monitor(&cfg, host.d_sae);
        let firing = Firing::new(host.d_sae, &device);
        Ok(Self {
            res: Resources {
                kernels,
                cfg,
                run_dir,
                config_file,
                device,
                feed: feed(data),
                eval_rows,
                eval_targets: target.as_ref().map(|t| t.eval_rows.clone()),
                store_attributes,
                train_tokens,
                log,
                lm: None,
                lock,
            },
            st: State {
                firing,
                sae,
                adam,
                position: Position::default(),
                scale,
                target_scale: target.as_ref().map(|t| t.scale),
                step: 0,
                tokens_seen: 0,
                skipped_rows: 0,
                losses: LossQueue::default(),
                window: (Instant::now(), 0),
                sparse_steps: 0,
                last_checkpoint: None,
                opening: Some(opening),
                notes,
                health,
                last_theta: None,
                started: Instant::now(),
                lm_pending: None,
                lm_last: None,
                protected: None,
                resume_edits: Vec::new(),
                last: Default::default(),
            },
        })
    }

    /// Continue the run in `run_dir` from its newest checkpoint (after removing what an
    /// interrupted checkpoint write left behind), with the edits of its `config.toml` made while
    /// it was stopped and `sets` (`--set key=value`: live keys, `train.steps`, `train.tokens`).
    /// A run that had finished, and that nothing extends, is left as it is.
    pub fn resume(run_dir: &Path, sets: &[String]) -> Result<Resumption, TrainError> {
        // before anything is tidied: the directory may be another process's
        let Claimed { lock, mut notes } = Claimed::take(run_dir)?;
        let (ckpt, state, tensors) = match checkpoint::read_newest(run_dir) {
            Ok((ckpt, state, tensors, damaged)) => {
                notes.extend(damaged);
                (ckpt, state, tensors)
            }
            Err(checkpoint::CheckpointError::None(_)) => {
                let t = Self::restart(run_dir, Claimed { lock, notes }, sets)?;
                return Ok(Resumption::Go(Box::new(t)));
            }
            Err(e) => return Err(e.into()),
        };
        let mut cfg = state.config.clone();
        cfg.out = run_dir.to_path_buf();
        let intent::Intent { config: cfg, edits } = intent::on_resume(&cfg, run_dir, sets)?;
        let sae = run_dir.join("sae");
        if state.step >= cfg.total_steps() && sae.join("cfg.json").is_file() {
            return Ok(Resumption::Finished {
                step: state.step,
                sae,
            });
        }
        let device = cfg.device.resolve()?;
        let store = open_store(&cfg)?;
        check_width(&ckpt, &store, tensors.d_in)?;
        let memory = check_memory(
            &cfg,
            (tensors.d_in, tensors.d_out),
            tensors.d_sae,
            Kernels::for_device(&device),
        )?;
        let scales = (state.scale, state.target_scale);
        let (store, shared) = open_shared(&cfg, Some(scales))?;
        check_output(&ckpt, &shared, &tensors)?;
        let data = reader(store, &cfg, state.position, scales)?;
        let shared = Shared {
            store_attributes: state.store_attributes.clone(),
            ..shared
        };
        let mut t = Self::continue_from(
            run_dir,
            ckpt,
            (state, tensors),
            cfg,
            device,
            Some(data),
            shared,
            memory,
            (notes, lock),
        )?;
        t.st.resume_edits = edits;
        Ok(Resumption::Go(Box::new(t)))
    }

    /// A run directory with no complete checkpoint, resumed: started afresh from step 0 with
    /// its `config.toml` (what the earlier attempt wrote set aside).
    fn restart(run_dir: &Path, claimed: Claimed, sets: &[String]) -> Result<Self, TrainError> {
        let path = run_dir.join("config.toml");
        if run_dir.join("sae").exists() {
            return Err(checkpoint::CheckpointError::None(run_dir.to_path_buf()).into());
        }
        if !path.is_file() {
            return Err(TrainError::NothingToResume(run_dir.to_path_buf()));
        }
        let origin = path.display().to_string();
        let mut cfg = crate::config::load(&path, sets)?.validate(&origin)?;
        cfg.out = run_dir.to_path_buf();
        Self::new_in(cfg, Some(claimed))
    }

    /// Continue a member of a sweep from checkpoint `ckpt` of its run directory, fed by the
    /// sweep (which checked the store and the memory of all members, and claimed the directory).
    pub fn resume_member(
        run_dir: &Path,
        claimed: Claimed,
        ckpt: &Path,
        store: &Store,
        shared: &Shared,
    ) -> Result<Self, TrainError> {
        let Claimed { lock, notes } = claimed;
        let (state, tensors) = checkpoint::read(ckpt)?;
        let mut cfg = state.config.clone();
        cfg.out = run_dir.to_path_buf();
        let device = cfg.device.resolve()?;
        check_width(ckpt, store, tensors.d_in)?;
        let estimate = estimate_memory(&cfg, (tensors.d_in, tensors.d_out), tensors.d_sae);
        let shared = Shared {
            store_attributes: state.store_attributes.clone(),
            ..shared.for_kind(&cfg)
        };
        check_output(ckpt, &shared, &tensors)?;
        Self::continue_from(
            run_dir,
            ckpt.to_path_buf(),
            (state, tensors),
            cfg,
            device,
            None,
            shared,
            (estimate, None),
            (notes, lock),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn continue_from(
        run_dir: &Path,
        ckpt: std::path::PathBuf,
        (state, tensors): (checkpoint::CheckpointState, checkpoint::TrainTensors),
        cfg: Config,
        device: burn::tensor::Device,
        data: Option<Prefetcher>,
        shared: Shared,
        (memory_estimate, memory_available): (MemoryEstimate, Option<u64>),
        (notes, lock): (Vec<String>, DirLock),
    ) -> Result<Self, TrainError> {
        let kernels = Kernels::for_device(&device);
        let (sae, adam, firing) =
            tensors.to_device(&cfg.sae, state.step, state.window_tokens, &device);
        let log_path = run_dir.join("metrics.jsonl");
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let opening = Record::Resume {
            step: state.step,
            tokens: state.tokens_seen,
            checkpoint: ckpt.clone(),
            d_in: tensors.d_in,
            d_sae: tensors.d_sae,
            architecture: cfg.sae.architecture,
            kind: cfg.sae.kind,
            d_out: cfg.sae.kind.has_target().then_some(tensors.d_out),
            scale: state.scale,
            device: cfg.device.label(),
            memory_estimate: Some(memory_estimate),
            memory_available,
        };
        let health = monitor(&cfg, tensors.d_sae);
        Ok(Self {
            res: Resources {
                kernels,
                cfg,
                run_dir: run_dir.to_path_buf(),
                config_file: ConfigFile::in_run(run_dir),
                device,
                feed: feed(data),
                eval_rows: shared.eval_rows,
                eval_targets: shared.target.as_ref().map(|t| t.eval_rows.clone()),
                store_attributes: shared.store_attributes,
                train_tokens: shared.train_tokens,
                log,
                lm: None,
                lock,
            },
            st: State {
                sae,
                adam,
                position: state.position,
                scale: state.scale,
                target_scale: state.target_scale,
                step: state.step,
                tokens_seen: state.tokens_seen,
                skipped_rows: state.skipped_rows,
                firing,
                losses: LossQueue::default(),
                window: (Instant::now(), state.tokens_seen),
                sparse_steps: 0,
                last_checkpoint: Some(ckpt),
                opening: Some(opening),
                notes,
                health,
                last_theta: None,
                started: Instant::now(),
                lm_pending: None,
                lm_last: None,
                protected: None,
                resume_edits: Vec::new(),
                last: Default::default(),
            },
        })
    }
}

/// A run's own reader, or none when a sweep feeds its batches.
fn feed(data: Option<Prefetcher>) -> Feed {
    data.map_or(Feed::Fed(std::time::Duration::ZERO), Feed::Own)
}

/// A run may start in a new or empty directory, or one that holds a run (which it then
/// continues or refuses); never in a sweep's directory or among someone's other files.
fn check_run_dir(run_dir: &Path) -> Result<(), TrainError> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Ok(());
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|n| n == "sweep.toml") {
        return Err(TrainError::NotARunDir {
            dir: run_dir.to_path_buf(),
            what: "is a sweep's directory (sweep.toml): continue the sweep with `jumpscope sweep --resume`, or one member with `jumpscope train --resume DIR/MEMBER`".into(),
        });
    }
    let ours = |n: &str| {
        [
            "config.toml",
            "metrics.jsonl",
            "checkpoints",
            "sae",
            "lm-eval.log",
            crate::lock::LOCK_FILE,
        ]
        .contains(&n)
            || n.starts_with("abandoned-")
    };
    if let Some(other) = names.iter().find(|n| !ours(n)) {
        return Err(TrainError::NotARunDir {
            dir: run_dir.to_path_buf(),
            what: format!(
                "is not empty and is not a run's directory (it holds `{other}`): choose a new or empty directory"
            ),
        });
    }
    Ok(())
}

/// How `train --resume` goes on.
pub enum Resumption {
    /// Training continues.
    Go(Box<Trainer>),
    /// The run had finished, and nothing asked for more steps: nothing was written.
    Finished {
        /// The step it finished at.
        step: u64,
        /// Its saved SAE.
        sae: std::path::PathBuf,
    },
}

impl Resumption {
    /// The trainer, when training continues.
    pub fn trainer(self) -> Option<Trainer> {
        match self {
            Resumption::Go(t) => Some(*t),
            Resumption::Finished { .. } => None,
        }
    }
}

/// What an attempt that never completed a checkpoint leaves in its run directory.
const EARLIER_ATTEMPT: &[&str] = &["metrics.jsonl", "checkpoints", "lm-eval.log"];

/// A run directory this process writes: its lock taken, then what an interrupted write left
/// tidied (a sweep claims its members before choosing which record to resume from, so that a
/// checkpoint restored by the tidying counts).
#[derive(Debug)]
pub struct Claimed {
    lock: DirLock,
    /// What the tidying did, said when the run starts.
    notes: Vec<String>,
}

impl Claimed {
    /// Lock `run_dir` (one writer), then tidy it.
    pub fn take(run_dir: &Path) -> Result<Self, TrainError> {
        let lock = take_lock(run_dir)?;
        Ok(Self {
            lock,
            notes: tidy(run_dir)?,
        })
    }
}

/// Remove what an interrupted checkpoint write left in `run_dir`; the notes saying so.
fn tidy(run_dir: &Path) -> Result<Vec<String>, TrainError> {
    let t = checkpoint::remove_leftovers(run_dir)?;
    let restored = t.restored.iter().map(|p| {
        format!(
            "restored {} from the copy a rewrite that was interrupted left",
            p.display()
        )
    });
    let removed = t.removed.iter().map(|p| {
        format!(
            "removed {}, left by a write that was interrupted",
            p.display()
        )
    });
    Ok(restored.chain(removed).collect())
}

/// The checkpoint's SAE must read the store's width.
fn check_width(ckpt: &Path, store: &Store, d_in: usize) -> Result<(), TrainError> {
    if d_in != store.d_in() {
        return Err(TrainError::InitMismatch {
            path: ckpt.to_path_buf(),
            sae: d_in,
            store: store.paths()[0].to_path_buf(),
            dataset: store.dataset().to_string(),
            data: store.d_in(),
        });
    }
    Ok(())
}

/// A transcoder's checkpoint must reconstruct the target store's width.
fn check_output(
    ckpt: &Path,
    shared: &Shared,
    tensors: &checkpoint::TrainTensors,
) -> Result<(), TrainError> {
    match &shared.target {
        Some(t) if t.d_out != tensors.d_out => Err(TrainError::InitOutput {
            path: ckpt.to_path_buf(),
            sae: tensors.d_out,
            store: Default::default(),
            data: t.d_out,
        }),
        _ => Ok(()),
    }
}

/// Lock an existing run directory for this process (a missing one is the error reading it
/// would give).
fn take_lock(run_dir: &Path) -> Result<DirLock, TrainError> {
    if !run_dir.is_dir() {
        return Err(TrainError::Checkpoint(checkpoint::CheckpointError::None(
            run_dir.to_path_buf(),
        )));
    }
    Ok(DirLock::take(run_dir)?)
}
