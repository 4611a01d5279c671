//! The training step after the encoder product, restricted to the entries a sparse SAE touches,
//! on host memory (after the fused host kernels' encode pass).
//!
//! Why: a trained JumpReLU SAE fires 20–100 of thousands of features per token, yet the dense
//! step spends four more `B·d_in·d_sae` matrix products after the encoder's: the decoder, ∂L/∂W_dec,
//! ∂L/∂f and ∂L/∂W_enc. Only the encoder product needs every entry. Of the rest, an entry matters
//! only if it is active (z > θ), or inside θ's straight-through window (|z − θ| < ε/2, where
//! ∂L/∂f reaches θ), or, with the pre-activation loss, below θ on a dead feature. Here:
//! - x̂ = b_dec + Σ_active f_bi W_dec[i] and ∂L/∂f at active and window entries only, one row at a
//!   time (each a d_in-long product with a decoder row);
//! - the elementwise backward of `host_fused`, entry by entry;
//! - ∂L/∂W_dec[i] = Σ_b f_bi ∂L/∂x̂_b and ∂L/∂W_enc[:, i] = Σ_b ∂L/∂z_bi x_in,b, one feature at a
//!   time over its entries (rows in order, so the sums are deterministic).
//!
//! Cost: about 4·nnz·d_in instead of 4·B·d_sae·d_in, plus one pass over the encode pass's flags.
//! The result is the same step up to float rounding (property-tested against the dense path).

use crate::sae::kernels::host_fused::{ACTIVE, BELOW, NEAR, Saved, add_into, theta_grads};
use crate::sae::kernels::{Encoded, Kernels, LossSettings, SparsityLoss};
use crate::sae::loss::{Grads, Rest, Start, StepOutput, finish};
use crate::sae::model::{Sae, download, upload_owned, with_host};
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

/// One entry of a row that the sparse rest works on.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its feature.
    i: u32,
    /// ACTIVE / NEAR / BELOW flags of the encode pass.
    fl: u8,
    /// f (0 unless active).
    f: f32,
    /// ∂L/∂z once the backward has run.
    g_z: f32,
}

/// Per-feature sums of one share of the rows.
#[derive(Clone)]
struct Sums {
    /// Σ over window entries of ∂L/∂f (θ's JumpReLU share).
    jump: Vec<f32>,
    /// Σ over window entries of the l0_target Step's upstream gradient.
    step: Vec<f32>,
    /// Σ_b ∂L/∂z.
    b_enc: Vec<f32>,
    /// Σ_b f sech² (the tanh penalty's ∂/∂‖W_dec[i]‖, before λc/B).
    norms: Vec<f32>,
    /// Σ (x̂ − x)², over all rows and dimensions.
    sq: f64,
}

impl Sums {
    fn zero(m: usize) -> Self {
        Self {
            jump: vec![0.0; m],
            step: vec![0.0; m],
            b_enc: vec![0.0; m],
            norms: vec![0.0; m],
            sq: 0.0,
        }
    }

    fn add(mut self, o: Sums) -> Self {
        add_into(&mut self.jump, &o.jump);
        add_into(&mut self.step, &o.step);
        add_into(&mut self.b_enc, &o.b_enc);
        add_into(&mut self.norms, &o.norms);
        self.sq += o.sq;
        self
    }
}

/// `acc += a · v`.
#[inline]
fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(o, x)| *o += a * x);
}

