//! Activation stores: one or more HDF5 files (or glob patterns) read as one. This module reads
//! rows whatever the element type and rank; finding the files and the dataset is in `open`, where
//! rows lie for the direct reader in `layout`, token ids and strings in `tokens`, `store info` in
//! `info`, and writing stores in `write`. Only this module and its children touch the HDF5 API.
//! A store can instead be one SAELens activation cache directory, read through
//! [`crate::data::arrow_cache`] (`cache`).
//!
//! What is read: 2-D `[n_tokens, d_in]` or 3-D `[n_seq, seq_len, d_in]` (flattened to
//! `n_seq·seq_len` rows) datasets of float32, float16, float64, or bfloat16 stored as uint16 with
//! the attribute `dtype = "bfloat16"`; chunked, compressed or contiguous alike (HDF5 decodes).

mod cache;
mod error;
mod info;
mod layout;
mod open;
mod tokens;
mod write;

pub use cache::CACHE_FORMAT;
pub use error::StoreError;
pub use info::{FileInfo, info};
pub use open::{TOKEN_ID_NAMES, expand_paths};
pub use write::{Extra, read_f32_dataset, write_store};

use crate::data::arrow_cache::ArrowCache;
use crate::data::block::Block;
use crate::data::dtype::Dtype;
use crate::data::raw;
use error::msg;
use ndarray::{Ix2, Ix3, s};
use open::{open_shard, string_attr};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One file of a store.
struct Shard {
    path: PathBuf,
    ds: hdf5::Dataset,
    /// `Some(seq_len)` for 3-D datasets.
    seq_len: Option<usize>,
    dtype: Dtype,
    rows: usize,
    /// Global index of this shard's first row.
    start: usize,
    token_ids: Option<hdf5::Dataset>,
    /// `mask` beside the activations (same leading shape; 0 = leave the position out of
    /// training), if the file has one.
    mask: Option<hdf5::Dataset>,
    /// File size when opened: HDF5 reads past a truncated end as zeros, so a size change must be
    /// caught here rather than trained on.
    bytes: u64,
    /// Where the rows lie in the file, when they can be read without HDF5 (see [`raw`]).
    direct: Option<raw::Layout>,
}

/// Where a store's rows come from.
enum Source {
    /// HDF5 files, in reading order.
    Files(Vec<Shard>),
    /// One SAELens activation cache (a `datasets` directory).
    Cache {
        /// The directory.
        dir: PathBuf,
        /// Its hook column, open.
        cache: ArrowCache,
    },
}

/// One or more HDF5 files holding the activations, read as one, or one SAELens activation cache.
pub struct Store {
    source: Source,
    /// A vocabulary given from outside the store (`inspect --vocab`), used before the store's own.
    vocab_override: Option<Vec<String>>,
    dataset: String,
    d_in: usize,
    rows: usize,
    /// Read through [`raw`] where the layout allows (off: everything through HDF5).
    direct_reads: bool,
}

/// Set to anything to read every store through HDF5 only (a fallback should the direct reader
/// ever misread a file).
pub const HDF5_ONLY_ENV: &str = "JUMPSCOPE_HDF5_READS";

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("files", &self.paths())
            .field("dataset", &self.dataset)
            .field("rows", &self.rows)
            .field("d_in", &self.d_in)
            .finish()
    }
}

impl Store {
    /// Open the files (glob patterns expanded) in order and check that they agree on `d_in`.
    /// `dataset`: a dataset path, or `None` for `activations` or else the only float dataset.
    /// A directory is read as a SAELens activation cache, and must then be the only store; its
    /// `dataset` is the hook column (`None`: the only one).
    pub fn open(paths: &[PathBuf], dataset: Option<&str>) -> Result<Self, StoreError> {
        let paths = expand_paths(paths)?;
        if paths.is_empty() {
            return Err(StoreError::NoStores);
        }
        if let Some(dir) = paths.iter().find(|p| p.is_dir()) {
            if paths.len() > 1 {
                return Err(StoreError::Open {
                    path: dir.clone(),
                    reason: "a directory is read as a SAELens activation cache, which must be the only store (data.stores = [\"DIR\"])".into(),
                });
            }
            return cache::open(dir, dataset);
        }
        let mut shards: Vec<Shard> = Vec::new();
        let mut d_in = 0;
        let mut rows = 0;
        let mut name = String::new();
        for path in &paths {
            // once the first file fixed the dataset's name, the others must have the same
            let want = if shards.is_empty() {
                dataset
            } else {
                Some(name.as_str())
            };
            let (shard, n, d) = open_shard(path, want, rows)?;
            if shards.is_empty() {
                d_in = d;
                name = n;
            } else if d != d_in {
                return Err(StoreError::WidthMismatch {
                    path: path.clone(),
                    dataset: name.clone(),
                    got: d,
                    first: paths[0].clone(),
                    want: d_in,
                });
            }
            rows += shard.rows;
            shards.push(shard);
        }
        Ok(Self {
            source: Source::Files(shards),
            vocab_override: None,
            dataset: name,
            d_in,
            rows,
            direct_reads: std::env::var_os(HDF5_ONLY_ENV).is_none(),
        })
    }

