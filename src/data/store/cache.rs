//! Stores that are a SAELens activation cache: opening one (the hook column named, or the only
//! one), and what `store info` and the run's records say about it.

use super::{FileInfo, Source, Store, StoreError};
use crate::data::arrow_cache::{ArrowCache, hook_columns};
use std::collections::BTreeMap;
use std::path::Path;

/// Open the cache in `dir` for hook column `column` (`None`: the cache's only activation column).
pub(super) fn open(dir: &Path, column: Option<&str>) -> Result<Store, StoreError> {
    let column = match column {
        Some(c) => c.to_string(),
        None => {
            let (hooks, all) = hook_columns(dir)?;
            match hooks.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(StoreError::Open {
                        path: dir.into(),
                        reason: format!(
                            "no activation column (an Array2D of float32 or float16); columns: {}",
                            all.iter()
                                .map(|(n, t)| format!("{n} ({t})"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                many => {
                    return Err(StoreError::Ambiguous {
                        path: dir.into(),
                        problem: format!("several hook columns ({})", many.join(", ")),
                    });
                }
            }
        }
    };
    let cache = ArrowCache::open(dir, &column)?;
    Ok(Store {
        d_in: cache.d_in(),
        rows: cache.rows(),
        dataset: column,
        vocab_override: None,
        direct_reads: false,
        source: Source::Cache {
            dir: dir.into(),
            cache,
        },
    })
}

/// The `format` attribute a cache is described with.
pub const CACHE_FORMAT: &str = "SAELens activation cache";

/// What the run records about a cache in place of a file's attributes.
pub(super) fn attributes(cache: &ArrowCache) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("format".into(), CACHE_FORMAT.into());
    out.insert("hook".into(), cache.column().into());
    out.insert("context_size".into(), cache.context().to_string());
    out.insert(
        "dtype".into(),
        if cache.is_float16() {
            "float16"
        } else {
            "float32"
        }
        .into(),
    );
    out
}

/// `store info` for a cache: one entry per Arrow file. The other columns (hooks cached beside
/// this one) are listed under the attribute `columns`.
pub(super) fn info(dir: &Path, store: &Store, cache: &ArrowCache) -> Vec<FileInfo> {
    let columns = hook_columns(dir)
        .map(|(_, all)| {
            all.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut attributes = attributes(cache);
    attributes.insert("columns".into(), columns);
    let dtype = attributes["dtype"].clone();
    cache
        .files()
        .into_iter()
        .map(|(path, seqs, bytes)| {
            let rows = seqs * cache.context();
            FileInfo {
                path: path.to_path_buf(),
                dataset: store.dataset.clone(),
                shape: vec![seqs, cache.context(), store.d_in],
                dtype: dtype.clone(),
                chunks: None,
                compression: Vec::new(),
                n_tokens: rows,
                d_in: store.d_in,
                bytes_on_disk: bytes,
                bytes_f32: (rows * store.d_in * 4) as u64,
                token_ids: cache.has_token_ids().then(|| "token_ids".to_string()),
                vocab_size: None,
                vocab: None,
                mask: None,
                attributes: attributes.clone(),
            }
        })
        .collect()
}
