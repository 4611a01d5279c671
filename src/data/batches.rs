//! Batches from a store: block-shuffled reading, the NaN/Inf policy, and a resumable position.
//!
//! Each epoch visits the store's rows once. With shuffling, the rows are cut into blocks of
//! `block_rows`; an epoch takes the blocks in a permuted order and the rows of each block in a
//! permuted order, both derived from `(seed, epoch, block)` alone. The whole reading state is
//! therefore the [`Position`] `(epoch, cursor)`: a checkpoint stores it, and a resumed run reads
//! the same rows in the same order as an uninterrupted one, with no RNG state to carry.

use crate::config::OnNonFinite;
use crate::data::store::{Store, StoreError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where reading stands: the epoch and the number of rows of it already handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// 0-based epoch.
    pub epoch: u64,
    /// Rows of this epoch already consumed.
    pub cursor: u64,
}

/// A problem reading batches.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A row with NaN/Inf under `on_nonfinite = "stop"`.
    #[error(
        "{path}: dataset `{dataset}` row {row} contains NaN or Inf (data.on_nonfinite = \"stop\"; set it to \"skip\" to drop such rows)"
    )]
    NonFinite {
        /// The file.
        path: std::path::PathBuf,
        /// The dataset.
        dataset: String,
        /// The global row.
        row: usize,
    },
    /// The prefetch thread ended without a batch (it failed or was stopped).
    #[error("the data reader thread stopped unexpectedly")]
    Stopped,
    /// Every row of the store is non-finite.
    #[error("{path}: dataset `{dataset}`: no finite rows to train on")]
    NoFiniteRows {
        /// The first file.
        path: std::path::PathBuf,
        /// The dataset.
        dataset: String,
    },
}

/// One batch on the host, already multiplied by the input scale factor.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[rows, d_in]`, row-major.
    pub data: Vec<f32>,
    /// Rows in `data`.
    pub rows: usize,
    /// Rows dropped for NaN/Inf while filling this batch.
    pub skipped: usize,
    /// Epochs that began while filling this batch.
    pub new_epochs: u64,
}

/// Reads batches in a deterministic (optionally shuffled) order.
pub struct Batcher {
    store: Store,
    /// Rows `0..train_rows` are read; the rest are held out for validation.
    train_rows: usize,
    shuffle: bool,
    seed: u64,
    block_rows: usize,
    on_nonfinite: OnNonFinite,
    /// Multiplier applied to every value (1/C).
    pub scale: f32,
    pos: Position,
    /// Block order of the current epoch with each block's first cursor.
    order: Vec<(usize, usize)>,
    order_epoch: Option<u64>,
    cache: Option<(usize, Vec<u32>, Vec<f32>)>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("store", &self.store)
            .field("pos", &self.pos)
            .finish()
    }
}

