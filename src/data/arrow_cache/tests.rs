//! Caches in the layout `datasets` writes for SAELens (checked against one written by `datasets`
//! 5.2 in this project's companion venv: Arrow IPC streams, the hook as `list<list<float>>` with
//! the Array2D extension name, `token_ids` as `fixed_size_list<int32>`), written here with
//! arrow's own stream writer: several files and record batches, float32 and float16.

use super::*;
use arrow_array::RecordBatch;
use arrow_array::builder::{
    FixedSizeListBuilder, Float16Builder, Float32Builder, Int32Builder, ListBuilder,
};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Field, Schema};
use half::f16;

const HOOK: &str = "blocks.0.hook_resid_post";

/// Value of token `t` of sequence `s`, dimension `j`.
fn value(s: usize, t: usize, j: usize) -> f32 {
    (s * 100 + t) as f32 + j as f32 / 8.0
}

/// Write `files` Arrow files of `batches` record batches of `seqs` sequences each.
fn write_cache(
    dir: &Path,
    files: usize,
    batches: usize,
    seqs: usize,
    ctx: usize,
    d: usize,
    float16: bool,
) {
    let elem = if float16 {
        DataType::Float16
    } else {
        DataType::Float32
    };
    let inner = Field::new(
        "item",
        DataType::List(Arc::new(Field::new("item", elem, true))),
        true,
    );
    let mut meta = HashMap::new();
    meta.insert(
        "ARROW:extension:name".to_string(),
        "datasets.features.features.Array2DExtensionType".to_string(),
    );
    let hook = Field::new(HOOK, DataType::List(Arc::new(inner)), true).with_metadata(meta);
    let ids = Field::new(
        "token_ids",
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Int32, true)),
            ctx as i32,
        ),
        true,
    );
    let schema = Arc::new(Schema::new(vec![hook, ids]));
    let mut names = Vec::new();
    let mut s = 0;
    for fi in 0..files {
        let name = format!("data-{fi:05}-of-{files:05}.arrow");
        let f = std::fs::File::create(dir.join(&name)).unwrap();
        let mut w = StreamWriter::try_new(f, &schema).unwrap();
        for _ in 0..batches {
            let (acts, ids): (ArrayRef, ArrayRef) = if float16 {
                let mut b = ListBuilder::new(ListBuilder::new(Float16Builder::new()));
                let mut ib = FixedSizeListBuilder::new(Int32Builder::new(), ctx as i32);
                for k in 0..seqs {
                    for t in 0..ctx {
                        for j in 0..d {
                            b.values()
                                .values()
                                .append_value(f16::from_f32(value(s + k, t, j)));
                        }
                        b.values().append(true);
                        ib.values().append_value(((s + k) * 10 + t) as i32);
                    }
                    b.append(true);
                    ib.append(true);
                }
                (Arc::new(b.finish()), Arc::new(ib.finish()))
            } else {
                let mut b = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
                let mut ib = FixedSizeListBuilder::new(Int32Builder::new(), ctx as i32);
                for k in 0..seqs {
                    for t in 0..ctx {
                        for j in 0..d {
                            b.values().values().append_value(value(s + k, t, j));
                        }
                        b.values().append(true);
                        ib.values().append_value(((s + k) * 10 + t) as i32);
                    }
                    b.append(true);
                    ib.append(true);
                }
                (Arc::new(b.finish()), Arc::new(ib.finish()))
            };
            let batch = RecordBatch::try_new(Arc::clone(&schema), vec![acts, ids]).unwrap();
            w.write(&batch).unwrap();
            s += seqs;
        }
        w.finish().unwrap();
        names.push(serde_json::json!({ "filename": name }));
    }
    let state = serde_json::json!({ "_data_files": names, "_fingerprint": "test" });
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
}

fn expected(start: usize, n: usize, ctx: usize, d: usize) -> Vec<f32> {
    (start..start + n)
        .flat_map(|r| (0..d).map(move |j| value(r / ctx, r % ctx, j)))
        .collect()
}

