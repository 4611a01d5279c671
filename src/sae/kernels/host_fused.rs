//! The elementwise parts of a step as two fused loops over host memory, for the CPU backend.
//!
//! Why: written with tensor ops (`tensor_ops`), the JumpReLU forward and its straight-through
//! backward make about fifteen passes over the `[batch, d_sae]` activations, each a separate
//! kernel on burn's CPU backend; that memory traffic cost as much as the matrix products. Here
//! `encode` makes one pass (bias, threshold, flags, f, counts, penalties) and `backward` one more
//! (STE gradients, θ sums, b_enc sums), in place on the buffers that the matrix products returned
//! (burn's flex backend hands them over without copying when they are not shared).
//! Only for devices whose tensors live in host memory (`Kernels::for_device`); the results equal
//! `tensor_ops`' up to float rounding (tested).

use super::{
    Backward, Elementwise, ElementwiseInputs, Encoded, LossSettings, Penalty, host_penalty,
};
use crate::sae::model::{Architecture, download};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// Flag bits of [`Saved::flags`].
pub(crate) const ACTIVE: u8 = 1;
pub(crate) const NEAR: u8 = 2;
pub(crate) const BELOW: u8 = 4;

/// The fused host-memory implementation of [`Elementwise`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFused;

/// Host state saved by `encode` for `backward`.
#[derive(Debug)]
pub struct Saved {
    /// Per element: ACTIVE (z > θ), NEAR (|z − θ| < ε/2), BELOW (z < θ).
    pub(crate) flags: Vec<u8>,
    /// Active features per token.
    pub(crate) row_l0: Vec<f32>,
    /// Per feature: tokens with NEAR set.
    pub(crate) near_counts: Vec<f32>,
    /// f, kept only for the tanh penalty's backward.
    f: Option<Vec<f32>>,
    device: Device,
}

fn take_host(t: Tensor<2>) -> (TensorData, [usize; 2]) {
    let dims = t.dims();
    (t.into_data().convert::<f32>(), dims)
}

fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// `acc += other`, element by element.
pub(crate) fn add_into(acc: &mut [f32], other: &[f32]) {
    acc.iter_mut().zip(other).for_each(|(a, b)| *a += b);
}

/// One row of the encode pass: bias, threshold, flags and f in place; returns the row's L0.
/// Written as plain zipped loops with selects so that the compiler vectorises it (at the
/// instruction set `isa::vectorised` compiles it for).
#[inline(always)]
fn encode_row(
    zr: &mut [f32],
    fr: &mut [u8],
    b_enc: &[f32],
    theta: &[f32],
    half: f32,
    fire: &mut [f32],
    near: &mut [f32],
) -> f32 {
    // an integer count: a float sum would be a serial reduction that blocks vectorisation
    let mut active = 0u32;
    for (((((z, fl), b), t), fc), nc) in zr
        .iter_mut()
        .zip(fr.iter_mut())
        .zip(b_enc)
        .zip(theta)
        .zip(fire.iter_mut())
        .zip(near.iter_mut())
    {
        let zv = *z + b;
        let u = zv - t;
        let a = u > 0.0;
        let n = u.abs() < half;
        *fl = (a as u8) | ((n as u8) << 1) | (((u < 0.0) as u8) << 2);
        *z = if a { zv } else { 0.0 };
        *fc += if a { 1.0 } else { 0.0 };
        *nc += if n { 1.0 } else { 0.0 };
        active += a as u32;
    }
    active as f32
}

/// One row of the encode pass for the top-k rules: bias (if any) in place, then an entry is
/// active when relu(z) ≥ `cut` and positive (ties at the cut all kept); no window entries.
/// Returns the row's L0.
#[inline(always)]
fn encode_row_cut(zr: &mut [f32], fr: &mut [u8], b_enc: &[f32], cut: f32, fire: &mut [f32]) -> f32 {
    let mut active = 0u32;
    for (((z, fl), b), fc) in zr
        .iter_mut()
        .zip(fr.iter_mut())
        .zip(b_enc)
        .zip(fire.iter_mut())
    {
        let zv = *z + b;
        let a = zv >= cut && zv > 0.0;
        *fl = if a { ACTIVE } else { BELOW };
        *z = if a { zv } else { 0.0 };
        *fc += if a { 1.0 } else { 0.0 };
        active += a as u32;
    }
    active as f32
}

