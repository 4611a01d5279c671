//! `inspect`: one streaming pass of a store through a saved SAE, gathering per-feature
//! statistics ([`scan`]) and the store-wide L0 / FVU, then the token contexts of the top
//! activations, into a [`report::Inspection`].
//!
//! Per batch: the rows are encoded on the device, and the dense activations come back to the
//! host once. One pass over them, rows split across threads, picks out the non-zero entries and
//! decodes from them for the reconstruction error (the activations are sparse, so this costs a
//! small fraction of the dense decode a device would do); the entries, grouped by feature, then
//! feed the per-feature statistics, features split across threads.

pub mod report;
pub mod scan;

use crate::data::store::{Store, StoreError};
use crate::eval::Evaluation;
use crate::metrics::stats::{Histogram, ReconAccumulator, log10_density};
use crate::sae::model::InferenceSae;
use crate::sae::model::{HostParams, download, upload, with_host};
use burn::tensor::Device;
use rayon::prelude::*;
use report::{Context, EdgeHistogram, FeatureReport, Inspection, SaeInfo, TopActivation, VERSION};
use scan::{ByFeature, Scanner};

/// Rows of token ids read at a time when collecting contexts.
const CONTEXT_BLOCK: usize = 1 << 20;

/// How to inspect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows encoded at a time.
    pub batch: usize,
    /// Histogram bins per feature (a power of two).
    pub bins: usize,
    /// Top activations kept per feature.
    pub top_k: usize,
    /// Tokens of context on each side of a top activation.
    pub context: usize,
    /// Density from which a feature counts as dense.
    pub dense: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: 2048,
            bins: 32,
            top_k: 20,
            context: 8,
            dense: 0.1,
        }
    }
}

/// The finite rows of `rows` (`[n, d]`) and their store positions.
fn finite_rows(rows: &[f32], d: usize, first: usize) -> (Vec<f32>, Vec<u64>) {
    let mut keep = Vec::with_capacity(rows.len());
    let mut pos = Vec::with_capacity(rows.len() / d.max(1));
    for (i, r) in rows.chunks_exact(d).enumerate() {
        if r.iter().all(|v| v.is_finite()) {
            keep.extend_from_slice(r);
            pos.push((first + i) as u64);
        }
    }
    (keep, pos)
}

/// Rows handled together by one task of the row pass.
const ROWS_PER_TASK: usize = 64;

/// A non-zero activation: `(row in the batch, feature, value)`.
type Entry = (u32, u32, f32);

/// The row pass over a batch's dense activations `f` (`[n, d_sae]`) of inputs `x`: the non-zero
/// entries as `(row, feature, value)` (rows increasing), and Σ_rows ‖y − ŷ‖² with
/// ŷ = b_dec + Σ_i f_i W_dec[i] over those entries (+ x W_skip for a skip-transcoder), `y` the
/// targets (`x` itself for an SAE). Rows are split across threads.
fn row_pass(x: &[f32], y: &[f32], f: &[f32], p: &HostParams) -> (Vec<Entry>, f64) {
    let (d_in, d, m) = (p.d_in, p.d_out, p.d_sae);
    let parts: Vec<(Vec<Entry>, f64)> = y
        .par_chunks(d * ROWS_PER_TASK)
        .zip(f.par_chunks(m * ROWS_PER_TASK))
        .zip(x.par_chunks(d_in * ROWS_PER_TASK))
        .enumerate()
        .map(|(c, ((ys, fs), xs))| {
            let mut xhat = vec![0f32; d];
            let mut nz = Vec::new();
            let mut err = 0f64;
            for (r, (xr, fr)) in ys.chunks_exact(d).zip(fs.chunks_exact(m)).enumerate() {
                let row = (c * ROWS_PER_TASK + r) as u32;
                xhat.copy_from_slice(&p.b_dec);
                if let Some(w) = &p.w_skip {
                    let input = &xs[r * d_in..(r + 1) * d_in];
                    for (j, &v) in input.iter().enumerate() {
                        crate::isa::axpy(&mut xhat, v, &w[j * d..(j + 1) * d]);
                    }
                }
                // most of a row is zero: test eight at a time (vectorised) before looking closer
                for (g, group) in fr.chunks(8).enumerate() {
                    if group.iter().all(|v| *v == 0.0) {
                        continue;
                    }
                    for (o, &a) in group.iter().enumerate() {
                        if a != 0.0 {
                            let i = g * 8 + o;
                            nz.push((row, i as u32, a));
                            for (h, w) in xhat.iter_mut().zip(&p.w_dec[i * d..(i + 1) * d]) {
                                *h += a * w;
                            }
                        }
                    }
                }
                err += xr
                    .iter()
                    .zip(&xhat)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>();
            }
            (nz, err)
        })
        .collect();
    let err = parts.iter().map(|p| p.1).sum();
    (parts.into_iter().flat_map(|p| p.0).collect(), err)
}

