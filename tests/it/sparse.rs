//! The sparse step (`sae::sparse`) against the dense one on random cases: pre-activations placed
//! inside and at the edges of θ's straight-through window, every sparsity loss, both θ
//! parametrisations, with and without the pre-encoder bias and the pre-activation loss. Loss
//! parts, every gradient and the parameters after an Adam step agree to 1e-5; and the switch
//! picks the sparse path below its density and the dense one above. On flex (`sae::sparse`)
//! and, in builds with LibTorch, on `tch-cpu` (`sae::sparse_libtorch`).

use crate::common::max_diff;
use burn::tensor::{Bool, Device, Tensor};
use jumpscope::config::{Config, SparsityLoss, ThresholdParam, parse};
use jumpscope::sae::kernels::{Kernels, LossSettings, Penalty};
use jumpscope::sae::loss::{Grads, LossParts, StepOutput, loss_and_grads};
use jumpscope::sae::model::{HostParams, Sae, download, upload};
use jumpscope::sae::sparse::switch_density;
use jumpscope::train::adam::AdamState;
use jumpscope::train::step::{StepPlan, train_step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random case: parameters, a batch `[b, d]`, and a dead-feature mask.
struct Case {
    host: HostParams,
    x: Vec<f32>,
    b: usize,
    dead: Vec<bool>,
}

/// `(x − b_dec) W_enc + b_enc` of row `r`, feature `i`, on the host.
fn pre_act(h: &HostParams, x: &[f32], r: usize, i: usize) -> f32 {
    (0..h.d_in)
        .map(|j| (x[r * h.d_in + j] - h.b_dec[j]) * h.w_enc[j * h.d_sae + i])
        .sum::<f32>()
        + h.b_enc[i]
}

fn case(seed: u64, eps: f32) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = rng.random_range(8..40);
    let m = rng.random_range(32..160);
    let b = rng.random_range(16..80);
    let mut host = HostParams::init(d, m, 0.1, seed);
    host.b_enc
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-0.1..0.1));
    host.b_dec
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-0.1..0.1));
    let x: Vec<f32> = (0..b * d)
        .map(|_| rng.random_range(-1.0f32..1.0) * 2.5 / (d as f32).sqrt())
        .collect();
    for i in 0..m {
        // θ at, inside and just outside the window around a row's pre-activation, or random;
        // kept positive so that log θ exists
        let z = pre_act(&host, &x, i % b, i);
        let placed = match i % 5 {
            0 => z - eps / 2.0,
            1 => z + eps / 2.0,
            2 => z - eps / 4.0,
            3 => z + eps / 4.0,
            _ => rng.random_range(0.05..0.6),
        };
        host.threshold[i] = if placed > 1e-3 {
            placed
        } else {
            rng.random_range(0.05..0.6)
        };
    }
    let dead = (0..m).map(|i| i % 4 == 1).collect();
    Case { host, x, b, dead }
}

/// The backends with a sparse step: flex with the fused host kernels (`sae::sparse`) and, in
/// builds with LibTorch, its CPU device with the tensor-op kernels (`sae::sparse_libtorch`).
fn backends() -> Vec<(&'static str, Device, Kernels)> {
    let mut v = vec![("cpu", Device::flex(), Kernels::HostFused)];
    if cfg!(feature = "tch") {
        let dev = jumpscope::device::resolve("tch-cpu").unwrap();
        v.push(("tch-cpu", dev, Kernels::TensorOps));
    }
    v
}

fn settings(mode: SparsityLoss, pre_act: f64, bias: bool, eps: f64, below: f64) -> LossSettings {
    LossSettings {
        architecture: jumpscope::config::Architecture::JumpRelu,
        k: 0,
        aux_k: 1,
        aux_coefficient: 0.0,
        penalty: Penalty::of(jumpscope::config::Architecture::JumpRelu, mode, 4.0, 6.0),
        lambda: 0.03,
        bandwidth: eps,
        pre_act_coefficient: pre_act,
        pre_encoder_bias: bias,
        kernels: Kernels::HostFused,
        sparse_below: below,
        matryoshka: Vec::new(),
    }
}

