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
use std::collections::BTreeMap;
use std::path::Path;

/// Fold training-form parameters into inference form, with per-feature log10 density.
pub fn inference_form(
    host: HostParams,
    scale: f64,
    cfg: &Config,
    fire_total: &[f32],
    tokens: u64,
) -> (HostParams, Vec<f32>) {
    let mut params = io::fold(&host, scale as f32, cfg.sae.pre_encoder_bias);
    params.topk = cfg.topk_inference();
    let sparsity = fire_total
        .iter()
        .map(|&c| log10_density(c as f64 / tokens.max(1) as f64) as f32)
        .collect();
    (params, sparsity)
}

/// What a saved SAE records of the run that trained it.
fn metadata(
    cfg: &Config,
    step: u64,
    scale: f64,
    store_attributes: &BTreeMap<String, String>,
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
        state.scale,
        &state.config,
        fire_total,
        state.tokens_seen,
    );
    io::write_saelens(
        out,
        &params,
        state.config.sae.architecture,
        Some(&sparsity),
        metadata(
            &state.config,
            state.step,
            state.scale,
            &state.store_attributes,
        ),
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
    let host = tensors.host_params(state.config.sae.threshold_param);
    write(out, host, &tensors.firing[2], &state)
}

/// The SAE of a checkpoint (or of a run directory's newest checkpoint) in inference form, with
/// the step and tokens it had trained.
pub fn checkpoint_inference(ckpt: &Path) -> Result<(HostParams, u64, u64), TrainError> {
    let (state, tensors) = read_checkpoint(ckpt)?;
    let host = tensors.host_params(state.config.sae.threshold_param);
    let (params, _) = inference_form(
        host,
        state.scale,
        &state.config,
        &tensors.firing[2],
        state.tokens_seen,
    );
    Ok((params, state.step, state.tokens_seen))
}
