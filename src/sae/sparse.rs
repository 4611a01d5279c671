//! The training step after the encoder product, restricted to the entries a sparse SAE touches,
//! on host memory (after the fused host kernels' encode pass).
//!
//! Why: a trained JumpReLU SAE fires 20–100 of thousands of features per token, yet the dense
//! step spends four more `B·d_in·d_sae` matrix products after the encoder's: the decoder, ∂L/∂W_dec,
//! ∂L/∂f and ∂L/∂W_enc. Only the encoder product needs every entry. Of the rest, an entry matters
//! only if it is active (z > θ), or inside θ's straight-through window (|z − θ| < ε/2, where
//! ∂L/∂f reaches θ), or, with the pre-activation loss, below θ on a dead feature. Here:
//! - the entries, found from the encode pass's flags (32 at a time) and grouped by feature;
//! - x̂ − x = b_dec + Σ_active f_bi W_dec[i] − x, each task owning a block of rows and going
//!   through the features in order (a decoder row read once per block, not once per entry);
//! - then one pass per feature over its entries: ∂L/∂f_bi = ∂L/∂x̂_b · W_dec[i], the elementwise
//!   backward of `host_fused`, the feature's sums for θ and b_enc, and ∂L/∂W_dec[i] =
//!   Σ_b f_bi ∂L/∂x̂_b and ∂L/∂W_enc[:, i] = Σ_b ∂L/∂z_bi x_in,b (rows in order, so the sums are
//!   deterministic).
//!
//! Cost: about 4·nnz·d_in instead of 4·B·d_sae·d_in, plus one pass over the encode pass's flags.
//! The result is the same step up to float rounding (property-tested against the dense path).

use crate::isa::{axpy, dot};
use crate::sae::kernels::host_fused::{ACTIVE, BELOW, NEAR, Saved, add_into, theta_grads};
use crate::sae::kernels::{Encoded, Kernels, LossSettings, host_penalty};
use crate::sae::loss::{Grads, Rest, Start, StepOutput, finish};
use crate::sae::model::{Sae, download, upload_owned, with_host, with_host_ref};
use burn::tensor::Tensor;
use rayon::prelude::*;

/// The sparse step runs while at most this fraction of the `[B, d_sae]` entries is touched
/// (active, in θ's window, or below θ on a dead feature under the pre-activation loss).
/// Measured on this project's 2-core machine with `jumpscope bench --d-in 512 --d-sae 4096
/// --batch 4096 --l0 N`, sparse forced vs dense: sparse 17.5k/12.5k tokens/s at L0 128/256
/// (3 %/6 % active) against dense 7.3k, dense 8.1k/8.2k at L0 512/1024 (12.5 %/25 %) against
/// sparse 6.8k/4.5k; the two meet near 10 %.
pub const SWITCH_DENSITY: f64 = 0.10;

/// The density below which a run's steps go sparse with these kernels: [`SWITCH_DENSITY`] for
/// the fused host kernels (of the touched entries), [`SWITCH_DENSITY_LIBTORCH`] for the tensor
/// ops on LibTorch (of the active entries; no sparse form on other backends).
pub fn switch_density(kernels: Kernels) -> f64 {
    match kernels {
        Kernels::HostFused => SWITCH_DENSITY,
        Kernels::TensorOps => SWITCH_DENSITY_LIBTORCH,
    }
}

/// The LibTorch sparse step (`sae::sparse_libtorch`) runs while at most this fraction of the
/// `[B, d_sae]` entries fires. Measured as for [`SWITCH_DENSITY`] on `tch-cpu` (`--step sparse`
/// vs `--step dense`): sparse 614/803/1528 ms per step at L0 256/512/1024 (6 %/12.5 %/25 %)
/// against dense 826/857/854; they meet near 13 %, and 10 % keeps a margin for GPUs, where
/// dense products are relatively cheaper.
pub const SWITCH_DENSITY_LIBTORCH: f64 = 0.10;

