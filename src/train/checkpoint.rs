//! Checkpoints: `RUN_DIR/checkpoints/step-N/` with `tensors.safetensors` (parameters, Adam
//! moments, per-feature firing state) and `state.json` (step, tokens, data position, input scale,
//! the configuration and hyperparameters in force). Written to a temporary directory and renamed,
//! so a kill at any moment leaves the previous checkpoint intact; only the last K are kept.
//!
//! There is no separate RNG state to save: initialisation happens once, and the data order is a
//! pure function of `(seed, epoch, block)` (see `data::batches`), so the data position is enough.

use crate::config::Config;
use crate::data::batches::Position;
use crate::sae::io::{HostTensor, SaeIoError, TensorMap, read_safetensors, write_safetensors};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format version written into `state.json`.
pub const VERSION: u32 = 1;

/// Everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format version.
    pub version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Tokens trained on.
    pub tokens_seen: u64,
    /// Where the data reader stands.
    pub position: Position,
    /// Input scale C.
    pub scale: f64,
    /// Rows skipped for NaN/Inf so far.
    pub skipped_rows: u64,
    /// Tokens accumulated in the current firing-frequency window.
    pub window_tokens: u64,
    /// The configuration, with the hyperparameters in force at this step.
    pub config: Config,
    /// The store's file attributes (model, hook, layer, …), carried into the exported SAE.
    #[serde(default)]
    pub store_attributes: std::collections::BTreeMap<String, String>,
}

/// The tensors of a checkpoint, on the host.
#[derive(Debug, Clone)]
pub struct CheckpointTensors {
    /// Named tensors with shapes: parameters (`W_enc`, `b_enc`, `W_dec`, `b_dec`,
    /// `theta_param`), Adam moments (`adam_m.*`, `adam_v.*`), `steps_since_fired`, `fire_window`.
    pub tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
}

/// A problem with checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Tensors unreadable.
    #[error(transparent)]
    Tensors(#[from] SaeIoError),
    /// state.json unreadable.
    #[error("{path}: invalid checkpoint state: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No checkpoint to resume from.
    #[error(
        "{0}: no checkpoint found (expected {0}/checkpoints/step-N/ written by `jumpscope train`)"
    )]
    None(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The checkpoints of a run, oldest first, as `(step, dir)`.
pub fn list(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let dir = run_dir.join("checkpoints");
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .exists()
                .then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The newest complete checkpoint of a run.
pub fn latest(run_dir: &Path) -> Result<PathBuf, CheckpointError> {
    list(run_dir)
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| CheckpointError::None(run_dir.to_path_buf()))
}

/// Write a checkpoint atomically and prune all but the newest `keep`.
pub fn write(
    run_dir: &Path,
    state: &CheckpointState,
    tensors: &CheckpointTensors,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let dest = root.join(format!("step-{}", state.step));
    let tmp = root.join(format!(".tmp-step-{}-{}", state.step, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let refs: Vec<(&str, &[f32], Vec<usize>)> = tensors
        .tensors
        .iter()
        .map(|(n, v, s)| (n.as_str(), v.as_slice(), s.clone()))
        .collect();
    write_safetensors(&tmp.join("tensors.safetensors"), &refs, None)?;
    let json = serde_json::to_string_pretty(state).map_err(|e| CheckpointError::State {
        path: tmp.join("state.json"),
        reason: e.to_string(),
    })?;
    let state_path = tmp.join("state.json");
    std::fs::write(&state_path, json).map_err(io(&state_path))?;
    crate::atomic::replace_dir(&tmp, &dest).map_err(io(&dest))?;
    let all = list(run_dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        // pruning is best-effort: a left-over old checkpoint is harmless
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(dest)
}

/// Read a checkpoint directory.
pub fn read(dir: &Path) -> Result<(CheckpointState, Tensors), CheckpointError> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| CheckpointError::State {
            path: state_path.clone(),
            reason: e.to_string(),
        })?;
    if state.version != VERSION {
        return Err(CheckpointError::State {
            path: state_path,
            reason: format!("version {}: expected {VERSION}", state.version),
        });
    }
    let path = dir.join("tensors.safetensors");
    let map = read_safetensors(&path)?;
    Ok((state, Tensors { map, path }))
}

/// The tensors of a checkpoint read back, taken out one by one by name.
#[derive(Debug)]
pub struct Tensors {
    map: TensorMap,
    path: PathBuf,
}

impl Tensors {
    /// Remove and return tensor `name`, or say which file lacks it.
    pub fn take(&mut self, name: &str) -> Result<HostTensor, CheckpointError> {
        self.map.remove(name).ok_or_else(|| CheckpointError::State {
            path: self.path.clone(),
            reason: format!("tensor `{name}` missing"),
        })
    }

    /// Take tensor `name` and check it has `len` elements.
    pub fn take_len(&mut self, name: &str, len: usize) -> Result<Vec<f32>, CheckpointError> {
        let (v, shape) = self.take(name)?;
        if v.len() != len {
            return Err(CheckpointError::State {
                path: self.path.clone(),
                reason: format!("tensor `{name}` has shape {shape:?}: expected {len} values"),
            });
        }
        Ok(v)
    }
}
