//! Direct reads of a dataset's stored bytes through a read-only memory map: contiguous data, or
//! chunks that span whole rows, with the shuffle, deflate and LZF filters undone here on the rayon
//! pool.
//!
//! Why not HDF5's own read: the library serialises every call behind one lock, decompresses on the
//! calling thread and copies into a fresh buffer, which held our reads below h5py's plain
//! sequential read. The store module (the only one that talks to HDF5) works out where each chunk
//! lives when it opens a file; this module then hands out unfiltered rows straight from the page
//! cache (no copy at all) and inflates filtered chunks on several threads. A layout this module
//! cannot read (other filters, partial-row chunks, unallocated chunks, big endian) stays on
//! HDF5's path.
//!
//! The map stays valid if the file is deleted or replaced; the store checks the file's size
//! before every block, and a truncation after that check (while a block's rows wait in the
//! shuffle buffer) faults into zeros that `data::fault` marks, which the store checks before
//! the rows are used.
//!
//! Pages of a map that a read has touched count in the process's resident size until they are
//! unmapped, so a pass over a 100 GB store would show as 100 GB in `top` (and to schedulers
//! that account memory by RSS). Every range is released once it has been used: a [`Piece`] when
//! it is dropped, a copied or inflated range right after the copy. Released pages stay in the
//! page cache, so reading them again costs a minor fault, not a disk read: on a store that fits
//! in memory and is read many times that cost 3-6 % of the shuffled read rate (measured against
//! a build without the release). Keeping a budget of used pages instead was tried and dropped:
//! the kernel maps large page-cache folios around small touched ranges, so the resident size
//! then depended on the page cache's state (370-730 MB on the run where releasing gives 150 MB).

use crate::data::fault::FileMap;
use rayon::prelude::*;
use std::fs::File;
use std::sync::Arc;

/// A stored chunk that does not decode: where it lies in the file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("chunk at offset {offset}: {problem}")]
pub struct ChunkError {
    /// The chunk's byte offset in the file.
    pub offset: u64,
    /// What is wrong.
    pub problem: Corrupt,
}

/// What is wrong with a chunk's stored bytes.
#[derive(Debug, thiserror::Error)]
pub enum Corrupt {
    /// The zlib stream does not end where the chunk's size says.
    #[error("deflate data decodes to {got} bytes or more, expected {want}")]
    DeflateLength {
        /// Bytes decoded.
        got: u64,
        /// Bytes the chunk holds.
        want: usize,
    },
    /// The zlib stream is broken.
    #[error("corrupt deflate data: {0}")]
    Deflate(#[from] flate2::DecompressError),
    /// LZF takes 32-bit sizes.
    #[error("LZF chunk larger than 4 GiB")]
    LzfTooLarge,
    /// The LZF data is broken.
    #[error("corrupt LZF data (decoded {got} bytes, expected {want})")]
    Lzf {
        /// Bytes decoded.
        got: u32,
        /// Bytes the chunk holds.
        want: usize,
    },
    /// The filters' output has the wrong size.
    #[error("decodes to {got} bytes, expected {want}")]
    Length {
        /// Bytes decoded.
        got: usize,
        /// Bytes the chunk holds.
        want: usize,
    },
}

/// A filter of the HDF5 pipeline that this module undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Byte shuffle (H5Z_FILTER_SHUFFLE) over elements of the dataset's type size.
    Shuffle,
    /// zlib deflate (H5Z_FILTER_DEFLATE, gzip in h5py).
    Deflate,
    /// LZF (h5py's filter 32000).
    Lzf,
}

/// Where a run of whole rows is stored in the file.
#[derive(Debug, Clone)]
pub struct Segment {
    /// First row (flattened, within this file's dataset).
    pub row: usize,
    /// Rows of the dataset it holds (an edge chunk holds fewer than its padded size).
    pub rows: usize,
    /// Rows it spans once decoded, padding included.
    pub stored_rows: usize,
    /// Byte address in the file.
    pub addr: u64,
    /// Bytes stored (after the filters).
    pub size: u64,
    /// Filters to undo, in the order they are undone.
    pub undo: Vec<Filter>,
}

/// Rows straight from a file's map: rows `row..` (counted from the start of a read) begin at
/// byte `offset` of `map` and span `bytes` bytes. Dropping it releases those pages (see the
/// module doc).
#[derive(Debug)]
pub struct Piece {
    /// First row of the piece, relative to the read.
    pub row: usize,
    /// The file's map.
    pub map: Arc<FileMap>,
    /// Byte offset of that row in the map.
    pub offset: usize,
    /// Bytes of the piece's rows.
    pub bytes: usize,
}

impl Drop for Piece {
    fn drop(&mut self) {
        self.map.release(self.offset, self.bytes);
    }
}

/// A dataset whose rows this module reads directly.
#[derive(Debug)]
pub struct Layout {
    map: Arc<FileMap>,
    row_bytes: usize,
    elem_bytes: usize,
    /// Sorted by row, covering every row once.
    segments: Vec<Segment>,
}

