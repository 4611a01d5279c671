//! The only file that touches the HDF5 API: opening activation stores (one or more files, or glob
//! patterns, read as one), finding the activations dataset and where its chunks lie (for the
//! direct reader in [`raw`]), reading rows whatever the element type and rank, token ids, file
//! attributes, and writing stores (synthetic data, tests).
//!
//! What is read: 2-D `[n_tokens, d_in]` or 3-D `[n_seq, seq_len, d_in]` (flattened to
//! `n_seq·seq_len` rows) datasets of float32, float16, float64, or bfloat16 stored as uint16 with
//! the attribute `dtype = "bfloat16"`; chunked, compressed or contiguous alike (HDF5 decodes).

use crate::data::block::{Block, Kind};
use crate::data::raw;
use ndarray::{Ix2, Ix3, s};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A problem with a store; every message names the file (and dataset where there is one).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file does not exist or cannot be opened.
    #[error("{path}: cannot open store: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A glob pattern matched nothing.
    #[error("{pattern}: no file matches this pattern")]
    NoMatch {
        /// The pattern.
        pattern: String,
    },
    /// The dataset is not in the file.
    #[error("{path}: no dataset `{dataset}` (found: {found})")]
    MissingDataset {
        /// The file.
        path: PathBuf,
        /// The dataset asked for.
        dataset: String,
        /// The datasets the file has.
        found: String,
    },
    /// No dataset named, and the file has no single candidate.
    #[error("{path}: {problem}: set data.dataset (or --dataset) to one of them")]
    Ambiguous {
        /// The file.
        path: PathBuf,
        /// What was found.
        problem: String,
    },
    /// The dataset has the wrong shape or type.
    #[error("{path}: dataset `{dataset}`: {problem}")]
    BadDataset {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// Shards disagree on the activation width.
    #[error("{path}: dataset `{dataset}` has d_in = {got}, but {first} has d_in = {want}")]
    WidthMismatch {
        /// The shard that disagrees.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// Its width.
        got: usize,
        /// The first shard.
        first: PathBuf,
        /// The first shard's width.
        want: usize,
    },
    /// A read failed after opening.
    #[error("{path}: dataset `{dataset}`: read failed: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The library's message.
        reason: String,
    },
    /// The file was deleted or changed size while being read.
    #[error("{path}: the store file {what} during the run")]
    Changed {
        /// The file.
        path: PathBuf,
        /// "vanished" or "changed size (A -> B bytes)".
        what: String,
    },
    /// Writing a store failed.
    #[error("{path}: cannot write store: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The library's message.
        reason: String,
    },
    /// No store given.
    #[error("no activation store given: set data.stores in the config or pass --store")]
    NoStores,
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Names under which token ids are looked for beside the activations.
pub const TOKEN_ID_NAMES: [&str; 3] = ["token_ids", "tokens", "input_ids"];

/// How the activations' elements are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    /// A float type HDF5 converts to f32 (float32, float64).
    Float,
    /// float16, converted by us: HDF5's own f16 → f32 conversion is a slow soft path.
    F16,
    /// uint16 holding bfloat16 bits.
    Bf16,
}

/// One file of a store.
struct Shard {
    path: PathBuf,
    ds: hdf5::Dataset,
    /// `Some(seq_len)` for 3-D datasets.
    seq_len: Option<usize>,
    elem: Elem,
    rows: usize,
    /// Global index of this shard's first row.
    start: usize,
    token_ids: Option<hdf5::Dataset>,
    /// File size when opened: HDF5 reads past a truncated end as zeros, so a size change must be
    /// caught here rather than trained on.
    bytes: u64,
    /// Where the rows lie in the file, when they can be read without HDF5 (see [`raw`]).
    direct: Option<(raw::Layout, Kind)>,
}

/// One or more HDF5 files holding the activations, read as one.
pub struct Store {
    shards: Vec<Shard>,
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
            .field(
                "files",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("dataset", &self.dataset)
            .field("rows", &self.rows)
            .field("d_in", &self.d_in)
            .finish()
    }
}

