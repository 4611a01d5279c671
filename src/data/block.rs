//! A block of rows in the store's own element type (copied, or straight from the file's map),
//! decoded to scaled f32 one row at a time.
//!
//! Keeping the shuffle buffer in the stored type (f16 stays 2 bytes, mapped rows are not copied
//! at all) means each value is converted once, while rows are gathered into a batch.

use crate::data::dtype::Dtype;
use crate::data::raw::Piece;
use half::slice::HalfFloatSliceExt;
use std::sync::OnceLock;

/// Rows, row-major.
#[derive(Debug)]
pub enum Block {
    /// f32 rows (what HDF5's own read returns).
    F32(Vec<f32>),
    /// Rows copied out of the file in their stored type.
    Bytes {
        /// The element type.
        kind: Dtype,
        /// The rows' bytes.
        data: Vec<u8>,
    },
    /// Rows read in place from the file's map.
    Mapped {
        /// The element type.
        kind: Dtype,
        /// Where each run of rows starts, sorted by row.
        pieces: Vec<Piece>,
    },
}

impl Default for Block {
    fn default() -> Self {
        Block::F32(Vec::new())
    }
}

impl Block {
    /// A byte buffer of `n` bytes for rows of `kind`, reusing this block's buffer if it has one.
    pub fn bytes_for(&mut self, kind: Dtype, n: usize) -> &mut [u8] {
        let mut data = match std::mem::take(self) {
            Block::Bytes { data, .. } => data,
            _ => Vec::new(),
        };
        data.resize(n, 0);
        *self = Block::Bytes { kind, data };
        match self {
            Block::Bytes { data, .. } => data,
            _ => unreachable!("just set"),
        }
    }

    /// The stored bytes of row `r` (rows of `d` elements), unless the block holds f32 from HDF5.
    pub fn raw_row(&self, r: usize, d: usize) -> Option<&[u8]> {
        match self {
            Block::F32(_) => None,
            Block::Bytes { kind, data } => {
                let rb = d * kind.bytes();
                Some(&data[r * rb..(r + 1) * rb])
            }
            Block::Mapped { kind, pieces } => {
                let rb = d * kind.bytes();
                let p = &pieces[pieces.partition_point(|p| p.row <= r) - 1];
                let at = p.offset + (r - p.row) * rb;
                Some(&p.map[at..at + rb])
            }
        }
    }

    /// Write row `r` (rows of `out.len()` elements) into `out` as f32, multiplied by `scale`;
    /// returns whether every value written is finite.
    pub fn decode_row(&self, r: usize, scale: f32, out: &mut [f32]) -> bool {
        let d = out.len();
        match self {
            Block::F32(v) => {
                for (o, &x) in out.iter_mut().zip(&v[r * d..(r + 1) * d]) {
                    *o = x * scale;
                }
                all_finite(out)
            }
            Block::Bytes { kind, .. } | Block::Mapped { kind, .. } => {
                let row = self.raw_row(r, d).expect("a stored-type block");
                decode(*kind, row, scale, out)
            }
        }
    }
}

/// No NaN or ±Inf in `row`: an exponent-bits test summed as integers, which vectorises (an
/// early-exit `all(is_finite)` does not).
pub fn all_finite(row: &[f32]) -> bool {
    row.iter()
        .map(|v| ((v.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32)
        .sum::<u32>()
        == 0
}

/// `out[i] = f32(element i of bytes) · scale`, and whether all of `out` is finite; `bytes` need
/// not be aligned.
pub fn decode(kind: Dtype, bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    if kind == Dtype::F16 {
        return f16_to_f32_scaled(bytes, scale, out);
    }
    match kind {
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * scale;
            }
        }
        Dtype::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let v = f64::from_le_bytes(c.try_into().expect("8 bytes"));
                *o = v as f32 * scale;
            }
        }
        Dtype::Bf16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) * scale;
            }
        }
        Dtype::F16 => unreachable!("handled above"),
    }
    all_finite(out)
}

/// f16 bytes to scaled f32.
///
/// Written here rather than taken from `half`: its slice conversion calls a non-inlined function
/// per 8 values (with a feature check each time) and wants aligned `f16` slices, which made
/// conversion the largest cost of reading an f16 store. This converts 8 values per instruction
/// with F16C when the CPU has it.
fn f16_to_f32_scaled(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    static F16C: OnceLock<bool> = OnceLock::new();
    let n = out.len().min(bytes.len() / 2);
    #[cfg(target_arch = "x86_64")]
    if *F16C.get_or_init(|| {
        std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
    }) {
        // SAFETY: the CPU supports F16C and AVX (checked just above); n fits both slices.
        return unsafe { f16c::convert(&bytes[..2 * n], scale, &mut out[..n]) };
    }
    let _ = &F16C;
    let h: Vec<half::f16> = bytes[..2 * n]
        .chunks_exact(2)
        .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    h.convert_to_f32_slice(&mut out[..n]);
    if scale != 1.0 {
        out.iter_mut().for_each(|o| *o *= scale);
    }
    all_finite(out)
}

#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    /// F16C conversion and scale of a row: `out.len()` values from `2 · out.len()` bytes.
    /// Returns whether every scaled value is finite, tested in registers as it goes.
    ///
    /// # Safety
    /// The CPU must support F16C and AVX, and `bytes.len() == 2 * out.len()`.
    #[target_feature(enable = "f16c,avx")]
    pub unsafe fn convert(bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
        let n = out.len();
        let one = |j: usize| {
            half::f16::from_bits(u16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]])).to_f32()
                * scale
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
                // non-temporal: the batch is read by another thread later, so pulling its
                // lines into the cache first only costs bandwidth
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decoding_matches_half_at_any_alignment_and_length() {
        let vals: Vec<half::f16> = (0..37)
            .map(|i| half::f16::from_f32(i as f32 * 0.37 - 5.0))
            .collect();
        for shift in 0..2 {
            let mut bytes = vec![0u8; shift];
            bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
            let mut out = vec![0.0; vals.len()];
            assert!(decode(Dtype::F16, &bytes[shift..], 0.5, &mut out));
            for (o, v) in out.iter().zip(&vals) {
                assert_eq!(*o, v.to_f32() * 0.5);
            }
            // a NaN or an infinity anywhere is reported, in the vector body or the tail
            for bad in [half::f16::NAN, half::f16::INFINITY, half::f16::NEG_INFINITY] {
                for at in [0, 9, 36] {
                    let mut b = bytes.clone();
                    b[shift + 2 * at..shift + 2 * at + 2].copy_from_slice(&bad.to_le_bytes());
                    assert!(
                        !decode(Dtype::F16, &b[shift..], 0.5, &mut out),
                        "{bad} at {at}"
                    );
                }
            }
        }
    }
}
