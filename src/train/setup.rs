//! Starting a run: a new one (open the store, estimate the input scale, initialise or load
//! `init_from`, create the run directory) or one resumed from its newest checkpoint; both start
//! the prefetch thread and read the held-out rows.

use crate::config::{Config, ConfigError, Normalize};
use crate::data::batches::{Batcher, Position};
use crate::data::norm::estimate_scale;
use crate::data::prefetch::Prefetcher;
use crate::data::store::Store;
use crate::device;
use crate::health::{Monitor, RunFacts};
use crate::live::ConfigFile;
use crate::metrics::log::JsonlLog;
use crate::sae::io;
use crate::sae::kernels::Kernels;
use crate::sae::model::{HostParams, Sae};
use crate::train::adam::AdamState;
use crate::train::checkpoint;
use crate::train::error::{TrainError, io_err};
use crate::train::firing::Firing;
use crate::train::memory::{self, Available, MemoryEstimate, RunSizes};
use crate::train::record::Record;
use crate::train::report::LossQueue;
use crate::train::trainer::Trainer;
use std::path::Path;
use std::time::Instant;

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
    // the positions a `mask` leaves out of training are left out of validation too
    if let Some(mask) = store.read_mask(store.rows() - held, held)? {
        let d = store.d_in();
        eval_rows = eval_rows
            .chunks(d)
            .zip(&mask)
            .filter(|(_, keep)| **keep)
            .flat_map(|(row, _)| row.iter().copied())
            .collect();
    }
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

