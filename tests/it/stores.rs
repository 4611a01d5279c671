//! Reading stores written by h5py: every layout and element type we accept gives the same rows,
//! dataset discovery and globs work, and each malformed store is refused with one clear line.

use crate::common::*;
use jumpscope::data::dtype::Dtype;
use jumpscope::data::store::Store;
use std::path::Path;
use tempfile::tempdir;

/// The reference rows every layout below stores: 6 sequences of 5 tokens, d_in 4.
const X: &str = "x = (np.arange(6*5*4, dtype=np.float64).reshape(6*5, 4) / 7.0 - 3.0)";

fn rows(paths: &[&Path], dataset: Option<&str>) -> Vec<f32> {
    let paths: Vec<_> = paths.iter().map(|p| p.to_path_buf()).collect();
    let s = Store::open(&paths, dataset).unwrap();
    let mut out = Vec::new();
    // read in awkward pieces so that reads cross sequence and file boundaries
    let mut start = 0;
    for n in [1, 7, 3, 11, 100] {
        s.read_rows(start, n, &mut out).unwrap();
        start += n;
    }
    assert_eq!(start.min(s.rows()), s.rows());
    out
}

fn expected() -> Vec<f32> {
    (0..120).map(|v| (v as f64 / 7.0 - 3.0) as f32).collect()
}

#[test]
fn our_writer_writes_every_dtype_and_reads_it_back() {
    let d = tempdir().unwrap();
    // values every dtype holds exactly: small multiples of 1/8
    let x: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) / 8.0).collect();
    for dtype in [Dtype::F32, Dtype::F64, Dtype::F16, Dtype::Bf16] {
        let path = d.path().join(format!("{}.h5", dtype.name()));
        jumpscope::data::store::write_store(&path, "activations", &x, 4, dtype, &[], &[]).unwrap();
        let s = Store::open(std::slice::from_ref(&path), None).unwrap();
        assert_eq!((s.rows(), s.d_in()), (10, 4));
        let mut got = Vec::new();
        s.read_rows(0, 10, &mut got).unwrap();
        assert_eq!(got, x, "{}", dtype.name());
        let info = jumpscope::data::store::info(&[path], None).unwrap();
        assert_eq!(info[0].dtype, dtype.name());
    }
}

#[test]
fn every_layout_and_dtype_reads_the_same_rows() {
    let d = tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    h5py(&format!(
        "{X}\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x.astype(np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f.create_dataset('activations', data=x.reshape(6,5,4).astype(np.float32), chunks=(2,5,4), compression='gzip', shuffle=True)\n\
         with h5py.File('{}', 'w') as f:\n    f.create_dataset('activations', data=x.reshape(6,5,4).astype(np.float16), chunks=(1,5,4), compression='lzf')\n\
         with h5py.File('{}', 'w') as f:\n    f.create_dataset('g/h/acts', data=x)\n\
         b = (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)\n\
         with h5py.File('{}', 'w') as f:\n    ds = f.create_dataset('resid', data=b)\n    ds.attrs['dtype'] = 'bfloat16'\n",
        p("f32.h5").display(),
        p("f32_3d_gzip.h5").display(),
        p("f16_3d_lzf.h5").display(),
        p("f64_group.h5").display(),
        p("bf16.h5").display(),
    ));
    let want = expected();
    let close = |got: &[f32], bits: u32, what: &str| {
        assert_eq!(got.len(), want.len(), "{what}: row count");
        let tol = 2f32.powi(-(bits as i32));
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{what}: {a} vs {b}"
            );
        }
    };
    close(&rows(&[&p("f32.h5")], None), 23, "f32 2-D");
    close(
        &rows(&[&p("f32_3d_gzip.h5")], None),
        23,
        "f32 3-D gzip+shuffle",
    );
    close(&rows(&[&p("f16_3d_lzf.h5")], None), 10, "f16 3-D lzf");
    close(
        &rows(&[&p("f64_group.h5")], Some("g/h/acts")),
        23,
        "f64 in a group, named",
    );
    // not named: the only float dataset of rank >= 2 is found
    close(
        &rows(&[&p("f64_group.h5")], None),
        23,
        "f64 in a group, discovered",
    );
    // bfloat16 truncation keeps 7 bits
    close(&rows(&[&p("bf16.h5")], None), 7, "bf16 as uint16");
}