/// No NaN or ±Inf in `row`: an exponent-bits test summed as integers, which vectorises (an
/// early-exit `all(is_finite)` does not).
fn all_finite(row: &[f32]) -> bool {
    row.iter()
        .map(|v| ((v.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32)
        .sum::<u32>()
        == 0
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // splitmix-style mixing so that nearby (epoch, block) pairs get unrelated streams
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Batcher {
    /// Rows per shuffle block for a width: about 32 MiB of f32 per block.
    pub fn default_block_rows(d_in: usize) -> usize {
        ((8 << 20) / d_in.max(1)).max(1024)
    }

    /// A reader over `store` starting at `pos`.
    pub fn new(
        store: Store,
        shuffle: bool,
        seed: u64,
        on_nonfinite: OnNonFinite,
        pos: Position,
    ) -> Self {
        let block_rows = Self::default_block_rows(store.d_in()).min(store.rows());
        Self {
            train_rows: store.rows(),
            store,
            shuffle,
            seed,
            block_rows,
            on_nonfinite,
            scale: 1.0,
            pos,
            order: Vec::new(),
            order_epoch: None,
            cache: None,
        }
    }

    /// Shuffle within blocks of about `rows` rows (rounded up to whole HDF5 chunks, so that each
    /// chunk is decompressed once per epoch). Memory: one block of `rows · d_in` f32.
    pub fn buffer_rows(mut self, rows: usize) -> Self {
        let chunk = self.store.chunk_rows().unwrap_or(1);
        self.block_rows = rows
            .max(1)
            .div_ceil(chunk)
            .saturating_mul(chunk)
            .min(self.train_rows);
        self.order_epoch = None;
        self
    }

    /// Hold out the last `n` rows of the store (they are never returned). `n` must leave rows.
    pub fn hold_out(mut self, n: usize) -> Self {
        self.train_rows = self.store.rows().saturating_sub(n).max(1);
        self.block_rows = self.block_rows.min(self.train_rows);
        self.order_epoch = None;
        self
    }

    /// Rows that training reads (the store less the held-out tail).
    pub fn train_rows(&self) -> usize {
        self.train_rows
    }

    /// The store being read.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current position (what a checkpoint records).
    pub fn position(&self) -> Position {
        self.pos
    }

    fn n_blocks(&self) -> usize {
        self.train_rows.div_ceil(self.block_rows)
    }

    fn ensure_order(&mut self) {
        if self.order_epoch == Some(self.pos.epoch) {
            return;
        }
        let mut blocks: Vec<usize> = (0..self.n_blocks()).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, self.pos.epoch, u64::MAX));
            blocks.shuffle(&mut rng);
        }
        let mut start = 0;
        self.order = blocks
            .into_iter()
            .map(|b| {
                let s = start;
                start += self.block_len(b);
                (b, s)
            })
            .collect();
        self.order_epoch = Some(self.pos.epoch);
        self.cache = None;
    }

    fn block_len(&self, b: usize) -> usize {
        (self.train_rows - b * self.block_rows).min(self.block_rows)
    }

    fn load_block(&mut self, b: usize) -> Result<(), StoreError> {
        if self.cache.as_ref().is_some_and(|c| c.0 == b) {
            return Ok(());
        }
        let len = self.block_len(b);
        let mut data = Vec::with_capacity(len * self.store.d_in());
        self.store.read_rows(b * self.block_rows, len, &mut data)?;
        let mut perm: Vec<u32> = (0..len as u32).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, self.pos.epoch, b as u64));
            perm.shuffle(&mut rng);
        }
        self.cache = Some((b, perm, data));
        Ok(())
    }

    /// The next `rows` rows (fewer only if the store has fewer finite rows in total).
    pub fn next_batch(&mut self, rows: usize) -> Result<Batch, BatchError> {
        let d = self.store.d_in();
        let mut batch = Batch {
            data: Vec::with_capacity(rows * d),
            rows: 0,
            skipped: 0,
            new_epochs: 0,
        };
        let total = self.train_rows as u64;
        let mut finite_this_pass = 0usize;
        let mut scanned_this_pass = 0u64;
        while batch.rows < rows {
            if self.pos.cursor >= total {
                self.pos.epoch += 1;
                self.pos.cursor = 0;
                batch.new_epochs += 1;
            }
            self.ensure_order();
            let cur = self.pos.cursor as usize;
            let k = self.order.partition_point(|&(_, s)| s <= cur) - 1;
            let (b, s) = self.order[k];
            self.load_block(b)?;
            let (_, perm, data) = self.cache.as_ref().expect("block loaded above");
            let end = (s + perm.len()).min(cur + rows - batch.rows);
            for c in cur..end {
                let r = perm[c - s] as usize;
                let row = &data[r * d..(r + 1) * d];
                scanned_this_pass += 1;
                // copy and scale first, then test the copy while it is in cache: one pass over
                // the block's memory instead of two
                let n = batch.data.len();
                batch.data.extend(row.iter().map(|v| v * self.scale));
                if all_finite(&batch.data[n..]) {
                    finite_this_pass += 1;
                    batch.rows += 1;
                } else {
                    batch.data.truncate(n);
                    let global = b * self.block_rows + r;
                    match self.on_nonfinite {
                        OnNonFinite::Stop => {
                            let (path, row) = self.store.locate(global);
                            return Err(BatchError::NonFinite {
                                path: path.to_path_buf(),
                                dataset: self.store.dataset().to_string(),
                                row,
                            });
                        }
                        OnNonFinite::Skip => batch.skipped += 1,
                    }
                }
            }
            self.pos.cursor = end as u64;
            if scanned_this_pass >= total && finite_this_pass == 0 {
                return Err(BatchError::NoFiniteRows {
                    path: self.store.locate(0).0.to_path_buf(),
                    dataset: self.store.dataset().to_string(),
                });
            }
        }
        Ok(batch)
    }
}