/// The k-th largest of `v` (k ≥ 1, clamped to its length), by selection on the scratch copy
/// `buf`.
fn kth_largest(v: impl Iterator<Item = f32>, k: usize, buf: &mut Vec<f32>) -> f32 {
    buf.clear();
    buf.extend(v);
    if buf.is_empty() {
        return f32::INFINITY;
    }
    let k = k.clamp(1, buf.len());
    let (_, kth, _) = buf.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// BatchTopK's cut for a batch whose bias is already added: the (k·B)-th largest relu(z),
/// selected among the positive entries only (0 when fewer are positive: every positive one is
/// then kept).
fn batch_cut(zs: &[f32], kb: usize) -> f32 {
    let positive: Vec<f32> = zs.par_iter().copied().filter(|v| *v > 0.0).collect();
    if positive.len() <= kb {
        return 0.0;
    }
    let mut buf = positive;
    let (_, kth, _) = buf.select_nth_unstable_by(kb - 1, |a, b| b.total_cmp(a));
    *kth
}

/// Σ_i w_i relu(θ_i − z_i) over one row of pre-bias `z` (before `encode_row` overwrites it).
fn pre_act_row(zr: &[f32], b_enc: &[f32], theta: &[f32], w: &[f32]) -> f64 {
    zr.iter()
        .zip(b_enc)
        .zip(theta)
        .zip(w)
        .map(|(((z, b), t), w)| (w * (t - (z + b)).max(0.0)) as f64)
        .sum()
}

#[derive(Clone)]
struct EncodeAcc {
    fire: Vec<f32>,
    near: Vec<f32>,
    tanh_sum: f64,
    pre_act_sum: f64,
}

/// One row of the backward pass: θ sums over NEAR elements, ∂L/∂z = H(z − θ)·∂L/∂f in place,
/// and its b_enc sums. Plain zipped loops with selects, for vectorisation.
#[inline(always)]
fn backward_row(gr: &mut [f32], fr: &[u8], jump: &mut [f32], b_enc: &mut [f32]) {
    for (((g, &fl), j), be) in gr
        .iter_mut()
        .zip(fr)
        .zip(jump.iter_mut())
        .zip(b_enc.iter_mut())
    {
        let gv = *g;
        *j += if fl & NEAR != 0 { gv } else { 0.0 };
        let gz = if fl & ACTIVE != 0 { gv } else { 0.0 };
        *g = gz;
        *be += gz;
    }
}

/// The tanh penalty's share of ∂L/∂f (added into the row) and of ∂L/∂‖W_dec‖ (before λc/B).
/// f = 0 still gets λ c n / B, since sech²(0) = 1.
fn tanh_row(gr: &mut [f32], f: &[f32], n: &[f32], c: f32, k: f32, g_norms: &mut [f32]) {
    for (((g, &fv), &nv), gn) in gr.iter_mut().zip(f).zip(n).zip(g_norms.iter_mut()) {
        let th = (c * fv * nv).tanh();
        let sech2 = 1.0 - th * th;
        *g += k * nv * sech2;
        *gn += fv * sech2;
    }
}

/// The L1 penalty's share of ∂L/∂f (λ n / B, added into the row) and of ∂L/∂‖W_dec‖ (Σ f,
/// before λ/B).
fn l1_row(gr: &mut [f32], f: &[f32], n: &[f32], k: f32, g_norms: &mut [f32]) {
    for (((g, &fv), &nv), gn) in gr.iter_mut().zip(f).zip(n).zip(g_norms.iter_mut()) {
        *g += k * nv;
        *gn += fv;
    }
}

#[derive(Clone)]
struct BackwardAcc {
    jump: Vec<f32>,
    step: Vec<f32>,
    b_enc: Vec<f32>,
    norms: Vec<f32>,
}

impl Elementwise for HostFused {
    type Saved = Saved;

    /// z (without bias) → f and the forward statistics, in one pass.
    fn encode(&self, z: Tensor<2>, inp: &ElementwiseInputs, s: &LossSettings) -> (Encoded, Saved) {
        let device = z.device();
        let (mut data, [b, m]) = take_host(z);
        let b_enc = download(&inp.b_enc);
        let theta = download(&inp.theta);
        let penalty = inp.penalty.map_norms(download);
        let pre_w = inp.pre_act_weights.as_ref().map(download);
        let half = (s.bandwidth / 2.0) as f32;
        let mut flags = vec![0u8; b * m];
        let mut row_l0 = vec![0f32; b];
        let zs = data
            .as_mut_slice::<f32>()
            .expect("matmul output is contiguous f32");
        let chunk = rows_per_task(b);
        let zero = EncodeAcc {
            fire: vec![0.0; m],
            near: vec![0.0; m],
            tanh_sum: 0.0,
            pre_act_sum: 0.0,
        };
        let arch = s.architecture;
        // BatchTopK ranks the whole batch: the bias goes in first, and the rows see none
        let batch_cut = (arch == Architecture::BatchTopK).then(|| {
            zs.par_chunks_mut(m)
                .for_each(|zr| zr.iter_mut().zip(&b_enc).for_each(|(z, b)| *z += b));
            batch_cut(zs, (s.k * b).clamp(1, b * m))
        });
        let no_bias = vec![0f32; if batch_cut.is_some() { m } else { 0 }];
        let k = s.k.clamp(1, m);
        let acc = zs
            .par_chunks_mut(chunk * m)
            .zip(flags.par_chunks_mut(chunk * m))
            .zip(row_l0.par_chunks_mut(chunk))
            .map(|((zc, fc), lc)| {
                let mut acc = zero.clone();
                let mut scratch = Vec::new();
                for ((zr, fr), l0) in zc.chunks_mut(m).zip(fc.chunks_mut(m)).zip(lc.iter_mut()) {
                    if let Some(cut) = batch_cut {
                        *l0 = crate::isa::vectorised(|| {
                            encode_row_cut(zr, fr, &no_bias, cut, &mut acc.fire)
                        });
                        continue;
                    }
                    if arch == Architecture::TopK {
                        let r = zr.iter().zip(&b_enc).map(|(z, b)| (z + b).max(0.0));
                        let cut = kth_largest(r, k, &mut scratch);
                        *l0 = crate::isa::vectorised(|| {
                            encode_row_cut(zr, fr, &b_enc, cut, &mut acc.fire)
                        });
                        continue;
                    }
                    // the rarer penalties take a second look at the row while it is in cache:
                    // the pre-activation loss before z is overwritten by f, tanh after
                    if let Some(w) = &pre_w {
                        acc.pre_act_sum += pre_act_row(zr, &b_enc, &theta, w);
                    }
                    *l0 = crate::isa::vectorised(|| {
                        encode_row(zr, fr, &b_enc, &theta, half, &mut acc.fire, &mut acc.near)
                    });
                    match &penalty {
                        Penalty::Tanh { scale, norms } => {
                            let c = *scale as f32;
                            acc.tanh_sum += zr
                                .iter()
                                .zip(norms)
                                .filter(|(f, _)| **f != 0.0)
                                .map(|(f, n)| (c * f * n).tanh() as f64)
                                .sum::<f64>();
                        }
                        Penalty::L1 { norms } => {
                            acc.tanh_sum += zr
                                .iter()
                                .zip(norms)
                                .map(|(f, n)| (f * n) as f64)
                                .sum::<f64>();
                        }
                        _ => {}
                    }
                }
                acc
            })
            .reduce(
                || zero.clone(),
                |mut a, b| {
                    add_into(&mut a.fire, &b.fire);
                    add_into(&mut a.near, &b.near);
                    a.tanh_sum += b.tanh_sum;
                    a.pre_act_sum += b.pre_act_sum;
                    a
                },
            );
        let bf = b as f64;
        let sparsity = match &penalty {
            Penalty::L0 => row_l0.iter().map(|&v| v as f64).sum::<f64>() / bf,
            Penalty::L0Target { target: t } => {
                row_l0.iter().map(|&v| (v as f64 - t).powi(2)).sum::<f64>() * 2.0 / t / bf
            }
            // the penalty sum of `tanh_sum` is Σ f·n for L1
            Penalty::Tanh { .. } | Penalty::L1 { .. } => acc.tanh_sum / bf,
            Penalty::None => 0.0,
        };
        let f_copy = penalty.weighted().then(|| zs.to_vec());
        let scalar = |v: f64| Tensor::<1>::from_data(TensorData::new(vec![v as f32], [1]), &device);
        let kept_min = batch_cut.map(|_| {
            let min = zs
                .par_iter()
                .copied()
                .filter(|v| *v > 0.0)
                .reduce(|| f32::INFINITY, f32::min);
            scalar(min as f64)
        });
        let encoded = Encoded {
            f: Tensor::from_data(data, &device),
            fire_counts: Tensor::from_data(TensorData::new(acc.fire, [m]), &device),
            sparsity: scalar(sparsity),
            pre_act: scalar(acc.pre_act_sum / bf),
            kept_min,
        };
        let saved = Saved {
            flags,
            row_l0,
            near_counts: acc.near,
            f: f_copy,
            device: device.clone(),
        };
        (encoded, saved)
    }

    /// ∂L/∂f → ∂L/∂z (in place), ∂L/∂θ, ∂L/∂b_enc, ∂L/∂‖W_dec‖, in one pass.
    fn backward(
        &self,
        g_f: Tensor<2>,
        c: Saved,
        inp: &ElementwiseInputs,
        s: &LossSettings,
    ) -> Backward {
        let (mut data, [b, m]) = take_host(g_f);
        let bf = b as f64;
        let lam = s.lambda;
        let theta = download(&inp.theta);
        let penalty = inp.penalty.map_norms(download);
        let pre = inp.pre_act_weights.as_ref().map(|w| {
            download(w)
                .iter()
                .map(|v| v * (-s.pre_act_coefficient / bf) as f32)
                .collect::<Vec<f32>>()
        });
        // what the penalty adds to ∂L/∂f and ∂L/∂‖W_dec‖: tanh's c and λc/B, or L1's λ/B
        let l1_k = (lam / bf) as f32;
        let (weights, target) = host_penalty(&penalty, lam, bf);
        let gs = data
            .as_mut_slice::<f32>()
            .expect("matmul output is contiguous f32");
        let chunk = rows_per_task(b);
        let zero = BackwardAcc {
            jump: vec![0.0; m],
            step: vec![0.0; if target.is_some() { m } else { 0 }],
            b_enc: vec![0.0; m],
            norms: vec![0.0; if weights.is_some() { m } else { 0 }],
        };
        let f_all = c.f.as_deref();
        let acc = gs
            .par_chunks_mut(chunk * m)
            .zip(c.flags.par_chunks(chunk * m))
            .zip(c.row_l0.par_chunks(chunk))
            .enumerate()
            .map(|(k, ((gc, fc), lc))| {
                let mut acc = zero.clone();
                for (r, ((gr, fr), &l0)) in gc.chunks_mut(m).zip(fc.chunks(m)).zip(lc).enumerate() {
                    let f_row = f_all.map(|f| {
                        let row = k * chunk + r;
                        &f[row * m..(row + 1) * m]
                    });
                    match (f_row, weights) {
                        (Some(fv), Some((n, Some((c, tanh_k))))) => {
                            tanh_row(gr, fv, n, c, tanh_k, &mut acc.norms)
                        }
                        (Some(fv), Some((n, None))) => l1_row(gr, fv, n, l1_k, &mut acc.norms),
                        _ => {}
                    }
                    if let Some(target) = target {
                        // l0_target: the Step's upstream gradient for every feature of this row
                        let g_row = (lam * 4.0 / target * (l0 as f64 - target) / bf) as f32;
                        for (st, &fl) in acc.step.iter_mut().zip(fr) {
                            *st += if fl & NEAR != 0 { g_row } else { 0.0 };
                        }
                    }
                    crate::isa::vectorised(|| backward_row(gr, fr, &mut acc.jump, &mut acc.b_enc));
                    if let Some(p) = &pre {
                        // inactive elements below θ of dead features get −coef·w_i/B
                        for (((g, &fl), pv), be) in
                            gr.iter_mut().zip(fr).zip(p).zip(acc.b_enc.iter_mut())
                        {
                            if fl & BELOW != 0 {
                                *g = *pv;
                                *be += pv;
                            }
                        }
                    }
                }
                acc
            })
            .reduce(
                || zero.clone(),
                |mut a, b| {
                    add_into(&mut a.jump, &b.jump);
                    add_into(&mut a.step, &b.step);
                    add_into(&mut a.b_enc, &b.b_enc);
                    add_into(&mut a.norms, &b.norms);
                    a
                },
            );
        let g_theta = theta_grads(&theta, &acc.jump, &acc.step, &c.near_counts, s, b);
        let dev = &c.device;
        let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [m]), dev);
        Backward {
            g_z: Tensor::from_data(data, dev),
            g_theta: vec1(g_theta),
            g_b_enc: vec1(acc.b_enc),
            g_norms: match weights {
                Some((_, Some((_, tanh_k)))) => {
                    Some(vec1(acc.norms.iter().map(|v| v * tanh_k).collect()))
                }
                Some((_, None)) => Some(vec1(acc.norms.iter().map(|v| v * l1_k).collect())),
                None => None,
            },
        }
    }
}

/// ∂L/∂θ from per-feature sums over the window entries: JumpReLU −(θ/ε) Σ rect·∂L/∂f (`jump`),
/// plus the Step: l0 −(λ/(εB)) Σ rect (`near_counts`), l0_target −(1/ε) Σ rect·g_b (`step`).
/// Shared by the dense backward here and the sparse step (`sae::sparse`).
pub(crate) fn theta_grads(
    theta: &[f32],
    jump: &[f32],
    step: &[f32],
    near_counts: &[f32],
    s: &LossSettings,
    batch: usize,
) -> Vec<f32> {
    let (eps, lam, bf) = (s.bandwidth, s.lambda, batch as f64);
    (0..theta.len())
        .map(|i| {
            let jump = -(theta[i] as f64) / eps * jump[i] as f64;
            let step = match s.penalty {
                Penalty::L0 => -lam / (eps * bf) * near_counts[i] as f64,
                Penalty::L0Target { .. } => -(step[i] as f64) / eps,
                Penalty::Tanh { .. } | Penalty::L1 { .. } | Penalty::None => 0.0,
            };
            (jump + step) as f32
        })
        .collect()
}