#[test]
fn several_files_and_globs_read_as_one_store() {
    let d = tempdir().unwrap();
    h5py(&format!(
        "{X}\nfor i in range(3):\n    with h5py.File('{}/shard-%d.h5' % i, 'w') as f:\n        f['activations'] = x[i*10:(i+1)*10].astype(np.float32)\n        f['token_ids'] = np.arange(i*10, (i+1)*10, dtype=np.int32)\n        f.attrs['model'] = 'toy'\n",
        d.path().display()
    ));
    let pattern = d.path().join("shard-*.h5");
    let got = rows(&[&pattern], None);
    assert_eq!(got, expected());
    let s = Store::open(std::slice::from_ref(&pattern), None).unwrap();
    assert!(s.has_token_ids());
    assert_eq!(s.read_token_ids(8, 4).unwrap(), vec![8, 9, 10, 11]);
    // store info --json: totals and per-file facts
    let o = run(&[
        "store",
        "info",
        pattern.to_str().unwrap(),
        "--json",
        "--scan",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["n_tokens"], 30);
    assert_eq!(j["d_in"], 4);
    assert_eq!(j["files"].as_array().unwrap().len(), 3);
    assert_eq!(j["files"][0]["token_ids"], "token_ids");
    assert_eq!(j["files"][0]["attributes"]["model"], "toy");
    assert_eq!(j["scan"]["rows"], 30);
    assert_eq!(j["scan"]["nan_rows"], 0);
    let norms: Vec<f64> = expected()
        .chunks(4)
        .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let mean = norms.iter().sum::<f64>() / norms.len() as f64;
    assert!((j["scan"]["mean_norm"].as_f64().unwrap() - mean).abs() < 1e-4);
    // a pattern that matches nothing
    let o = run(&[
        "store",
        "info",
        d.path().join("nope-*.h5").to_str().unwrap(),
    ]);
    assert_user_error(&o, &["nope-*.h5", "no file matches"]);
}

#[test]
fn malformed_stores_are_refused_with_one_line() {
    let d = tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    h5py(&format!(
        "with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros(10, np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros((2,2,2,2), np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros((10, 4), np.int32)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros((0, 4), np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f['a'] = np.zeros((3, 4), np.float32)\n    f['b'] = np.zeros((3, 4), np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros((3, 5), np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros((3, 4), np.float32)\n",
        p("rank1.h5").display(),
        p("rank4.h5").display(),
        p("ints.h5").display(),
        p("empty.h5").display(),
        p("two.h5").display(),
        p("wide.h5").display(),
        p("ok.h5").display(),
    ));
    let info = |paths: &[&str]| {
        let mut args = vec!["store", "info"];
        args.extend_from_slice(paths);
        run(&args)
    };
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    assert_user_error(
        &info(&[&s("rank1.h5")]),
        &["rank1.h5", "`activations`", "shape [10]"],
    );
    assert_user_error(
        &info(&[&s("rank4.h5")]),
        &["rank4.h5", "shape [2, 2, 2, 2]"],
    );
    assert_user_error(
        &info(&[&s("ints.h5")]),
        &["ints.h5", "int32", "expected float32"],
    );
    assert_user_error(&info(&[&s("empty.h5")]), &["empty.h5", "empty"]);
    assert_user_error(&info(&[&s("two.h5")]), &["two.h5", "a, b", "data.dataset"]);
    assert_user_error(
        &info(&[&s("ok.h5"), &s("wide.h5")]),
        &["wide.h5", "d_in = 5", "d_in = 4"],
    );
    // a truncated file
    let bytes = std::fs::read(p("ok.h5")).unwrap();
    std::fs::write(p("cut.h5"), &bytes[..bytes.len() / 2]).unwrap();
    assert_user_error(&info(&[&s("cut.h5"), "--scan"]), &["cut.h5"]);
}

#[test]
fn held_out_rows_are_never_trained_on_and_are_reported() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    let tail = d.path().join("tail.h5");
    // row 1000 (inside the held-out last 256 rows) is NaN: a run with on_nonfinite = "stop" would
    // fail if it ever read it for training
    h5py_activations(
        &store,
        "x = np.random.default_rng(1).normal(size=(1024, 16)).astype(np.float32)\nx[1000, 2] = np.nan",
    );
    h5py(&format!(
        "with h5py.File('{}') as f:\n    t = f['activations'][768:]\nwith h5py.File('{}', 'w') as g:\n    g['activations'] = t\n",
        store.display(),
        tail.display()
    ));
    let run_dir = d.path().join("run");
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\neval_tokens = 256\non_nonfinite = \"stop\"\n\
             [sae]\nd_sae = 32\n[train]\nsteps = 30\neval_every = 10\nlog_every = 10\n[run]\nout = \"{}\"\n",
            store.display(),
            run_dir.display()
        ),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("step 30: held-out (255 tokens)"),
        "{}",
        stderr(&o)
    );
    let evals = records(&run_dir, "eval");
    assert_eq!(
        evals.iter().map(|e| e.step()).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    assert!(
        records(&run_dir, "epoch").len() >= 2,
        "30 steps of 64 over 768 rows cross epochs"
    );
    // only the first epoch gets a line of its own; the progress lines count them
    let err = stderr(&o);
    assert_eq!(err.matches("data epoch").count(), 1, "{err}");
    assert!(err.contains("data epoch 1 begins"), "{err}");
    assert!(err.contains("epoch 2"), "{err}");
    // the final report equals `jumpscope eval` of the exported SAE on the held-out rows alone
    let j = eval_json(&run_dir.join("sae"), &tail);
    let Some(Record::Eval { eval: last, .. }) = evals.last() else {
        unreachable!()
    };
    assert_eq!(last.n_tokens, 255);
    assert_eq!(j["n_tokens"], 255);
    for (k, a) in [
        ("l0", last.l0),
        ("mse_raw", last.mse_raw),
        ("mse_norm", last.mse_norm),
        ("fvu", last.fvu),
    ] {
        let b = j[k].as_f64().unwrap();
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{k}: {a} vs {b}");
    }
    // holding out everything is refused
    let o = train_cli(
        &cfg,
        &["data.eval_tokens=1024"],
        &["--out", d.path().join("r2").to_str().unwrap()],
    );
    assert_user_error(
        &o,
        &[
            "data.eval_tokens = 1024",
            "fewer than the store's 1024 rows",
        ],
    );
}

