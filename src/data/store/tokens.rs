//! Tokens beside the activations: ids, a `vocab`, or per-token strings (`token_strs`).

use super::error::msg;
use super::{Store, StoreError};
use ndarray::{Ix2, s};

impl Store {
    /// The vocabulary (`vocab`: one string per token id) of the first file, if it has one.
    pub fn vocab(&self) -> Result<Option<Vec<String>>, StoreError> {
        if let Some(v) = &self.vocab_override {
            return Ok(Some(v.clone()));
        }
        let Some(sh) = self.shards().first() else {
            return Ok(None);
        };
        let file = sh.ds.file().map_err(|e| self.read_err(sh, e))?;
        let Some(ds) = super::open::companion(&file, &self.dataset, "vocab") else {
            return Ok(None);
        };
        read_strings(&ds)
            .map(Some)
            .map_err(|e| StoreError::BadDataset {
                path: sh.path.clone(),
                dataset: "vocab".into(),
                problem: format!("{}: expected variable-length strings", msg(e)),
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
            .shards()
            .iter()
            .map(|sh| {
                sh.ds
                    .file()
                    .ok()
                    .and_then(|f| super::open::companion(&f, &self.dataset, "token_strs"))
            })
            .collect();
        if !per_token.is_empty() && per_token.iter().all(Option::is_some) {
            let mut out = Vec::with_capacity(end.saturating_sub(start));
            let mut row = start;
            while row < end {
                let k = self.shard_of(row);
                let sh = &self.shards()[k];
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
                    problem: format!("{}: expected variable-length strings", msg(e)),
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

    /// Read `n` rows from global row `start` as [`Store::read_rows`] does (appended to `out`),
    /// leaving out the rows a `mask` leaves out of training: what training, its held-out
    /// evaluation, the input scale and `eval` all read.
    pub fn read_kept_rows(
        &self,
        start: usize,
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), StoreError> {
        self.read_kept_rows_by(self, start, n, out)
    }

    /// [`Store::read_kept_rows`] with the `mask` of store `by` (a transcoder's target rows are
    /// kept or left out with their input rows).
    pub fn read_kept_rows_by(
        &self,
        by: &Store,
        start: usize,
        n: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), StoreError> {
        let Some(mask) = by.read_mask(start, n)? else {
            return self.read_rows(start, n, out);
        };
        let mut rows = Vec::new();
        self.read_rows(start, n, &mut rows)?;
        out.extend(
            rows.chunks(self.d_in())
                .zip(&mask)
                .filter(|(_, keep)| **keep)
                .flat_map(|(row, _)| row.iter().copied()),
        );
        Ok(())
    }

    /// Whether each of `n` rows from global row `start` is trained on (`mask` ≠ 0; rows of files
    /// without a mask are); `None` when no file has a mask.
    pub fn read_mask(&self, start: usize, n: usize) -> Result<Option<Vec<bool>>, StoreError> {
        if !self.has_mask() {
            return Ok(None);
        }
        let end = (start + n).min(self.rows);
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        let mut row = start;
        while row < end {
            let sh = &self.shards()[self.shard_of(row)];
            let (lo, hi) = (row - sh.start, (end - sh.start).min(sh.rows));
            match (&sh.mask, sh.seq_len) {
                (None, _) => out.extend(std::iter::repeat_n(true, hi - lo)),
                (Some(m), None) => {
                    let a = m
                        .read_slice_1d::<i64, _>(s![lo..hi])
                        .map_err(|e| self.read_err(sh, e))?;
                    out.extend(a.iter().map(|&v| v != 0));
                }
                (Some(m), Some(l)) => {
                    let (q0, q1) = (lo / l, hi.div_ceil(l));
                    let a = m
                        .read_slice::<i64, _, Ix2>(s![q0..q1, ..])
                        .map_err(|e| self.read_err(sh, e))?;
                    out.extend(a.iter().skip(lo - q0 * l).take(hi - lo).map(|&v| v != 0));
                }
            }
            row = sh.start + hi;
        }
        Ok(Some(out))
    }

    /// Token ids of `n` rows from global row `start` (empty when the store has none).
    pub fn read_token_ids(&self, start: usize, n: usize) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::with_capacity(n);
        if !self.has_token_ids() {
            return Ok(out);
        }
        if let Some(c) = self.cache() {
            return Ok(c.read_token_ids(start, n)?.unwrap_or_default());
        }
        let end = (start + n).min(self.rows);
        let mut row = start;
        while row < end {
            let sh = &self.shards()[self.shard_of(row)];
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
fn read_string_rows(ds: &hdf5::Dataset, lo: usize, hi: usize) -> Result<Vec<String>, hdf5::Error> {
    let shape = ds.shape();
    if shape.len() == 1 {
        if let Ok(v) = ds.read_slice_1d::<hdf5::types::VarLenUnicode, _>(s![lo..hi]) {
            return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
        }
        return ds
            .read_slice_1d::<hdf5::types::VarLenAscii, _>(s![lo..hi])
            .map(|v| v.iter().map(|s| s.as_str().to_string()).collect());
    }
    // [n_seq, seq_len]: read the sequences that hold the rows
    let l = shape.last().copied().unwrap_or(1).max(1);
    let (q0, q1) = (lo / l, hi.div_ceil(l));
    let rows: Vec<String> =
        if let Ok(v) = ds.read_slice::<hdf5::types::VarLenUnicode, _, Ix2>(s![q0..q1, ..]) {
            v.iter().map(|s| s.as_str().to_string()).collect()
        } else {
            ds.read_slice::<hdf5::types::VarLenAscii, _, Ix2>(s![q0..q1, ..])?
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        };
    Ok(rows.into_iter().skip(lo - q0 * l).take(hi - lo).collect())
}

fn read_strings(ds: &hdf5::Dataset) -> Result<Vec<String>, hdf5::Error> {
    if let Ok(v) = ds.read_raw::<hdf5::types::VarLenUnicode>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    ds.read_raw::<hdf5::types::VarLenAscii>()
        .map(|v| v.iter().map(|s| s.as_str().to_string()).collect())
}
