//! The training step after the encoder product, restricted to the entries a sparse SAE touches,
//! on LibTorch devices (`tch-cpu`, `cuda`), with LibTorch's compressed-sparse-row (CSR) products.
//!
//! The same step as `sae::sparse` (see its module doc for which entries matter and why), in
//! LibTorch operations that run on both its CPU (MKL sparse BLAS) and CUDA (cuSPARSE):
//! - the touched entries, as one CSR pattern built from a `nonzero` over the `[B, d_sae]` mask;
//! - x̂ = b_dec + F W_dec with F the CSR of f (a sparse × dense product);
//! - ∂L/∂f on the pattern only: `sparse_sampled_addmm` (the dense product ∂L/∂x̂ W_decᵀ, sampled
//!   at the pattern's entries, without forming it);
//! - the elementwise backward on the pattern's values (1-D, nnz long), θ's and b_enc's sums with
//!   `index_add`;
//! - ∂L/∂W_dec = Fᵀ ∂L/∂x̂ and ∂L/∂W_encᵀ = Gᵀ x_in (G the CSR of ∂L/∂z), transposed sparse ×
//!   dense products.
//!
//! Why not `index_select`/`index_add` of decoder rows: they form an `[nnz, d_in]` intermediate
//! (0.5 GB at 512/4096/4096, L0 64), and measured with PyTorch on this machine they cost 4–6 times
//! the dense product they replace; the CSR products cost a tenth of it.

// burn 0.22 deprecates burn-tch, but it is the LibTorch path our users need (as in `device`)
#![allow(deprecated)]

use crate::sae::kernels::tensor_ops::Saved;
use crate::sae::kernels::{Encoded, LossSettings, Penalty};
use crate::sae::loss::{Grads, Rest, Start, StepOutput, finish};
use crate::sae::model::Sae;
use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::tensor::Tensor;
use tch::{Kind, Tensor as T};

/// The LibTorch tensor under a burn tensor, or `None` on another backend.
fn tch_of<const D: usize>(t: &Tensor<D>) -> Option<T> {
    t.clone()
        .try_into_primitive::<LibTorch>()
        .ok()
        .map(|p| p.tensor)
}

/// A burn tensor over a LibTorch tensor.
fn burn_of<const D: usize>(t: T) -> Tensor<D> {
    Tensor::from_primitive::<LibTorch>(TchTensor::new(t))
}

/// Whether the step's tensors live on LibTorch (the only place this module applies).
pub(crate) fn applies(x: &Tensor<2>) -> bool {
    tch_of(x).is_some()
}

/// The fraction of `[B, d_sae]` entries that fire, from the encode pass's firing counts (one
/// `d_sae`-long sum). The switch uses it rather than the touched fraction of `sae::sparse`,
/// which would cost a pass over the whole mask before deciding; the window's entries are few
/// beside the active ones once training has begun.
pub(crate) fn active_fraction(enc: &Encoded, b: usize) -> f64 {
    let m = enc.fire_counts.dims()[0];
    let fired = tch_of(&enc.fire_counts).expect("checked by applies()");
    fired.sum(Kind::Double).double_value(&[]) / (b * m).max(1) as f64
}

