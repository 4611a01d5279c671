//! From training form to a saved SAE: fold the input scale (and pre-encoder bias) into the
//! parameters, add per-feature densities and the run's metadata, and write the SAELens layout,
//! from a live run or from a checkpoint on disk.

use crate::config::Config;
use crate::metrics::stats::log10_density;
use crate::sae::io;
use crate::sae::model::HostParams;
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::error::TrainError;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Fold training-form parameters into inference form, with per-feature log10 density.
pub fn inference_form(
    host: HostParams,
    scales: io::Scales,
    cfg: &Config,
    fire_total: &[f32],
    tokens: u64,
) -> (HostParams, Vec<f32>) {
    let mut params = io::fold(&host, scales, cfg.sae.pre_encoder_bias);
    params.topk = cfg.topk_inference();
    let sparsity = fire_total
        .iter()
        .map(|&c| log10_density(c as f64 / tokens.max(1) as f64) as f32)
        .collect();
    (params, sparsity)
}

/// What a saved SAE records of the run that trained it.
fn metadata(state: &CheckpointState) -> serde_json::Value {
    let cfg = &state.config;
    let mut m = json!({
        "store_attributes": state.store_attributes,
        "trained_with": "jumpscope",
        "version": env!("CARGO_PKG_VERSION"),
        "step": state.step,
        "kind": cfg.sae.kind.name(),
        "matryoshka_widths": cfg.sae.matryoshka_widths,
        "input_scale": state.scale,
        "pre_encoder_bias_folded": cfg.sae.pre_encoder_bias,
        "stores": cfg.data.stores,
        "dataset": cfg.data.dataset,
        "hyper": cfg.hyper,
    });
    if cfg.sae.kind.has_target() {
        m["target_scale"] = json!(state.target_scale);
        m["target_stores"] = json!(cfg.data.target_stores);
        m["target_dataset"] = json!(cfg.data.target_dataset);
    }
    m
}

/// Write the SAE of a run in `state`, with parameters `host` (training form, θ raw) and
/// firing totals `fire_total`, to the SAELens directory `out`.
pub fn write(
    out: &Path,
    host: HostParams,
    fire_total: &[f32],
    state: &CheckpointState,
) -> Result<(), TrainError> {
    let (params, sparsity) = inference_form(
        host,
        state.scales(),
        &state.config,
        fire_total,
        state.tokens_seen,
    );
    io::write_saelens(
        out,
        &params,
        state.config.sae.architecture,
        Some(&sparsity),
        metadata(state),
    )?;
    Ok(())
}

/// Read a checkpoint directory, or a run directory's newest checkpoint.
fn read_checkpoint(ckpt: &Path) -> Result<(CheckpointState, checkpoint::TrainTensors), TrainError> {
    let ckpt = if ckpt.join("state.json").exists() {
        ckpt.to_path_buf()
    } else {
        checkpoint::latest(ckpt)?
    };
    Ok(checkpoint::read(&ckpt)?)
}

/// Export a checkpoint directory (or a run directory's newest checkpoint) to a SAELens directory.
pub fn export_checkpoint(ckpt: &Path, out: &Path) -> Result<(), TrainError> {
    let (state, tensors) = read_checkpoint(ckpt)?;
    let host = tensors.host_params(&state.config.sae);
    write(out, host, &tensors.firing[2], &state)
}

/// The SAE of a checkpoint (or of a run directory's newest checkpoint) in inference form, with
/// the step and tokens it had trained.
pub fn checkpoint_inference(ckpt: &Path) -> Result<(HostParams, u64, u64), TrainError> {
    let (state, params, _) = inference_of(ckpt)?;
    Ok((params, state.step, state.tokens_seen))
}

/// A checkpoint's (or a run's newest checkpoint's) state, and its SAE in inference form with
/// each feature's log10 firing frequency.
fn inference_of(ckpt: &Path) -> Result<(CheckpointState, HostParams, Vec<f32>), TrainError> {
    let (state, tensors) = read_checkpoint(ckpt)?;
    let host = tensors.host_params(&state.config.sae);
    let (params, sparsity) = inference_form(
        host,
        state.scales(),
        &state.config,
        &tensors.firing[2],
        state.tokens_seen,
    );
    Ok((state, params, sparsity))
}

