//! Checkpoints: `RUN_DIR/checkpoints/step-N/` with `tensors.safetensors` (parameters, Adam
//! moments, per-feature firing state) and `state.json` (step, tokens, data position, input scale,
//! the configuration and hyperparameters in force). Written to a temporary directory and renamed,
//! so a kill at any moment leaves the previous checkpoint intact; only the last K are kept.
//! [`TrainTensors`] is the one place that names, orders and shapes the tensors, for writing,
//! resuming and exporting alike; [`remove_leftovers`] clears what an interrupted write left.
//!
//! There is no separate RNG state to save: initialisation happens once, and the data order is a
//! pure function of `(seed, epoch, block)` (see `data::batches`), so the data position is enough.

use crate::config::{Config, SaeConfig, ThresholdParam};
use crate::data::batches::Position;
use crate::sae::io::{SaeIoError, TensorMap, read_safetensors, write_safetensors};
use crate::sae::model::{HostParams, Sae, download, upload};
use crate::train::adam::{AdamState, Moments};
use crate::train::firing::Firing;
use burn::tensor::{Device, Tensor};
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
    /// A transcoder's target scale C_y (absent for SAEs and in earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scale: Option<f64>,
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

impl CheckpointState {
    /// The input's scale and the output's (a transcoder's target's; the input's for an SAE).
    pub fn scales(&self) -> crate::sae::io::Scales {
        crate::sae::io::Scales::of(self.scale, self.target_scale)
    }
}

/// The five trained tensors, in the order they are stored: W_enc `[d_in, d_sae]`, b_enc
/// `[d_sae]`, W_dec `[d_sae, d_out]`, b_dec `[d_out]`, and θ's trained parameter `[d_sae]` (log θ
/// or raw θ, per `sae.threshold_param`). Adam's moments use the same names behind `adam_m.` and
/// `adam_v.`. A skip-transcoder adds [`SKIP`] `[d_in, d_out]`, with its moments named alike.
const PARAMS: [&str; 5] = ["W_enc", "b_enc", "W_dec", "b_dec", "theta_param"];

/// A skip-transcoder's sixth trained tensor.
const SKIP: &str = "W_skip";

/// The per-feature firing counters, each `[d_sae]`.
const FIRING: [&str; 3] = ["steps_since_fired", "fire_window", "fire_total"];

/// The shapes of [`PARAMS`] for these widths.
fn param_shapes(d_in: usize, d_out: usize, d_sae: usize) -> [Vec<usize>; 5] {
    [
        vec![d_in, d_sae],
        vec![d_sae],
        vec![d_sae, d_out],
        vec![d_out],
        vec![d_sae],
    ]
}

/// One tensor per entry of [`PARAMS`], on the host.
pub type ParamVecs = [Vec<f32>; 5];

/// Everything of a run's training state that lives in tensors, on the host: the one place that
/// names, orders and shapes a checkpoint's tensors, for writing, resuming and exporting.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTensors {
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// Output width (`d_in` but for transcoders).
    pub d_out: usize,
    /// A skip-transcoder's W_skip and its two Adam moments, `[d_in, d_out]` each.
    pub skip: Option<[Vec<f32>; 3]>,
    /// The parameters, in training form.
    pub params: ParamVecs,
    /// Adam's first moments.
    pub adam_m: ParamVecs,
    /// Adam's second moments.
    pub adam_v: ParamVecs,
    /// `steps_since_fired`, `fire_window`, `fire_total`.
    pub firing: [Vec<f32>; 3],
}

fn moments_host(m: &Moments) -> ParamVecs {
    [
        download(&m.w_enc),
        download(&m.b_enc),
        download(&m.w_dec),
        download(&m.b_dec),
        download(&m.theta_param),
    ]
}

fn moments_device(
    v: &ParamVecs,
    skip: Option<&Vec<f32>>,
    (d_in, d_out, d_sae): (usize, usize, usize),
    device: &Device,
) -> Moments {
    Moments {
        w_enc: upload(&v[0], [d_in, d_sae], device),
        b_enc: upload(&v[1], [d_sae], device),
        w_dec: upload(&v[2], [d_sae, d_out], device),
        b_dec: upload(&v[3], [d_out], device),
        theta_param: upload(&v[4], [d_sae], device),
        w_skip: skip.map(|w| upload(w, [d_in, d_out], device)),
    }
}