/// Most activations one batch may hold (`rows × d_sae` floats: 256 MiB).
const MAX_BATCH_VALUES: usize = 1 << 26;

/// Rows per batch: as asked, but no more than keeps one batch's dense activations under
/// [`MAX_BATCH_VALUES`] (a 131k-feature SAE gets 512 rows), so memory stays bounded.
pub fn batch_rows(asked: usize, d_sae: usize) -> usize {
    asked.min(MAX_BATCH_VALUES / d_sae.max(1)).max(1)
}

/// Encode every row of `store` and throw the result away (reduced on the device to one
/// number, so that the work is done): the cost `inspect`'s pass is measured against.
pub fn encode_only(
    p: &HostParams,
    store: &Store,
    batch: usize,
    device: &Device,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, StoreError> {
    let sae = InferenceSae::new(p, device);
    let d = p.d_in;
    let mut tokens = 0u64;
    for_each_batch(
        (store, None),
        d,
        batch_rows(batch, p.d_sae),
        &mut progress,
        |x, _, pos| {
            let f = sae.encode(upload(x, [pos.len(), d], device));
            download(&f.sum());
            tokens += pos.len() as u64;
        },
    )?;
    Ok(tokens)
}

/// Read `store` `batch` rows at a time and hand each batch's finite rows (`[k, d]`) and their
/// store positions to `each` (batches with no finite row are skipped), with a transcoder's
/// paired `target` rows (`[k, d_out]`; a pair is left out when either row is not finite);
/// `progress(done_rows, total_rows)` after each batch.
fn for_each_batch(
    (store, target): (&Store, Option<&Store>),
    d: usize,
    batch: usize,
    progress: &mut impl FnMut(u64, u64),
    mut each: impl FnMut(&[f32], Option<&[f32]>, &[u64]),
) -> Result<(), StoreError> {
    let rows_total = store.rows();
    let (mut rows, mut trows) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < rows_total {
        let n = batch.min(rows_total - start);
        rows.clear();
        store.read_rows(start, n, &mut rows)?;
        let (x, y, pos) = match target {
            None => {
                let (x, pos) = finite_rows(&rows, d, start);
                (x, None, pos)
            }
            Some(t) => {
                trows.clear();
                t.read_rows(start, n, &mut trows)?;
                let e = t.d_in();
                let finite = |r: &[f32]| r.iter().all(|v| v.is_finite());
                let (mut x, mut y, mut pos) = (Vec::new(), Vec::new(), Vec::new());
                for (i, (a, b)) in rows.chunks_exact(d).zip(trows.chunks_exact(e)).enumerate() {
                    if finite(a) && finite(b) {
                        x.extend_from_slice(a);
                        y.extend_from_slice(b);
                        pos.push((start + i) as u64);
                    }
                }
                (x, Some(y), pos)
            }
        };
        start += n;
        if !pos.is_empty() {
            each(&x, y.as_deref(), &pos);
        }
        progress(start as u64, rows_total as u64);
    }
    Ok(())
}

/// One pass of `store` through the inference-form SAE `p`: the whole report, contexts included
/// when the store has token ids; a transcoder's reconstruction numbers against its `target`
/// store. `progress(done_rows, total_rows)` is called after each batch.
pub fn inspect(
    p: &HostParams,
    sae: SaeInfo,
    (store, target): (&Store, Option<&Store>),
    opts: &Options,
    device: &Device,
    mut progress: impl FnMut(u64, u64),
) -> Result<Inspection, StoreError> {
    let (d, m) = (p.d_in, p.d_sae);
    let enc = InferenceSae::new(p, device);
    let mut scanner = Scanner::new(m, opts.bins, opts.top_k);
    let mut acc = ReconAccumulator::default();
    for_each_batch(
        (store, target),
        d,
        batch_rows(opts.batch, m),
        &mut progress,
        |x, y, pos| {
            let f = enc.encode(upload(x, [pos.len(), d], device));
            let y = y.unwrap_or(x);
            let (nz, err) = with_host(f, |f| row_pass(x, y, f, p));
            scanner.add(&ByFeature::group(&nz, m), pos);
            acc.add(y, p.d_out, err, nz.len() as f64);
        },
    )?;

    let n_tokens = acc.tokens;
    let feats = scanner.into_features();
    let norms: Vec<f64> = p
        .w_dec
        .chunks_exact(p.d_out)
        .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let density = |count: u64| count as f64 / n_tokens.max(1) as f64;
    let mut features: Vec<FeatureReport> = feats
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let bins = a.hist.len();
            let histogram = if a.count == 0 {
                EdgeHistogram {
                    edges: Vec::new(),
                    counts: Vec::new(),
                }
            } else {
                EdgeHistogram {
                    edges: (0..=bins)
                        .map(|b| a.range as f64 * b as f64 / bins as f64)
                        .collect(),
                    counts: a.hist.clone(),
                }
            };
            FeatureReport {
                index: i,
                density: density(a.count),
                mean: if a.count > 0 {
                    a.sum / a.count as f64
                } else {
                    0.0
                },
                max: a.max as f64,
                threshold: p.threshold[i] as f64,
                decoder_norm: norms[i],
                histogram,
                top: a
                    .top()
                    .iter()
                    .map(|t| TopActivation {
                        position: t.position,
                        activation: t.activation as f64,
                        context: None,
                    })
                    .collect(),
            }
        })
        .collect();

    let context_note = if opts.context == 0 {
        None
    } else if !store.has_token_ids() {
        Some("the store has no token ids: top activations show positions only".to_string())
    } else {
        add_contexts(store, &mut features, opts.context)?;
        None
    };

    let log_theta: Vec<f64> = p
        .threshold
        .iter()
        .map(|t| (*t as f64).max(1e-10).log10())
        .collect();
    let (t_lo, t_hi) = span(&log_theta);
    let (n_lo, n_hi) = span(&norms);
    Ok(Inspection {
        version: VERSION,
        sae,
        stores: store
            .paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        dataset: store.dataset().to_string(),
        recon: Evaluation::from_sums(
            &acc,
            features.iter().filter(|f| f.density == 0.0).count() as u64,
            features.len(),
        ),
        dense: features.iter().filter(|f| f.density >= opts.dense).count() as u64,
        dense_threshold: opts.dense,
        density_hist: Histogram::new(
            features.iter().map(|f| log10_density(f.density)),
            -10.0,
            0.0,
            40,
        ),
        theta_hist: Histogram::new(log_theta.iter().copied(), t_lo, t_hi, 40),
        decoder_norm_hist: Histogram::new(norms.iter().copied(), n_lo, n_hi, 40),
        context: opts.context,
        context_note,
        features,
    })
}

