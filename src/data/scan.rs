//! `store info --scan`: read every row of a store once and report what a user checks before a long
//! job: rows with NaN/Inf, the mean norm, and the read throughput.

use crate::data::store::{Store, StoreError};
use serde::Serialize;
use std::time::Instant;

/// The result of a full read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScanReport {
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

/// Read all rows in blocks of `block` rows, calling `progress(done, total)` after each.
pub fn scan(
    store: &Store,
    block: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<ScanReport, StoreError> {
    let (rows, d) = (store.rows(), store.d_in());
    let mut buf = Vec::with_capacity(block * d);
    let (mut nan, mut inf, mut norm_sum, mut finite) = (0u64, 0u64, 0f64, 0u64);
    let t0 = Instant::now();
    let mut start = 0;
    while start < rows {
        let n = block.min(rows - start);
        buf.clear();
        store.read_rows(start, n, &mut buf)?;
        for row in buf.chunks(d) {
            if row.iter().any(|v| v.is_nan()) {
                nan += 1;
            } else if row.iter().any(|v| v.is_infinite()) {
                inf += 1;
            } else {
                norm_sum += row
                    .iter()
                    .map(|&v| (v as f64) * (v as f64))
                    .sum::<f64>()
                    .sqrt();
                finite += 1;
            }
        }
        start += n;
        progress(start as u64, rows as u64);
    }
    let seconds = t0.elapsed().as_secs_f64().max(1e-9);
    Ok(ScanReport {
        rows: rows as u64,
        nan_rows: nan,
        inf_rows: inf,
        mean_norm: if finite > 0 {
            norm_sum / finite as f64
        } else {
            f64::NAN
        },
        seconds,
        rows_per_s: rows as f64 / seconds,
        mb_per_s_f32: (rows * d * 4) as f64 / 1e6 / seconds,
    })
}