/// Unfiltered reads are cut into pieces of about this size so both cores copy at once.
const PIECE_BYTES: usize = 1 << 20;

impl Layout {
    /// A layout from its segments, if they cover rows `0..rows` exactly once and lie inside the
    /// file, and the file can be mapped; `None` otherwise (the caller then reads through HDF5).
    pub fn new(
        file: &File,
        rows: usize,
        row_bytes: usize,
        elem_bytes: usize,
        mut segments: Vec<Segment>,
    ) -> Option<Self> {
        let map = FileMap::new(file).ok()?;
        let file_len = map.len() as u64;
        segments.sort_by_key(|s| s.row);
        let mut next = 0;
        for s in &segments {
            let inside = s.addr.checked_add(s.size).is_some_and(|e| e <= file_len);
            let plain_fits = !s.undo.is_empty() || s.size >= (s.rows * row_bytes) as u64;
            if s.row != next || s.rows == 0 || s.rows > s.stored_rows || !inside || !plain_fits {
                return None;
            }
            next += s.rows;
        }
        (next == rows && row_bytes > 0).then_some(Self {
            map: Arc::new(map),
            row_bytes,
            elem_bytes,
            segments,
        })
    }

    /// Whether a read of this file's map faulted because the file shrank under it (what it
    /// read there is zeros).
    pub fn faulted(&self) -> bool {
        self.map.faulted()
    }

    /// Rows `lo..hi` as pieces of the map, if no filter stands between them and the file (no
    /// copy is made), after asking the kernel to read them ahead.
    pub fn mapped(&self, lo: usize, hi: usize) -> Option<Vec<Piece>> {
        let first = self.segments.partition_point(|s| s.row + s.rows <= lo);
        let mut pieces = Vec::new();
        for seg in &self.segments[first..] {
            if seg.row >= hi {
                break;
            }
            if !seg.undo.is_empty() {
                return None;
            }
            let (a, b) = (lo.max(seg.row), hi.min(seg.row + seg.rows));
            let offset = seg.addr as usize + (a - seg.row) * self.row_bytes;
            // a hint only: the rows are read soon after, in shuffled order
            self.map.will_need(offset, (b - a) * self.row_bytes);
            pieces.push(Piece {
                row: a - lo,
                map: self.map.clone(),
                offset,
                bytes: (b - a) * self.row_bytes,
            });
        }
        Some(pieces)
    }

    /// Read rows `lo..hi` into `out` (`(hi - lo) · row_bytes` bytes), in parallel.
    pub fn read(&self, lo: usize, hi: usize, out: &mut [u8]) -> Result<(), ChunkError> {
        assert_eq!(out.len(), (hi - lo) * self.row_bytes, "output size");
        let mut tasks: Vec<(&Segment, usize, &mut [u8])> = Vec::new();
        let mut rest = out;
        let first = self.segments.partition_point(|s| s.row + s.rows <= lo);
        for seg in &self.segments[first..] {
            if seg.row >= hi {
                break;
            }
            let (a, b) = (lo.max(seg.row), hi.min(seg.row + seg.rows));
            let step = if seg.undo.is_empty() {
                (PIECE_BYTES / self.row_bytes).max(1)
            } else {
                b - a
            };
            let mut r = a;
            while r < b {
                let e = (r + step).min(b);
                let (head, tail) = std::mem::take(&mut rest).split_at_mut((e - r) * self.row_bytes);
                tasks.push((seg, r, head));
                rest = tail;
                r = e;
            }
        }
        tasks
            .into_par_iter()
            .try_for_each(|(seg, a, dst)| self.read_piece(seg, a, dst))
    }

    fn read_piece(&self, seg: &Segment, a: usize, dst: &mut [u8]) -> Result<(), ChunkError> {
        let rb = self.row_bytes as u64;
        if seg.undo.is_empty() {
            let at = (seg.addr + (a - seg.row) as u64 * rb) as usize;
            dst.copy_from_slice(&self.map[at..at + dst.len()]);
            self.map.release(at, dst.len());
            return Ok(());
        }
        let want = seg.stored_rows * self.row_bytes;
        let mut cur: Option<Vec<u8>> = None;
        let stored = &self.map[seg.addr as usize..(seg.addr + seg.size) as usize];
        for f in &seg.undo {
            let input = cur.as_deref().unwrap_or(stored);
            cur = Some(
                match f {
                    Filter::Deflate => inflate(input, want),
                    Filter::Lzf => unlzf(input, want),
                    Filter::Shuffle => Ok(unshuffle(input, self.elem_bytes)),
                }
                .map_err(|problem| ChunkError {
                    offset: seg.addr,
                    problem,
                })?,
            );
        }
        self.map.release(seg.addr as usize, seg.size as usize);
        let cur = cur.expect("a filtered segment has at least one filter");
        if cur.len() != want {
            return Err(ChunkError {
                offset: seg.addr,
                problem: Corrupt::Length {
                    got: cur.len(),
                    want,
                },
            });
        }
        let off = (a - seg.row) * self.row_bytes;
        dst.copy_from_slice(&cur[off..off + dst.len()]);
        Ok(())
    }
}