/// A histogram range covering `v` (widened when all values are equal).
fn span(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Fill in each top activation's context: ±`n` tokens, inside its sequence (or file). The token
/// ids (and strings) are read once per block of rows that holds any of them, so memory stays
/// bounded by the windows, not the store.
fn add_contexts(store: &Store, features: &mut [FeatureReport], n: usize) -> Result<(), StoreError> {
    // every window, as (start, end, feature, rank)
    let mut windows: Vec<(usize, usize, usize, usize)> = Vec::new();
    for f in features.iter() {
        for (r, t) in f.top.iter().enumerate() {
            let pos = t.position as usize;
            let (s0, s1) = store.sequence_bounds(pos);
            windows.push((
                pos.saturating_sub(n).max(s0),
                (pos + n + 1).min(s1),
                f.index,
                r,
            ));
        }
    }
    windows.sort_unstable();
    let mut w = 0;
    let mut block_start = 0;
    while w < windows.len() {
        // the block from the next window's start, grown to hold every window starting in it
        block_start = block_start.max(windows[w].0);
        let mut block_end = (block_start + CONTEXT_BLOCK).min(store.rows());
        let mut last = w;
        while last < windows.len() && windows[last].0 < block_end {
            block_end = block_end.max(windows[last].1);
            last += 1;
        }
        let ids = store.read_token_ids(block_start, block_end - block_start)?;
        let strs = store.read_token_strings(block_start, block_end - block_start)?;
        for &(s, e, fi, r) in &windows[w..last] {
            let (a, b) = (s - block_start, e - block_start);
            let top = &mut features[fi].top[r];
            top.context = Some(Context {
                start: s as u64,
                active: top.position as usize - s,
                ids: ids[a..b].to_vec(),
                tokens: strs.as_ref().map(|v| v[a..b].to_vec()),
            });
        }
        w = last;
        block_start = block_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_saes_get_smaller_batches() {
        assert_eq!(batch_rows(2048, 16384), 2048);
        assert_eq!(batch_rows(2048, 131072), 512);
        assert_eq!(batch_rows(2048, 1 << 30), 1);
        assert_eq!(batch_rows(0, 64), 1);
    }
}