#[test]
fn the_real_sample_store_reads_with_token_ids_vocabulary_and_attributes() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/minilm_l3_resid.h5");
    let s = Store::open(&[p], None).unwrap();
    assert_eq!((s.rows(), s.d_in()), (160 * 128, 384));
    assert!(s.has_token_ids());
    // each 128-token sequence is [CLS] … [SEP]; read across the first sequence boundary
    let ids = s.read_token_ids(120, 16).unwrap();
    let vocab = s
        .vocab()
        .unwrap()
        .expect("the sample store ships its vocabulary");
    assert_eq!(vocab.len(), 30522);
    assert_eq!(vocab[ids[7] as usize], "[SEP]");
    assert_eq!(vocab[ids[8] as usize], "[CLS]");
    let attrs = s.attributes();
    assert_eq!(attrs["layer"], "3");
    assert!(attrs["model"].contains("all-MiniLM-L6-v2"));
    let mut x = Vec::new();
    s.read_rows(0, 256, &mut x).unwrap();
    assert!(x.iter().all(|v| v.is_finite()) && x.iter().any(|v| v.abs() > 1.0));
}

#[test]
fn token_ids_and_vocabulary_are_found_beside_a_dataset_in_a_group_before_the_root() {
    let d = tempdir().unwrap();
    let p = d.path().join("g.h5");
    // the dataset in a group with its ids and vocabulary beside it; decoy ids at the root whose
    // shape does not fit, and a root vocabulary that must lose to the group's
    h5py(&format!(
        "rng = np.random.default_rng(0)\n\
         with h5py.File('{}', 'w') as f:\n    \
         g = f.create_group('model')\n    \
         g['blocks.12.hook_resid_post'] = rng.standard_normal((3, 4, 8)).astype('f4')\n    \
         g['token_ids'] = np.arange(12, dtype='i4').reshape(3, 4)\n    \
         g['vocab'] = np.array([f'tok{{i}}' for i in range(12)], dtype=object)\n    \
         f['token_ids'] = np.zeros((5,), dtype='i4')\n    \
         f['vocab'] = np.array(['root'] * 12, dtype=object)\n",
        p.display()
    ));
    let s = Store::open(
        std::slice::from_ref(&p),
        Some("model/blocks.12.hook_resid_post"),
    )
    .unwrap();
    assert!(s.has_token_ids());
    assert_eq!(s.read_token_ids(5, 3).unwrap(), vec![5, 6, 7]);
    let strs = s.read_token_strings(5, 3).unwrap().unwrap();
    assert_eq!(strs, vec!["tok5", "tok6", "tok7"]);
    let o = run(&[
        "store",
        "info",
        p.to_str().unwrap(),
        "--dataset",
        "model/blocks.12.hook_resid_post",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("token ids    model/token_ids"), "{out}");
    assert!(
        out.contains("vocab        model/vocab (12 strings)"),
        "{out}"
    );
}

#[test]
fn positions_a_mask_leaves_out_are_never_trained_on() {
    use jumpscope::config::OnNonFinite;
    use jumpscope::data::batches::{Batcher, Position};
    let d = tempdir().unwrap();
    let p = d.path().join("m.h5");
    // 8 sequences of 16: position 0 (BOS, say) holds 1000 and is masked out
    h5py(&format!(
        "x = np.random.default_rng(0).standard_normal((8, 16, 4)).astype('f4')\n\
         x[:, 0, :] = 1000.0\n\
         m = np.ones((8, 16), dtype='u1'); m[:, 0] = 0\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x\n    f['mask'] = m\n",
        p.display()
    ));
    let s = Store::open(std::slice::from_ref(&p), None).unwrap();
    assert!(s.has_mask());
    // the input scale ignores the masked positions (with them it would be about 500)
    let scale = jumpscope::data::norm::estimate_scale(&s, 128, 128).unwrap();
    assert!(scale < 5.0, "scale {scale}");
    let mut b = Batcher::new(s, true, 1, OnNonFinite::Stop, Position::default()).buffer_rows(32);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let batch = b.next_batch(30).unwrap();
        let rows = batch.data.to_f32();
        assert!(
            rows.iter().all(|v| v.abs() < 100.0),
            "a masked row was trained on"
        );
        seen.extend(rows.chunks(4).map(|r| r[0].to_bits()));
    }
    assert_eq!(
        seen.len(),
        120,
        "the first epoch is every unmasked row, once"
    );
    let o = run(&["store", "info", p.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("mask         mask"));
    // a mask that does not fit is refused
    h5py(&format!(
        "with h5py.File('{}', 'a') as f:\n    del f['mask']\n    f['mask'] = np.ones((8, 15), dtype='u1')\n",
        p.display()
    ));
    let o = run(&["store", "info", p.to_str().unwrap()]);
    assert_user_error(&o, &["mask", "expected an integer mask of shape [8, 16]"]);
}

#[test]
fn a_store_that_vanishes_mid_run_stops_with_a_checkpoint() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(4096, 3));
    // small shuffle blocks, so that the store is read again and again
    let (cfg, run_dir) = endless_run(d.path(), &store, 5, "shuffle_buffer_tokens = 256", "");
    let child = spawn_training(&cfg, &run_dir, 3);
    std::fs::remove_file(&store).unwrap();
    let out = child.wait();
    assert_user_error(&out, &["s.h5", "vanished during the run"]);
    let ck = jumpscope::train::checkpoint::list(&run_dir);
    assert_eq!(
        ck.len(),
        1,
        "the steps trained before are kept in a checkpoint"
    );
}