    /// The HDF5 files (none for a cache).
    fn shards(&self) -> &[Shard] {
        match &self.source {
            Source::Files(s) => s,
            Source::Cache { .. } => &[],
        }
    }

    /// The cache, when the store is one.
    fn cache(&self) -> Option<&ArrowCache> {
        match &self.source {
            Source::Cache { cache, .. } => Some(cache),
            Source::Files(_) => None,
        }
    }

    /// Use `vocab` (one string per token id) for token strings, before the store's own.
    pub fn set_vocab(&mut self, vocab: Vec<String>) {
        self.vocab_override = Some(vocab);
    }

    /// Turn the direct reader off (every read through HDF5) or back on.
    pub fn set_direct_reads(&mut self, on: bool) {
        self.direct_reads = on;
    }

    /// The element type blocks are read in, when every file can be read directly in the same
    /// type; `None` means reads go through HDF5 and come back as f32.
    pub fn direct_kind(&self) -> Option<Dtype> {
        if !self.direct_reads || self.cache().is_some() {
            return None;
        }
        let k = self.shards()[0].dtype;
        self.shards()
            .iter()
            .all(|s| s.direct.is_some() && s.dtype == k)
            .then_some(k)
    }

    /// Read `n` rows from global row `start` into `block`, replacing what it held: in the stored
    /// element type when [`Store::direct_kind`] allows, else as f32 through HDF5.
    pub fn read_block(&self, start: usize, n: usize, block: &mut Block) -> Result<(), StoreError> {
        self.simulated_slow_storage(start, n);
        let Some(kind) = self.direct_kind() else {
            let mut v = match std::mem::take(block) {
                Block::F32(mut v) => {
                    v.clear();
                    v
                }
                _ => Vec::new(),
            };
            self.read_rows_f32(start, n, &mut v)?;
            *block = Block::F32(v);
            return Ok(());
        };
        // rows straight from the files' maps when no filter stands in between
        let mut pieces = Vec::new();
        let mut all_mapped = true;
        for (sh, lo, hi) in self.spans(start, n) {
            self.check_unchanged(sh)?;
            let layout = sh.direct.as_ref().expect("direct_kind checked every shard");
            match layout.mapped(lo, hi) {
                Some(ps) => {
                    let first = sh.start + lo - start;
                    pieces.extend(ps.into_iter().map(|mut p| {
                        p.row += first;
                        p
                    }));
                }
                None => {
                    all_mapped = false;
                    break;
                }
            }
        }
        if all_mapped {
            *block = Block::Mapped { kind, pieces };
            return Ok(());
        }
        let row_bytes = self.d_in * kind.bytes();
        let end = (start + n).min(self.rows);
        let bytes = block.bytes_for(kind, (end - start) * row_bytes);
        for (sh, lo, hi) in self.spans(start, n) {
            self.check_unchanged(sh)?;
            let at = (sh.start + lo - start) * row_bytes;
            let layout = sh.direct.as_ref().expect("direct_kind checked every shard");
            layout
                .read(lo, hi, &mut bytes[at..at + (hi - lo) * row_bytes])
                .map_err(|e| self.read_err(sh, e))?;
        }
        self.check_reads()
    }

    /// Activation width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Total rows (tokens) over all files.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The dataset's path inside the files.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The files, in reading order (for a cache, its directory).
    pub fn paths(&self) -> Vec<&Path> {
        match &self.source {
            Source::Files(s) => s.iter().map(|s| s.path.as_path()).collect(),
            Source::Cache { dir, .. } => vec![dir.as_path()],
        }
    }

    /// Each file's rows, in reading order (one entry, the total, for a cache).
    pub fn file_rows(&self) -> Vec<usize> {
        match &self.source {
            Source::Files(s) => s.iter().map(|s| s.rows).collect(),
            Source::Cache { .. } => vec![self.rows],
        }
    }

    /// Whether the store is a SAELens activation cache.
    pub fn is_cache(&self) -> bool {
        self.cache().is_some()
    }

    /// Whether every file has token ids beside the activations.
    pub fn has_token_ids(&self) -> bool {
        match &self.source {
            Source::Files(s) => s.iter().all(|s| s.token_ids.is_some()),
            Source::Cache { cache, .. } => cache.has_token_ids(),
        }
    }

    /// Whether any file has a `mask` of positions to leave out of training.
    pub fn has_mask(&self) -> bool {
        self.shards().iter().any(|s| s.mask.is_some())
    }

