//! The portable forms of the `isa` loops: what any CPU runs, and what the AVX2 forms compile
//! again with wider registers.

use half::slice::HalfFloatSliceExt;

/// `acc += a · v` (a multiply then an add, as baseline x86-64 has no fused form).
#[inline(always)]
pub(super) fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(o, x)| *o += a * x);
}

/// `u · v`, summed in eight lanes so that it vectorises.
#[inline(always)]
pub(super) fn dot(u: &[f32], v: &[f32]) -> f32 {
    dot_lanes(u, v, |acc, a, b| acc + a * b)
}

/// The eight-lane dot product with `fma(acc, a, b)` as the lane update.
#[inline(always)]
pub(super) fn dot_lanes(u: &[f32], v: &[f32], fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
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
            lanes[k] = fma(lanes[k], a[k], b[k]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// No NaN or ±Inf in `row`: an exponent-bits test summed as integers, which vectorises (an
/// early-exit `all(is_finite)` does not).
#[inline(always)]
pub fn all_finite(row: &[f32]) -> bool {
    row.iter()
        .map(|v| ((v.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32)
        .sum::<u32>()
        == 0
}

/// f16 to scaled f32 through `half`.
pub(super) fn f16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    let h: Vec<half::f16> = bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    h.convert_to_f32_slice(out);
    if scale != 1.0 {
        out.iter_mut().for_each(|o| *o *= scale);
    }
    all_finite(out)
}

/// bf16 to scaled f32: the 16 bits are the top half of the f32.
#[inline(always)]
pub(super) fn bf16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) * scale;
    }
    all_finite(out)
}