/// The SAE `path` names, for the commands that evaluate one (`eval`, `inspect`): a saved SAE
/// (SAELens directory or file, Gemma Scope `params.npz`) as it is; a run directory by its
/// `sae/`, or while it trains by its newest checkpoint; a checkpoint directory. Returns the SAE
/// and the path it was read from (what the report names).
pub fn load_any(path: &Path) -> Result<(io::LoadedSae, PathBuf), TrainError> {
    let is_run = path.join("checkpoints").is_dir() || path.join("metrics.jsonl").is_file();
    if is_run && path.join("sae").join("cfg.json").is_file() {
        let sae = path.join("sae");
        return Ok((io::load(&sae)?, sae));
    }
    if !is_run && !path.join("state.json").is_file() {
        return Ok((io::load(path)?, path.to_path_buf()));
    }
    let (state, params, sparsity) = inference_of(path)?;
    let ckpt = if path.join("state.json").is_file() {
        path.to_path_buf()
    } else {
        checkpoint::latest(path)?
    };
    Ok((
        io::LoadedSae {
            params,
            format: "jumpscope checkpoint",
            architecture: state.config.sae.architecture,
            sparsity: Some(sparsity),
        },
        ckpt,
    ))
}

/// Why `export` will not write where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ExportDestError {
    /// The destination is the source run, inside it, or one of its parents.
    #[error(
        "{dest}: refusing to export into the run {run} itself, inside it, or over a directory that holds it: choose a destination outside the run"
    )]
    RunItself {
        /// The destination.
        dest: PathBuf,
        /// The source run.
        run: PathBuf,
    },
    /// The destination holds something that is not an SAE.
    #[error(
        "{0}: exists and is not an empty directory or a saved SAE (cfg.json + sae_weights.safetensors): refusing to replace it; choose another destination"
    )]
    NotAnSae(PathBuf),
    /// The destination is a saved SAE, and `--force` was not given.
    #[error("{0}: already holds a saved SAE: --force replaces it")]
    Exists(PathBuf),
    /// The destination could not be examined.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The run a checkpoint (or run) directory belongs to: the nearest directory, from `source`
/// up, holding a `config.toml` and a `metrics.jsonl`.
pub fn run_of(source: &Path) -> Option<PathBuf> {
    let abs = absolute(source).ok()?;
    abs.ancestors()
        .find(|d| d.join("config.toml").is_file() && d.join("metrics.jsonl").is_file())
        .map(Path::to_path_buf)
}

/// `p` made absolute with symbolic links resolved as far as it exists.
fn absolute(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize()?;
    out.extend(rest.iter().rev());
    Ok(out)
}

/// Whether `dest` may receive an export of `source`: never the source run, anything inside
/// it or a directory holding it; an existing destination only when it is an empty directory,
/// or a saved SAE and `force`.
pub fn check_destination(source: &Path, dest: &Path, force: bool) -> Result<(), ExportDestError> {
    let io = |source| ExportDestError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let d = absolute(dest).map_err(io)?;
    if let Some(run) = run_of(source)
        && (d.starts_with(&run) || run.starts_with(&d))
    {
        return Err(ExportDestError::RunItself {
            dest: dest.to_path_buf(),
            run,
        });
    }
    if !dest.exists() {
        return Ok(());
    }
    if !dest.is_dir() {
        return Err(ExportDestError::NotAnSae(dest.to_path_buf()));
    }
    let mut entries = std::fs::read_dir(dest).map_err(io)?.peekable();
    if entries.peek().is_none() {
        return Ok(());
    }
    let is_sae = dest.join("cfg.json").is_file() && dest.join("sae_weights.safetensors").is_file();
    match (is_sae, force) {
        (false, _) => Err(ExportDestError::NotAnSae(dest.to_path_buf())),
        (true, false) => Err(ExportDestError::Exists(dest.to_path_buf())),
        (true, true) => Ok(()),
    }
}