/// Estimate what the run needs and refuse it when that exceeds what the device has free;
/// returns the estimate and the bytes free (`None` where they could not be checked) for the
/// opening record.
fn check_memory(
    cfg: &Config,
    d_in: usize,
    d_sae: usize,
    kernels: Kernels,
) -> Result<(MemoryEstimate, Option<u64>), TrainError> {
    let need = memory::estimate(RunSizes {
        d_in,
        d_sae,
        batch: cfg.data.batch_size,
        prefetch_depth: PREFETCH_DEPTH,
        shuffle_rows: cfg
            .data
            .shuffle_buffer_tokens
            .unwrap_or_else(|| Batcher::default_block_rows(d_in)),
        eval_rows: cfg.data.eval_tokens,
        kernels,
    });
    let available = match memory::available_on(&cfg.device) {
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
            device: device::label(&cfg.device),
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
fn initial_params(cfg: &Config, store: &Store, scale: f64) -> Result<HostParams, TrainError> {
    let d_in = store.d_in();
    let Some(path) = &cfg.sae.init_from else {
        return Ok(HostParams::init(
            d_in,
            cfg.sae.d_sae_for(d_in),
            cfg.sae.threshold_init as f32,
            cfg.data.seed,
        ));
    };
    let loaded = io::load(path)?;
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
    if let Some(m) = cfg.sae.d_sae
        && m != loaded.params.d_sae
    {
        return Err(TrainError::InitWidth {
            path: path.clone(),
            sae: loaded.params.d_sae,
            config: m,
        });
    }
    Ok(io::unfold(
        &loaded.params,
        scale as f32,
        cfg.sae.pre_encoder_bias,
    ))
}

impl Trainer {
    /// Prepare a new run: open the store, estimate the scale, initialise (or load `init_from`),
    /// and create the run directory with its `config.toml` and `metrics.jsonl`.
    pub fn new(cfg: Config) -> Result<Self, TrainError> {
        let device = device::resolve(&cfg.device)?;
        let store = Store::open(&cfg.data.stores, cfg.data.dataset.as_deref())?;
        let d_in = store.d_in();
        let store_attributes = store.attributes();
        let kernels = Kernels::for_device(&device);
        let d_sae = cfg.sae.d_sae_for(d_in);
        if cfg.hyper.k > d_sae {
            return Err(TrainError::KTooLarge {
                k: cfg.hyper.k,
                d_sae,
            });
        }
        let (memory_estimate, memory_available) = check_memory(&cfg, d_in, d_sae, kernels)?;
        let scale = match cfg.data.normalize {
            Normalize::MeanSquaredNorm => {
                let training_rows = store.rows().saturating_sub(cfg.data.eval_tokens);
                estimate_scale(&store, cfg.data.scale_sample_tokens, training_rows)?
            }
            Normalize::None => 1.0,
        };
        let host = initial_params(&cfg, &store, scale)?;
        // before anything is written: the held-out split must fit the store
        let (data, eval_rows) = start_data(store, &cfg, Position::default(), scale)?;
        let run_dir = cfg.out.clone();
        if run_dir.join("checkpoints").exists() {
            return Err(TrainError::RunExists(run_dir));
        }
        std::fs::create_dir_all(&run_dir).map_err(io_err(&run_dir))?;
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
            scale,
            device: device::label(&cfg.device),
            store_attributes: store_attributes.clone(),
            memory_estimate: Some(memory_estimate),
            memory_available,
        };
        let health = monitor(&cfg, host.d_sae);
        Ok(Self {
            firing: Firing::new(host.d_sae, &device),
            kernels,
            cfg,
            run_dir,
            config_file,
            device,
            sae,
            adam,
            data,
            eval_rows,
            store_attributes,
            position: Position::default(),
            scale,
            step: 0,
            tokens_seen: 0,
            skipped_rows: 0,
            log,
            losses: LossQueue::default(),
            window: (Instant::now(), 0),
            sparse_steps: 0,
            last_checkpoint: None,
            opening: Some(opening),
            notes: Vec::new(),
            health,
            last_theta: None,
        })
    }

    /// Continue the run in `run_dir` from its newest checkpoint (after removing what an
    /// interrupted checkpoint write left behind).
    pub fn resume(run_dir: &Path) -> Result<Self, TrainError> {
        let notes = checkpoint::remove_leftovers(run_dir)?
            .into_iter()
            .map(|p| {
                format!(
                    "removed {}, left by a checkpoint write that was interrupted",
                    p.display()
                )
            })
            .collect();
        let ckpt = checkpoint::latest(run_dir)?;
        let (state, tensors) = checkpoint::read(&ckpt)?;
        let mut cfg = state.config.clone();
        cfg.out = run_dir.to_path_buf();
        let device = device::resolve(&cfg.device)?;
        let store = Store::open(&cfg.data.stores, cfg.data.dataset.as_deref())?;
        if tensors.d_in != store.d_in() {
            return Err(TrainError::InitMismatch {
                path: ckpt.clone(),
                sae: tensors.d_in,
                store: store.paths()[0].to_path_buf(),
                dataset: store.dataset().to_string(),
                data: store.d_in(),
            });
        }
        let kernels = Kernels::for_device(&device);
        let (memory_estimate, memory_available) =
            check_memory(&cfg, tensors.d_in, tensors.d_sae, kernels)?;
        let (sae, adam, firing) = tensors.to_device(
            cfg.sae.threshold_param,
            state.step,
            state.window_tokens,
            &device,
        );
        let (data, eval_rows) = start_data(store, &cfg, state.position, state.scale)?;
        let log_path = run_dir.join("metrics.jsonl");
        let log = JsonlLog::open(&log_path).map_err(io_err(&log_path))?;
        let opening = Record::Resume {
            step: state.step,
            tokens: state.tokens_seen,
            checkpoint: ckpt.clone(),
            d_in: tensors.d_in,
            d_sae: tensors.d_sae,
            architecture: cfg.sae.architecture,
            scale: state.scale,
            device: device::label(&cfg.device),
            memory_estimate: Some(memory_estimate),
            memory_available,
        };
        let health = monitor(&cfg, tensors.d_sae);
        Ok(Self {
            kernels,
            cfg,
            run_dir: run_dir.to_path_buf(),
            config_file: ConfigFile::in_run(run_dir),
            device,
            sae,
            adam,
            data,
            eval_rows,
            store_attributes: state.store_attributes,
            position: state.position,
            scale: state.scale,
            step: state.step,
            tokens_seen: state.tokens_seen,
            skipped_rows: state.skipped_rows,
            firing,
            log,
            losses: LossQueue::default(),
            window: (Instant::now(), state.tokens_seen),
            sparse_steps: 0,
            last_checkpoint: Some(ckpt),
            opening: Some(opening),
            notes,
            health,
            last_theta: None,
        })
    }
}