/// `u · v`, summed in eight lanes so that it vectorises.
#[inline]
fn dot(u: &[f32], v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (cu, cv) = (u.chunks_exact(8), v.chunks_exact(8));
    let tail: f32 = cu
        .remainder()
        .iter()
        .zip(cv.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in cu.zip(cv) {
        for k in 0..8 {
            lanes[k] += a[k] * b[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `[rows, cols]` row-major to `[cols, rows]`, in tiles.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 32;
    let mut out = vec![0f32; rows * cols];
    out.par_chunks_mut(T * rows)
        .enumerate()
        .for_each(|(tc, block)| {
            // output rows c0..c0+T (= input columns)
            let c0 = tc * T;
            let cn = (cols - c0).min(T);
            for r0 in (0..rows).step_by(T) {
                for r in r0..(r0 + T).min(rows) {
                    for c in 0..cn {
                        block[c * rows + r] = src[r * cols + c0 + c];
                    }
                }
            }
        });
    out
}

/// The rest of the step, sparse (see the module doc), after the fused host encode.
pub(crate) fn rest(
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    enc: Encoded,
    saved: Saved,
) -> (StepOutput, Grads) {
    let [b, d] = start.x.dims();
    let (_, m) = sae.dims();
    let bf = b as f64;
    let device = start.x.device();
    // x_in alone gives the residual: x̂ − x = Σ f W_dec − x_in with the pre-encoder bias
    // (x_in = x − b_dec), b_dec + Σ f W_dec − x_in without it (x_in = x)
    let x_in = download(&start.x_in);
    let w_dec = download(&sae.w_dec);
    let base = if s.pre_encoder_bias {
        vec![0.0; d]
    } else {
        download(&sae.b_dec)
    };
    let theta = download(&start.inputs.theta);
    let norms = start.inputs.norms.as_ref().map(download);
    let pre: Option<Vec<f32>> = start.inputs.pre_act_weights.as_ref().map(|w| {
        let k = (-s.pre_act_coefficient / bf) as f32;
        download(w).iter().map(|v| v * k).collect()
    });
    let is_tanh = s.sparsity_loss == SparsityLoss::Tanh;
    let is_target = s.sparsity_loss == SparsityLoss::L0Target;
    let lam = s.lambda;
    let tanh_c = s.tanh_scale as f32;
    let tanh_k = (lam * s.tanh_scale / bf) as f32;
    let scale = (2.0 / bf) as f32;

    // the entries of each row that matter, with f, from the encode pass's flags
    let Encoded {
        f,
        fire_counts,
        sparsity,
        pre_act,
    } = enc;
    let mut rows: Vec<Vec<Entry>> = with_host(f, |fv| {
        (0..b)
            .into_par_iter()
            .with_min_len(16)
            .map(|r| {
                let (fr, vr) = (&saved.flags[r * m..(r + 1) * m], &fv[r * m..(r + 1) * m]);
                let mut out = Vec::new();
                for (i, (&fl, &f)) in fr.iter().zip(vr).enumerate() {
                    let below_dead = fl & BELOW != 0 && pre.as_ref().is_some_and(|p| p[i] != 0.0);
                    if fl & (ACTIVE | NEAR) != 0 || below_dead {
                        out.push(Entry {
                            i: i as u32,
                            fl,
                            f,
                            g_z: 0.0,
                        });
                    }
                }
                out
            })
            .collect()
    });

    // per row: x̂ − x, then ∂L/∂f where it matters and the elementwise backward
    let mut residual = vec![0f32; b * d];
    // each share of rows zeroes four d_sae-long sums: a few shares per thread, not hundreds
    let share = (b / (4 * rayon::current_num_threads())).max(16);
    let sums = residual
        .par_chunks_mut(d)
        .zip(rows.par_iter_mut())
        .enumerate()
        .with_min_len(share)
        .fold(
            || Sums::zero(m),
            |mut acc, (r, (res, ents))| {
                res.copy_from_slice(&base);
                for e in ents.iter().filter(|e| e.fl & ACTIVE != 0) {
                    let i = e.i as usize;
                    axpy(res, e.f, &w_dec[i * d..(i + 1) * d]);
                }
                for (o, xv) in res.iter_mut().zip(&x_in[r * d..(r + 1) * d]) {
                    *o -= xv;
                }
                acc.sq += res.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                // l0_target: the Step's upstream gradient for every feature of this row
                let g_row = if is_target {
                    let t = s.target_l0;
                    (lam * 4.0 / t * (saved.row_l0[r] as f64 - t) / bf) as f32
                } else {
                    0.0
                };
                for e in ents.iter_mut() {
                    let i = e.i as usize;
                    let mut g = 0.0;
                    if e.fl & (ACTIVE | NEAR) != 0 {
                        // ∂L/∂f_bi = ∂L/∂x̂_b · W_dec[i], with ∂L/∂x̂ = 2 (x̂ − x) / B
                        g = scale * dot(res, &w_dec[i * d..(i + 1) * d]);
                        if let (true, Some(n)) = (is_tanh, &norms) {
                            let th = (tanh_c * e.f * n[i]).tanh();
                            let sech2 = 1.0 - th * th;
                            g += tanh_k * n[i] * sech2;
                            acc.norms[i] += e.f * sech2;
                        }
                    }
                    if e.fl & NEAR != 0 {
                        acc.jump[i] += g;
                        if is_target {
                            acc.step[i] += g_row;
                        }
                    }
                    // H(z − θ)·∂L/∂f, or the pre-activation loss's −coef·w_i/B below θ
                    e.g_z = if e.fl & ACTIVE != 0 {
                        g
                    } else if e.fl & BELOW != 0 {
                        pre.as_ref().map_or(0.0, |p| p[i])
                    } else {
                        0.0
                    };
                    acc.b_enc[i] += e.g_z;
                }
                acc
            },
        )
        .reduce(|| Sums::zero(m), Sums::add);

    // the entries again, grouped by feature (rows in order within each)
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
                f: 0.0,
                g_z: 0.0
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
    // ∂L/∂W_dec[i] = Σ_b f_bi ∂L/∂x̂_b and ∂L/∂W_enc[:, i] = Σ_b ∂L/∂z_bi x_in,b
    let mut g_w_dec = vec![0f32; m * d];
    let mut g_w_enc_t = vec![0f32; m * d];
    g_w_dec
        .par_chunks_mut(d)
        .zip(g_w_enc_t.par_chunks_mut(d))
        .enumerate()
        .with_min_len(8)
        .for_each(|(i, (gd, ge))| {
            for (r, e) in &by_feature[offsets[i]..offsets[i + 1]] {
                let r = *r as usize;
                if e.fl & ACTIVE != 0 {
                    axpy(gd, e.f * scale, &residual[r * d..(r + 1) * d]);
                }
                if e.g_z != 0.0 {
                    axpy(ge, e.g_z, &x_in[r * d..(r + 1) * d]);
                }
            }
        });
    let g_w_enc = transpose(&g_w_enc_t, m, d);
    // Σ_b ∂mse/∂x̂_b
    let g_b_dec: Vec<f32> = residual
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
    let g_theta = theta_grads(&theta, &sums.jump, &sums.step, &saved.near_counts, s, b);
    let vec1 = |v: Vec<f32>| upload_owned(v, [m], &device);
    let g_norms = is_tanh.then(|| vec1(sums.norms.iter().map(|v| v * tanh_k).collect()));
    let rest = Rest {
        residual: upload_owned(residual, [b, d], &device),
        mse: Tensor::from_data(
            burn::tensor::TensorData::new(vec![(sums.sq / bf) as f32], [1]),
            &device,
        ),
        g_w_dec: upload_owned(g_w_dec, [m, d], &device),
        g_b_dec: upload_owned(g_b_dec, [d], &device),
        g_w_enc: upload_owned(g_w_enc, [d, m], &device),
        g_theta: vec1(g_theta),
        g_b_enc: vec1(sums.b_enc),
        g_norms,
    };
    finish(sae, s, start, (fire_counts, sparsity, pre_act), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_transpose_are_exact_on_small_integers() {
        let u: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let v: Vec<f32> = (0..19).map(|i| (i % 3) as f32).collect();
        let want: f32 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert_eq!(dot(&u, &v), want);
        let (rows, cols) = (37, 70);
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = transpose(&src, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], src[r * cols + c]);
            }
        }
    }
}
