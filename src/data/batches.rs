//! Batches from a store: block-shuffled reading, the NaN/Inf policy, and a resumable position.
//!
//! Each epoch visits the store's rows once. With shuffling, the rows are cut into blocks of
//! `block_rows`; an epoch takes the blocks in a permuted order and the rows of each block in a
//! permuted order, both derived from `(seed, epoch, block)` alone. The whole reading state is
//! therefore the [`Position`] `(epoch, cursor)`: a checkpoint stores it, and a resumed run reads
//! the same rows in the same order as an uninterrupted one, with no RNG state to carry.

use crate::data::block::{Block, decode};
use crate::data::dtype::Dtype;
use crate::data::store::{Store, StoreError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What to do with a batch that contains NaN or Inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNonFinite {
    /// Drop the offending rows, count them, and go on.
    Skip,
    /// Stop the run with an error naming the store and the row.
    Stop,
}

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

/// A batch's values, `[rows, d_in]` row-major.
#[derive(Debug, Clone)]
pub enum Rows {
    /// f32, already multiplied by the input scale factor.
    F32(Vec<f32>),
    /// float16 bits as stored (little endian), converted and scaled by the trainer as it uploads
    /// the batch: the reader thread then only copies half the bytes.
    F16 {
        /// The rows' bytes.
        bytes: Vec<u8>,
        /// The input scale factor still to apply.
        scale: f32,
    },
}

impl Default for Rows {
    fn default() -> Self {
        Rows::F32(Vec::new())
    }
}

impl Rows {
    /// The values as scaled f32 (a copy).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Rows::F32(v) => v.clone(),
            Rows::F16 { bytes, scale } => {
                let mut out = vec![0.0f32; bytes.len() / 2];
                // converted in 4096-value pieces on the rayon pool
                out.par_chunks_mut(4096)
                    .zip(bytes.par_chunks(8192))
                    .for_each(|(o, b)| {
                        decode(Dtype::F16, b, *scale, o);
                    });
                out
            }
        }
    }
}

/// One batch on the host.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The values.
    pub data: Rows,
    /// Rows in `data`.
    pub rows: usize,
    /// Rows dropped for NaN/Inf while filling this batch.
    pub skipped: usize,
    /// Epochs that began while filling this batch.
    pub new_epochs: u64,
    /// A transcoder's targets of these rows, `[rows, d_out]` f32, already multiplied by the
    /// target's scale factor (`None` without a target store).
    pub target: Option<Vec<f32>>,
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
    /// The block being read: its index, row order, and rows (in the stored element type).
    cache: Option<(usize, Vec<u32>, Block)>,
    /// The cached block's `mask` (rows to train on), when the store has one.
    cache_mask: Option<Vec<bool>>,
    /// A block's buffer kept for the next block, so each block does not fault in fresh pages.
    spare: Block,
    /// A transcoder's target store, read with the input.
    target: Option<Target>,
}

/// A transcoder's target store, read beside the input store block for block: the same blocks,
/// the same order within them, the input's mask, and a pair dropped when either row is not
/// finite.
struct Target {
    store: Store,
    /// The target scale factor (1 / the target's own scale).
    scale: f32,
    /// The block of the target store that pairs with the input's cached block.
    cache: Option<(usize, Block)>,
    spare: Block,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("store", &self.store)
            .field("pos", &self.pos)
            .finish()
    }
}

/// Fill rows `at..at + n` of `buf` (rows of `w` elements) with `row(i, dst)` on the rayon pool;
/// returns each row's verdict (finite or not).
fn gather<T: Send>(
    buf: &mut [T],
    w: usize,
    at: usize,
    n: usize,
    row: impl Fn(usize, &mut [T]) -> bool + Sync,
) -> Vec<bool> {
    buf[at * w..(at + n) * w]
        .par_chunks_mut(w)
        .enumerate()
        .with_min_len(64)
        .map(|(i, dst)| row(i, dst))
        .collect()
}

/// Move the rows marked finite among rows `at..` of `buf` down over the others, in order.
fn compact<T: Copy>(buf: &mut [T], w: usize, at: usize, finite: &[bool]) {
    let mut kept = at;
    for (i, &ok) in finite.iter().enumerate() {
        if ok {
            if kept != at + i {
                let from = (at + i) * w;
                buf.copy_within(from..from + w, kept * w);
            }
            kept += 1;
        }
    }
}