/// The fraction of entries the sparse rest would touch: active and window entries counted from
/// the encode pass (an upper bound: an active entry inside the window counts twice), plus every
/// entry of a feature the pre-activation loss applies to.
pub(crate) fn touched_fraction(saved: &Saved, start: &Start, s: &LossSettings) -> f64 {
    let rows = saved.row_l0.len();
    let m = saved.near_counts.len();
    let active: f64 = saved.row_l0.iter().map(|&v| v as f64).sum();
    let near: f64 = saved.near_counts.iter().map(|&v| v as f64).sum();
    let dead = match (&start.inputs.pre_act_weights, s.pre_act_coefficient > 0.0) {
        (Some(w), true) => download(w).iter().filter(|&&v| v != 0.0).count() as f64,
        _ => 0.0,
    };
    (active + near + dead * rows as f64) / (rows * m).max(1) as f64
}

/// A block's Matryoshka prefix residual (rows × d_out) with its Σ‖·‖².
type Prefix = (f64, Vec<f32>);

/// One entry of a row that the sparse rest works on.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its feature.
    i: u32,
    /// ACTIVE / NEAR / BELOW flags of the encode pass.
    fl: u8,
    /// f (0 unless active).
    f: f32,
}

/// One feature's sums over its entries.
#[derive(Clone, Copy, Default)]
struct FeatureSums {
    /// Σ over window entries of ∂L/∂f (θ's JumpReLU share).
    jump: f32,
    /// Σ over window entries of the l0_target Step's upstream gradient.
    step: f32,
    /// Σ_b ∂L/∂z.
    b_enc: f32,
    /// Σ_b f sech² (the tanh penalty's ∂/∂‖W_dec[i]‖, before λc/B).
    norms: f32,
}

/// Call `take(i)` for every index whose flags share a bit with `mask`, in order. Skips 32 flags
/// at a time where none does (at a trained SAE's sparsity, most of a row), and finds the rest by
/// their bit positions rather than by testing each.
#[inline]
fn scan_flags(flags: &[u8], mask: u8, mut take: impl FnMut(usize)) {
    let wide = u64::from_ne_bytes([mask; 8]);
    let chunks = flags.chunks_exact(32);
    let tail = chunks.remainder();
    for (k, c) in chunks.enumerate() {
        let words: [u64; 4] = std::array::from_fn(|j| {
            u64::from_le_bytes(c[j * 8..j * 8 + 8].try_into().unwrap()) & wide
        });
        if words.iter().fold(0, |a, w| a | w) == 0 {
            continue;
        }
        for (j, &w) in words.iter().enumerate() {
            let mut x = w;
            while x != 0 {
                // little-endian: byte b of the word is flags[k * 32 + j * 8 + b]
                let byte = (x.trailing_zeros() / 8) as usize;
                take(k * 32 + j * 8 + byte);
                x &= !(0xffu64 << (byte * 8));
            }
        }
    }
    let base = flags.len() - tail.len();
    for (j, &fl) in tail.iter().enumerate() {
        if fl & mask != 0 {
            take(base + j);
        }
    }
}

/// Features whose W_enc gradient columns are written together (16 f32: one cache line of each
/// row of `[d_in, d_sae]`).
const COLUMNS: usize = 16;

/// Bytes of the x̂ − x and x_in rows one block of the per-feature pass reads: a share of a core's
/// L2 cache (1 MiB on the machine it was tuned on; more elsewhere only helps).
const BLOCK_BYTES: usize = 512 << 10;

/// A pointer into a buffer whose disjoint parts parallel tasks write.
#[derive(Clone, Copy)]
struct Columns(*mut f32);

// SAFETY: the tasks that share it write disjoint elements (see its one use)
unsafe impl Send for Columns {}
unsafe impl Sync for Columns {}

impl Columns {
    /// The element at `k`.
    ///
    /// # Safety
    /// `k` is inside the buffer and no other task writes it.
    unsafe fn at(self, k: usize) -> *mut f32 {
        unsafe { self.0.add(k) }
    }
}