/// Expand glob patterns (`acts/*.h5`) into sorted file lists; plain paths pass through.
pub fn expand_paths(patterns: &[PathBuf]) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    for p in patterns {
        let text = p.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            out.push(p.clone());
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| StoreError::Open {
                path: p.clone(),
                reason: format!("invalid glob pattern: {}", msg(e)),
            })?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if matched.is_empty() {
            return Err(StoreError::NoMatch {
                pattern: text.into_owned(),
            });
        }
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

fn open_file(path: &Path) -> Result<hdf5::File, StoreError> {
    hdf5::silence_errors(true);
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.into(),
            reason: "no such file".into(),
        });
    }
    if let Err(e) = std::fs::File::open(path) {
        return Err(StoreError::Open {
            path: path.into(),
            reason: e.to_string(),
        });
    }
    // Read-only opens take no file lock. HDF5's lock is a flock on a descriptor opened without
    // O_CLOEXEC, so any process forked while a writer had the file open keeps the writer's lock
    // for its whole life; readers would then fail with "unable to lock file". Reading needs no
    // lock (h5py users set HDF5_USE_FILE_LOCKING=FALSE for the same reason on shared file systems).
    let mut builder = hdf5::File::with_options();
    builder.fapl().file_locking(false);
    builder.open(path).map_err(|e| StoreError::Open {
        path: path.into(),
        reason: format!("not a readable HDF5 file ({})", msg(e)),
    })
}

/// Every dataset in the file, with its full path, depth first.
fn all_datasets(group: &hdf5::Group, out: &mut Vec<(String, hdf5::Dataset)>) {
    if let Ok(ds) = group.datasets() {
        for d in ds {
            out.push((d.name().trim_start_matches('/').to_string(), d));
        }
    }
    if let Ok(gs) = group.groups() {
        for g in gs {
            all_datasets(&g, out);
        }
    }
}

fn string_attr(loc: &hdf5::Location, name: &str) -> Option<String> {
    let a = loc.attr(name).ok()?;
    if let Ok(v) = a.read_scalar::<hdf5::types::VarLenUnicode>() {
        return Some(v.as_str().to_string());
    }
    if let Ok(v) = a.read_scalar::<hdf5::types::VarLenAscii>() {
        return Some(v.as_str().to_string());
    }
    if let Ok(v) = a.read_scalar::<f64>() {
        return Some(v.to_string());
    }
    if let Ok(v) = a.read_scalar::<i64>() {
        return Some(v.to_string());
    }
    None
}

fn elem_of(ds: &hdf5::Dataset) -> Result<Elem, String> {
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| format!("unreadable type: {}", msg(e)))?;
    match desc {
        hdf5::types::TypeDescriptor::Float(hdf5::types::FloatSize::U2) => Ok(Elem::F16),
        hdf5::types::TypeDescriptor::Float(_) => Ok(Elem::Float),
        hdf5::types::TypeDescriptor::Unsigned(hdf5::types::IntSize::U2)
            if string_attr(ds, "dtype").is_some_and(|v| v == "bfloat16") =>
        {
            Ok(Elem::Bf16)
        }
        other => Err(format!(
            "type {other}: expected float32, float16, float64, or uint16 with attribute dtype = \"bfloat16\""
        )),
    }
}

