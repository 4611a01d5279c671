//! `jumpscope eval`: reconstruction quality of an inference-form SAE over a store's raw rows (a
//! transcoder's against its target store's paired rows).

use crate::data::store::{Store, StoreError};
use crate::metrics::stats::{Inactive, Measure, ReconAccumulator};
use crate::sae::model::{HostParams, InferenceSae, download, upload};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The evaluation report (also the `--json` output).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    /// Tokens evaluated (finite rows).
    pub n_tokens: u64,
    /// Mean active features per token.
    pub l0: f64,
    /// Mean over tokens of ‖x − x̂‖², raw activation space (`mse` in earlier versions).
    #[serde(alias = "mse")]
    pub mse_raw: f64,
    /// Normalised MSE: Σ‖x − x̂‖² / Σ‖x‖² over these tokens, free of the activations' scale
    /// (`null` in records of earlier versions).
    #[serde(
        default = "crate::metrics::nullable::nan",
        with = "crate::metrics::nullable"
    )]
    pub mse_norm: f64,
    /// Fraction of variance unexplained.
    pub fvu: f64,
    /// 1 − FVU.
    pub explained_variance: f64,
    /// Features that never fired on these `n_tokens` tokens ("silent"; training's "dead" counts
    /// a window of training tokens instead). `dead` in earlier versions.
    #[serde(alias = "dead")]
    pub silent: u64,
    /// `silent / d_sae` (`null` in records of earlier versions).
    #[serde(
        default = "crate::metrics::nullable::nan",
        with = "crate::metrics::nullable"
    )]
    pub silent_fraction: f64,
}

impl Evaluation {
    /// The features silent on these tokens, as every screen shows them.
    pub fn inactive(&self) -> Inactive {
        Inactive {
            measure: Measure::Silent,
            count: self.silent,
            fraction: self.silent_fraction,
            tokens: self.n_tokens,
        }
    }
}

impl Evaluation {
    /// The report from running sums and the count of features that never fired, of `d_sae`.
    pub fn from_sums(acc: &ReconAccumulator, silent: u64, d_sae: usize) -> Self {
        let fvu = acc.fvu();
        Self {
            n_tokens: acc.tokens,
            l0: acc.l0(),
            mse_raw: acc.mse(),
            mse_norm: acc.mse_norm(),
            fvu,
            explained_variance: 1.0 - fvu,
            silent,
            silent_fraction: silent as f64 / d_sae.max(1) as f64,
        }
    }
}

/// Running evaluation over batches of raw rows (and, for a transcoder, their targets).
pub struct Evaluator<'a> {
    sae: &'a InferenceSae,
    d_in: usize,
    d_out: usize,
    acc: ReconAccumulator,
    fired: Vec<bool>,
}

impl<'a> Evaluator<'a> {
    /// Start with nothing seen, for parameters `p`.
    pub fn new(sae: &'a InferenceSae, p: &HostParams) -> Self {
        Self {
            sae,
            d_in: p.d_in,
            d_out: p.d_out,
            acc: ReconAccumulator::default(),
            fired: vec![false; p.d_sae],
        }
    }

    /// Add a batch of rows (`[n, d_in]`, row-major) with their targets (`[n, d_out]`; `None`:
    /// the rows themselves, an SAE); a pair with NaN/Inf in either is left out.
    pub fn add(&mut self, rows: &[f32], targets: Option<&[f32]>, device: &Device) {
        let (d, e) = (self.d_in, self.d_out);
        let finite = |r: &[f32]| r.iter().all(|v| v.is_finite());
        let keep: Vec<usize> = match targets {
            Some(t) => rows
                .chunks(d)
                .zip(t.chunks(e))
                .enumerate()
                .filter(|(_, (x, y))| finite(x) && finite(y))
                .map(|(i, _)| i)
                .collect(),
            None => (0..rows.len() / d)
                .filter(|&i| finite(&rows[i * d..(i + 1) * d]))
                .collect(),
        };
        let k = keep.len();
        if k == 0 {
            return;
        }
        let gather = |v: &[f32], w: usize| -> Vec<f32> {
            keep.iter()
                .flat_map(|&i| v[i * w..(i + 1) * w].iter().copied())
                .collect()
        };
        let xs = gather(rows, d);
        let ys = targets.map(|t| gather(t, e));
        let x = upload(&xs, [k, d], device);
        let y = match &ys {
            Some(ys) => upload(ys, [k, e], device),
            None => x.clone(),
        };
        let f = self.sae.encode(x.clone());
        let counts = f
            .clone()
            .greater_elem(0.0)
            .float()
            .sum_dim(0)
            .reshape([self.fired.len()]);
        let err = (self.sae.decode(f, &x) - y).square().sum();
        let v = download(&Tensor::cat(vec![err, counts], 0));
        let active_total: f64 = v[1..].iter().map(|&c| c as f64).sum();
        for (fl, &c) in self.fired.iter_mut().zip(&v[1..]) {
            *fl |= c > 0.0;
        }
        self.acc
            .add(ys.as_deref().unwrap_or(&xs), e, v[0] as f64, active_total);
    }

