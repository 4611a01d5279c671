//! The AVX-512 forms of the `isa` loops (16 lanes, masked tails). Callers check the CPU first.

use std::arch::x86_64::*;

/// `f()` compiled with AVX-512 (F, BW, DQ, VL) and the AVX2 level's extensions (see
/// `isa::vectorised`).
///
/// # Safety
/// The CPU must have every one of those extensions.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The mask of the first `n % 16` lanes, or all 16.
#[inline(always)]
fn tail_mask(left: usize) -> __mmask16 {
    if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// `acc += a · v` with fused multiply-adds; equal lengths. Each element gets the same
/// `fma(a, v, acc)` as the AVX2 form, so the two agree to the bit.
///
/// # Safety
/// The CPU must have AVX-512 F, and `acc.len() == v.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    let n = acc.len();
    let (pa, pv) = (acc.as_mut_ptr(), v.as_ptr());
    // SAFETY: every access is at i..i+16 ≤ n, or masked to the lanes below n
    unsafe {
        let s = _mm512_set1_ps(a);
        let mut i = 0;
        while i + 16 <= n {
            let r = _mm512_fmadd_ps(s, _mm512_loadu_ps(pv.add(i)), _mm512_loadu_ps(pa.add(i)));
            _mm512_storeu_ps(pa.add(i), r);
            i += 16;
        }
        if i < n {
            let k = tail_mask(n - i);
            let r = _mm512_fmadd_ps(
                s,
                _mm512_maskz_loadu_ps(k, pv.add(i)),
                _mm512_maskz_loadu_ps(k, pa.add(i)),
            );
            _mm512_mask_storeu_ps(pa.add(i), k, r);
        }
    }
}

/// `u · v` in four 16-lane fused accumulators (64 values per iteration, enough to cover the
/// multiply-add's latency), then a masked tail, then a fixed-order reduction; equal lengths.
///
/// # Safety
/// The CPU must have AVX-512 F, and `u.len() == v.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot(u: &[f32], v: &[f32]) -> f32 {
    let n = u.len();
    let (pu, pv) = (u.as_ptr(), v.as_ptr());
    // SAFETY: every load is at i..i+16 ≤ n, or masked to the lanes below n
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + 16 * k;
                *a = _mm512_fmadd_ps(_mm512_loadu_ps(pu.add(o)), _mm512_loadu_ps(pv.add(o)), *a);
            }
            i += 64;
        }
        let mut k = 0;
        while i < n {
            let m = tail_mask(n - i);
            acc[k] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pu.add(i)),
                _mm512_maskz_loadu_ps(m, pv.add(i)),
                acc[k],
            );
            i += 16;
            k += 1;
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }
}

/// Scale 16 converted values, store them (streaming when `out` is 64-byte aligned there, else
/// masked), and fold "not finite" into `bad`.
#[inline(always)]
unsafe fn store_checked(f: __m512, s: __m512, out: *mut f32, k: __mmask16, bad: &mut __mmask16) {
    // SAFETY: the caller's bounds; `out` holds the lanes of `k`
    unsafe {
        let f = _mm512_mul_ps(f, s);
        // |f| ≥ inf, or unordered (NaN), in the lanes written
        *bad |= _mm512_mask_cmp_ps_mask::<_CMP_NLT_UQ>(
            k,
            _mm512_abs_ps(f),
            _mm512_set1_ps(f32::INFINITY),
        );
        if k == 0xffff && (out as usize).is_multiple_of(64) {
            // non-temporal: the batch is read by another thread later, so pulling its lines
            // into the cache first only costs bandwidth
            _mm512_stream_ps(out, f);
        } else {
            _mm512_mask_storeu_ps(out, k, f);
        }
    }
}

/// 16-bit values to scaled f32, 16 at a time, each block of 16 widened by `widen`; returns
/// whether every value is finite.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL, and `bytes.len() == 2 * out.len()`.
#[inline(always)]
unsafe fn widen_scaled(
    bytes: &[u8],
    scale: f32,
    out: &mut [f32],
    widen: impl Fn(__m256i) -> __m512,
) -> bool {
    let n = out.len();
    let (pb, po) = (bytes.as_ptr(), out.as_mut_ptr());
    // SAFETY: loads read bytes 2i..2i+32 ≤ 2n, or masked to the 16-bit lanes below n; stores
    // write i..i+16 ≤ n, or masked
    unsafe {
        let s = _mm512_set1_ps(scale);
        let mut bad: __mmask16 = 0;
        let mut i = 0;
        while i < n {
            let k = tail_mask(n - i);
            let h = _mm256_maskz_loadu_epi16(k, pb.add(2 * i).cast());
            store_checked(widen(h), s, po.add(i), k, &mut bad);
            i += 16;
        }
        _mm_sfence();
        bad == 0
    }
}

/// f16 bytes to scaled f32 (the hardware conversion); returns whether every value is finite.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL, and `bytes.len() == 2 * out.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn f16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    // SAFETY: as the caller promises
    unsafe { widen_scaled(bytes, scale, out, |h| _mm512_cvtph_ps(h)) }
}

/// bf16 bytes to scaled f32 (each widened and shifted into an f32's top half); returns whether
/// every value is finite.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL, and `bytes.len() == 2 * out.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn bf16_to_f32(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    // SAFETY: as the caller promises
    unsafe {
        widen_scaled(bytes, scale, out, |h| {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        })
    }
}
