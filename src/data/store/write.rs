//! Writing stores (synthetic data, tests) and reading a plain float32 dataset back.

use super::StoreError;
use super::error::msg;
use super::open::open_file;
use crate::data::dtype::Dtype;
use std::path::Path;

/// Extra datasets to store beside the activations.
pub enum Extra<'a> {
    /// A float32 matrix `[rows, cols]`.
    F32(&'a str, &'a [f32], usize, usize),
    /// A float32 vector.
    F32Vec(&'a str, &'a [f32]),
}

/// Write a store: `dataset` = `[rows, d]` activations (chunked, gzip) in `dtype` (bfloat16 as
/// uint16 bits with the attribute `dtype = "bfloat16"`, the form jumpscope reads), plus extras
/// and string attributes.
pub fn write_store(
    path: &Path,
    dataset: &str,
    data: &[f32],
    d: usize,
    dtype: Dtype,
    extras: &[Extra<'_>],
    attrs: &[(&str, &str)],
) -> Result<(), StoreError> {
    hdf5::silence_errors(true);
    let err = |e: hdf5::Error| StoreError::Write {
        path: path.into(),
        reason: msg(e),
    };
    let rows = data.len() / d;
    let file = hdf5::File::create(path).map_err(err)?;
    let chunk_rows = rows.clamp(1, 1024);
    let arr = ndarray::ArrayView2::from_shape((rows, d), data).map_err(|e| StoreError::Write {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let builder = || file.new_dataset_builder().chunk((chunk_rows, d)).deflate(4);
    match dtype {
        Dtype::F32 => builder().with_data(&arr).create(dataset).map(drop),
        Dtype::F64 => builder()
            .with_data(&arr.mapv(f64::from))
            .create(dataset)
            .map(drop),
        Dtype::F16 => builder()
            .with_data(&arr.mapv(half::f16::from_f32))
            .create(dataset)
            .map(drop),
        Dtype::Bf16 => {
            let bits = arr.mapv(|v| half::bf16::from_f32(v).to_bits());
            let name: hdf5::types::VarLenUnicode = "bfloat16".parse().expect("ASCII text");
            builder().with_data(&bits).create(dataset).and_then(|ds| {
                ds.new_attr::<hdf5::types::VarLenUnicode>()
                    .create("dtype")
                    .and_then(|a| a.write_scalar(&name))
            })
        }
    }
    .map_err(err)?;
    for e in extras {
        match e {
            Extra::F32(name, v, r, c) => {
                let a = ndarray::ArrayView2::from_shape((*r, *c), v).map_err(|e| {
                    StoreError::Write {
                        path: path.into(),
                        reason: e.to_string(),
                    }
                })?;
                file.new_dataset_builder()
                    .with_data(&a)
                    .create(*name)
                    .map_err(err)?;
            }
            Extra::F32Vec(name, v) => {
                file.new_dataset_builder()
                    .with_data(*v)
                    .create(*name)
                    .map_err(err)?;
            }
        }
    }
    for (k, v) in attrs {
        let s: hdf5::types::VarLenUnicode = v.parse().map_err(|_| StoreError::Write {
            path: path.into(),
            reason: format!("attribute {k} is not valid text"),
        })?;
        file.new_attr::<hdf5::types::VarLenUnicode>()
            .create(*k)
            .and_then(|a| a.write_scalar(&s))
            .map_err(err)?;
    }
    Ok(())
}

/// Read a float32 dataset of any shape as a flat vector with its shape.
pub fn read_f32_dataset(path: &Path, name: &str) -> Result<(Vec<f32>, Vec<usize>), StoreError> {
    let file = open_file(path)?;
    let ds = file.dataset(name).map_err(|_| StoreError::MissingDataset {
        path: path.into(),
        dataset: name.into(),
        found: file
            .member_names()
            .map(|n| n.join(", "))
            .unwrap_or_default(),
    })?;
    let v = ds.read_raw::<f32>().map_err(|e| StoreError::Read {
        path: path.into(),
        dataset: name.into(),
        reason: msg(e),
    })?;
    Ok((v, ds.shape()))
}
