//! Reading stores written by h5py: every layout and element type we accept gives the same rows,
//! dataset discovery and globs work, and each malformed store is refused with one clear line.

use crate::common::*;
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
    assert!(stderr(&o).contains("held-out 255 tokens"), "{}", stderr(&o));
    let evals = records(&run_dir, "eval");
    assert_eq!(
        evals
            .iter()
            .map(|e| e["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    assert!(
        records(&run_dir, "epoch").len() >= 2,
        "30 steps of 64 over 768 rows cross epochs"
    );
    // the final report equals `jumpscope eval` of the exported SAE on the held-out rows alone
    let j = eval_json(&run_dir.join("sae"), &tail);
    let last = &evals.last().unwrap()["eval"];
    assert_eq!(last["n_tokens"], 255);
    assert_eq!(j["n_tokens"], 255);
    for k in ["l0", "mse", "fvu"] {
        let (a, b) = (last[k].as_f64().unwrap(), j[k].as_f64().unwrap());
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
fn a_store_that_vanishes_mid_run_stops_with_a_checkpoint() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(4096, 3));
    let run_dir = d.path().join("run");
    // small shuffle blocks, so that the store is read again and again
    let cfg = config(
        d.path(),
        &format!(
            "[data]\nstores = [\"{}\"]\nbatch_size = 64\nshuffle_buffer_tokens = 256\n[sae]\nd_sae = 32\n\
             [train]\nsteps = 100000000\nlog_every = 5\ncheckpoint_every = 0\n[run]\nout = \"{}\"\n",
            store.display(),
            run_dir.display()
        ),
    );
    let child = spawn_training(&cfg, &run_dir, 3);
    std::fs::remove_file(&store).unwrap();
    let out = child.wait_with_output().unwrap();
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
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // the binary runs as an unprivileged user (root reads everything), from a copy it can reach
    let exe = d.path().join("jumpscope");
    std::fs::copy(env!("CARGO_BIN_EXE_jumpscope"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = d.path().join("locked.h5");
    synth_store(&store, &small_spec(64, 1));
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o000)).unwrap();
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let mut cmd = if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    let o = cmd
        .args(["store", "info", store.to_str().unwrap()])
        .output()
        .expect("the binary (under setpriv from util-linux when root) runs");
    assert_user_error(&o, &["locked.h5", "Permission denied"]);
}