/// The rest of the step, sparse (see the module doc), after the tensor-op encode on LibTorch.
pub(crate) fn rest(
    sae: &Sae,
    s: &LossSettings,
    start: Start,
    enc: Encoded,
    saved: Saved,
) -> (StepOutput, Grads) {
    let [b, d] = start.x_in.dims();
    let (_, m) = sae.dims();
    let (bi, mi, di) = (b as i64, m as i64, d as i64);
    let bf = b as f64;
    let eps = s.bandwidth;
    let lam = s.lambda;
    let t = |x: &Tensor<2>| tch_of(x).expect("checked by applies()");
    let t1 = |x: &Tensor<1>| tch_of(x).expect("checked by applies()");
    let (x, x_in, w_dec) = (t(&start.target), t(&start.x_in), t(&sae.w_dec));
    let (b_dec, theta) = (t1(&sae.b_dec), t1(&start.inputs.theta));
    let (f, u) = (t(&saved.f), t(&saved.u));
    let opts = (Kind::Float, x.device());

    // the pattern: active or inside the window, or below θ on a dead feature (pre-act loss)
    let mut pattern = u.gt(0.0).logical_or(&u.abs().lt(eps / 2.0));
    let pre = start.inputs.pre_act_weights.as_ref().map(&t1);
    if let Some(w) = &pre {
        let dead = w.ne(0.0).unsqueeze(0);
        pattern = pattern.logical_or(&u.lt(0.0).logical_and(&dead));
    }
    let crow = T::cat(
        &[
            T::zeros([1], (Kind::Int64, x.device())),
            pattern
                .sum_dim_intlist(1, false, Kind::Int64)
                .cumsum(0, Kind::Int64),
        ],
        0,
    );
    let idx = pattern.nonzero(); // [nnz, 2], rows in order, features in order within a row
    let (rows, cols) = (idx.select(1, 0), idx.select(1, 1));
    let flat = &rows * mi + &cols;
    let fv = f.view([-1]).index_select(0, &flat);
    let uv = u.view([-1]).index_select(0, &flat);
    let csr =
        |values: &T| T::sparse_csr_tensor_crow_col_value_size(&crow, &cols, values, [bi, mi], opts);

    // forward: x̂ = b_dec + F W_dec; with Matryoshka widths, segment by segment (the features
    // [w_j, w_{j+1}) of F are the entries whose column falls there), each prefix's residual
    // kept, and each segment's upstream D_j = r + Σ_{k > j} r_k
    let zeros = T::zeros([fv.size()[0]], opts);
    let bounds: Vec<i64> = std::iter::once(0)
        .chain(s.matryoshka.iter().map(|&w| w as i64))
        .chain(std::iter::once(mi))
        .collect();
    let masks: Vec<T> = bounds
        .windows(2)
        .map(|w| {
            cols.ge(w[0])
                .logical_and(&cols.lt(w[1]))
                .to_kind(Kind::Float)
        })
        .collect();
    let seg_csr: Vec<T> = match masks.len() {
        1 => vec![csr(&fv)],
        _ => masks.iter().map(|mk| csr(&(&fv * mk))).collect(),
    };
    let mut acc = b_dec.unsqueeze(0) - &x;
    let mut prefixes = Vec::new();
    for (j, f_seg) in seg_csr.iter().enumerate() {
        acc += f_seg.mm(&w_dec);
        if j + 1 < seg_csr.len() {
            // a copy: the sum goes on in place
            prefixes.push(acc.copy());
        }
    }
    let residual = acc;
    let mut ups = vec![residual.shallow_clone()];
    for r in prefixes.iter().rev() {
        let next = &ups[ups.len() - 1] + r;
        ups.push(next);
    }
    ups.reverse();
    let inner_sq = (!prefixes.is_empty()).then(|| {
        T::stack(
            &prefixes
                .iter()
                .map(|r| r.square().sum(Kind::Float))
                .collect::<Vec<_>>(),
            0,
        )
    });
    let mse = residual.square().sum(Kind::Float).reshape([1]) / bf;
    let d_ups: Vec<T> = ups.iter().map(|u| u * (2.0 / bf)).collect();
    let g_b_dec = d_ups[0].sum_dim_intlist(0, false, Kind::Float);

    // ∂L/∂f = D_j W_decᵀ · 2/B at the pattern's entries of segment j
    let mut gv = match masks.len() {
        1 => csr(&zeros)
            .sparse_sampled_addmm(&d_ups[0], &w_dec.tr())
            .values(),
        _ => {
            let mut gv = zeros.zeros_like();
            for (d, mk) in d_ups.iter().zip(&masks) {
                gv += csr(&zeros).sparse_sampled_addmm(d, &w_dec.tr()).values() * mk;
            }
            gv
        }
    };
    let near = uv.abs().lt(eps / 2.0).to_kind(Kind::Float);
    let active = uv.gt(0.0);
    let index_sum = |v: &T| T::zeros([mi], opts).index_add(0, &cols, v);
    let mut g_norms = None;
    let step_theta = match &start.inputs.penalty {
        // upstream λ/B on every entry → −(1/ε)(λ/B) Σ_b rect
        Penalty::L0 => Some(index_sum(&near) * (-lam / (eps * bf))),
        Penalty::L0Target { target } => {
            // λ(4/L*)(l0_b − L*)/B for every feature of row b, towards θ through the Step
            let tl = *target;
            let row_l0 = t(&saved.active_f).sum_dim_intlist(1, false, Kind::Float);
            let g_row = (row_l0 - tl) * (lam * 4.0 / tl / bf);
            Some(index_sum(&(g_row.index_select(0, &rows) * &near)) * (-1.0 / eps))
        }
        Penalty::Tanh { scale, norms } => {
            let nv = t1(norms).index_select(0, &cols);
            let sc = *scale;
            let th = (&fv * &nv * sc).tanh();
            let sech2 = 1.0 - th.square();
            let k = lam * sc / bf;
            g_norms = Some(burn_of::<1>(index_sum(&(&fv * &sech2)) * k));
            gv += sech2 * nv * k;
            None
        }
        Penalty::L1 { norms } => {
            // ∂/∂f_bi = λ n_i/B;  ∂/∂n_i = λ Σ_b f_bi/B
            let nv = t1(norms).index_select(0, &cols);
            let k = lam / bf;
            g_norms = Some(burn_of::<1>(index_sum(&fv) * k));
            gv += nv * k;
            None
        }
        Penalty::None => None,
    };
    // JumpReLU: −(θ/ε) Σ_b rect · ∂L/∂f towards θ, H(z − θ) · ∂L/∂f towards z
    let mut g_theta = index_sum(&(&gv * &near)) * &theta * (-1.0 / eps);
    if let Some(g) = step_theta {
        g_theta += g;
    }
    let mut gz = gv.where_self(&active, &zeros);
    if let Some(w) = &pre {
        // ∂/∂z of w_i relu(θ_i − z) = −w_i where z < θ
        let per = w.index_select(0, &cols) * (-s.pre_act_coefficient / bf);
        gz = per.where_self(&uv.lt(0.0), &gz);
    }
    let g_b_enc = index_sum(&gz);

    // ∂L/∂W_dec = F_jᵀ D_j · 2/B by segment, ∂L/∂W_enc = (Gᵀ x_in)ᵀ
    let mut g_w_dec = seg_csr[0].tr().mm(&d_ups[0]);
    for (f_seg, d) in seg_csr.iter().zip(&d_ups).skip(1) {
        g_w_dec += f_seg.tr().mm(d);
    }
    let g_w_enc = csr(&gz).tr().mm(&x_in).tr().contiguous();
    debug_assert_eq!(g_w_enc.size(), [di, mi]);

    let Encoded {
        fire_counts,
        sparsity,
        pre_act,
        ..
    } = enc;
    let upstream = ups.swap_remove(0);
    let rest = Rest {
        residual: burn_of(residual),
        upstream: burn_of(upstream),
        inner_sq: inner_sq.map(burn_of),
        mse: burn_of(mse),
        g_w_dec: burn_of(g_w_dec),
        g_b_dec: burn_of(g_b_dec),
        g_w_enc: burn_of(g_w_enc),
        g_theta: burn_of(g_theta),
        g_b_enc: burn_of(g_b_enc),
        g_norms,
    };
    finish(sae, s, start, (fire_counts, sparsity, pre_act), rest)
}
