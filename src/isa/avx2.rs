//! The AVX2 + FMA + F16C forms of the `isa` loops (8 lanes). Callers check the CPU first.

use super::portable;
use std::arch::x86_64::*;

/// `f()` compiled with AVX2, FMA and F16C (see `isa::vectorised`).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `acc += a · v` with fused multiply-adds; equal lengths.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    acc.iter_mut()
        .zip(v)
        .for_each(|(o, x)| *o = a.mul_add(*x, *o));
}

/// `u · v` in eight fused lanes; equal lengths.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot(u: &[f32], v: &[f32]) -> f32 {
    portable::dot_lanes(u, v, |acc, a, b| a.mul_add(b, acc))
}

/// F16C conversion and scale of a row: `out.len()` values from `2 · out.len()` bytes. Returns
/// whether every scaled value is finite, tested in registers as it goes.
///
/// Written here rather than taken from `half`: its slice conversion calls a non-inlined function
/// per 8 values (with a feature check each time) and wants aligned `f16` slices, which made
/// conversion the largest cost of reading an f16 store.
///
/// # Safety
/// The CPU must have F16C and AVX, and `bytes.len() == 2 * out.len()`.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn f16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    let n = out.len();
    let one = |j: usize| {
        half::f16::from_bits(u16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]])).to_f32() * scale
    };
    let mut finite = true;
    let mut i = 0;
    // scalar until the output is 32-byte aligned, for the streaming stores below
    while i < n && !(out.as_ptr() as usize + 4 * i).is_multiple_of(32) {
        out[i] = one(i);
        finite &= out[i].is_finite();
        i += 1;
    }
    // SAFETY: every load reads bytes 2i..2i+16 ≤ 2n (unaligned), every store writes
    // i..i+8 ≤ n at a 32-byte aligned address.
    unsafe {
        let s = _mm256_set1_ps(scale);
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let inf = _mm256_set1_ps(f32::INFINITY);
        let mut bad = _mm256_setzero_ps();
        while i + 8 <= n {
            let h = _mm_loadu_si128(bytes.as_ptr().add(2 * i).cast());
            let f = _mm256_mul_ps(_mm256_cvtph_ps(h), s);
            // |f| ≥ inf, or unordered (NaN)
            bad = _mm256_or_ps(
                bad,
                _mm256_cmp_ps::<_CMP_NLT_UQ>(_mm256_and_ps(f, abs), inf),
            );
            // non-temporal: the batch is read by another thread later, so pulling its lines
            // into the cache first only costs bandwidth
            _mm256_stream_ps(out.as_mut_ptr().add(i), f);
            i += 8;
        }
        _mm_sfence();
        finite &= _mm256_movemask_ps(bad) == 0;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        *o = one(j);
        finite &= o.is_finite();
    }
    finite
}