impl TrainTensors {
    /// Copy the training state off the device.
    pub fn gather(sae: &Sae, adam: &AdamState, firing: &Firing) -> Self {
        let (d_in, d_sae) = sae.dims();
        let skip = match (&sae.w_skip, &adam.m.w_skip, &adam.v.w_skip) {
            (Some(w), Some(m), Some(v)) => Some([download(w), download(m), download(v)]),
            _ => None,
        };
        Self {
            d_in,
            d_sae,
            d_out: sae.d_out(),
            skip,
            params: [
                download(&sae.w_enc),
                download(&sae.b_enc),
                download(&sae.w_dec),
                download(&sae.b_dec),
                download(&sae.theta_param),
            ],
            adam_m: moments_host(&adam.m),
            adam_v: moments_host(&adam.v),
            firing: [
                download(&firing.steps_since_fired),
                download(&firing.window),
                download(&firing.total),
            ],
        }
    }

    /// Put the state back on `device`: the SAE, Adam after `steps` steps, and the counters
    /// (`window_tokens` from the checkpoint's state).
    pub fn to_device(
        &self,
        sae_cfg: &SaeConfig,
        steps: u64,
        window_tokens: u64,
        device: &Device,
    ) -> (Sae, AdamState, Firing) {
        let m = self.d_sae;
        let dims = (self.d_in, self.d_out, m);
        let skip = |k: usize| self.skip.as_ref().map(|s| &s[k]);
        let p = moments_device(&self.params, skip(0), dims, device);
        let sae = Sae {
            w_enc: p.w_enc,
            b_enc: p.b_enc,
            w_dec: p.w_dec,
            b_dec: p.b_dec,
            w_skip: p.w_skip,
            theta_param: p.theta_param,
            threshold_param: sae_cfg.threshold_param,
            kind: sae_cfg.kind,
        };
        let adam = AdamState {
            steps,
            m: moments_device(&self.adam_m, skip(1), dims, device),
            v: moments_device(&self.adam_v, skip(2), dims, device),
        };
        let vec1 = |v: &Vec<f32>| -> Tensor<1> { upload(v, [m], device) };
        let firing = Firing {
            steps_since_fired: vec1(&self.firing[0]),
            window: vec1(&self.firing[1]),
            total: vec1(&self.firing[2]),
            window_tokens,
        };
        (sae, adam, firing)
    }

    /// The parameters with θ raw (what a saved SAE holds), still in training space, of the
    /// kind and θ parametrisation `sae_cfg` says.
    pub fn host_params(&self, sae_cfg: &SaeConfig) -> HostParams {
        let threshold = match sae_cfg.threshold_param {
            ThresholdParam::Log => self.params[4].iter().map(|v| v.exp()).collect(),
            ThresholdParam::Raw => self.params[4].iter().map(|v| v.max(0.0)).collect(),
        };
        HostParams {
            kind: sae_cfg.kind,
            d_in: self.d_in,
            d_sae: self.d_sae,
            d_out: self.d_out,
            w_enc: self.params[0].clone(),
            b_enc: self.params[1].clone(),
            w_dec: self.params[2].clone(),
            b_dec: self.params[3].clone(),
            w_skip: self.skip.as_ref().map(|s| s[0].clone()),
            threshold,
            topk: None,
        }
    }

    /// Whether every parameter is finite (moments and counters are not checked).
    pub fn params_finite(&self) -> bool {
        self.params.iter().flatten().all(|x| x.is_finite())
    }

    /// Every tensor with its name and shape, in the order they are stored.
    fn named(&self) -> Vec<(String, &[f32], Vec<usize>)> {
        let shapes = param_shapes(self.d_in, self.d_out, self.d_sae);
        let mut out: Vec<(String, &[f32], Vec<usize>)> = Vec::with_capacity(21);
        for (k, (prefix, set)) in [
            ("", &self.params),
            ("adam_m.", &self.adam_m),
            ("adam_v.", &self.adam_v),
        ]
        .into_iter()
        .enumerate()
        {
            for ((name, v), shape) in PARAMS.iter().zip(set).zip(&shapes) {
                out.push((format!("{prefix}{name}"), v, shape.clone()));
            }
            if let Some(skip) = &self.skip {
                out.push((
                    format!("{prefix}{SKIP}"),
                    &skip[k],
                    vec![self.d_in, self.d_out],
                ));
            }
        }
        for (name, v) in FIRING.iter().zip(&self.firing) {
            out.push((name.to_string(), v, vec![self.d_sae]));
        }
        out
    }

