//! `store info --scan`: read every row of a store once and report what a user checks before a long
//! job: rows with NaN/Inf, the mean norm, and the read throughput.

use crate::data::block::Block;
use crate::data::store::{Store, StoreError};
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// The result of a full read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScanResult {
    /// Rows read.
    pub rows: u64,
    /// Rows containing NaN.
    pub nan_rows: u64,
    /// Rows containing ±Inf (and no NaN).
    pub inf_rows: u64,
    /// Mean ‖x‖ over finite rows.
    pub mean_norm: f64,
    /// Seconds spent reading.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_s: f64,
    /// Megabytes per second, counted as f32.
    pub mb_per_s_f32: f64,
}

/// Totals over some rows.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    nan: u64,
    inf: u64,
    finite: u64,
    norm_sum: f64,
}

impl Totals {
    fn add(self, o: Totals) -> Totals {
        Totals {
            nan: self.nan + o.nan,
            inf: self.inf + o.inf,
            finite: self.finite + o.finite,
            norm_sum: self.norm_sum + o.norm_sum,
        }
    }

    /// Count one decoded row; `finite` is what decoding found.
    fn row(mut self, row: &[f32], finite: bool) -> Totals {
        if finite {
            self.norm_sum += sum_squares(row).sqrt();
            self.finite += 1;
        } else if row.iter().any(|v| v.is_nan()) {
            self.nan += 1;
        } else {
            self.inf += 1;
        }
        self
    }
}

/// Σ v² in f64, summed in eight f32 lanes per 8-value step (which vectorises) and the lanes
/// then added in f64: the f32 partial sums carry a relative error near 1e-7·√(d/8), far below
/// what a mean norm is read for.
fn sum_squares(row: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v * v;
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>()
        + tail.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()
}

/// Read all rows in blocks of `block` rows, calling `progress(done, total)` after each. Each
/// block is read in its stored type (straight from the file's map where possible) and every row
/// is decoded and counted in one pass, rows spread over the rayon pool.
pub fn scan(
    store: &Store,
    block: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<ScanResult, StoreError> {
    let (rows, d) = (store.rows(), store.d_in());
    let mut buf = Block::default();
    let mut totals = Totals::default();
    let t0 = Instant::now();
    let mut start = 0;
    while start < rows {
        let n = block.min(rows - start);
        store.read_block(start, n, &mut buf)?;
        let b = &buf;
        totals = totals.add(
            (0..n)
                .into_par_iter()
                .with_min_len(256)
                .fold(
                    || (vec![0f32; d], Totals::default()),
                    |(mut row, t), r| {
                        let finite = b.decode_row(r, 1.0, &mut row);
                        let t = t.row(&row, finite);
                        (row, t)
                    },
                )
                .map(|(_, t)| t)
                .reduce(Totals::default, Totals::add),
        );
        store.check_reads()?;
        start += n;
        progress(start as u64, rows as u64);
    }
    let seconds = t0.elapsed().as_secs_f64().max(1e-9);
    Ok(ScanResult {
        rows: rows as u64,
        nan_rows: totals.nan,
        inf_rows: totals.inf,
        mean_norm: if totals.finite > 0 {
            totals.norm_sum / totals.finite as f64
        } else {
            f64::NAN
        },
        seconds,
        rows_per_s: rows as f64 / seconds,
        mb_per_s_f32: (rows * d * 4) as f64 / 1e6 / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_by_kind_and_norms_summed() {
        let t = Totals::default()
            .row(&[3.0, 4.0], true)
            .row(&[f32::NAN, f32::INFINITY], false)
            .row(&[1.0, f32::NEG_INFINITY], false);
        assert_eq!((t.finite, t.nan, t.inf), (1, 1, 1));
        assert_eq!(t.norm_sum, 5.0);
        let long: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let exact: f64 = long.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((sum_squares(&long) - exact).abs() < 1e-6 * exact);
    }
}