    /// The file holding global row `row`, and the row's index inside that file.
    pub fn locate(&self, row: usize) -> (&Path, usize) {
        if let Some(c) = self.cache() {
            return c.locate(row);
        }
        let i = self.shard_of(row);
        (&self.shards()[i].path, row - self.shards()[i].start)
    }

    /// The rows `[start, end)` of the sequence holding global `row` (for 3-D datasets), else of
    /// its file: a context window around a token stays inside them.
    pub fn sequence_bounds(&self, row: usize) -> (usize, usize) {
        if let Some(c) = self.cache() {
            let s = row / c.context() * c.context();
            return (s, (s + c.context()).min(self.rows));
        }
        let sh = &self.shards()[self.shard_of(row)];
        match sh.seq_len {
            Some(l) if l > 0 => {
                let s = sh.start + (row - sh.start) / l * l;
                (s, (s + l).min(sh.start + sh.rows))
            }
            _ => (sh.start, sh.start + sh.rows),
        }
    }

    /// The HDF5 file holding global `row` (not for caches, which have no shards).
    fn shard_of(&self, row: usize) -> usize {
        let shards = self.shards();
        shards
            .partition_point(|s| s.start + s.rows <= row)
            .min(shards.len().saturating_sub(1))
    }

    /// The file still has the size it had when opened (HDF5 would read a truncated tail as zeros).
    fn check_unchanged(&self, sh: &Shard) -> Result<(), StoreError> {
        match std::fs::metadata(&sh.path) {
            Ok(m) if m.len() == sh.bytes => Ok(()),
            Ok(m) => Err(StoreError::Changed {
                path: sh.path.clone(),
                what: format!("changed size ({} -> {} bytes)", sh.bytes, m.len()),
            }),
            Err(_) => Err(StoreError::Changed {
                path: sh.path.clone(),
                what: "vanished".into(),
            }),
        }
    }

    /// No read of a file's map faulted because the file shrank after its size was checked:
    /// such a read returned zeros, which must not be used. Call it after using rows from
    /// [`Store::read_block`] (a mapped block is read when its rows are decoded).
    pub fn check_reads(&self) -> Result<(), StoreError> {
        let Source::Files(shards) = &self.source else {
            // a cache checks its maps on every read
            return Ok(());
        };
        match shards
            .iter()
            .find(|sh| sh.direct.as_ref().is_some_and(|d| d.faulted()))
        {
            None => Ok(()),
            Some(sh) => Err(StoreError::Changed {
                path: sh.path.clone(),
                what: match std::fs::metadata(&sh.path) {
                    Ok(m) => format!(
                        "was cut short while being read ({} -> {} bytes)",
                        sh.bytes,
                        m.len()
                    ),
                    Err(_) => "was cut short while being read, then vanished".into(),
                },
            }),
        }
    }

    fn read_err(&self, sh: &Shard, e: impl std::fmt::Display) -> StoreError {
        StoreError::Read {
            path: sh.path.clone(),
            dataset: self.dataset.clone(),
            reason: msg(e),
        }
    }

    /// Read `n` rows from global row `start` into `out` (appended, f32, row-major).
    pub fn read_rows(&self, start: usize, n: usize, out: &mut Vec<f32>) -> Result<(), StoreError> {
        if self.direct_kind().is_none() {
            return self.read_rows_f32(start, n, out);
        }
        let mut block = Block::default();
        self.read_block(start, n, &mut block)?;
        let d = self.d_in;
        let at = out.len();
        out.resize(
            at + (start + n).min(self.rows).saturating_sub(start) * d,
            0.0,
        );
        out[at..]
            .par_chunks_mut(d)
            .enumerate()
            .with_min_len(64)
            .for_each(|(r, row)| {
                block.decode_row(r, 1.0, row);
            });
        self.check_reads()
    }

    /// Rows as f32: through HDF5, or decoded from the cache.
    fn read_rows_f32(&self, start: usize, n: usize, out: &mut Vec<f32>) -> Result<(), StoreError> {
        if let Some(c) = self.cache() {
            return Ok(c.read_rows(start, n, out)?);
        }
        for (sh, lo, hi) in self.spans(start, n) {
            self.read_shard(sh, lo, hi, out)?;
        }
        Ok(())
    }

    /// The pieces of global rows `start..start + n` (clipped to the store), one per file in
    /// order: the file and the rows `lo..hi` inside it. None for a cache.
    fn spans(&self, start: usize, n: usize) -> impl Iterator<Item = (&Shard, usize, usize)> {
        let end = if self.is_cache() {
            start
        } else {
            (start + n).min(self.rows)
        };
        let mut row = start;
        std::iter::from_fn(move || {
            (row < end).then(|| {
                let sh = &self.shards()[self.shard_of(row)];
                let (lo, hi) = (row - sh.start, (end - sh.start).min(sh.rows));
                row = sh.start + hi;
                (sh, lo, hi)
            })
        })
    }