#[test]
fn token_strings_come_from_token_strs_or_from_ids_and_the_vocabulary() {
    let d = tempdir().unwrap();
    let (a, b, c) = (
        d.path().join("a.h5"),
        d.path().join("b.h5"),
        d.path().join("c.h5"),
    );
    h5py(&format!(
        "x = np.zeros((2, 3, 4), np.float32)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x\n    f['token_ids'] = np.array([[2, 0, 1], [1, 1, 9]], np.int64)\n    f['vocab'] = np.array(['the', 'cat', 'sat'], dtype=object)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x\n    f['token_strs'] = np.array(['a', 'b', 'c', 'd', 'e', 'f'], dtype=object)\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x\n",
        a.display(),
        b.display(),
        c.display()
    ));
    let strs = |p: &Path, start, n| {
        Store::open(&[p.to_path_buf()], None)
            .unwrap()
            .read_token_strings(start, n)
            .unwrap()
    };
    // across the sequence boundary; an id outside the vocabulary is shown as <id>
    assert_eq!(
        strs(&a, 1, 5),
        Some(vec![
            "the".into(),
            "cat".into(),
            "cat".into(),
            "cat".into(),
            "<9>".into()
        ])
    );
    assert_eq!(
        strs(&b, 2, 3),
        Some(vec!["c".into(), "d".into(), "e".into()])
    );
    assert_eq!(strs(&c, 0, 2), None);
}

