//! The AuxK auxiliary loss of TopK and BatchTopK (Gao et al. 2024, "Scaling and evaluating
//! sparse autoencoders", section 2.4): the k_aux largest ReLU pre-activations among the dead
//! latents reconstruct the main reconstruction's residual e = x − x̂ (held constant), and
//! α · mean_b ‖ê − e‖² joins the loss, with ê = z_aux W_dec (no decoder bias, as in the paper).
//! Only dead latents take part, so the extra products are `[B, n_dead]`-sized.
//!
//! The paper's loss is a normalised MSE on both terms; ours is the un-normalised squared error
//! of the main loss (inputs are scaled to E‖x‖² = 1, so the two differ by about a constant).

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
    let [b, d] = x_in.dims();
    let bf = b as f64;
    let alpha = s.aux_coefficient;
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
    let w_enc = sae.w_enc.clone().select(1, idx.clone());
    let w_dec = sae.w_dec.clone().select(0, idx.clone());
    let b_enc = sae.b_enc.clone().select(0, idx.clone());
    let z = x_in.clone().matmul(w_enc.clone()) + b_enc.unsqueeze_dim::<2>(0);
    let a = topk_rows(z.clamp_min(0.0), s.aux_k.min(n));
    let e = out.residual.clone().neg();
    let diff = a.clone().matmul(w_dec.clone()) - e;
    let aux = diff.clone().square().sum() / bf;
    let d_hat = diff * (2.0 * alpha / bf);
    let g_w_dec = a.clone().transpose().matmul(d_hat.clone());
    // the selected entries pass the gradient (ReLU and top-k: 1 where kept and positive)
    let g_z = d_hat
        .matmul(w_dec.transpose())
        .mask_fill(a.lower_equal_elem(0.0), 0.0);
    let g_b_enc = g_z.clone().sum_dim(0).reshape([n]);
    let g_w_enc = x_in.clone().transpose().matmul(g_z);
    if s.pre_encoder_bias {
        // x_in = x − b_dec
        let into_bias = w_enc.matmul(g_b_enc.clone().reshape([n, 1])).reshape([d]);
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