    /// The `JUMPSCOPE_TEST_SLOW_STORE` seam (`crate::seams::slow_store`), standing in for slow
    /// storage that the tests cannot have for real.
    fn simulated_slow_storage(&self, start: usize, n: usize) {
        let Some((name, ms)) = crate::seams::slow_store() else {
            return;
        };
        if self
            .spans(start, n)
            .any(|(sh, _, _)| sh.path.file_name().is_some_and(|f| f == name))
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    fn read_shard(
        &self,
        sh: &Shard,
        lo: usize,
        hi: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), StoreError> {
        self.check_unchanged(sh)?;
        let d = self.d_in;
        match sh.seq_len {
            None => match sh.dtype {
                Dtype::F32 | Dtype::F64 => {
                    let a = sh
                        .ds
                        .read_slice::<f32, _, Ix2>(s![lo..hi, ..])
                        .map_err(|e| self.read_err(sh, e))?;
                    if out.is_empty() && a.is_standard_layout() {
                        // take the buffer HDF5 read into instead of copying it
                        *out = a.into_raw_vec_and_offset().0;
                    } else {
                        extend(out, a.iter().copied(), a.as_slice());
                    }
                }
                Dtype::F16 => {
                    let a = sh
                        .ds
                        .read_slice::<half::f16, _, Ix2>(s![lo..hi, ..])
                        .map_err(|e| self.read_err(sh, e))?;
                    extend_f16(out, a.as_slice(), a.iter());
                }
                Dtype::Bf16 => {
                    let a = sh
                        .ds
                        .read_slice::<u16, _, Ix2>(s![lo..hi, ..])
                        .map_err(|e| self.read_err(sh, e))?;
                    out.extend(a.iter().map(|&b| half::bf16::from_bits(b).to_f32()));
                }
            },
            Some(l) => {
                // whole sequences covering [lo, hi), then the rows wanted
                let (q0, q1) = (lo / l, hi.div_ceil(l));
                let skip = (lo - q0 * l) * d;
                let take = (hi - lo) * d;
                match sh.dtype {
                    Dtype::F32 | Dtype::F64 => {
                        let a = sh
                            .ds
                            .read_slice::<f32, _, Ix3>(s![q0..q1, .., ..])
                            .map_err(|e| self.read_err(sh, e))?;
                        out.extend(a.iter().skip(skip).take(take).copied());
                    }
                    Dtype::F16 => {
                        let a = sh
                            .ds
                            .read_slice::<half::f16, _, Ix3>(s![q0..q1, .., ..])
                            .map_err(|e| self.read_err(sh, e))?;
                        match a.as_slice() {
                            Some(v) => {
                                extend_f16(out, Some(&v[skip..skip + take]), std::iter::empty())
                            }
                            None => out.extend(a.iter().skip(skip).take(take).map(|h| h.to_f32())),
                        }
                    }
                    Dtype::Bf16 => {
                        let a = sh
                            .ds
                            .read_slice::<u16, _, Ix3>(s![q0..q1, .., ..])
                            .map_err(|e| self.read_err(sh, e))?;
                        out.extend(
                            a.iter()
                                .skip(skip)
                                .take(take)
                                .map(|&b| half::bf16::from_bits(b).to_f32()),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows per HDF5 chunk of the first file (None when contiguous, or a cache: its record
    /// batches are decoded without copying, so reads need not follow them).
    pub fn chunk_rows(&self) -> Option<usize> {
        let c = self.shards().first()?.ds.chunk()?;
        Some(c[..c.len() - 1].iter().product::<usize>().max(1))
    }

    /// The first file's attributes (model, hook, layer, …) as text.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        if let Some(c) = self.cache() {
            return cache::attributes(c);
        }
        let Ok(file) = self.shards()[0].ds.file() else {
            return BTreeMap::new();
        };
        file.attr_names()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| string_attr(&file, &n).map(|v| (n, v)))
            .collect()
    }
}

fn extend_f16<'a>(
    out: &mut Vec<f32>,
    slice: Option<&[half::f16]>,
    it: impl Iterator<Item = &'a half::f16>,
) {
    use half::slice::HalfFloatSliceExt;
    match slice {
        Some(s) => {
            let n = out.len();
            out.resize(n + s.len(), 0.0);
            // half's slice conversion uses the CPU's F16C instructions where present
            s.convert_to_f32_slice(&mut out[n..]);
        }
        None => out.extend(it.map(|h| h.to_f32())),
    }
}

fn extend(out: &mut Vec<f32>, it: impl Iterator<Item = f32>, slice: Option<&[f32]>) {
    match slice {
        Some(s) => out.extend_from_slice(s),
        None => out.extend(it),
    }
}
