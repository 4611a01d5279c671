//! Every level the CPU has against the portable loops.

use super::*;

/// The levels this CPU can run, lowest first.
fn levels() -> Vec<Isa> {
    [Isa::Baseline, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| i <= detected())
        .collect()
}

/// Values that are exact in f32 products and sums, and a spread of lengths around the widths.
fn data(n: usize, k: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i * k + 3) % 17) as f32 - 8.0)
        .collect()
}

#[test]
fn the_variable_parses_and_only_lowers() {
    assert_eq!(resolve(None, Isa::Avx2), Ok(Isa::Avx2));
    assert_eq!(resolve(Some("auto"), Isa::Avx512), Ok(Isa::Avx512));
    assert_eq!(resolve(Some(" AVX2 "), Isa::Avx512), Ok(Isa::Avx2));
    assert_eq!(resolve(Some("baseline"), Isa::Avx2), Ok(Isa::Baseline));
    assert_eq!(
        resolve(Some("avx512"), Isa::Avx2),
        Err(IsaError::AboveCpu {
            asked: "avx512",
            has: "avx2"
        })
    );
    let e = resolve(Some("sse9"), Isa::Avx2).unwrap_err();
    assert_eq!(e, IsaError::Unknown("sse9".into()));
    assert!(
        e.to_string()
            .starts_with("JUMPSCOPE_ISA=\"sse9\": expected auto, avx512")
    );
}

#[test]
fn dot_and_axpy_agree_at_every_level_and_length() {
    for n in [0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 512, 771] {
        let (u, v) = (data(n, 5), data(n, 11));
        let exact: f32 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
        for isa in levels() {
            // small integers: every order of the sum is exact
            assert_eq!(dot_at(isa, &u, &v), exact, "dot, {isa:?}, n = {n}");
            let mut acc = data(n, 3);
            axpy_at(isa, &mut acc, 0.5, &v);
            let want: Vec<f32> = data(n, 3)
                .iter()
                .zip(&v)
                .map(|(a, b)| a + 0.5 * b)
                .collect();
            assert_eq!(acc, want, "axpy, {isa:?}, n = {n}");
        }
    }
}

#[test]
fn fused_levels_give_the_same_bits_on_inexact_values() {
    // where rounding matters: AVX2 and AVX-512 fuse the same multiply-adds in axpy
    let v: Vec<f32> = (0..531).map(|i| (i as f32 * 0.731).sin() / 3.0).collect();
    let fused: Vec<Vec<f32>> = levels()
        .into_iter()
        .filter(|&i| i >= Isa::Avx2)
        .map(|isa| {
            let mut acc: Vec<f32> = (0..531).map(|i| (i as f32 * 0.37).cos()).collect();
            axpy_at(isa, &mut acc, 0.1234567, &v);
            acc
        })
        .collect();
    assert!(fused.windows(2).all(|w| w[0] == w[1]));
    // and the dot products agree to rounding
    let u: Vec<f32> = (0..531).map(|i| (i as f32 * 0.37).cos()).collect();
    let want: f64 = u.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
    for isa in levels() {
        assert!((dot_at(isa, &u, &v) as f64 - want).abs() < 1e-5, "{isa:?}");
    }
}

fn halves(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| half::f16::from_f32(i as f32 * 0.37 - 5.0).to_le_bytes())
        .collect()
}

#[test]
fn f16_and_bf16_decode_alike_at_every_level_alignment_and_length() {
    for n in [0, 1, 15, 16, 17, 37, 64, 100] {
        let raw = halves(n);
        for shift in 0..2 {
            let mut bytes = vec![0u8; shift];
            bytes.extend(&raw);
            let bytes = &bytes[shift..];
            for isa in levels() {
                // the output at offsets that are and are not 64-byte aligned
                for pad in [0, 1, 5] {
                    let mut buf = vec![0f32; n + pad];
                    assert!(f16_to_f32_at(isa, bytes, 0.5, &mut buf[pad..]));
                    for (j, o) in buf[pad..].iter().enumerate() {
                        let h = half::f16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]]);
                        assert_eq!(*o, h.to_f32() * 0.5, "f16 {isa:?} n {n} value {j}");
                    }
                    assert!(bf16_to_f32_at(isa, bytes, 2.0, &mut buf[pad..]));
                    for (j, o) in buf[pad..].iter().enumerate() {
                        let b = half::bf16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]]);
                        assert_eq!(*o, b.to_f32() * 2.0, "bf16 {isa:?} n {n} value {j}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_nan_or_infinity_anywhere_is_reported_at_every_level() {
    let n = 37;
    for isa in levels() {
        for (bits, name) in [(0x7e00u16, "NaN"), (0x7c00, "inf"), (0xfc00, "-inf")] {
            for at in [0, 9, 16, 36] {
                let mut b = halves(n);
                b[2 * at..2 * at + 2].copy_from_slice(&bits.to_le_bytes());
                let mut out = vec![0f32; n];
                assert!(
                    !f16_to_f32_at(isa, &b, 1.0, &mut out),
                    "f16 {name} at {at}, {isa:?}"
                );
                // bf16: the same bit patterns' top halves
                let bf = half::bf16::from_f32(half::f16::from_bits(bits).to_f32()).to_bits();
                b[2 * at..2 * at + 2].copy_from_slice(&bf.to_le_bytes());
                assert!(
                    !bf16_to_f32_at(isa, &b, 1.0, &mut out),
                    "bf16 {name} at {at}, {isa:?}"
                );
            }
        }
        // an overflow of the scale is caught too
        let mut out = vec![0f32; n];
        assert!(
            !f16_to_f32_at(isa, &halves(n), f32::MAX, &mut out),
            "{isa:?}"
        );
    }
}

#[test]
fn vectorised_loops_give_the_same_bits_at_every_level() {
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.917).sin()).collect();
    let run = |isa| {
        vectorised_at(isa, || {
            x.iter()
                .map(|v| (v * 1.7 + 0.3).sqrt() / (v.abs() + 1e-3))
                .collect::<Vec<f32>>()
        })
    };
    let first = run(Isa::Baseline);
    for isa in levels() {
        let got = run(isa);
        assert!(
            got.iter()
                .zip(&first)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{isa:?}"
        );
    }
}

#[test]
fn the_table_names_every_kernel_once_with_the_active_level() {
    let t = kernels();
    assert!(t.len() >= 5);
    assert!(t.iter().skip(1).all(|k| k.isa == active()));
    assert!(t[0].kernel.starts_with("matrix products") && t[0].isa == gemm());
    assert!(summary().contains(active().name()));
}
