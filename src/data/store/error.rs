//! What can go wrong with a store: [`StoreError`], every message naming the file (and the dataset
//! where there is one).

use std::path::PathBuf;

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
    /// A SAELens activation cache that cannot be read.
    #[error(transparent)]
    Cache(#[from] crate::data::arrow_cache::CacheError),
    /// A transcoder's target store whose rows do not pair with the input store's.
    #[error(
        "{target}: the target store has {target_rows} rows{what}, but the input store {input} has {input_rows}: data.target_stores must hold the same tokens as data.stores, in the same order (harvest both sites in one pass: --site mlp_in,mlp_out)"
    )]
    Unpaired {
        /// The input store's (first) file, or the input file of the pair that disagrees.
        input: PathBuf,
        /// Its rows.
        input_rows: usize,
        /// The target store's (first) file, or the target file of the pair that disagrees.
        target: PathBuf,
        /// Its rows.
        target_rows: usize,
        /// What is counted, when not the whole stores (" in file 2 of 3").
        what: String,
    },
    /// A transcoder's stores with different numbers of files.
    #[error(
        "{target}: data.target_stores has {target_files} files, but data.stores ({input}) has {input_files}: the files pair in order, one target file per input file"
    )]
    UnpairedFiles {
        /// The input store's first file.
        input: PathBuf,
        /// Its number of files.
        input_files: usize,
        /// The target store's first file.
        target: PathBuf,
        /// Its number of files.
        target_files: usize,
    },
    /// No store given.
    #[error("no activation store given: set data.stores in the config or pass --store")]
    NoStores,
}

/// An HDF5 error's text on one line.
pub(super) fn msg(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}