#[test]
fn the_input_scale_ignores_the_held_out_rows() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    // training rows have E|x|^2 = 16; the held-out tail is 100x larger
    h5py_activations(
        &store,
        "x = np.random.default_rng(2).normal(size=(1024, 16)).astype(np.float32)\nx[768:] *= 100",
    );
    let c = jumpscope::config::parse(
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\neval_tokens = 256\n[sae]\nd_sae = 8\n[run]\nout = \"{}\"\n",
            store.display(),
            d.path().join("run").display()
        ),
        "t",
        &[],
    )
    .unwrap()
    .validate("t")
    .unwrap();
    let t = jumpscope::train::trainer::Trainer::new(c).unwrap();
    // sqrt(16) = 4 from the training rows; with the tail it would be about 200
    assert!((t.scale() - 4.0).abs() < 0.4, "scale {}", t.scale());
}

#[test]
fn a_store_without_read_permission_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempdir().unwrap();
    let store = d.path().join("locked.h5");
    synth_store(&store, &small_spec(64, 1));
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o000)).unwrap();
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    // root reads everything: as root, run the binary without any capability (setpriv from
    // util-linux), so the file's mode applies while root's own files (LibTorch in a tch build,
    // under ~/.cache) stay reachable
    let mut cmd = if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--bounding-set=-all", "--inh-caps=-all"])
            .arg(env!("CARGO_BIN_EXE_jumpscope"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_jumpscope"))
    };
    let o = cmd
        .args(["store", "info", store.to_str().unwrap()])
        .output()
        .expect("the binary (under setpriv from util-linux when root) runs");
    assert_user_error(&o, &["locked.h5", "Permission denied"]);
}

/// Every row of `paths`, read once with the direct reader and once through HDF5 only.
fn both_paths(paths: &[std::path::PathBuf]) -> (Store, Vec<f32>, Vec<f32>) {
    let mut s = Store::open(paths, None).unwrap();
    let (mut direct, mut lib) = (Vec::new(), Vec::new());
    let mut start = 0;
    // uneven pieces so that reads cross chunk, sequence and file boundaries
    for n in [1, 300, 77, 5000, 1, 10_000] {
        s.set_direct_reads(true);
        s.read_rows(start, n, &mut direct).unwrap();
        s.set_direct_reads(false);
        s.read_rows(start, n, &mut lib).unwrap();
        start += n;
    }
    s.set_direct_reads(true);
    (s, direct, lib)
}