/// Inflate a zlib stream that must decode to exactly `want` bytes.
fn inflate(input: &[u8], want: usize) -> Result<Vec<u8>, Corrupt> {
    let mut out = vec![0u8; want];
    let mut z = flate2::Decompress::new(true);
    match z.decompress(input, &mut out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if z.total_out() as usize == want => Ok(out),
        Ok(_) => Err(Corrupt::DeflateLength {
            got: z.total_out(),
            want,
        }),
        Err(e) => Err(Corrupt::Deflate(e)),
    }
}

/// Undo LZF into exactly `want` bytes.
fn unlzf(input: &[u8], want: usize) -> Result<Vec<u8>, Corrupt> {
    let mut out = vec![0u8; want];
    let (Ok(n_in), Ok(n_out)) = (u32::try_from(input.len()), u32::try_from(want)) else {
        return Err(Corrupt::LzfTooLarge);
    };
    // SAFETY: both pointers come from live slices of exactly the lengths passed; lzf_decompress
    // never writes past out_len and returns 0 on any error.
    let got = unsafe {
        lzf_sys::lzf_decompress(input.as_ptr().cast(), n_in, out.as_mut_ptr().cast(), n_out)
    };
    if got as usize != want {
        return Err(Corrupt::Lzf { got, want });
    }
    Ok(out)
}

/// Undo HDF5's byte shuffle: byte `j` of element `e` was stored at `j · n + e`; the bytes past
/// the last whole element are stored as they are.
fn unshuffle(input: &[u8], elem: usize) -> Vec<u8> {
    if elem <= 1 {
        return input.to_vec();
    }
    let n = input.len() / elem;
    let mut out = vec![0u8; input.len()];
    for j in 0..elem {
        let plane = &input[j * n..(j + 1) * n];
        for (e, &v) in plane.iter().enumerate() {
            out[e * elem + j] = v;
        }
    }
    out[n * elem..].copy_from_slice(&input[n * elem..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident kB of the mapping that holds `addr`, from /proc/self/smaps.
    fn resident_kb(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(v) = line.strip_prefix("Rss:") {
                return v.trim().trim_end_matches("kB").trim().parse().unwrap();
            }
        }
        panic!("no mapping holds {addr:#x}")
    }

    #[test]
    fn used_ranges_leave_the_resident_set() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rows.bin");
        let (rows, row_bytes) = (4096, 1024);
        std::fs::write(&path, vec![7u8; rows * row_bytes]).unwrap();
        let file = File::open(&path).unwrap();
        let seg = |row, n| Segment {
            row,
            rows: n,
            stored_rows: n,
            addr: (row * row_bytes) as u64,
            size: (n * row_bytes) as u64,
            undo: Vec::new(),
        };
        let layout = Layout::new(
            &file,
            rows,
            row_bytes,
            4,
            vec![seg(0, 2048), seg(2048, 2048)],
        )
        .unwrap();
        let addr = layout.map.as_ptr() as usize;
        // rows read in place: resident while the pieces live, released when they are dropped
        let pieces = layout.mapped(0, rows).unwrap();
        let touched: u64 = pieces
            .iter()
            .map(|p| {
                p.map[p.offset..p.offset + 2048 * row_bytes]
                    .iter()
                    .step_by(4096)
                    .map(|&b| b as u64)
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(touched, 7 * (rows * row_bytes / 4096) as u64);
        assert!(resident_kb(addr) >= 4000, "{} kB", resident_kb(addr));
        drop(pieces);
        assert!(
            resident_kb(addr) <= 8,
            "{} kB after the pieces",
            resident_kb(addr)
        );
        // rows copied out: released right after the copy
        let mut out = vec![0u8; rows * row_bytes];
        layout.read(0, rows, &mut out).unwrap();
        assert!(out.iter().all(|&b| b == 7));
        assert!(
            resident_kb(addr) <= 8,
            "{} kB after a copy",
            resident_kb(addr)
        );
    }

    #[test]
    fn unshuffle_inverts_the_byte_planes() {
        // 3 elements of 4 bytes then 2 leftover bytes
        let elems: Vec<u8> = (0..12).collect();
        let mut shuffled = Vec::new();
        for j in 0..4 {
            for e in 0..3 {
                shuffled.push(elems[e * 4 + j]);
            }
        }
        shuffled.extend([100, 101]);
        let mut want = elems.clone();
        want.extend([100, 101]);
        assert_eq!(unshuffle(&shuffled, 4), want);
    }

    #[test]
    fn inflate_checks_the_size() {
        use std::io::Write;
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(inflate(&z, 1000).unwrap(), data);
        assert!(inflate(&z, 999).is_err());
        assert!(inflate(&z, 1001).is_err());
        assert!(inflate(&z[..z.len() / 2], 1000).is_err());
    }
}
