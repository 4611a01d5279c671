//! A transcoder's two stores read as one: the input site (`data.stores`) and the target site
//! (`data.target_stores`), whose rows pair up one to one. [`check`] refuses stores that cannot
//! pair; the batcher (`data::batches`) reads both with one order, one mask and one non-finite
//! rule, so that shuffling, held-out rows and skipped rows act on pairs.

use crate::data::store::{Store, StoreError};
/// Whether `target`'s rows pair with `input`'s: the same number of rows, and where both are
/// files, the same number of files with the same rows each (files pair in order).
pub fn check(input: &Store, target: &Store) -> Result<(), StoreError> {
    let first = |s: &Store| s.paths()[0].to_path_buf();
    if input.rows() != target.rows() {
        return Err(StoreError::Unpaired {
            input: first(input),
            input_rows: input.rows(),
            target: first(target),
            target_rows: target.rows(),
            what: String::new(),
        });
    }
    if input.is_cache() || target.is_cache() {
        return Ok(());
    }
    let (a, b) = (input.file_rows(), target.file_rows());
    if a.len() != b.len() {
        return Err(StoreError::UnpairedFiles {
            input: first(input),
            input_files: a.len(),
            target: first(target),
            target_files: b.len(),
        });
    }
    let (ap, bp) = (input.paths(), target.paths());
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        if ra != rb {
            return Err(StoreError::Unpaired {
                input: ap[i].to_path_buf(),
                input_rows: *ra,
                target: bp[i].to_path_buf(),
                target_rows: *rb,
                what: format!(" in file {} of {}", i + 1, a.len()),
            });
        }
    }
    Ok(())
}