/// The rest of the step, sparse (see the module doc), after the fused host encode.
pub(crate) fn rest(
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    enc: Encoded,
    saved: Saved,
) -> (StepOutput, Grads) {
    // x_in, the target and W_dec are read in place (a copy of a wide decoder costs more than
    // the scan)
    let (x_in, target, w_dec) = (start.x_in.clone(), start.target.clone(), sae.w_dec.clone());
    with_host_ref(&x_in, |x_in| {
        with_host_ref(&target, |target| {
            with_host_ref(&w_dec, |w_dec| {
                rest_on(sae, s, start, enc, saved, (x_in, target), w_dec)
            })
        })
    })
}

/// [`rest`] with x_in, the target and W_dec on the host.
fn rest_on(
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    enc: Encoded,
    saved: Saved,
    (x_in, target): (&[f32], &[f32]),
    w_dec: &[f32],
) -> (StepOutput, Grads) {
    let [b, d_in] = start.x_in.dims();
    // d: the width of the reconstruction (d_in but for transcoders)
    let d = sae.d_out();
    let (_, m) = sae.dims();
    let bf = b as f64;
    let device = start.x.device();
    // the residual x̂ − y is Σ f W_dec − x_in with the pre-encoder bias (an SAE, y = x and
    // x_in = x − b_dec), b_dec + Σ f W_dec − target without it
    let (base, y_rows) = if s.pre_encoder_bias {
        (vec![0.0; d], x_in)
    } else {
        (download(&sae.b_dec), target)
    };
    let theta = download(&start.inputs.theta);
    let penalty = start.inputs.penalty.map_norms(download);
    let pre: Option<Vec<f32>> = start.inputs.pre_act_weights.as_ref().map(|w| {
        let k = (-s.pre_act_coefficient / bf) as f32;
        download(w).iter().map(|v| v * k).collect()
    });
    let lam = s.lambda;
    let l1_k = (lam / bf) as f32;
    // what the penalty adds to ∂L/∂f and ∂L/∂‖W_dec‖: tanh's c and λc/B, or L1's λ/B
    let (weights, target) = host_penalty(&penalty, lam, bf);
    let scale = (2.0 / bf) as f32;

    // the entries of each row that matter, with f, from the encode pass's flags
    let Encoded {
        f,
        fire_counts,
        sparsity,
        pre_act,
        ..
    } = enc;
    let dead: Option<Vec<bool>> = pre
        .as_ref()
        .map(|p| p.iter().map(|&v| v != 0.0).collect::<Vec<bool>>())
        .filter(|d| d.contains(&true));
    let rows: Vec<Vec<Entry>> = with_host(f, |fv| {
        (0..b)
            .into_par_iter()
            .with_min_len(16)
            .map(|r| {
                let (fr, vr) = (&saved.flags[r * m..(r + 1) * m], &fv[r * m..(r + 1) * m]);
                let mut out = Vec::new();
                let mut take = |i: usize| {
                    out.push(Entry {
                        i: i as u32,
                        fl: fr[i],
                        f: vr[i],
                    })
                };
                match &dead {
                    None => scan_flags(fr, ACTIVE | NEAR, &mut take),
                    // with the pre-activation loss, dead features' entries below θ too
                    Some(dead) => {
                        for (i, &fl) in fr.iter().enumerate() {
                            if fl & (ACTIVE | NEAR) != 0 || (fl & BELOW != 0 && dead[i]) {
                                take(i);
                            }
                        }
                    }
                }
                out
            })
            .collect()
    });
    // the entries grouped by feature, rows in order within each (a counting sort)
    let mut offsets = vec![0usize; m + 1];
    for e in rows.iter().flatten() {
        offsets[e.i as usize + 1] += 1;
    }
    for i in 0..m {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut by_feature = vec![
        (
            0u32,
            Entry {
                i: 0,
                fl: 0,
                f: 0.0
            }
        );
        offsets[m]
    ];
    for (r, ents) in rows.iter().enumerate() {
        for e in ents {
            let k = &mut next[e.i as usize];
            by_feature[*k] = (r as u32, *e);
            *k += 1;
        }
    }
    drop(rows);
    let entries = |i: usize| &by_feature[offsets[i]..offsets[i + 1]];

    // x̂ − x: each task owns a block of rows and goes through the features in order, so that a
    // decoder row is read once per block rather than once per active entry; each row still sums
    // its features in ascending order
    // Matryoshka: each inner width's prefix residual is the row's running sum when the features
    // below the width are in, minus the target
    let inner = &s.matryoshka;
    let mut residual = vec![0f32; b * d];
    let block_rows = b.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let parts: Vec<(f64, Vec<Prefix>)> = residual
        .par_chunks_mut(block_rows * d)
        .enumerate()
        .map(|(k, res)| {
            let (r0, r1) = (k * block_rows, k * block_rows + res.len() / d);
            let ys = &y_rows[r0 * d..r1 * d];
            res.chunks_mut(d).for_each(|row| row.copy_from_slice(&base));
            let mut prefixes = Vec::with_capacity(inner.len());
            for i in 0..m {
                if inner.get(prefixes.len()) == Some(&i) {
                    let p: Vec<f32> = res.iter().zip(ys).map(|(a, y)| a - y).collect();
                    let sq = p.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                    prefixes.push((sq, p));
                }
                let ents = entries(i);
                let w = &w_dec[i * d..(i + 1) * d];
                let from = ents.partition_point(|(r, _)| (*r as usize) < r0);
                for (r, e) in ents[from..].iter().take_while(|(r, _)| (*r as usize) < r1) {
                    if e.fl & ACTIVE != 0 {
                        let o = (*r as usize - r0) * d;
                        axpy(&mut res[o..o + d], e.f, w);
                    }
                }
            }
            let mut sq = 0.0;
            for (row, xr) in res.chunks_mut(d).zip(ys.chunks(d)) {
                row.iter_mut().zip(xr).for_each(|(o, xv)| *o -= xv);
                sq += row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            }
            (sq, prefixes)
        })
        .collect();
    let sq: f64 = parts.iter().map(|p| p.0).sum();
    // each inner width's residual over the batch, its Σ‖·‖², then turned in place into the
    // upstream of the segment below it: D_j = r + Σ_{k > j} r_k, for segment j = [w_j, w_{j+1})
    let mut ups: Vec<Vec<f32>> = (0..inner.len())
        .map(|k| {
            parts
                .iter()
                .flat_map(|p| p.1[k].1.iter().copied())
                .collect()
        })
        .collect();
    let inner_sq: Vec<f32> = (0..inner.len())
        .map(|k| parts.iter().map(|p| p.1[k].0).sum::<f64>() as f32)
        .collect();
    drop(parts);
    for k in (0..ups.len()).rev() {
        let (low, high) = ups.split_at_mut(k + 1);
        let above: &[f32] = high.first().map_or(&residual, |v| v.as_slice());
        low[k].par_iter_mut().zip(above).for_each(|(a, b)| *a += b);
    }
    // the upstream of feature i's segment (the residual itself above the last inner width)
    let upstream_of = |i: usize| -> &[f32] {
        match ups.get(inner.partition_point(|&w| w <= i)) {
            Some(u) => u,
            None => &residual,
        }
    };

    // one pass per feature, a few features per task: ∂L/∂f at its entries and the elementwise
    // backward, its sums for θ, b_enc and ‖W_dec‖, then ∂L/∂W_dec[i] = Σ_b f_bi ∂L/∂x̂_b and
    // ∂L/∂W_enc[:, i] = Σ_b ∂L/∂z_bi x_in,b (rows in order, so every sum is deterministic).
    // W_enc's columns are summed as rows in a small buffer, then written into their columns
    // while those cache lines are still near (no [d_sae, d_in] transpose)
    // l0_target: the Step's upstream gradient for every feature of row r
    let g_row = |r: usize, t: f64| (lam * 4.0 / t * (saved.row_l0[r] as f64 - t) / bf) as f32;
    let mut g_w_dec = vec![0f32; m * d];
    let mut g_w_enc = vec![0f32; d_in * m];
    let mut sums = vec![FeatureSums::default(); m];
    let enc_out = Columns(g_w_enc.as_mut_ptr());
    // each task takes a range of features through the rows block by block, so that the rows of
    // x̂ − x and x_in a block's entries read stay in the core's cache for all its features. That
    // costs a pass over the task's gradient rows per block, so it pays only while a block holds
    // more rows than d_sae / L0 (the rows between two entries of one feature); else one block.
    // Measured at L0 64 (this pass alone, medians): 512/4096 blocked 31 ms vs 42 unblocked,
    // 768/16384 (85-row blocks, fewer than 16384 / 64) blocked 166 ms vs 131 unblocked.
    let task_features = m
        .div_ceil(4 * rayon::current_num_threads().max(1))
        .next_multiple_of(COLUMNS);
    let cache_rows = (BLOCK_BYTES / (4 * (d + d_in).max(1))).max(16);
    let gap = m as f64 * b as f64 / by_feature.len().max(1) as f64;
    let block_rows = if cache_rows as f64 > gap {
        cache_rows
    } else {
        b.max(1)
    };
    g_w_dec
        .par_chunks_mut(task_features * d)
        .zip(sums.par_chunks_mut(task_features))
        .enumerate()
        .for_each(|(task, (gd_rows, acc))| {
            let i0 = task * task_features;
            let n = acc.len();
            let mut ge_rows = vec![0f32; n * d_in];
            let mut cursor: Vec<usize> = (i0..i0 + n).map(|i| offsets[i]).collect();
            for end in (block_rows..b + block_rows).step_by(block_rows) {
                for (c, (gd, ge)) in gd_rows
                    .chunks_mut(d)
                    .zip(ge_rows.chunks_mut(d_in))
                    .enumerate()
                {
                    let i = i0 + c;
                    let up = upstream_of(i);
                    let w = &w_dec[i * d..(i + 1) * d];
                    let acc = &mut acc[c];
                    let stop = offsets[i + 1];
                    let mut k = cursor[c];
                    while k < stop && (by_feature[k].0 as usize) < end {
                        let (r, e) = by_feature[k];
                        k += 1;
                        let r = r as usize;
                        let res = &up[r * d..(r + 1) * d];
                        let mut g = 0.0;
                        if e.fl & (ACTIVE | NEAR) != 0 {
                            // ∂L/∂f_bi = ∂L/∂x̂_b · W_dec[i], with ∂L/∂x̂ = 2 (x̂ − x) / B
                            g = scale * dot(res, w);
                            match weights {
                                Some((n, Some((tanh_c, tanh_k)))) => {
                                    let th = (tanh_c * e.f * n[i]).tanh();
                                    let sech2 = 1.0 - th * th;
                                    g += tanh_k * n[i] * sech2;
                                    acc.norms += e.f * sech2;
                                }
                                Some((n, None)) => {
                                    g += l1_k * n[i];
                                    acc.norms += e.f;
                                }
                                None => {}
                            }
                        }
                        if e.fl & NEAR != 0 {
                            acc.jump += g;
                            if let Some(t) = target {
                                acc.step += g_row(r, t);
                            }
                        }
                        // H(z − θ)·∂L/∂f, or the pre-activation loss's −coef·w_i/B below θ
                        let g_z = if e.fl & ACTIVE != 0 {
                            g
                        } else if e.fl & BELOW != 0 {
                            pre.as_ref().map_or(0.0, |p| p[i])
                        } else {
                            0.0
                        };
                        acc.b_enc += g_z;
                        if e.fl & ACTIVE != 0 {
                            axpy(gd, e.f * scale, res);
                        }
                        if g_z != 0.0 {
                            axpy(ge, g_z, &x_in[r * d_in..(r + 1) * d_in]);
                        }
                    }
                    cursor[c] = k;
                }
            }
            // W_enc's columns i0..i0 + n, COLUMNS at a time (a cache line of each row of W_enc)
            for c0 in (0..n).step_by(COLUMNS) {
                let cn = (n - c0).min(COLUMNS);
                for j in 0..d_in {
                    for c in c0..c0 + cn {
                        // SAFETY: g_w_enc is [d_in, m]; columns i0..i0 + n belong to this task
                        // alone, and j · m + i0 + c < d_in · m
                        unsafe { *enc_out.at(j * m + i0 + c) = ge_rows[c * d_in + j] };
                    }
                }
            }
        });
    let column = |f: &dyn Fn(&FeatureSums) -> f32| sums.iter().map(f).collect::<Vec<f32>>();
    // Σ_b ∂mse/∂x̂_b, of every reconstruction (the whole and each Matryoshka prefix)
    let upstream = ups.first().unwrap_or(&residual);
    let g_b_dec: Vec<f32> = upstream
        .par_chunks(d)
        .with_min_len(64)
        .fold(
            || vec![0f32; d],
            |mut acc, row| {
                axpy(&mut acc, scale, row);
                acc
            },
        )
        .reduce(
            || vec![0f32; d],
            |mut a, o| {
                add_into(&mut a, &o);
                a
            },
        );
    let (jump, step) = (column(&|a| a.jump), column(&|a| a.step));
    let g_theta = theta_grads(&theta, &jump, &step, &saved.near_counts, s, b);
    let vec1 = |v: Vec<f32>| upload_owned(v, [m], &device);
    let g_norms = match weights {
        Some((_, Some((_, tanh_k)))) => Some(vec1(column(&|a| a.norms * tanh_k))),
        Some((_, None)) => Some(vec1(column(&|a| a.norms * l1_k))),
        None => None,
    };
    let residual = upload_owned(residual, [b, d], &device);
    let (upstream, inner_sq) = match ups.into_iter().next() {
        Some(u) => (
            upload_owned(u, [b, d], &device),
            Some(upload_owned(inner_sq, [inner.len()], &device)),
        ),
        None => (residual.clone(), None),
    };
    let rest = Rest {
        residual,
        upstream,
        inner_sq,
        mse: Tensor::from_data(
            burn::tensor::TensorData::new(vec![(sq / bf) as f32], [1]),
            &device,
        ),
        g_w_dec: upload_owned(g_w_dec, [m, d], &device),
        g_b_dec: upload_owned(g_b_dec, [d], &device),
        g_w_enc: upload_owned(g_w_enc, [d_in, m], &device),
        g_theta: vec1(g_theta),
        g_b_enc: vec1(column(&|a| a.b_enc)),
        g_norms,
    };
    finish(sae, s, start, (fire_counts, sparsity, pre_act), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_scan_finds_exactly_the_flagged_indices_in_order() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        for len in [0, 1, 7, 31, 32, 33, 64, 100, 4096 + 13] {
            for density in [0.0, 0.01, 0.2, 1.0] {
                let flags: Vec<u8> = (0..len)
                    .map(|_| {
                        let u = next() as f64 / (1u64 << 31) as f64;
                        // BELOW alone must be skipped; ACTIVE or NEAR (with or without it) taken
                        let taken = [ACTIVE, NEAR, ACTIVE | BELOW, NEAR | BELOW];
                        if u < density {
                            taken[next() as usize % 4]
                        } else if next() % 2 == 0 {
                            BELOW
                        } else {
                            0
                        }
                    })
                    .collect();
                let want: Vec<usize> = (0..len)
                    .filter(|&i| flags[i] & (ACTIVE | NEAR) != 0)
                    .collect();
                let mut got = Vec::new();
                scan_flags(&flags, ACTIVE | NEAR, |i| got.push(i));
                assert_eq!(got, want, "len {len} density {density}");
            }
        }
    }
}