/// The dataset to read: `requested`, else `activations`, else the file's only float dataset of
/// rank ≥ 2.
fn find_dataset(
    file: &hdf5::File,
    path: &Path,
    requested: Option<&str>,
) -> Result<(String, hdf5::Dataset), StoreError> {
    let mut all = Vec::new();
    all_datasets(file, &mut all);
    let listing = || {
        if all.is_empty() {
            "no datasets".to_string()
        } else {
            all.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(name) = requested {
        return file
            .dataset(name)
            .map(|d| (name.trim_start_matches('/').to_string(), d))
            .map_err(|_| StoreError::MissingDataset {
                path: path.into(),
                dataset: name.into(),
                found: listing(),
            });
    }
    if let Ok(d) = file.dataset("activations") {
        return Ok(("activations".into(), d));
    }
    let candidates: Vec<&(String, hdf5::Dataset)> = all
        .iter()
        .filter(|(_, d)| d.ndim() >= 2 && elem_of(d).is_ok())
        .collect();
    match candidates.as_slice() {
        [(n, d)] => Ok((n.clone(), d.clone())),
        [] => Err(StoreError::MissingDataset {
            path: path.into(),
            dataset: "activations".into(),
            found: listing(),
        }),
        many => Err(StoreError::Ambiguous {
            path: path.into(),
            problem: format!(
                "no `activations` dataset and several float datasets of rank >= 2 ({})",
                many.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Where `ds`'s rows lie in the file, if [`raw`] can read them: little-endian elements, stored
/// contiguously or in chunks spanning whole rows with only shuffle/deflate/LZF filters.
fn direct_layout(
    ds: &hdf5::Dataset,
    path: &Path,
    elem: Elem,
    shape: &[usize],
) -> Option<(raw::Layout, Kind)> {
    use hdf5::filters::Filter as F;
    if !cfg!(target_endian = "little") {
        return None;
    }
    let dtype = ds.dtype().ok()?;
    if dtype.byte_order() != hdf5::datatype::ByteOrder::LittleEndian {
        return None;
    }
    let kind = match (elem, dtype.size()) {
        (Elem::Float, 4) => Kind::F32,
        (Elem::Float, 8) => Kind::F64,
        (Elem::F16, 2) => Kind::F16,
        (Elem::Bf16, 2) => Kind::Bf16,
        _ => return None,
    };
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
    raw::Layout::new(&file, rows, row_bytes, kind.bytes(), segments).map(|l| (l, kind))
}

fn open_shard(
    path: &Path,
    requested: Option<&str>,
    start: usize,
) -> Result<(Shard, String, usize), StoreError> {
    let file = open_file(path)?;
    let (name, ds) = find_dataset(&file, path, requested)?;
    let bad = |problem: String| StoreError::BadDataset {
        path: path.into(),
        dataset: name.clone(),
        problem,
    };
    let elem = elem_of(&ds).map_err(bad)?;
    let shape = ds.shape();
    let (rows, seq_len, d) = match shape[..] {
        [n, d] => (n, None, d),
        [q, l, d] => (q * l, Some(l), d),
        _ => {
            return Err(bad(format!(
                "shape {shape:?}: expected 2 dimensions [n_tokens, d_in] or 3 [n_seq, seq_len, d_in]"
            )));
        }
    };
    if rows == 0 || d == 0 {
        return Err(bad(format!("shape {shape:?}: the dataset is empty")));
    }
    let lead = &shape[..shape.len() - 1];
    let token_ids = TOKEN_ID_NAMES.iter().find_map(|n| {
        let t = file.dataset(n).ok()?;
        let ok = t.shape() == lead
            && matches!(
                t.dtype().and_then(|t| t.to_descriptor()),
                Ok(hdf5::types::TypeDescriptor::Integer(_)
                    | hdf5::types::TypeDescriptor::Unsigned(_))
            );
        ok.then_some(t)
    });
    Ok((
        Shard {
            path: path.into(),
            seq_len,
            elem,
            rows,
            start,
            token_ids,
            direct: direct_layout(&ds, path, elem, &shape),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            ds,
        },
        name,
        d,
    ))
}

impl Store {
    /// Open the files (glob patterns expanded) in order and check that they agree on `d_in`.
    /// `dataset`: a dataset path, or `None` for `activations` or else the only float dataset.
    pub fn open(paths: &[PathBuf], dataset: Option<&str>) -> Result<Self, StoreError> {
        let paths = expand_paths(paths)?;
        if paths.is_empty() {
            return Err(StoreError::NoStores);
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
            shards,
            dataset: name,
            d_in,
            rows,
            direct_reads: std::env::var_os(HDF5_ONLY_ENV).is_none(),
        })
    }

    /// Turn the direct reader off (every read through HDF5) or back on.
    pub fn set_direct_reads(&mut self, on: bool) {
        self.direct_reads = on;
    }

    /// The element type blocks are read in, when every file can be read directly in the same
    /// type; `None` means reads go through HDF5 and come back as f32.
    pub fn direct_kind(&self) -> Option<Kind> {
        if !self.direct_reads {
            return None;
        }
        let k = self.shards[0].direct.as_ref()?.1;
        self.shards
            .iter()
            .all(|s| s.direct.as_ref().is_some_and(|d| d.1 == k))
            .then_some(k)
    }

    /// Read `n` rows from global row `start` into `block`, replacing what it held: in the stored
    /// element type when [`Store::direct_kind`] allows, else as f32 through HDF5.
    pub fn read_block(&self, start: usize, n: usize, block: &mut Block) -> Result<(), StoreError> {
        let Some(kind) = self.direct_kind() else {
            let mut v = match std::mem::take(block) {
                Block::F32(mut v) => {
                    v.clear();
                    v
                }
                _ => Vec::new(),
            };
            self.read_rows_hdf5(start, n, &mut v)?;
            *block = Block::F32(v);
            return Ok(());
        };
        // rows straight from the files' maps when no filter stands in between
        let mut pieces = Vec::new();
        let mut all_mapped = true;
        for (sh, lo, hi) in self.spans(start, n) {
            self.check_unchanged(sh)?;
            let (layout, _) = sh.direct.as_ref().expect("direct_kind checked every shard");
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
            let (layout, _) = sh.direct.as_ref().expect("direct_kind checked every shard");
            layout
                .read(lo, hi, &mut bytes[at..at + (hi - lo) * row_bytes])
                .map_err(|e| self.read_err(sh, e))?;
        }
        Ok(())
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

    /// The files, in reading order.
    pub fn paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Whether every file has token ids beside the activations.
    pub fn has_token_ids(&self) -> bool {
        self.shards.iter().all(|s| s.token_ids.is_some())
    }

    /// The file holding global row `row`, and the row's index inside that file.
    pub fn locate(&self, row: usize) -> (&Path, usize) {
        let i = self.shard_of(row);
        (&self.shards[i].path, row - self.shards[i].start)
    }

    /// The rows `[start, end)` of the sequence holding global `row` (for 3-D datasets), else of
    /// its file: a context window around a token stays inside them.
    pub fn sequence_bounds(&self, row: usize) -> (usize, usize) {
        let sh = &self.shards[self.shard_of(row)];
        match sh.seq_len {
            Some(l) if l > 0 => {
                let s = sh.start + (row - sh.start) / l * l;
                (s, (s + l).min(sh.start + sh.rows))
            }
            _ => (sh.start, sh.start + sh.rows),
        }
    }

    fn shard_of(&self, row: usize) -> usize {
        self.shards
            .partition_point(|s| s.start + s.rows <= row)
            .min(self.shards.len() - 1)
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
            return self.read_rows_hdf5(start, n, out);
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
        Ok(())
    }

    fn read_rows_hdf5(&self, start: usize, n: usize, out: &mut Vec<f32>) -> Result<(), StoreError> {
        for (sh, lo, hi) in self.spans(start, n) {
            self.read_shard(sh, lo, hi, out)?;
        }
        Ok(())
    }

    /// The pieces of global rows `start..start + n` (clipped to the store), one per file in
    /// order: the file and the rows `lo..hi` inside it.
    fn spans(&self, start: usize, n: usize) -> impl Iterator<Item = (&Shard, usize, usize)> {
        let end = (start + n).min(self.rows);
        let mut row = start;
        std::iter::from_fn(move || {
            (row < end).then(|| {
                let sh = &self.shards[self.shard_of(row)];
                let (lo, hi) = (row - sh.start, (end - sh.start).min(sh.rows));
                row = sh.start + hi;
                (sh, lo, hi)
            })
        })
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
            None => match sh.elem {
                Elem::Float => {
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
                Elem::F16 => {
                    let a = sh
                        .ds
                        .read_slice::<half::f16, _, Ix2>(s![lo..hi, ..])
                        .map_err(|e| self.read_err(sh, e))?;
                    extend_f16(out, a.as_slice(), a.iter());
                }
                Elem::Bf16 => {
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
                match sh.elem {
                    Elem::Float => {
                        let a = sh
                            .ds
                            .read_slice::<f32, _, Ix3>(s![q0..q1, .., ..])
                            .map_err(|e| self.read_err(sh, e))?;
                        out.extend(a.iter().skip(skip).take(take).copied());
                    }
                    Elem::F16 => {
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
                    Elem::Bf16 => {
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

    /// Rows per HDF5 chunk of the first file (None when contiguous).
    pub fn chunk_rows(&self) -> Option<usize> {
        let c = self.shards[0].ds.chunk()?;
        Some(c[..c.len() - 1].iter().product::<usize>().max(1))
    }

    /// The first file's attributes (model, hook, layer, …) as text.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let Ok(file) = self.shards[0].ds.file() else {
            return BTreeMap::new();
        };
        file.attr_names()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| string_attr(&file, &n).map(|v| (n, v)))
            .collect()
    }

    /// The vocabulary (`vocab`: one string per token id) of the first file, if it has one.
    pub fn vocab(&self) -> Result<Option<Vec<String>>, StoreError> {
        let sh = &self.shards[0];
        let file = sh.ds.file().map_err(|e| self.read_err(sh, e))?;
        let Ok(ds) = file.dataset("vocab") else {
            return Ok(None);
        };
        read_strings(&ds)
            .map(Some)
            .map_err(|e| StoreError::BadDataset {
                path: sh.path.clone(),
                dataset: "vocab".into(),
                problem: format!("{e}: expected variable-length strings"),
            })
    }

    /// Token strings of `n` rows from global row `start`: from a per-token `token_strs` dataset
    /// (same leading shape as the activations) when every file has one, else from the token ids
    /// and the first file's `vocab`; `None` when the store has neither.
    pub fn read_token_strings(
        &self,
        start: usize,
        n: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let end = (start + n).min(self.rows);
        let per_token: Vec<Option<hdf5::Dataset>> = self
            .shards
            .iter()
            .map(|sh| sh.ds.file().ok().and_then(|f| f.dataset("token_strs").ok()))
            .collect();
        if per_token.iter().all(Option::is_some) {
            let mut out = Vec::with_capacity(end.saturating_sub(start));
            let mut row = start;
            while row < end {
                let k = self.shard_of(row);
                let sh = &self.shards[k];
                let (lo, hi) = (row - sh.start, (end - sh.start).min(sh.rows));
                let ds = per_token[k].as_ref().expect("checked above");
                if ds.size() != sh.rows {
                    return Err(StoreError::BadDataset {
                        path: sh.path.clone(),
                        dataset: "token_strs".into(),
                        problem: format!(
                            "{} strings: expected one per token ({})",
                            ds.size(),
                            sh.rows
                        ),
                    });
                }
                // only the rows asked for (the whole dataset can be as long as the store)
                let part = read_string_rows(ds, lo, hi).map_err(|e| StoreError::BadDataset {
                    path: sh.path.clone(),
                    dataset: "token_strs".into(),
                    problem: format!("{e}: expected variable-length strings"),
                })?;
                out.extend(part);
                row = sh.start + hi;
            }
            return Ok(Some(out));
        }
        match (self.has_token_ids(), self.vocab()?) {
            (true, Some(vocab)) => Ok(Some(
                self.read_token_ids(start, n)?
                    .into_iter()
                    .map(|id| {
                        usize::try_from(id)
                            .ok()
                            .and_then(|i| vocab.get(i))
                            .cloned()
                            .unwrap_or_else(|| format!("<{id}>"))
                    })
                    .collect(),
            )),
            _ => Ok(None),
        }
    }

    /// Token ids of `n` rows from global row `start` (empty when the store has none).
    pub fn read_token_ids(&self, start: usize, n: usize) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::with_capacity(n);
        if !self.has_token_ids() {
            return Ok(out);
        }
        let end = (start + n).min(self.rows);
        let mut row = start;
        while row < end {
            let sh = &self.shards[self.shard_of(row)];
            let (lo, hi) = (row - sh.start, (end - sh.start).min(sh.rows));
            let t = sh.token_ids.as_ref().expect("checked by has_token_ids");
            match sh.seq_len {
                None => {
                    let a = t
                        .read_slice_1d::<i64, _>(s![lo..hi])
                        .map_err(|e| self.read_err(sh, e))?;
                    out.extend(a.iter().copied());
                }
                Some(l) => {
                    let (q0, q1) = (lo / l, hi.div_ceil(l));
                    let a = t
                        .read_slice::<i64, _, Ix2>(s![q0..q1, ..])
                        .map_err(|e| self.read_err(sh, e))?;
                    out.extend(a.iter().skip(lo - q0 * l).take(hi - lo).copied());
                }
            }
            row = sh.start + hi;
        }
        Ok(out)
    }
}

/// Rows `[lo, hi)` of a string dataset, whatever its shape (flattened in row-major order).
fn read_string_rows(ds: &hdf5::Dataset, lo: usize, hi: usize) -> Result<Vec<String>, String> {
    let shape = ds.shape();
    if shape.len() == 1 {
        if let Ok(v) = ds.read_slice_1d::<hdf5::types::VarLenUnicode, _>(s![lo..hi]) {
            return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
        }
        return ds
            .read_slice_1d::<hdf5::types::VarLenAscii, _>(s![lo..hi])
            .map(|v| v.iter().map(|s| s.as_str().to_string()).collect())
            .map_err(msg);
    }
    // [n_seq, seq_len]: read the sequences that hold the rows
    let l = shape.last().copied().unwrap_or(1).max(1);
    let (q0, q1) = (lo / l, hi.div_ceil(l));
    let rows: Vec<String> =
        if let Ok(v) = ds.read_slice::<hdf5::types::VarLenUnicode, _, Ix2>(s![q0..q1, ..]) {
            v.iter().map(|s| s.as_str().to_string()).collect()
        } else {
            ds.read_slice::<hdf5::types::VarLenAscii, _, Ix2>(s![q0..q1, ..])
                .map_err(msg)?
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        };
    Ok(rows.into_iter().skip(lo - q0 * l).take(hi - lo).collect())
}

fn read_strings(ds: &hdf5::Dataset) -> Result<Vec<String>, String> {
    if let Ok(v) = ds.read_raw::<hdf5::types::VarLenUnicode>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    ds.read_raw::<hdf5::types::VarLenAscii>()
        .map(|v| v.iter().map(|s| s.as_str().to_string()).collect())
        .map_err(msg)
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

/// What `jumpscope store info` reports for one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileInfo {
    /// The file.
    pub path: PathBuf,
    /// The activations dataset's path.
    pub dataset: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type (`bfloat16` for marked uint16).
    pub dtype: String,
    /// Chunk shape, if chunked.
    pub chunks: Option<Vec<usize>>,
    /// Filters (gzip level, shuffle, lzf, …).
    pub compression: Vec<String>,
    /// Rows (tokens).
    pub n_tokens: usize,
    /// Activation width.
    pub d_in: usize,
    /// The file's size.
    pub bytes_on_disk: u64,
    /// The activations' size as f32.
    pub bytes_f32: u64,
    /// The token-id dataset beside the activations, if any.
    pub token_ids: Option<String>,
    /// Entries of the `vocab` dataset (token id → string), if present.
    pub vocab_size: Option<usize>,
    /// The file's attributes (model, hook, layer, …) as text.
    pub attributes: BTreeMap<String, String>,
}

/// Describe each file of a store (glob patterns expanded).
pub fn info(paths: &[PathBuf], dataset: Option<&str>) -> Result<Vec<FileInfo>, StoreError> {
    let store = Store::open(paths, dataset)?;
    let mut out = Vec::new();
    for sh in &store.shards {
        let file = open_file(&sh.path)?;
        let dtype = match sh.elem {
            Elem::Bf16 => "bfloat16".to_string(),
            Elem::F16 => "float16".to_string(),
            Elem::Float => sh
                .ds
                .dtype()
                .and_then(|t| t.to_descriptor())
                .map(|t| t.to_string())
                .unwrap_or_else(|_| "float".into()),
        };
        let attributes = file
            .attr_names()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| string_attr(&file, &n).map(|v| (n, v)))
            .collect();
        let token_ids = TOKEN_ID_NAMES
            .iter()
            .find(|n| {
                sh.token_ids
                    .as_ref()
                    .is_some_and(|t| t.name().trim_start_matches('/') == **n)
            })
            .map(|n| n.to_string());
        out.push(FileInfo {
            path: sh.path.clone(),
            dataset: store.dataset.clone(),
            shape: sh.ds.shape(),
            dtype,
            chunks: sh.ds.chunk(),
            compression: sh
                .ds
                .filters()
                .iter()
                .map(|f| format!("{f:?}").to_lowercase())
                .collect(),
            n_tokens: sh.rows,
            d_in: store.d_in,
            bytes_on_disk: std::fs::metadata(&sh.path).map(|m| m.len()).unwrap_or(0),
            bytes_f32: (sh.rows * store.d_in * 4) as u64,
            token_ids,
            vocab_size: file.dataset("vocab").ok().map(|v| v.size()),
            attributes,
        });
    }
    Ok(out)
}

/// Extra datasets to store beside the activations.
pub enum Extra<'a> {
    /// A float32 matrix `[rows, cols]`.
    F32(&'a str, &'a [f32], usize, usize),
    /// A float32 vector.
    F32Vec(&'a str, &'a [f32]),
}

/// Element type used for the activations dataset when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDtype {
    /// float32
    F32,
    /// float16
    F16,
}

/// Write a store: `dataset` = `[rows, d]` activations (chunked, gzip), plus extras and string
/// attributes.
pub fn write_store(
    path: &Path,
    dataset: &str,
    data: &[f32],
    d: usize,
    dtype: WriteDtype,
    extras: &[Extra<'_>],
    attrs: &[(&str, &str)],
) -> Result<(), StoreError> {
    hdf5::silence_errors(true);
    let err = |e: hdf5::Error| StoreError::Write {
        path: path.into(),
        reason: msg(e),
    };
    let rows = data.len() / d;
    let file = hdf5::File::create(path).map_err(err)?;
    let chunk_rows = rows.clamp(1, 1024);
    let arr = ndarray::ArrayView2::from_shape((rows, d), data).map_err(|e| StoreError::Write {
        path: path.into(),
        reason: e.to_string(),
    })?;
    match dtype {
        WriteDtype::F32 => {
            file.new_dataset_builder()
                .chunk((chunk_rows, d))
                .deflate(4)
                .with_data(&arr)
                .create(dataset)
                .map_err(err)?;
        }
        WriteDtype::F16 => {
            let h = arr.mapv(half::f16::from_f32);
            file.new_dataset_builder()
                .chunk((chunk_rows, d))
                .deflate(4)
                .with_data(&h)
                .create(dataset)
                .map_err(err)?;
        }
    }
    for e in extras {
        match e {
            Extra::F32(name, v, r, c) => {
                let a = ndarray::ArrayView2::from_shape((*r, *c), v).map_err(|e| {
                    StoreError::Write {
                        path: path.into(),
                        reason: e.to_string(),
                    }
                })?;
                file.new_dataset_builder()
                    .with_data(&a)
                    .create(*name)
                    .map_err(err)?;
            }
            Extra::F32Vec(name, v) => {
                file.new_dataset_builder()
                    .with_data(*v)
                    .create(*name)
                    .map_err(err)?;
            }
        }
    }
    for (k, v) in attrs {
        let s: hdf5::types::VarLenUnicode = v.parse().map_err(|_| StoreError::Write {
            path: path.into(),
            reason: format!("attribute {k} is not valid text"),
        })?;
        file.new_attr::<hdf5::types::VarLenUnicode>()
            .create(*k)
            .and_then(|a| a.write_scalar(&s))
            .map_err(err)?;
    }
    Ok(())
}

/// Read a float32 dataset of any shape as a flat vector with its shape.
pub fn read_f32_dataset(path: &Path, name: &str) -> Result<(Vec<f32>, Vec<usize>), StoreError> {
    let file = open_file(path)?;
    let ds = file.dataset(name).map_err(|_| StoreError::MissingDataset {
        path: path.into(),
        dataset: name.into(),
        found: file
            .member_names()
            .map(|n| n.join(", "))
            .unwrap_or_default(),
    })?;
    let v = ds.read_raw::<f32>().map_err(|e| StoreError::Read {
        path: path.into(),
        dataset: name.into(),
        reason: msg(e),
    })?;
    Ok((v, ds.shape()))
}
