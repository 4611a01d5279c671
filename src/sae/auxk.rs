//! The AuxK auxiliary loss of TopK and BatchTopK (Gao et al. 2024, "Scaling and evaluating
//! sparse autoencoders", section 2.4): the k_aux largest ReLU pre-activations among the dead
//! latents reconstruct the main reconstruction's residual e = x − x̂ (held constant), with
//! ê = z_aux W_dec (no decoder bias, the paper's formula), and α · Σ_b ‖ê_b − e_b‖² / Σ_b ‖e_b − ē‖²
//! joins the loss: the error normalised by the residual's batch variance, as the paper's code
//! (`normalized_mse` in openai/sparse_autoencoder) does, so that its α = 1/32 means what it meant
//! there (our main loss is, like theirs, about the FVU on inputs scaled to E‖x‖² = 1). Only dead
//! latents take part, so the extra products are `[B, n_dead]`-sized.
//!
//! SAELens differs (an un-normalised error scaled by min(n_dead / k_aux, 1), k_aux = d_in / 2,
//! coefficient 1); we follow the paper and its code.

use crate::sae::kernels::LossSettings;
use crate::sae::loss::{Grads, StepOutput};
use crate::sae::model::{Sae, topk_rows};
use burn::tensor::{Bool, IndexingUpdateOp, Int, Tensor, TensorData};

/// Add the AuxK loss over the `dead` latents to the step's loss parts (in the pre-activation
/// slot, the dead-feature loss of this architecture) and gradients. `x_in` is the encoder's input.
pub fn add(
    sae: &Sae,
    s: &LossSettings,
    x_in: &Tensor<2>,
    dead: &Tensor<1, Bool>,
    out: &mut StepOutput,
    grads: &mut Grads,
) {
    let device = x_in.device();
    let flags: Vec<bool> = dead
        .clone()
        .into_data()
        .try_to_vec::<bool>()
        .unwrap_or_default();
    let idx: Vec<i64> = flags
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| i as i64)
        .collect();
    let n = idx.len();
    if n == 0 {
        return;
    }
    let [b, d] = out.residual.dims();
    let alpha = s.aux_coefficient;
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
    let w_enc = sae.w_enc.clone().select(1, idx.clone());
    let w_dec = sae.w_dec.clone().select(0, idx.clone());
    let b_enc = sae.b_enc.clone().select(0, idx.clone());
    let z = x_in.clone().matmul(w_enc.clone()) + b_enc.unsqueeze_dim::<2>(0);
    let a = topk_rows(z.clamp_min(0.0), s.aux_k.min(n));
    let e = out.residual.clone().neg();
    // Σ_b ‖e_b − ē‖², held constant (a batch reconstructed exactly leaves nothing to learn)
    let centred = e.clone() - e.clone().mean_dim(0);
    let energy = centred.square().sum().clamp_min(1e-12);
    let diff = a.clone().matmul(w_dec.clone()) - e;
    let aux = diff.clone().square().sum() / energy.clone();
    let d_hat = diff / energy.reshape([1, 1]).expand([b, d]) * (2.0 * alpha);
    let g_w_dec = a.clone().transpose().matmul(d_hat.clone());
    // the selected entries pass the gradient (ReLU and top-k: 1 where kept and positive)
    let g_z = d_hat
        .matmul(w_dec.transpose())
        .mask_fill(a.lower_equal_elem(0.0), 0.0);
    let g_b_enc = g_z.clone().sum_dim(0).reshape([n]);
    let g_w_enc = x_in.clone().transpose().matmul(g_z);
    if s.pre_encoder_bias {
        // x_in = x − b_dec
        let d_in = x_in.dims()[1];
        let into_bias = w_enc
            .matmul(g_b_enc.clone().reshape([n, 1]))
            .reshape([d_in]);
        grads.b_dec = grads.b_dec.clone() - into_bias;
    }
    grads.w_dec = grads
        .w_dec
        .clone()
        .select_assign(0, idx.clone(), g_w_dec, IndexingUpdateOp::Add);
    grads.w_enc = grads
        .w_enc
        .clone()
        .select_assign(1, idx.clone(), g_w_enc, IndexingUpdateOp::Add);
    grads.b_enc = grads
        .b_enc
        .clone()
        .select_assign(0, idx, g_b_enc, IndexingUpdateOp::Add);
    let zero = Tensor::<1>::zeros([3], &device);
    let add = Tensor::cat(vec![aux.clone() * alpha, zero, aux], 0);
    out.parts = out.parts.clone() + add;
}
