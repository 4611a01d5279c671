//! The vector loops of the sparse step (`acc += a·v` and `u·v` over d_in-long rows), compiled
//! twice: for the baseline x86-64 the binary targets, and for AVX2 with fused multiply-add,
//! chosen at run time where the CPU has them (every x86 server of the last decade).
//!
//! Why by hand: the release build targets baseline x86-64 so that one binary runs anywhere, which
//! limits these loops to 4-wide SSE2 without FMA; the matrix products (the `gemm` crate) already
//! pick their kernels at run time the same way.

/// `acc += a · v`.
#[inline]
pub fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above)
        return unsafe { axpy_avx2(acc, a, v) };
    }
    acc.iter_mut().zip(v).for_each(|(o, x)| *o += a * x);
}

/// `u · v`, summed in eight lanes so that it vectorises.
#[inline]
pub fn dot(u: &[f32], v: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above)
        return unsafe { dot_avx2(u, v) };
    }
    dot_lanes(u, v, |acc, a, b| acc + a * b)
}

/// The eight-lane dot product with `fma(acc, a, b)` as the lane update.
#[inline(always)]
fn dot_lanes(u: &[f32], v: &[f32], fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
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

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    // std caches the CPUID answer: one atomic load per call
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(acc: &mut [f32], a: f32, v: &[f32]) {
    acc.iter_mut()
        .zip(v)
        .for_each(|(o, x)| *o = a.mul_add(*x, *o));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(u: &[f32], v: &[f32]) -> f32 {
    dot_lanes(u, v, |acc, a, b| a.mul_add(b, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_exact_on_small_integers() {
        let u: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let v: Vec<f32> = (0..19).map(|i| (i % 3) as f32).collect();
        let want: f32 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert_eq!(dot(&u, &v), want);
        assert_eq!(dot_lanes(&u, &v, |acc, a, b| acc + a * b), want);
        let mut acc = vec![1.0f32; 19];
        axpy(&mut acc, 2.0, &u);
        let want: Vec<f32> = u.iter().map(|x| 1.0 + 2.0 * x).collect();
        assert_eq!(acc, want);
    }
}