#[test]
fn the_direct_reader_matches_hdf5_on_every_layout_it_takes_and_leaves_the_rest_to_hdf5() {
    use jumpscope::data::dtype::Dtype;
    let d = tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    // 3000 rows of width 24 with NaN, ±Inf, subnormals and extremes sprinkled in
    h5py(&format!(
        "rng = np.random.default_rng(7)\n\
         x = rng.standard_normal((3000, 24)) * 3\n\
         x[5, 3] = np.nan; x[17, 0] = np.inf; x[2999, 23] = -np.inf; x[40, 1] = 6e-8; x[41, 2] = 65504\n\
         b = (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)\n\
         def w(name, data, **kw):\n    with h5py.File(name, 'w') as f:\n        f.create_dataset('activations', data=data, **kw)\n        return f\n\
         w('{d}/f32.h5', x.astype(np.float32))\n\
         w('{d}/f16_chunked.h5', x.astype(np.float16), chunks=(256, 24))\n\
         w('{d}/f16_3d_gzip_shuffle.h5', x.astype(np.float16).reshape(300, 10, 24), chunks=(7, 10, 24), compression='gzip', shuffle=True)\n\
         w('{d}/f32_lzf.h5', x.astype(np.float32), chunks=(100, 24), compression='lzf')\n\
         w('{d}/f64_gzip.h5', x, chunks=(1000, 24), compression='gzip', compression_opts=9)\n\
         with h5py.File('{d}/bf16.h5', 'w') as f:\n    ds = f.create_dataset('activations', data=b, chunks=(512, 24))\n    ds.attrs['dtype'] = 'bfloat16'\n\
         w('{d}/f32_big_endian.h5', x.astype('>f4'))\n\
         w('{d}/f32_half_columns.h5', x.astype(np.float32), chunks=(100, 12))\n\
         w('{d}/f32_fletcher.h5', x.astype(np.float32), chunks=(100, 24), fletcher32=True)\n\
         w('{d}/f32_scaleoffset.h5', x.astype(np.float32)[:, :], chunks=(100, 24), scaleoffset=3)\n\
         with h5py.File('{d}/f32_sparse.h5', 'w') as f:\n    ds = f.create_dataset('activations', shape=(3000, 24), dtype='f4', chunks=(100, 24))\n    ds[:1500] = x[:1500]\n",
        d = d.path().display()
    ));
    let direct = [
        ("f32.h5", Dtype::F32),
        ("f16_chunked.h5", Dtype::F16),
        ("f16_3d_gzip_shuffle.h5", Dtype::F16),
        ("f32_lzf.h5", Dtype::F32),
        ("f64_gzip.h5", Dtype::F64),
        ("bf16.h5", Dtype::Bf16),
    ];
    let same = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    };
    for (name, kind) in direct {
        let (s, a, b) = both_paths(&[p(name)]);
        assert_eq!(
            s.direct_kind(),
            Some(kind),
            "{name} should be read directly"
        );
        assert_eq!(a.len(), 3000 * 24, "{name}");
        same(&a, &b, name);
    }
    // layouts the direct reader leaves to HDF5 still read (the sparse file's missing rows are
    // HDF5's fill value, 0)
    for name in [
        "f32_big_endian.h5",
        "f32_half_columns.h5",
        "f32_fletcher.h5",
        "f32_scaleoffset.h5",
        "f32_sparse.h5",
    ] {
        let (s, a, b) = both_paths(&[p(name)]);
        assert_eq!(s.direct_kind(), None, "{name} should go through HDF5");
        same(&a, &b, name);
    }
    // several files, all direct, one chunked and filtered: pieces of both kinds in one read
    let (s, a, b) = both_paths(&[p("f32.h5"), p("f32_lzf.h5"), p("f32.h5")]);
    assert_eq!(s.direct_kind(), Some(Dtype::F32));
    assert_eq!(a.len(), 9000 * 24);
    same(&a, &b, "three shards");
    // mixed element types fall back to HDF5 for the whole store
    let (s, a, b) = both_paths(&[p("f32.h5"), p("f16_chunked.h5")]);
    assert_eq!(s.direct_kind(), None);
    same(&a, &b, "f32 + f16 shards");
}

#[test]
fn shuffled_f16_batches_hold_the_stored_rows_scaled_and_skip_non_finite_ones() {
    use jumpscope::config::OnNonFinite;
    use jumpscope::data::batches::{Batcher, Position, Rows};
    let d = tempdir().unwrap();
    let path = d.path().join("h.h5");
    h5py(&format!(
        "x = np.tile(np.arange(8) - 4.0, (700, 1)); x[:, 0] = np.arange(700) - 350.0; x = x.astype(np.float16)\n\
         x[10, 2] = np.nan; x[333, 7] = np.inf\n\
         with h5py.File('{}', 'w') as f:\n    f.create_dataset('activations', data=x, chunks=(64, 8))\n",
        path.display()
    ));
    let store = Store::open(&[path], None).unwrap();
    let mut b =
        Batcher::new(store, true, 3, OnNonFinite::Skip, Position::default()).buffer_rows(200);
    b.scale = 0.5;
    let want = |r: usize| -> Vec<f32> {
        (0..8)
            .map(|c| {
                if c == 0 {
                    r as f32 - 350.0
                } else {
                    c as f32 - 4.0
                }
            })
            .collect()
    };
    let mut seen = vec![0usize; 700];
    let (mut rows, mut skipped) = (0, 0);
    // exactly the 698 finite rows of the first epoch
    while rows < 698 {
        let batch = b.next_batch(64.min(698 - rows)).unwrap();
        assert_eq!(batch.new_epochs, 0);
        skipped += batch.skipped;
        let Rows::F16 { .. } = &batch.data else {
            panic!("an f16 store read directly should give f16 batches")
        };
        let v = batch.data.to_f32();
        assert_eq!(v.len(), batch.rows * 8);
        for row in v.chunks(8) {
            // the first column says which stored row this is
            let r = (row[0] / 0.5 + 350.0) as usize;
            assert_eq!(row, want(r).iter().map(|w| w * 0.5).collect::<Vec<_>>());
            seen[r] += 1;
        }
        rows += batch.rows;
    }
    // the two bad rows may come last in the order, and then are only scanned by the next call
    assert!(skipped <= 2);
    assert_eq!(seen[10] + seen[333], 0, "the NaN and Inf rows are skipped");
    assert!(seen.iter().all(|&n| n <= 1), "no row twice in an epoch");
    assert_eq!(seen.iter().sum::<usize>(), 698);
}

