//! A block of rows in the store's own element type (copied, or straight from the file's map),
//! decoded to scaled f32 one row at a time.
//!
//! Keeping the shuffle buffer in the stored type (f16 stays 2 bytes, mapped rows are not copied
//! at all) means each value is converted once, while rows are gathered into a batch.

use crate::data::dtype::Dtype;
use crate::data::raw::Piece;
use crate::isa::all_finite;

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

/// `out[i] = f32(element i of bytes) · scale`, and whether all of `out` is finite; `bytes` need
/// not be aligned.
pub fn decode(kind: Dtype, bytes: &[u8], scale: f32, out: &mut [f32]) -> bool {
    match kind {
        Dtype::F16 => return crate::isa::f16_to_f32(bytes, scale, out),
        Dtype::Bf16 => return crate::isa::bf16_to_f32(bytes, scale, out),
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
    }
    all_finite(out)
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
