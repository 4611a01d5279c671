//! Finding a store's files (globs), opening them without locks, and finding the activations
//! dataset, its element type and shape, and the token ids beside it.

use super::error::msg;
use super::layout::direct_layout;
use super::{Shard, StoreError};
use crate::data::dtype::Dtype;
use std::path::{Path, PathBuf};

/// Names under which token ids are looked for beside the activations.
pub const TOKEN_ID_NAMES: [&str; 3] = ["token_ids", "tokens", "input_ids"];

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

pub(super) fn open_file(path: &Path) -> Result<hdf5::File, StoreError> {
    hdf5::silence_errors(true);
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.into(),
            reason: "no such file".into(),
        });
    }
    if let Err(e) = crate::durable::check_regular(path).and_then(|()| std::fs::File::open(path)) {
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

pub(super) fn string_attr(loc: &hdf5::Location, name: &str) -> Option<String> {
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

/// Why a dataset's element type is not one jumpscope reads.
#[derive(Debug, thiserror::Error)]
enum DtypeError {
    #[error("unreadable type: {}", msg(.0))]
    Unreadable(hdf5::Error),
    #[error(
        "type {0}: expected float32, float16, float64, or uint16 with attribute dtype = \"bfloat16\""
    )]
    Unsupported(hdf5::types::TypeDescriptor),
}

/// The element type of a dataset jumpscope can read.
fn dtype_of(ds: &hdf5::Dataset) -> Result<Dtype, DtypeError> {
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(DtypeError::Unreadable)?;
    match desc {
        hdf5::types::TypeDescriptor::Float(hdf5::types::FloatSize::U2) => Ok(Dtype::F16),
        hdf5::types::TypeDescriptor::Float(hdf5::types::FloatSize::U4) => Ok(Dtype::F32),
        hdf5::types::TypeDescriptor::Float(hdf5::types::FloatSize::U8) => Ok(Dtype::F64),
        hdf5::types::TypeDescriptor::Unsigned(hdf5::types::IntSize::U2)
            if string_attr(ds, "dtype").is_some_and(|v| v == "bfloat16") =>
        {
            Ok(Dtype::Bf16)
        }
        other => Err(DtypeError::Unsupported(other)),
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
        .filter(|(_, d)| d.ndim() >= 2 && dtype_of(d).is_ok())
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

/// Where a companion dataset `what` (token ids, `vocab`, `token_strs`) of the dataset `name` may
/// be, in the order looked: beside it in its group, then at the file's root.
pub(super) fn beside(name: &str, what: &str) -> Vec<String> {
    match name.trim_start_matches('/').rsplit_once('/') {
        Some((group, _)) => vec![format!("{group}/{what}"), what.to_string()],
        None => vec![what.to_string()],
    }
}

/// The first of [`beside`]'s places that `file` has, opened.
pub(super) fn companion(file: &hdf5::File, name: &str, what: &str) -> Option<hdf5::Dataset> {
    beside(name, what)
        .into_iter()
        .find_map(|n| file.dataset(&n).ok())
}

/// Open one file of a store: the shard, its dataset's name, and its width.
pub(super) fn open_shard(
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
    let dtype = dtype_of(&ds).map_err(|e| bad(e.to_string()))?;
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
    let token_ids = TOKEN_ID_NAMES
        .iter()
        .flat_map(|n| beside(&name, n))
        .find_map(|n| {
            let t = file.dataset(&n).ok()?;
            let ok = t.shape() == lead
                && matches!(
                    t.dtype().and_then(|t| t.to_descriptor()),
                    Ok(hdf5::types::TypeDescriptor::Integer(_)
                        | hdf5::types::TypeDescriptor::Unsigned(_))
                );
            ok.then_some(t)
        });
    // a mask must fit the activations exactly: a wrong one would silently train on the wrong rows
    let mask = match companion(&file, &name, "mask") {
        Some(m) => {
            let int = matches!(
                m.dtype().and_then(|t| t.to_descriptor()),
                Ok(hdf5::types::TypeDescriptor::Integer(_)
                    | hdf5::types::TypeDescriptor::Unsigned(_)
                    | hdf5::types::TypeDescriptor::Boolean)
            );
            if m.shape() != lead || !int {
                return Err(StoreError::BadDataset {
                    path: path.into(),
                    dataset: m.name().trim_start_matches('/').to_string(),
                    problem: format!(
                        "shape {:?}: expected an integer mask of shape {lead:?} (the activations' leading dimensions; 0 = leave out of training)",
                        m.shape()
                    ),
                });
            }
            Some(m)
        }
        None => None,
    };
    Ok((
        Shard {
            path: path.into(),
            seq_len,
            dtype,
            rows,
            start,
            token_ids,
            mask,
            direct: direct_layout(&ds, path, dtype, &shape),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            ds,
        },
        name,
        d,
    ))
}