/// |a − b| ≤ 1e-5 · max(1, |a|) everywhere; the worst relative error.
fn close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = max_diff(a, b);
    assert!(
        worst <= 1e-5 * scale,
        "{what}: differs by {worst} (scale {scale})"
    );
}

fn grads_host(g: &Grads) -> [(&'static str, Vec<f32>); 5] {
    [
        ("dW_enc", download(&g.w_enc)),
        ("db_enc", download(&g.b_enc)),
        ("dW_dec", download(&g.w_dec)),
        ("db_dec", download(&g.b_dec)),
        ("dθ", download(&g.theta_param)),
    ]
}

fn parts(o: &StepOutput) -> Vec<f32> {
    let p = LossParts::from_tensor(&o.parts);
    [p.loss, p.mse, p.sparsity, p.l0, p.pre_act]
        .map(|v| v as f32)
        .to_vec()
}

fn recipe() -> Config {
    parse("", "t", &[]).unwrap().validate("t").unwrap()
}

#[test]
fn sparse_and_dense_steps_agree_on_random_cases() {
    for (name, device, kernels) in backends() {
        agree_on_random_cases(name, &device, kernels);
    }
}

fn agree_on_random_cases(backend: &str, device: &Device, kernels: Kernels) {
    let device = device.clone();
    let eps = 0.1;
    let mut checked = 0;
    for seed in 0..6 {
        let c = case(seed, eps as f32);
        let (d, m) = (c.host.d_in, c.host.d_sae);
        let x = upload(&c.x, [c.b, d], &device);
        let dead_v: Vec<f32> = c.dead.iter().map(|&v| v as u8 as f32).collect();
        let dead: Tensor<1, Bool> = upload(&dead_v, [m], &device).greater_elem(0.5);
        for tp in [ThresholdParam::Log, ThresholdParam::Raw] {
            let sae = Sae::from_host(&c.host, tp, &device);
            for mode in [SparsityLoss::L0, SparsityLoss::Tanh, SparsityLoss::L0Target] {
                for (pre, bias) in [(0.0, true), (0.05, true), (0.05, false)] {
                    let what =
                        format!("{backend}: seed {seed} {tp:?} {mode:?} pre_act {pre} bias {bias}");
                    let dense = LossSettings {
                        kernels,
                        ..settings(mode, pre, bias, eps, 0.0)
                    };
                    let sparse = LossSettings {
                        kernels,
                        ..settings(mode, pre, bias, eps, f64::INFINITY)
                    };
                    let (od, gd) = loss_and_grads(&sae, x.clone(), None, &dense, Some(&dead));
                    let (os, gs) = loss_and_grads(&sae, x.clone(), None, &sparse, Some(&dead));
                    assert!(!od.sparse && os.sparse, "{what}: the paths asked for ran");
                    close(&format!("{what}: loss parts"), &parts(&od), &parts(&os));
                    for ((name, a), (_, b)) in grads_host(&gd).iter().zip(grads_host(&gs).iter()) {
                        close(&format!("{what}: {name}"), a, b);
                    }
                    close(
                        &format!("{what}: residual"),
                        &download(&od.residual),
                        &download(&os.residual),
                    );
                    assert_eq!(
                        download(&od.fire_counts),
                        download(&os.fire_counts),
                        "{what}: fire counts"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 6 * 2 * 3 * 3);
}

#[test]
fn sparse_and_dense_steps_agree_for_the_other_architectures() {
    use jumpscope::config::Architecture;
    for (backend, device, kernels) in backends() {
        let c = case(7, 0.1);
        let (d, m) = (c.host.d_in, c.host.d_sae);
        let x = upload(&c.x, [c.b, d], &device);
        let dead_v: Vec<f32> = c.dead.iter().map(|&v| v as u8 as f32).collect();
        let dead: Tensor<1, Bool> = upload(&dead_v, [m], &device).greater_elem(0.5);
        let mut host = c.host.clone();
        host.threshold.iter_mut().for_each(|t| *t = 0.0);
        let sae = Sae::from_host(&host, ThresholdParam::Raw, &device);
        for arch in [
            Architecture::TopK,
            Architecture::BatchTopK,
            Architecture::Relu,
        ] {
            for bias in [true, false] {
                let what = format!("{backend}: {arch:?} bias {bias}");
                let with = |below: f64| LossSettings {
                    kernels,
                    architecture: arch,
                    k: 3,
                    aux_k: 4,
                    aux_coefficient: if arch.is_topk() { 0.1 } else { 0.0 },
                    penalty: Penalty::of(arch, SparsityLoss::L0, 4.0, 6.0),
                    ..settings(SparsityLoss::L0, 0.0, bias, 0.1, below)
                };
                let (od, gd) = loss_and_grads(&sae, x.clone(), None, &with(0.0), Some(&dead));
                let (os, gs) =
                    loss_and_grads(&sae, x.clone(), None, &with(f64::INFINITY), Some(&dead));
                assert!(!od.sparse && os.sparse, "{what}: the paths asked for ran");
                close(&format!("{what}: loss parts"), &parts(&od), &parts(&os));
                for ((name, a), (_, b)) in grads_host(&gd).iter().zip(grads_host(&gs).iter()) {
                    close(&format!("{what}: {name}"), a, b);
                }
                assert_eq!(
                    download(&od.fire_counts),
                    download(&os.fire_counts),
                    "{what}: fire counts"
                );
            }
        }
    }
}

#[test]
fn parameters_after_adam_steps_agree() {
    for (name, device, kernels) in backends() {
        adam_steps_agree(name, &device, kernels);
    }
}

fn adam_steps_agree(backend: &str, device: &Device, kernels: Kernels) {
    let device = device.clone();
    let mut cfg = recipe();
    cfg.hyper.lr = 1e-3;
    cfg.hyper.lr_warmup_steps = 0;
    cfg.hyper.sparsity_warmup_steps = 0;
    cfg.hyper.sparsity_coefficient = 0.03;
    cfg.hyper.bandwidth = 0.1;
    cfg.hyper.pre_act_coefficient = 0.05;
    for (seed, mode) in [
        (10, SparsityLoss::L0),
        (11, SparsityLoss::Tanh),
        (12, SparsityLoss::L0Target),
    ] {
        cfg.hyper.sparsity_loss = mode;
        cfg.hyper.target_l0 = Some(6.0);
        let c = case(seed, 0.1);
        let (d, m) = (c.host.d_in, c.host.d_sae);
        let x = upload(&c.x, [c.b, d], &device);
        let dead_v: Vec<f32> = c.dead.iter().map(|&v| v as u8 as f32).collect();
        let dead: Tensor<1, Bool> = upload(&dead_v, [m], &device).greater_elem(0.5);
        let mut saes = Vec::new();
        for below in [0.0, f64::INFINITY] {
            let mut sae = Sae::from_host(&c.host, cfg.sae.threshold_param, &device);
            let mut adam = AdamState::new(&sae);
            for t in 0..3 {
                let plan = StepPlan {
                    t,
                    total_steps: 3,
                    hyper: &cfg.hyper,
                    sae: &cfg.sae,
                    kernels,
                    sparse_below: below,
                };
                let out = train_step(&mut sae, &mut adam, (x.clone(), None), plan, Some(&dead));
                assert_eq!(out.sparse, below > 0.0);
            }
            saes.push(sae);
        }
        let host = |s: &Sae| {
            [
                download(&s.w_enc),
                download(&s.b_enc),
                download(&s.w_dec),
                download(&s.b_dec),
                download(&s.theta_param),
            ]
        };
        for (k, (a, b)) in host(&saes[0]).iter().zip(host(&saes[1]).iter()).enumerate() {
            close(
                &format!("{backend}: {mode:?}: parameter {k} after 3 Adam steps"),
                a,
                b,
            );
        }
    }
}

#[test]
fn the_switch_takes_the_sparse_path_below_its_density_and_the_dense_one_above() {
    for (backend, device, kernels) in backends() {
        let (d, m, b) = (32, 256, 64);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x: Vec<f32> = (0..b * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let x = upload(&x, [b, d], &device);
        let s = LossSettings {
            kernels,
            ..settings(SparsityLoss::L0, 0.0, true, 0.001, switch_density(kernels))
        };
        // θ = 1e-3: about half of the entries fire, far above the switch point
        let dense = Sae::from_host(
            &HostParams::init(d, m, 1e-3, 1),
            ThresholdParam::Log,
            &device,
        );
        assert!(
            !loss_and_grads(&dense, x.clone(), None, &s, None).0.sparse,
            "{backend}"
        );
        // θ = 10: nothing fires and no pre-activation is within ε/2 of θ
        let sparse = Sae::from_host(
            &HostParams::init(d, m, 10.0, 1),
            ThresholdParam::Log,
            &device,
        );
        let (out, _) = loss_and_grads(&sparse, x.clone(), None, &s, None);
        assert!(out.sparse, "{backend}");
        assert_eq!(LossParts::from_tensor(&out.parts).l0, 0.0);
    }
    // on flex, the tensor-op kernels (JUMPSCOPE_NO_FUSED) have no sparse path
    let device = Device::flex();
    let x = upload(&vec![0.5f32; 64 * 32], [64, 32], &device);
    let sae = Sae::from_host(
        &HostParams::init(32, 256, 10.0, 1),
        ThresholdParam::Log,
        &device,
    );
    let t = LossSettings {
        kernels: Kernels::TensorOps,
        ..settings(SparsityLoss::L0, 0.0, true, 0.001, f64::INFINITY)
    };
    assert!(!loss_and_grads(&sae, x, None, &t, None).0.sparse);
}

#[test]
fn a_batch_of_several_cache_blocks_agrees_with_the_dense_step() {
    // 3000 rows of 64 dims: the per-feature pass works in blocks of 1024 rows (512 KiB of
    // residual and input rows) when, as here, a block holds more rows than d_sae / L0 = 16
    let (d, m, b) = (64, 256, 3000);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x: Vec<f32> = (0..b * d)
        .map(|_| rng.random_range(-1.0f32..1.0) * 0.3)
        .collect();
    let mut host = HostParams::init(d, m, 1e-3, 21);
    let z: Vec<f32> = (0..b)
        .flat_map(|r| {
            let host = &host;
            let x = &x;
            (0..m).map(move |i| pre_act(host, x, r, i))
        })
        .collect();
    host.threshold = jumpscope::bench::thresholds_for_l0(&z, m, 16.0);
    for (backend, device, kernels) in backends() {
        let xt = upload(&x, [b, d], &device);
        let sae = Sae::from_host(&host, ThresholdParam::Log, &device);
        for mode in [SparsityLoss::L0, SparsityLoss::Tanh, SparsityLoss::L0Target] {
            let what = format!("{backend} {mode:?}");
            let at = |below| LossSettings {
                kernels,
                ..settings(mode, 0.0, true, 0.01, below)
            };
            let (od, gd) = loss_and_grads(&sae, xt.clone(), None, &at(0.0), None);
            let (os, gs) = loss_and_grads(&sae, xt.clone(), None, &at(f64::INFINITY), None);
            assert!(!od.sparse && os.sparse, "{what}");
            close(&format!("{what}: loss parts"), &parts(&od), &parts(&os));
            for ((name, a), (_, g)) in grads_host(&gd).iter().zip(grads_host(&gs).iter()) {
                close(&format!("{what}: {name}"), a, g);
            }
        }
    }
}

#[test]
fn sparse_and_dense_steps_agree_for_transcoders() {
    use jumpscope::config::Architecture;
    use jumpscope::sae::model::Kind;
    for (backend, device, kernels) in backends() {
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let (d_in, d_out, m, b) = (12, 20, 96, 40);
        let mut checked = 0;
        for kind in [Kind::Transcoder, Kind::SkipTranscoder] {
            let mut host = HostParams::init_kind(kind, (d_in, d_out, m), 0.1, 3);
            let mut noise =
                |v: &mut Vec<f32>, s: f32| v.iter_mut().for_each(|x| *x += rng.random_range(-s..s));
            noise(&mut host.b_enc, 0.1);
            noise(&mut host.b_dec, 0.1);
            if let Some(w) = host.w_skip.as_mut() {
                noise(w, 0.2);
            }
            let x: Vec<f32> = (0..b * d_in)
                .map(|_| rng.random_range(-1.0f32..1.0) * 2.0 / (d_in as f32).sqrt())
                .collect();
            let y: Vec<f32> = (0..b * d_out)
                .map(|_| rng.random_range(-1.0f32..1.0) / (d_out as f32).sqrt())
                .collect();
            let (xt, yt) = (
                upload(&x, [b, d_in], &device),
                upload(&y, [b, d_out], &device),
            );
            let dead: Tensor<1, Bool> = upload(
                &(0..m)
                    .map(|i| (i % 4 == 1) as u8 as f32)
                    .collect::<Vec<_>>(),
                [m],
                &device,
            )
            .greater_elem(0.5);
            for arch in Architecture::ALL {
                let mut h = host.clone();
                if arch != Architecture::JumpRelu {
                    h.threshold.iter_mut().for_each(|t| *t = 0.0);
                }
                let tp = if arch == Architecture::JumpRelu {
                    ThresholdParam::Log
                } else {
                    ThresholdParam::Raw
                };
                let sae = Sae::from_host(&h, tp, &device);
                let what = format!("{backend}: {kind:?} {arch:?}");
                let with = |below: f64| LossSettings {
                    kernels,
                    architecture: arch,
                    k: 5,
                    aux_k: 4,
                    aux_coefficient: if arch.is_topk() { 0.1 } else { 0.0 },
                    penalty: Penalty::of(arch, SparsityLoss::L0, 4.0, 6.0),
                    ..settings(SparsityLoss::L0, 0.0, false, 0.1, below)
                };
                let run = |below: f64| {
                    loss_and_grads(
                        &sae,
                        xt.clone(),
                        Some(yt.clone()),
                        &with(below),
                        Some(&dead),
                    )
                };
                let ((od, gd), (os, gs)) = (run(0.0), run(f64::INFINITY));
                assert!(!od.sparse && os.sparse, "{what}: the paths asked for ran");
                close(&format!("{what}: loss parts"), &parts(&od), &parts(&os));
                for ((name, a), (_, b)) in grads_host(&gd).iter().zip(grads_host(&gs).iter()) {
                    close(&format!("{what}: {name}"), a, b);
                }
                let skip = |g: &Grads| g.w_skip.as_ref().map(download);
                assert_eq!(skip(&gd).is_some(), kind == Kind::SkipTranscoder, "{what}");
                if let (Some(a), Some(b)) = (skip(&gd), skip(&gs)) {
                    close(&format!("{what}: dW_skip"), &a, &b);
                }
                // the residual is x̂ − y, of the target's width
                assert_eq!(od.residual.dims(), [b, d_out], "{what}");
                close(
                    &format!("{what}: residual"),
                    &download(&od.residual),
                    &download(&os.residual),
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 8);
    }
}
