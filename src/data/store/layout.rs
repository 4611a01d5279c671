//! Where a dataset's rows lie in its file, for the direct reader (`data::raw`): contiguous data,
//! or chunks spanning whole rows with only shuffle/deflate/LZF filters, little endian.

use crate::data::dtype::Dtype;
use crate::data::raw;
use std::path::Path;

/// Where `ds`'s rows lie in the file, if [`raw`] can read them: little-endian elements, stored
/// contiguously or in chunks spanning whole rows with only shuffle/deflate/LZF filters.
pub(super) fn direct_layout(
    ds: &hdf5::Dataset,
    path: &Path,
    kind: Dtype,
    shape: &[usize],
) -> Option<raw::Layout> {
    use hdf5::filters::Filter as F;
    if !cfg!(target_endian = "little") {
        return None;
    }
    let dtype = ds.dtype().ok()?;
    if dtype.byte_order() != hdf5::datatype::ByteOrder::LittleEndian {
        return None;
    }
    if dtype.size() != kind.bytes() {
        return None;
    }
    // rows of the flattened [rows, d] view per unit of the first dimension
    let inner: usize = shape[1..shape.len() - 1].iter().product();
    let rows = shape[0] * inner;
    let row_bytes = shape[shape.len() - 1] * kind.bytes();
    let segments = match ds.chunk() {
        None => {
            let addr = ds.offset()?;
            vec![raw::Segment {
                row: 0,
                rows,
                stored_rows: rows,
                addr,
                size: (rows * row_bytes) as u64,
                undo: Vec::new(),
            }]
        }
        Some(chunk) => {
            if chunk[1..] != shape[1..] {
                return None;
            }
            let pipeline: Vec<raw::Filter> = ds
                .filters()
                .into_iter()
                .map(|f| match f {
                    F::Shuffle => Some(raw::Filter::Shuffle),
                    F::Deflate(_) => Some(raw::Filter::Deflate),
                    #[allow(unreachable_patterns)]
                    F::LZF => Some(raw::Filter::Lzf),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            let stored_rows = chunk[0] * inner;
            let mut segs = Vec::new();
            ds.chunks_visit(|c| {
                let row = c.offset[0] as usize * inner;
                segs.push(raw::Segment {
                    row,
                    rows: stored_rows.min(rows.saturating_sub(row)),
                    stored_rows,
                    addr: c.addr,
                    size: c.size,
                    // written through the pipeline in order, so undone in reverse; a set mask
                    // bit means that filter was skipped for this chunk
                    undo: pipeline
                        .iter()
                        .enumerate()
                        .rev()
                        .filter(|(i, _)| c.filter_mask & (1 << i) == 0)
                        .map(|(_, f)| *f)
                        .collect(),
                });
                0
            })
            .ok()?;
            segs
        }
    };
    let file = std::fs::File::open(path).ok()?;
    raw::Layout::new(&file, rows, row_bytes, kind.bytes(), segments)
}