    /// Take every tensor out of `map` (read from `path`), checking each shape against W_enc's.
    fn from_map(mut map: TensorMap, path: &Path) -> Result<Self, CheckpointError> {
        let bad = |reason: String| CheckpointError::State {
            path: path.to_path_buf(),
            reason,
        };
        let shape = map
            .get(PARAMS[0])
            .map(|(_, s)| s.clone())
            .ok_or_else(|| bad(format!("tensor `{}` missing", PARAMS[0])))?;
        let [d_in, d_sae] = shape[..] else {
            return Err(bad(format!(
                "W_enc has shape {shape:?}: expected [d_in, d_sae]"
            )));
        };
        // W_dec gives the output width: a transcoder's differs from d_in
        let d_out = map
            .get(PARAMS[2])
            .and_then(|(_, s)| (s.len() == 2).then(|| s[1]))
            .unwrap_or(d_in);
        let has_skip = map.contains_key(SKIP);
        let shapes = param_shapes(d_in, d_out, d_sae);
        let mut take = |name: String, want: &[usize]| -> Result<Vec<f32>, CheckpointError> {
            let (v, shape) = map
                .remove(&name)
                .ok_or_else(|| bad(format!("tensor `{name}` missing")))?;
            if shape != want {
                return Err(bad(format!(
                    "tensor `{name}` has shape {shape:?}: expected {want:?}"
                )));
            }
            Ok(v)
        };
        let mut set = |prefix: &str| -> Result<ParamVecs, CheckpointError> {
            let mut out: [Vec<f32>; 5] = Default::default();
            for (k, name) in PARAMS.iter().enumerate() {
                out[k] = take(format!("{prefix}{name}"), &shapes[k])?;
            }
            Ok(out)
        };
        let params = set("")?;
        let adam_m = set("adam_m.")?;
        let adam_v = set("adam_v.")?;
        let mut firing: [Vec<f32>; 3] = Default::default();
        for (k, name) in FIRING.iter().enumerate() {
            firing[k] = take(name.to_string(), &[d_sae])?;
        }
        let skip = if has_skip {
            let mut out: [Vec<f32>; 3] = Default::default();
            for (k, prefix) in ["", "adam_m.", "adam_v."].iter().enumerate() {
                out[k] = take(format!("{prefix}{SKIP}"), &[d_in, d_out])?;
            }
            Some(out)
        } else {
            None
        };
        Ok(Self {
            d_in,
            d_sae,
            d_out,
            skip,
            params,
            adam_m,
            adam_v,
            firing,
        })
    }
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

/// Write a checkpoint atomically and prune all but the newest `keep`, never `protect` (the
/// checkpoint a sweep's last record names, which its resume needs).
pub fn write(
    run_dir: &Path,
    state: &CheckpointState,
    tensors: &TrainTensors,
    keep: usize,
    protect: Option<&Path>,
) -> Result<PathBuf, CheckpointError> {
    let root = run_dir.join("checkpoints");
    // never `create_dir_all`: a run directory deleted under a run is not made again
    match std::fs::create_dir(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(&root)(e)),
        _ => {}
    }
    let dest = root.join(format!("step-{}", state.step));
    let tmp = root.join(format!(".tmp-step-{}-{}", state.step, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = (|| {
        let named = tensors.named();
        let refs: Vec<(&str, &[f32], Vec<usize>)> = named
            .iter()
            .map(|(n, v, s)| (n.as_str(), *v, s.clone()))
            .collect();
        write_safetensors(&tmp.join("tensors.safetensors"), &refs, None)?;
        let json = serde_json::to_string_pretty(state).map_err(|e| CheckpointError::State {
            path: tmp.join("state.json"),
            reason: e.to_string(),
        })?;
        let state_path = tmp.join("state.json");
        std::fs::write(&state_path, json).map_err(io(&state_path))?;
        crate::seams::kill_at("checkpoint-written");
        crate::durable::replace_dir(&tmp, &dest).map_err(io(&dest))
    })();
    if let Err(e) = written {
        // a partial copy (a full disk) is not left to fill it further
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let all = list(run_dir);
    let protected = |p: &Path| protect.is_some_and(|q| same_dir(p, q));
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        if protected(old) {
            continue;
        }
        // pruning is best-effort: a left-over old checkpoint is harmless
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(dest)
}

/// Whether two paths name the same checkpoint directory (however each was spelled).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Read a checkpoint directory.
pub fn read(dir: &Path) -> Result<(CheckpointState, TrainTensors), CheckpointError> {
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
    let tensors = TrainTensors::from_map(read_safetensors(&path)?, &path)?;
    Ok((state, tensors))
}

/// The newest checkpoint of a run that reads whole, read. A newer one that does not (a
/// truncated or damaged file) is moved aside to `checkpoints/damaged-step-N/`, kept for the
/// user, and named in the notes returned, so the run goes on from the newest intact one.
pub fn read_newest(
    run_dir: &Path,
) -> Result<(PathBuf, CheckpointState, TrainTensors, Vec<String>), CheckpointError> {
    let mut notes = Vec::new();
    for (step, dir) in list(run_dir).into_iter().rev() {
        match read(&dir) {
            Ok((state, tensors)) => {
                if !notes.is_empty() {
                    notes.push(format!(
                        "warning: continuing from the newest intact checkpoint, step {step}"
                    ));
                }
                return Ok((dir, state, tensors, notes));
            }
            Err(e) => {
                let aside = free_name(
                    &run_dir.join("checkpoints"),
                    &format!("damaged-step-{step}"),
                );
                std::fs::rename(&dir, &aside).map_err(io(&dir))?;
                notes.push(format!(
                    "warning: checkpoint step {step} is damaged ({e}); moved to {}",
                    aside.display()
                ));
            }
        }
    }
    Err(CheckpointError::None(run_dir.to_path_buf()))
}

/// `dir/name`, or `dir/name.2`, `dir/name.3`, … whichever does not exist yet.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let mut k = 1;
    loop {
        let p = if k == 1 {
            dir.join(name)
        } else {
            dir.join(format!("{name}.{k}"))
        };
        if !p.exists() {
            return p;
        }
        k += 1;
    }
}

/// Whether a checkpoint directory looks whole without reading its tensors: `state.json` parses
/// and `tensors.safetensors` is as long as its header says (a sweep checks every member's
/// checkpoint before choosing the record it resumes from).
pub fn intact(dir: &Path) -> bool {
    let state_ok = std::fs::read_to_string(dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<CheckpointState>(&t).ok())
        .is_some_and(|s| s.version == VERSION);
    state_ok && tensors_whole(&dir.join("tensors.safetensors")).unwrap_or(false)
}

/// Whether a safetensors file holds every byte its header lists (and nothing after them).
fn tensors_whole(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > 100 << 20 {
        return Ok(false);
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&header) else {
        return Ok(false);
    };
    let end = map
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v["data_offsets"][1].as_u64())
        .max()
        .unwrap_or(0);
    Ok(8 + n + end == len)
}

/// What [`remove_leftovers`] did.
#[derive(Debug, Default)]
pub struct Tidied {
    /// Leftovers removed.
    pub removed: Vec<PathBuf>,
    /// Complete copies put back under their names (a rewrite killed between its renames).
    pub restored: Vec<PathBuf>,
}

/// Remove what a process killed while writing a checkpoint left behind
/// (`checkpoints/.tmp-step-N-PID/`), unless that process is still alive, and put back a complete
/// copy a rewrite killed between its two renames left as `.step-N.old-PID` (or `.sae.old-PID`).
/// Complete checkpoints (`step-N/`) are never touched.
pub fn remove_leftovers(run_dir: &Path) -> Result<Tidied, CheckpointError> {
    let root = run_dir.join("checkpoints");
    let (mut restored, mut removed) =
        crate::durable::restore_old(&root, |p| p.join("state.json").is_file(), process_alive)
            .map_err(io(&root))?;
    let (r2, m2) =
        crate::durable::restore_old(run_dir, |p| p.join("cfg.json").is_file(), process_alive)
            .map_err(io(run_dir))?;
    restored.extend(r2);
    removed.extend(m2);
    let in_checkpoints = std::fs::read_dir(run_dir.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((e, name.strip_prefix(".tmp-step-")?.to_string()))
        });
    // an export of the run's SAE (or a rewrite of its config.toml) cut short by a kill
    let in_run = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name
                .strip_prefix(".sae.tmp-")
                .or_else(|| name.strip_prefix(".config.toml.tmp-"))?;
            Some((e, rest.to_string()))
        });
    for (e, rest) in in_checkpoints.chain(in_run) {
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && process_alive(p)) {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        removed.push(path);
    }
    removed.sort();
    Ok(Tidied { removed, restored })
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the process exists
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(d_in: usize, d_sae: usize) -> TrainTensors {
        tensors_of(d_in, d_in, d_sae, false)
    }

    fn tensors_of(d_in: usize, d_out: usize, d_sae: usize, skip: bool) -> TrainTensors {
        let mut k = 0.0f32;
        let mut fill = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    k += 0.25;
                    k
                })
                .collect()
        };
        let sizes = [d_in * d_sae, d_sae, d_sae * d_out, d_out, d_sae];
        let mut set = || -> ParamVecs { sizes.map(&mut fill) };
        let (params, adam_m, adam_v) = (set(), set(), set());
        let skip = skip.then(|| [0; 3].map(|_| fill(d_in * d_out)));
        TrainTensors {
            d_in,
            d_sae,
            d_out,
            skip,
            params,
            adam_m,
            adam_v,
            firing: [fill(d_sae), fill(d_sae), fill(d_sae)],
        }
    }

    #[test]
    fn every_tensor_reads_back_under_its_name_and_shape() {
        let d = tempfile::tempdir().unwrap();
        let t = tensors(3, 5);
        let named = t.named();
        assert_eq!(named.len(), 18);
        assert_eq!(named[0].0, "W_enc");
        assert_eq!(named[0].2, vec![3, 5]);
        assert_eq!(named[7].0, "adam_m.W_dec");
        assert_eq!(named[17].0, "fire_total");
        let refs: Vec<(&str, &[f32], Vec<usize>)> = named
            .iter()
            .map(|(n, v, s)| (n.as_str(), *v, s.clone()))
            .collect();
        let path = d.path().join("t.safetensors");
        write_safetensors(&path, &refs, None).unwrap();
        let back = TrainTensors::from_map(read_safetensors(&path).unwrap(), &path).unwrap();
        assert_eq!(back, t);
        // a tensor of the wrong shape is named
        let mut refs = refs;
        refs[9].2 = vec![5, 1];
        write_safetensors(&path, &refs, None).unwrap();
        let e = TrainTensors::from_map(read_safetensors(&path).unwrap(), &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("adam_m.theta_param") && e.contains("[5]"), "{e}");
    }

    #[test]
    fn a_skip_transcoders_tensors_read_back_with_both_widths() {
        let d = tempfile::tempdir().unwrap();
        for skip in [false, true] {
            let t = tensors_of(3, 4, 5, skip);
            let named = t.named();
            assert_eq!(named.len(), if skip { 21 } else { 18 });
            let refs: Vec<(&str, &[f32], Vec<usize>)> = named
                .iter()
                .map(|(n, v, s)| (n.as_str(), *v, s.clone()))
                .collect();
            assert!(refs.contains(&("W_dec", &t.params[2][..], vec![5, 4])));
            let path = d.path().join("t.safetensors");
            write_safetensors(&path, &refs, None).unwrap();
            let back = TrainTensors::from_map(read_safetensors(&path).unwrap(), &path).unwrap();
            assert_eq!(back, t);
            let kind = if skip {
                crate::sae::model::Kind::SkipTranscoder
            } else {
                crate::sae::model::Kind::Transcoder
            };
            let cfg = crate::config::parse("", "t", &[])
                .unwrap()
                .validate("t")
                .unwrap();
            let p = back.host_params(&SaeConfig { kind, ..cfg.sae });
            assert_eq!(
                (p.d_in, p.d_out, p.w_skip.is_some(), p.kind),
                (3, 4, skip, kind)
            );
        }
    }

    #[test]
    fn leftovers_of_dead_writers_go_and_complete_checkpoints_stay() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("checkpoints");
        // a pid that cannot exist (above the kernel's pid_max limit of 2^22)
        let dead = root.join(".tmp-step-40-99999999");
        let ours = root.join(format!(".tmp-step-41-{}", std::process::id()));
        let alive_pid = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let alive = root.join(format!(".tmp-step-42-{}", alive_pid.id()));
        let complete = root.join("step-39");
        for dir in [&dead, &ours, &alive, &complete] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("tensors.safetensors"), b"x").unwrap();
        }
        std::fs::write(complete.join("state.json"), b"{}").unwrap();
        let removed = remove_leftovers(d.path()).unwrap().removed;
        let mut child = alive_pid;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(removed, vec![dead.clone(), ours.clone()]);
        assert!(!dead.exists() && !ours.exists());
        assert!(alive.exists(), "a writer still alive keeps its directory");
        assert!(complete.join("state.json").exists());
        assert!(
            remove_leftovers(&d.path().join("nothing"))
                .unwrap()
                .removed
                .is_empty()
        );
    }
}