#[test]
fn rows_and_token_ids_read_across_batches_and_files() {
    for float16 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, d) = (4, 3);
        write_cache(dir.path(), 2, 3, 2, ctx, d, float16);
        assert!(is_cache(dir.path()));
        let c = ArrowCache::open(dir.path(), HOOK).unwrap();
        assert_eq!((c.rows(), c.d_in(), c.context()), (2 * 3 * 2 * ctx, d, ctx));
        assert_eq!(c.is_float16(), float16);
        // from the middle of a sequence, across batch and file boundaries
        for (start, n) in [(0, 48), (5, 30), (21, 10), (40, 8)] {
            let mut out = Vec::new();
            c.read_rows(start, n, &mut out).unwrap();
            let mut want = expected(start, n, ctx, d);
            if float16 {
                // what float16 storage holds
                want.iter_mut()
                    .for_each(|v| *v = f16::from_f32(*v).to_f32());
            }
            assert_eq!(out, want, "float16 {float16}: rows {start}+{n}");
            let ids = c.read_token_ids(start, n).unwrap().unwrap();
            let want: Vec<i64> = (start..start + n)
                .map(|r| ((r / ctx) * 10 + r % ctx) as i64)
                .collect();
            assert_eq!(ids, want, "float16 {float16}: ids {start}+{n}");
        }
    }
}

#[test]
fn what_is_not_a_cache_or_lacks_the_column_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = ArrowCache::open(dir.path(), HOOK)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a SAELens activation cache"), "{e}");
    write_cache(dir.path(), 1, 1, 2, 4, 3, false);
    let e = ArrowCache::open(dir.path(), "blocks.6.hook_resid_post")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no column `blocks.6.hook_resid_post`")
            && e.contains(HOOK)
            && e.contains("token_ids"),
        "{e}"
    );
    let e = ArrowCache::open(dir.path(), "token_ids")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("column `token_ids`") && e.contains("expected an Array2D"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn a_cache_directory_is_a_store_that_batches_shuffled() {
    use crate::data::batches::OnNonFinite;
    use crate::data::batches::{Batcher, Position};
    use crate::data::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let (ctx, d) = (4, 3);
    write_cache(dir.path(), 2, 3, 2, ctx, d, false);
    let store = Store::open(&[dir.path().to_path_buf()], None).unwrap();
    assert!(store.is_cache() && store.has_token_ids() && !store.has_mask());
    assert_eq!((store.rows(), store.d_in(), store.dataset()), (48, d, HOOK));
    assert_eq!(store.paths(), [dir.path()]);
    assert_eq!(store.sequence_bounds(22), (20, 24));
    let (file, row) = store.locate(30);
    assert!(file.ends_with("data-00001-of-00002.arrow") && row == 6);
    assert_eq!(store.read_token_ids(21, 3).unwrap(), [51, 52, 53]);
    assert_eq!(store.attributes()["hook"], HOOK);
    // one shuffled epoch returns every row once
    let mut b =
        Batcher::new(store, true, 7, OnNonFinite::Stop, Position::default()).buffer_rows(16);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let batch = b.next_batch(8).unwrap();
        let v = batch.data.to_f32();
        seen.extend(v.chunks(d).map(|r| r[0] as i64));
    }
    let mut want: Vec<i64> = (0..48).map(|r| value(r / ctx, r % ctx, 0) as i64).collect();
    assert_ne!(seen, want, "shuffled");
    seen.sort_unstable();
    want.sort_unstable();
    assert_eq!(seen, want);
}

#[test]
fn a_cache_with_the_hdf5_files_or_truncated_under_the_reader_is_an_error() {
    use crate::data::store::Store;
    let dir = tempfile::tempdir().unwrap();
    write_cache(dir.path(), 2, 1, 2, 4, 3, false);
    let other = dir.path().join("x.h5");
    let e = Store::open(&[dir.path().to_path_buf(), other], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be the only store"), "{e}");
    let store = Store::open(&[dir.path().to_path_buf()], None).unwrap();
    let f = dir.path().join("data-00001-of-00002.arrow");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let mut out = Vec::new();
    store.read_rows(0, 8, &mut out).unwrap();
    let e = store.read_rows(8, 8, &mut out).unwrap_err().to_string();
    assert!(
        e.contains("data-00001-of-00002.arrow") && e.contains("changed size"),
        "{e}"
    );
}
