//! Adam on host memory: the same update as [`AdamState::step`] in one pass per parameter, in
//! place on the buffers of the parameters and moments, and for the decoder one pass per row
//! that projects the row's gradient, updates the row and renormalises it.
//!
//! Why: written with tensor ops the update makes about ten passes over each parameter and its
//! moments, a separate kernel each on the CPU backend; over the 2·d_in·d_sae weights of a wide
//! SAE that cost about a third as much as the sparse part of a step.

use crate::sae::loss::Grads;
use crate::sae::model::Sae;
use crate::train::adam::{AdamSettings, AdamState, Coeffs};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// The step's constants as f32, as the tensor version applies them.
#[derive(Clone, Copy)]
struct K {
    b1: f32,
    one_b1: f32,
    b2: f32,
    one_b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    step: f32,
}

impl K {
    fn of(c: &Coeffs) -> Self {
        Self {
            b1: c.beta1 as f32,
            one_b1: (1.0 - c.beta1) as f32,
            b2: c.beta2 as f32,
            one_b2: (1.0 - c.beta2) as f32,
            bc2_sqrt: c.bc2_sqrt as f32,
            eps: c.eps as f32,
            step: c.step_size as f32,
        }
    }

    /// [`K::apply`] along a run of elements, each gradient less `along` times the element's old
    /// value. Always inlined, so that it is compiled for the caller's instruction set.
    #[inline(always)]
    fn apply_all(&self, ps: &mut [f32], ms: &mut [f32], vs: &mut [f32], gs: &[f32], along: f32) {
        for (((p, m), v), &g) in ps.iter_mut().zip(ms.iter_mut()).zip(vs.iter_mut()).zip(gs) {
            let g = g - along * *p;
            self.apply(p, m, v, g);
        }
    }

    /// One element: the moments, then the parameter.
    #[inline(always)]
    fn apply(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        *m = if self.b1 == 0.0 {
            g
        } else {
            *m * self.b1 + g * self.one_b1
        };
        *v = *v * self.b2 + g * g * self.one_b2;
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        *p -= *m / denom * self.step;
    }
}

/// The tensor's buffer, taken out of it (a one-element placeholder stays behind); without a copy
/// when the tensor is not shared.
fn take<const D: usize>(t: &mut Tensor<D>) -> TensorData {
    let placeholder = Tensor::<D>::zeros([1; D], &t.device());
    std::mem::replace(t, placeholder)
        .into_data()
        .convert::<f32>()
}

/// Update parameter `p` with moments `m`, `v` from gradient `g`, in place, element by element;
/// with `rows = Some(d)`, also take each row's gradient component along the row out first and
/// renormalise the row after (the unit-norm decoder).
fn update<const D: usize>(
    p: &mut Tensor<D>,
    m: &mut Tensor<D>,
    v: &mut Tensor<D>,
    g: Tensor<D>,
    k: K,
    rows: Option<usize>,
) {
    let device = p.device();
    let (mut pd, mut md, mut vd) = (take(p), take(m), take(v));
    let gd = g.into_data().convert::<f32>();
    {
        let ps = pd.as_mut_slice::<f32>().expect("f32 parameters");
        let ms = md.as_mut_slice::<f32>().expect("f32 moments");
        let vs = vd.as_mut_slice::<f32>().expect("f32 moments");
        let gs = gd.as_slice::<f32>().expect("f32 gradients");
        let width = rows.unwrap_or(4096);
        ps.par_chunks_mut(width)
            .zip(ms.par_chunks_mut(width))
            .zip(vs.par_chunks_mut(width))
            .zip(gs.par_chunks(width))
            .for_each(|(((pr, mr), vr), gr)| {
                // ∂L/∂W_dec[i] less its component along W_dec[i] (the row is a unit vector)
                let along: f32 = if rows.is_some() {
                    gr.iter().zip(pr.iter()).map(|(g, w)| g * w).sum()
                } else {
                    0.0
                };
                // elementwise, so every instruction set gives the same bits
                crate::isa::vectorised(|| k.apply_all(pr, mr, vr, gr, along));
                if rows.is_some() {
                    let norm = pr.iter().map(|w| w * w).sum::<f32>().sqrt();
                    pr.iter_mut().for_each(|w| *w /= norm);
                }
            });
    }
    *p = Tensor::from_data(pd, &device);
    *m = Tensor::from_data(md, &device);
    *v = Tensor::from_data(vd, &device);
}

impl AdamState {
    /// [`AdamState::step`] on host memory (the CPU backend): the same update in one pass per
    /// parameter (tested against it).
    pub fn step_host(&mut self, sae: &mut Sae, g: Grads, a: AdamSettings, unit_norm_decoder: bool) {
        let k = K::of(&self.next_coeffs(a));
        let rows = unit_norm_decoder.then_some(sae.d_out());
        macro_rules! upd {
            ($f:ident, $rows:expr) => {
                update(&mut sae.$f, &mut self.m.$f, &mut self.v.$f, g.$f, k, $rows)
            };
        }
        upd!(w_enc, None);
        upd!(b_enc, None);
        upd!(w_dec, rows);
        upd!(b_dec, None);
        upd!(theta_param, None);
        if let (Some(p), Some(g), Some(m), Some(v)) = (
            &mut sae.w_skip,
            g.w_skip,
            &mut self.m.w_skip,
            &mut self.v.w_skip,
        ) {
            update(p, m, v, g, k, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::model::{HostParams, download, upload};
    use burn::tensor::Device;

    #[test]
    fn the_host_update_equals_the_tensor_update() {
        let device = Device::flex();
        let (d, m) = (24, 40);
        let mut host = HostParams::init(d, m, 0.2, 5);
        host.b_enc
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 0.01 * i as f32);
        let grad = |seed: usize, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) * 0.013)
                .collect()
        };
        for (beta1, unit) in [(0.0, true), (0.9, false)] {
            let a = AdamSettings {
                lr: 1e-2,
                beta1,
                beta2: 0.999,
                eps: 1e-8,
            };
            let mut tensor_sae =
                Sae::from_host(&host, crate::sae::model::ThresholdParam::Log, &device);
            let mut host_sae = tensor_sae.clone();
            let (mut ta, mut ha) = (AdamState::new(&tensor_sae), AdamState::new(&host_sae));
            for step in 0..3 {
                let g = || Grads {
                    w_enc: upload(&grad(step, d * m), [d, m], &device),
                    b_enc: upload(&grad(step + 1, m), [m], &device),
                    w_dec: upload(&grad(step + 2, m * d), [m, d], &device),
                    b_dec: upload(&grad(step + 3, d), [d], &device),
                    theta_param: upload(&grad(step + 4, m), [m], &device),
                    w_skip: None,
                };
                ta.step(&mut tensor_sae, g(), a, unit);
                ha.step_host(&mut host_sae, g(), a, unit);
            }
            let all = |s: &Sae, st: &AdamState| {
                [
                    download(&s.w_enc),
                    download(&s.b_enc),
                    download(&s.w_dec),
                    download(&s.b_dec),
                    download(&s.theta_param),
                    download(&st.m.w_dec),
                    download(&st.v.w_enc),
                ]
            };
            for (k, (x, y)) in all(&tensor_sae, &ta)
                .iter()
                .zip(all(&host_sae, &ha).iter())
                .enumerate()
            {
                let worst = x
                    .iter()
                    .zip(y)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst <= 1e-6,
                    "beta1 {beta1}, tensor {k}: differs by {worst}"
                );
            }
            assert_eq!(ta.steps, ha.steps);
        }
    }
}