#[test]
fn a_transcoders_pairs_are_shuffled_masked_and_skipped_together() {
    use jumpscope::config::OnNonFinite;
    use jumpscope::data::batches::{BatchError, Batcher, Position};
    let d = tempdir().unwrap();
    let (x, y) = (d.path().join("x.h5"), d.path().join("y.h5"));
    // 8 sequences of 16: every row holds its own index (input 4 wide, target 6 wide), so a pair
    // that stays together reads the same number on both sides; position 0 is masked out of the
    // input, and the target has NaN at rows 5 and 77
    h5py(&format!(
        "r = np.arange(128, dtype='f4')\n\
         x = np.repeat(r[:, None], 4, 1).reshape(8, 16, 4)\n\
         y = np.repeat(r[:, None], 6, 1)\n\
         y[5, 2] = np.nan; y[77, 0] = np.nan\n\
         m = np.ones((8, 16), dtype='u1'); m[:, 0] = 0\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = x\n    f['mask'] = m\n\
         with h5py.File('{}', 'w') as f:\n    f['activations'] = y\n",
        x.display(),
        y.display()
    ));
    let open = |p: &std::path::Path| Store::open(&[p.to_path_buf()], None).unwrap();
    jumpscope::data::pair::check(&open(&x), &open(&y)).unwrap();
    let batcher = |policy| {
        Batcher::new(open(&x), true, 3, policy, Position::default())
            .buffer_rows(32)
            .with_target(open(&y), 0.5)
    };
    let mut b = batcher(OnNonFinite::Skip);
    let (mut seen, mut skipped) = (std::collections::BTreeSet::new(), 0);
    // 118 pairs are whole: two batches of 59 are exactly the first epoch
    for _ in 0..2 {
        let batch = b.next_batch(59).unwrap();
        assert_eq!(batch.new_epochs, 0);
        let order: Vec<f32> = batch.data.to_f32().chunks(4).map(|r| r[0]).collect();
        assert!(
            order.windows(2).any(|w| w[1] < w[0]),
            "the pairs are shuffled"
        );
        let (xs, ys) = (batch.data.to_f32(), batch.target.unwrap());
        assert_eq!(ys.len(), batch.rows * 6);
        for (a, t) in xs.chunks(4).zip(ys.chunks(6)) {
            // the target is scaled by its own factor (0.5), the input by none (1.0)
            assert_eq!(a[0] * 0.5, t[0], "a pair came apart");
            assert!(
                !(a[0] as usize).is_multiple_of(16),
                "a masked row was trained on"
            );
            assert!(seen.insert(a[0] as usize), "a row twice in one epoch");
        }
        skipped += batch.skipped;
    }
    assert_eq!(skipped, 2, "the two pairs with a NaN target are skipped");
    assert!(!seen.contains(&5) && !seen.contains(&77));
    assert_eq!(seen.len(), 118, "every other unmasked pair, once");
    // with on_nonfinite = "stop", the target's file and row are named
    let mut b = batcher(OnNonFinite::Stop);
    let e = loop {
        match b.next_batch(25) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&e, BatchError::NonFinite { path, .. } if path == &y),
        "{e}"
    );
}