/// No NaN or ±Inf among little-endian f16 values (exponent bits all set), tested four values
/// per 64-bit word with the "has a zero lane" bit trick, which compiles to a few wide operations
/// (a per-value loop over byte pairs did not vectorise and cost more than the copy).
fn f16_row_finite(bytes: &[u8]) -> bool {
    const EXP: u64 = 0x7c00_7c00_7c00_7c00;
    const LOW: u64 = 0x0001_0001_0001_0001;
    const HIGH: u64 = 0x8000_8000_8000_8000;
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let mut hit = 0u64;
    for c in words {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        // a lane of x is zero exactly where that value's exponent bits are all set
        let x = (w & EXP) ^ EXP;
        hit |= x.wrapping_sub(LOW) & !x & HIGH;
    }
    hit == 0
        && tail
            .chunks_exact(2)
            .all(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 != 0x7c00)
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
            cache_mask: None,
            spare: Block::default(),
            target: None,
        }
    }

    /// Read `store`'s rows as the targets of the input rows, multiplied by `scale` (a
    /// transcoder; the caller checked that the rows pair, `data::pair::check`).
    pub fn with_target(mut self, store: Store, scale: f32) -> Self {
        self.target = Some(Target {
            store,
            scale,
            cache: None,
            spare: Block::default(),
        });
        self
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
        if let Some((_, _, old)) = self.cache.take() {
            self.spare = old;
        }
    }

    fn block_len(&self, b: usize) -> usize {
        (self.train_rows - b * self.block_rows).min(self.block_rows)
    }

    fn load_block(&mut self, b: usize) -> Result<(), StoreError> {
        if self.cache.as_ref().is_some_and(|c| c.0 == b) {
            return Ok(());
        }
        let len = self.block_len(b);
        let mut data = match self.cache.take() {
            Some((_, _, old)) => old,
            None => std::mem::take(&mut self.spare),
        };
        self.store.read_block(b * self.block_rows, len, &mut data)?;
        self.cache_mask = self.store.read_mask(b * self.block_rows, len)?;
        if let Some(t) = &mut self.target {
            let mut tdata = match t.cache.take() {
                Some((_, old)) => old,
                None => std::mem::take(&mut t.spare),
            };
            t.store.read_block(b * self.block_rows, len, &mut tdata)?;
            t.cache = Some((b, tdata));
        }
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
        self.next_batch_into(rows, Rows::default())
    }

    /// Whether batches keep float16 rows as stored: the store is read directly as f16, and no
    /// f16 value can overflow once scaled (so testing the stored bits for NaN/Inf is exact).
    fn half_batches(&self) -> bool {
        // a transcoder's pairs are checked and compacted together, as f32
        self.store.direct_kind() == Some(Dtype::F16)
            && (65504.0 * self.scale).is_finite()
            && self.target.is_none()
    }

    /// [`Batcher::next_batch`] written into `buf`, a spent batch's buffer: reusing it spares the
    /// page faults of fresh memory, which otherwise cost as much as reading the rows.
    pub fn next_batch_into(&mut self, rows: usize, buf: Rows) -> Result<Batch, BatchError> {
        let d = self.store.d_in();
        // every slot is overwritten before use; only a longer batch than before needs zeroing
        let data = if self.half_batches() {
            let mut bytes = match buf {
                Rows::F16 { bytes, .. } => bytes,
                Rows::F32(_) => Vec::new(),
            };
            bytes.resize(rows * d * 2, 0);
            Rows::F16 {
                bytes,
                scale: self.scale,
            }
        } else {
            let mut v = match buf {
                Rows::F32(v) => v,
                Rows::F16 { .. } => Vec::new(),
            };
            v.resize(rows * d, 0.0);
            Rows::F32(v)
        };
        let e = self.target.as_ref().map_or(0, |t| t.store.d_in());
        let mut batch = Batch {
            data,
            rows: 0,
            skipped: 0,
            new_epochs: 0,
            target: self.target.as_ref().map(|_| vec![0.0; rows * e]),
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
            let (_, perm, block) = self.cache.as_ref().expect("block loaded above");
            let end = (s + perm.len()).min(cur + rows - batch.rows);
            let scale = self.scale;
            let at = batch.rows;
            // The rows this batch takes from the block, in file order: a batch is a set (the
            // loss averages over it), and visiting a random subset in ascending order keeps the
            // page and TLB accesses sequential, which made shuffled reads from the page cache
            // about twice as fast (address translation dominates random 1-2 KiB row reads).
            let mut take = perm[cur - s..end - s].to_vec();
            // positions the store's `mask` leaves out (special tokens) are passed over
            if let Some(mask) = &self.cache_mask {
                take.retain(|&r| mask[r as usize]);
            }
            take.sort_unstable();
            let n = take.len();
            let src = |i: usize| take[i] as usize;
            // gather (converting and scaling f32 batches) and test each row on the rayon pool,
            // then close the gaps of rows dropped as non-finite
            // a transcoder's targets: which of the pairs' target rows are finite
            let target_finite = match (&self.target, &mut batch.target) {
                (Some(t), Some(tv)) => {
                    let (_, tblock) = t.cache.as_ref().expect("target block loaded above");
                    let ts = t.scale;
                    Some(gather(tv, e, at, n, |i, dst| {
                        tblock.decode_row(src(i), ts, dst)
                    }))
                }
                _ => None,
            };
            let finite = match &mut batch.data {
                Rows::F32(v) => {
                    let mut f = gather(v, d, at, n, |i, dst| block.decode_row(src(i), scale, dst));
                    if let (Some(tf), Some(tv)) = (&target_finite, &mut batch.target) {
                        f.iter_mut().zip(tf).for_each(|(a, b)| *a &= *b);
                        compact(tv, e, at, &f);
                    }
                    compact(v, d, at, &f);
                    f
                }
                Rows::F16 { bytes, .. } => {
                    let f = gather(bytes, 2 * d, at, n, |i, dst| {
                        let row = block.raw_row(src(i), d).expect("f16 batches read f16 rows");
                        dst.copy_from_slice(row);
                        f16_row_finite(dst)
                    });
                    compact(bytes, 2 * d, at, &f);
                    f
                }
            };
            scanned_this_pass += (end - cur) as u64;
            let kept = at + finite.iter().filter(|&&ok| ok).count();
            for (i, _) in finite.iter().enumerate().filter(|(_, ok)| !**ok) {
                let global = b * self.block_rows + src(i);
                match self.on_nonfinite {
                    OnNonFinite::Stop => {
                        // the store whose row is not finite: the target's when the input's is
                        let store = match (&target_finite, &self.target) {
                            (Some(tf), Some(t)) if !tf[i] => &t.store,
                            _ => &self.store,
                        };
                        let (path, row) = store.locate(global);
                        return Err(BatchError::NonFinite {
                            path: path.to_path_buf(),
                            dataset: store.dataset().to_string(),
                            row,
                        });
                    }
                    OnNonFinite::Skip => batch.skipped += 1,
                }
            }
            finite_this_pass += kept - batch.rows;
            batch.rows = kept;
            self.pos.cursor = end as u64;
            if scanned_this_pass >= total && finite_this_pass == 0 {
                return Err(BatchError::NoFiniteRows {
                    path: self.store.locate(0).0.to_path_buf(),
                    dataset: self.store.dataset().to_string(),
                });
            }
        }
        // rows read from a map whose file shrank under it are zeros, never a batch
        self.store.check_reads()?;
        if let (Some(t), Some(tv)) = (&self.target, &mut batch.target) {
            t.store.check_reads()?;
            tv.truncate(batch.rows * e);
        }
        match &mut batch.data {
            Rows::F32(v) => v.truncate(batch.rows * d),
            Rows::F16 { bytes, .. } => bytes.truncate(batch.rows * d * 2),
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::f16_row_finite;

    #[test]
    fn f16_rows_with_nan_or_inf_are_caught_in_any_lane() {
        let ok: Vec<half::f16> = (0..23)
            .map(|i| half::f16::from_f32(i as f32 * 1000.0 - 9000.0))
            .chain([
                half::f16::MAX,
                half::f16::MIN,
                half::f16::MIN_POSITIVE_SUBNORMAL,
            ])
            .collect();
        let bytes = |v: &[half::f16]| v.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>();
        assert!(f16_row_finite(&bytes(&ok)));
        for bad in [half::f16::NAN, half::f16::INFINITY, half::f16::NEG_INFINITY] {
            for at in 0..ok.len() {
                let mut v = ok.clone();
                v[at] = bad;
                assert!(!f16_row_finite(&bytes(&v)), "{bad} at {at}");
            }
        }
    }
}