    /// The report over everything added.
    pub fn finish(&self) -> Evaluation {
        let silent = self.fired.iter().filter(|f| !**f).count() as u64;
        Evaluation::from_sums(&self.acc, silent, self.fired.len())
    }
}

/// Evaluate over every finite row of `store` in `rows` (all of them, or a run's held-out
/// tail) that its `mask` (if any) keeps, `batch` rows at a time; a transcoder against the
/// paired rows of its `target` store. `progress(done, of)` counts rows of the range.
pub fn evaluate(
    p: &HostParams,
    (store, target): (&Store, Option<&Store>),
    rows: std::ops::Range<usize>,
    batch: usize,
    device: &Device,
    mut progress: impl FnMut(u64, u64),
) -> Result<Evaluation, StoreError> {
    let end = rows.end.min(store.rows());
    let total = end.saturating_sub(rows.start) as u64;
    let sae = InferenceSae::new(p, device);
    let mut ev = Evaluator::new(&sae, p);
    let mut start = rows.start;
    let (mut buf, mut tbuf) = (Vec::new(), Vec::new());
    while start < end {
        buf.clear();
        tbuf.clear();
        let n = batch.min(end - start);
        // the positions a store's `mask` leaves out of training are left out here too, as the
        // trainer's held-out evaluation leaves them out (a target's with its inputs)
        store.read_kept_rows(start, n, &mut buf)?;
        if let Some(t) = target {
            t.read_kept_rows_by(store, start, n, &mut tbuf)?;
        }
        start += n;
        ev.add(&buf, target.map(|_| tbuf.as_slice()), device);
        progress((start - rows.start) as u64, total);
    }
    Ok(ev.finish())
}

/// The rows a run held out of a store of `store_rows` rows: its last `eval_tokens`.
pub fn held_out_rows(store_rows: usize, eval_tokens: usize) -> std::ops::Range<usize> {
    store_rows.saturating_sub(eval_tokens)..store_rows
}

/// Why a dictionary cannot be measured against the target store given (or not given).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A transcoder without its target.
    #[error(
        "{sae}: a {kind} needs --target-store: the store of the site it reconstructs, rows paired with --store's"
    )]
    Missing {
        /// The dictionary.
        sae: PathBuf,
        /// Its kind.
        kind: &'static str,
    },
    /// A target given to an SAE.
    #[error(
        "--target-store: {0} is an SAE, which reconstructs its own input: leave --target-store out"
    )]
    NotATranscoder(PathBuf),
    /// The target's width is not the transcoder's output width.
    #[error(
        "{sae}: the transcoder has d_out = {d_out}, but target store {store} (dataset `{dataset}`) has d_in = {width}"
    )]
    Width {
        /// The dictionary.
        sae: PathBuf,
        /// Its d_out.
        d_out: usize,
        /// The target store's first file.
        store: PathBuf,
        /// Its dataset.
        dataset: String,
        /// Its width.
        width: usize,
    },
    /// The target store could not be read, or does not pair with the input.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The target store a dictionary `p` (read from `sae`) is measured against on `input`: none for
/// an SAE, `paths` (with `dataset`, else the files' default dataset) for a transcoder, checked to pair with `input`
/// row for row and to have the transcoder's output width.
pub fn target_for(
    p: &HostParams,
    sae: &Path,
    input: &Store,
    (paths, dataset): (&[PathBuf], Option<&str>),
) -> Result<Option<Store>, TargetError> {
    let kind = p.kind();
    match (kind.has_target(), paths.is_empty()) {
        (false, true) => Ok(None),
        (false, false) => Err(TargetError::NotATranscoder(sae.to_path_buf())),
        (true, true) => Err(TargetError::Missing {
            sae: sae.to_path_buf(),
            kind: kind.name(),
        }),
        (true, false) => {
            let t = Store::open(paths, dataset)?;
            crate::data::pair::check(input, &t)?;
            if t.d_in() != p.d_out {
                return Err(TargetError::Width {
                    sae: sae.to_path_buf(),
                    d_out: p.d_out,
                    store: t.paths()[0].to_path_buf(),
                    dataset: t.dataset().to_string(),
                    width: t.d_in(),
                });
            }
            Ok(Some(t))
        }
    }
}
