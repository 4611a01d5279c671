//! `jumpscope store info`: what each file of a store holds (caches: `cache::info`).

use super::open::{open_file, string_attr};
use super::{Store, StoreError};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// The token-id dataset used (its path: beside the activations in their group, else at the
    /// root), if any.
    pub token_ids: Option<String>,
    /// Entries of the `vocab` dataset (token id → string), if present.
    pub vocab_size: Option<usize>,
    /// The `vocab` dataset used (its path, found as the token ids are), if any.
    pub vocab: Option<String>,
    /// The `mask` of positions left out of training (its path), if any.
    pub mask: Option<String>,
    /// The file's attributes (model, hook, layer, …) as text.
    pub attributes: BTreeMap<String, String>,
}

/// Describe each file of a store (glob patterns expanded).
pub fn info(paths: &[PathBuf], dataset: Option<&str>) -> Result<Vec<FileInfo>, StoreError> {
    let store = Store::open(paths, dataset)?;
    if let super::Source::Cache { dir, cache } = &store.source {
        return Ok(super::cache::info(dir, &store, cache));
    }
    let mut out = Vec::new();
    for sh in store.shards() {
        let file = open_file(&sh.path)?;
        let dtype = sh.dtype.name().to_string();
        let attributes = file
            .attr_names()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| string_attr(&file, &n).map(|v| (n, v)))
            .collect();
        let vocab = super::open::companion(&file, &store.dataset, "vocab");
        // the path of the ids used: beside the dataset, or at the root
        let token_ids = sh
            .token_ids
            .as_ref()
            .map(|t| t.name().trim_start_matches('/').to_string());
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
            vocab_size: vocab.as_ref().map(|v| v.size()),
            mask: sh
                .mask
                .as_ref()
                .map(|m| m.name().trim_start_matches('/').to_string()),
            vocab: vocab.map(|v| v.name().trim_start_matches('/').to_string()),
            attributes,
        });
    }
    Ok(out)
}
