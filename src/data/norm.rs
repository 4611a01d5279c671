//! The input scale: C with C² = mean ‖x‖² over a sample, so that training sees E‖x‖² = 1.

use crate::data::store::{Store, StoreError};

/// Estimate C from up to `sample_tokens` finite rows spread evenly over the first `rows` rows of
/// the store (the training rows: a held-out tail must not inform the training statistics).
pub fn estimate_scale(store: &Store, sample_tokens: usize, rows: usize) -> Result<f64, StoreError> {
    let rows = rows.min(store.rows());
    let d = store.d_in();
    let want = sample_tokens.min(rows);
    // read in runs of up to 256 rows at evenly spaced places, so a sorted store is sampled fairly
    let run = want.clamp(1, 256);
    let runs = want.div_ceil(run);
    let mut buf = Vec::with_capacity(run * d);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for k in 0..runs {
        let start = (k as u128 * rows as u128 / runs as u128) as usize;
        buf.clear();
        let len = run.min(rows - start);
        // positions a `mask` leaves out of training do not set the scale either
        store.read_kept_rows(start, len, &mut buf)?;
        for row in buf.chunks(d) {
            if row.iter().all(|v| v.is_finite()) {
                sum += row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                n += 1;
            }
        }
    }
    let ms = if n > 0 { sum / n as f64 } else { 1.0 };
    Ok(if ms > 0.0 { ms.sqrt() } else { 1.0 })
}
