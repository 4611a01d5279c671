//! The only file that touches the HDF5 API: opening activation stores (one or more files read as
//! one), reading rows as f32, and writing stores (synthetic data, tests).

use ndarray::s;
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
    /// The dataset is not in the file.
    #[error("{path}: no dataset `{dataset}` (found: {found})")]
    MissingDataset {
        /// The file.
        path: PathBuf,
        /// The dataset asked for.
        dataset: String,
        /// What the file has at its top level.
        found: String,
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

fn msg(e: hdf5::Error) -> String {
    e.to_string().replace('\n', " ")
}

struct Shard {
    path: PathBuf,
    ds: hdf5::Dataset,
    rows: usize,
    /// Global index of this shard's first row.
    start: usize,
}

/// One or more HDF5 files holding a 2-D `[n_tokens, d_in]` float dataset, read as one.
pub struct Store {
    shards: Vec<Shard>,
    dataset: String,
    d_in: usize,
    rows: usize,
}

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
    hdf5::File::open(path).map_err(|e| StoreError::Open {
        path: path.into(),
        reason: format!("not a readable HDF5 file ({})", msg(e)),
    })
}

fn open_shard(path: &Path, dataset: &str) -> Result<(hdf5::Dataset, usize, usize), StoreError> {
    let file = open_file(path)?;
    let ds = file
        .dataset(dataset)
        .map_err(|_| StoreError::MissingDataset {
            path: path.into(),
            dataset: dataset.into(),
            found: file
                .member_names()
                .map(|n| {
                    if n.is_empty() {
                        "nothing".into()
                    } else {
                        n.join(", ")
                    }
                })
                .unwrap_or_else(|_| "nothing readable".into()),
        })?;
    let bad = |problem: String| StoreError::BadDataset {
        path: path.into(),
        dataset: dataset.into(),
        problem,
    };
    let shape = ds.shape();
    if shape.len() != 2 {
        return Err(bad(format!(
            "shape {shape:?}: expected 2 dimensions [n_tokens, d_in]"
        )));
    }
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| bad(format!("unreadable type: {}", msg(e))))?;
    if !matches!(desc, hdf5::types::TypeDescriptor::Float(_)) {
        return Err(bad(format!(
            "type {desc}: expected float32 or float16 activations"
        )));
    }
    if shape[0] == 0 || shape[1] == 0 {
        return Err(bad(format!("shape {shape:?}: the dataset is empty")));
    }
    Ok((ds, shape[0], shape[1]))
}

impl Store {
    /// Open the files in order and check that they agree on `d_in`.
    pub fn open(paths: &[PathBuf], dataset: &str) -> Result<Self, StoreError> {
        if paths.is_empty() {
            return Err(StoreError::NoStores);
        }
        let mut shards = Vec::new();
        let mut d_in = 0;
        let mut rows = 0;
        for path in paths {
            let (ds, n, d) = open_shard(path, dataset)?;
            if shards.is_empty() {
                d_in = d;
            } else if d != d_in {
                return Err(StoreError::WidthMismatch {
                    path: path.clone(),
                    dataset: dataset.into(),
                    got: d,
                    first: paths[0].clone(),
                    want: d_in,
                });
            }
            shards.push(Shard {
                path: path.clone(),
                ds,
                rows: n,
                start: rows,
            });
            rows += n;
        }
        Ok(Self {
            shards,
            dataset: dataset.into(),
            d_in,
            rows,
        })
    }

    /// Activation width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Total rows (tokens) over all files.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The dataset name.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The file holding global row `row`, and the row's index inside that file.
    pub fn locate(&self, row: usize) -> (&Path, usize) {
        let i = self
            .shards
            .partition_point(|s| s.start + s.rows <= row)
            .min(self.shards.len() - 1);
        (&self.shards[i].path, row - self.shards[i].start)
    }

    /// Read `n` rows from global row `start` into `out` (appended, f32, row-major).
    pub fn read_rows(&self, start: usize, n: usize, out: &mut Vec<f32>) -> Result<(), StoreError> {
        let end = (start + n).min(self.rows);
        let mut row = start;
        while row < end {
            let i = self.shards.partition_point(|s| s.start + s.rows <= row);
            let sh = &self.shards[i];
            let lo = row - sh.start;
            let hi = (end - sh.start).min(sh.rows);
            let block =
                sh.ds
                    .read_slice_2d::<f32, _>(s![lo..hi, ..])
                    .map_err(|e| StoreError::Read {
                        path: sh.path.clone(),
                        dataset: self.dataset.clone(),
                        reason: msg(e),
                    })?;
            match block.as_slice() {
                Some(sl) => out.extend_from_slice(sl),
                None => out.extend(block.iter().copied()),
            }
            row = sh.start + hi;
        }
        Ok(())
    }
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
