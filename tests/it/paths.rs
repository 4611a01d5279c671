//! The fused host kernels (`sae::kernels::host_fused`) and the tensor-op kernels
//! (`sae::kernels::tensor_ops`) give the
//! same loss parts and gradients in every mode and architecture, including the pre-activation
//! loss that the golden files do not cover, and BatchTopK's smallest kept activation.

use crate::common::max_diff;
use burn::tensor::{Device, Tensor};
use jumpscope::config::{Architecture, SparsityLoss, ThresholdParam};
use jumpscope::data::synth::{SynthSpec, generate};
use jumpscope::sae::kernels::{Kernels, LossSettings, Penalty};
use jumpscope::sae::loss::{LossParts, loss_and_grads};
use jumpscope::sae::model::{HostParams, Sae, download, upload};

#[test]
fn fused_and_generic_paths_agree_in_every_mode() {
    let device = Device::flex();
    let (d, m, b) = (24, 96, 200);
    let data = generate(&SynthSpec {
        d_in: d,
        features: 64,
        mean_active: 4.0,
        tokens: b,
        noise: 0.01,
        seed: 5,
    });
    let x = upload(&data.activations, [b, d], &device);
    let mut host = HostParams::init(d, m, 0.2, 3);
    // spread thresholds so that active, near and below elements all occur
    for (i, t) in host.threshold.iter_mut().enumerate() {
        *t = 0.05 + 0.3 * (i as f32 / m as f32);
    }
    host.b_enc
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = 0.02 * ((i % 7) as f32 - 3.0));
    let dead: Vec<f32> = (0..m).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let dead = upload(&dead, [m], &device).greater_elem(0.5);
    let modes = [
        (Architecture::JumpRelu, SparsityLoss::L0),
        (Architecture::JumpRelu, SparsityLoss::Tanh),
        (Architecture::JumpRelu, SparsityLoss::L0Target),
        // the other architectures' penalties are theirs (L1, none), whatever the loss says
        (Architecture::Relu, SparsityLoss::L0),
        (Architecture::TopK, SparsityLoss::L0),
        (Architecture::BatchTopK, SparsityLoss::L0),
    ];
    for tp in [ThresholdParam::Log, ThresholdParam::Raw] {
        for (arch, mode) in modes {
            if arch != Architecture::JumpRelu && tp == ThresholdParam::Log {
                continue;
            }
            let mut host = host.clone();
            if arch != Architecture::JumpRelu {
                // θ is 0 for the other architectures (raw)
                host.threshold.iter_mut().for_each(|t| *t = 0.0);
            }
            let sae = Sae::from_host(&host, tp, &device);
            for pre in [0.0, 0.05] {
                // the dead-feature loss: pre-activation (JumpReLU) or AuxK (TopK, BatchTopK)
                let jump = arch == Architecture::JumpRelu;
                let mut s = LossSettings {
                    architecture: arch,
                    k: 5,
                    aux_k: 7,
                    aux_coefficient: if arch.is_topk() { pre } else { 0.0 },
                    penalty: Penalty::of(arch, mode, 4.0, 6.0),
                    lambda: 0.03,
                    bandwidth: 0.1,
                    pre_act_coefficient: if jump { pre } else { 0.0 },
                    pre_encoder_bias: true,
                    kernels: Kernels::TensorOps,
                    sparse_below: 0.0,
                    matryoshka: Vec::new(),
                };
                let (og, gg) = loss_and_grads(&sae, x.clone(), None, &s, Some(&dead));
                s.kernels = Kernels::HostFused;
                let (of, gf) = loss_and_grads(&sae, x.clone(), None, &s, Some(&dead));
                let what = format!("{tp:?} {arch:?} {mode:?} dead-feature loss {pre}");
                let (pg, pf) = (
                    LossParts::from_tensor(&og.parts),
                    LossParts::from_tensor(&of.parts),
                );
                if pre > 0.0 && arch != Architecture::Relu {
                    assert!(
                        pg.pre_act > 0.0,
                        "{what}: the pre-activation loss must be exercised"
                    );
                }
                for (name, a, b) in [
                    ("loss", pg.loss, pf.loss),
                    ("sparsity", pg.sparsity, pf.sparsity),
                    ("l0", pg.l0, pf.l0),
                    ("pre_act", pg.pre_act, pf.pre_act),
                ] {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                        "{what}: {name} {a} vs {b}"
                    );
                }
                let pairs: [(&str, Tensor<1>, Tensor<1>); 3] = [
                    ("b_enc", gg.b_enc.clone(), gf.b_enc.clone()),
                    ("b_dec", gg.b_dec.clone(), gf.b_dec.clone()),
                    ("theta", gg.theta_param.clone(), gf.theta_param.clone()),
                ];
                for (name, a, b) in pairs {
                    let e = max_diff(&download(&a), &download(&b));
                    assert!(e <= 1e-5, "{what}: d{name} differs by {e}");
                }
                for (name, a, b) in [
                    ("W_enc", &gg.w_enc, &gf.w_enc),
                    ("W_dec", &gg.w_dec, &gf.w_dec),
                ] {
                    let e = max_diff(&download(a), &download(b));
                    assert!(e <= 1e-5, "{what}: d{name} differs by {e}");
                }
                assert_eq!(
                    download(&og.fire_counts),
                    download(&of.fire_counts),
                    "{what}: fire counts"
                );
                if arch.is_topk() {
                    let l0 = pg.l0;
                    assert!(
                        (l0 - 5.0).abs() < 1e-6 || arch == Architecture::BatchTopK,
                        "{what}: L0 {l0}"
                    );
                }
                match (&og.kept_min, &of.kept_min) {
                    (Some(a), Some(b)) => {
                        let (a, b) = (download(a)[0], download(b)[0]);
                        assert!(
                            a.is_finite() && (a - b).abs() <= 1e-6,
                            "{what}: kept {a} vs {b}"
                        );
                    }
                    (None, None) => assert_ne!(arch, Architecture::BatchTopK, "{what}"),
                    _ => panic!("{what}: one path reports the kept minimum, the other not"),
                }
            }
        }
    }
}
