//! Bad input through the real binary: one line naming the file/key and the problem, exit 2, no
//! panic; and a NaN loss keeps the last good checkpoint.

use crate::common::*;
use tempfile::tempdir;

fn base(store: &str, out: &str) -> String {
    format!(
        "[data]\nstores = [\"{store}\"]\nbatch_size = 64\nseed = 1\n[sae]\nd_sae = 32\n\
         [train]\nsteps = 6\nlog_every = 1\ncheckpoint_every = 0\n[run]\nout = \"{out}\"\n"
    )
}

#[test]
fn missing_store_is_named() {
    let d = tempdir().unwrap();
    let missing = d.path().join("nope.h5");
    let cfg = config(
        d.path(),
        &base(
            &missing.display().to_string(),
            &d.path().join("run").display().to_string(),
        ),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(&o, &["nope.h5", "no such file"]);
    assert!(
        !d.path().join("run").exists(),
        "no run directory for a run that could not start"
    );
}

#[test]
fn a_file_that_is_not_hdf5_is_named() {
    let d = tempdir().unwrap();
    let bogus = d.path().join("bogus.h5");
    std::fs::write(&bogus, b"definitely not hdf5").unwrap();
    let cfg = config(
        d.path(),
        &base(
            &bogus.display().to_string(),
            &d.path().join("run").display().to_string(),
        ),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(&o, &["bogus.h5", "not a readable HDF5 file"]);
}

#[test]
fn absent_dataset_lists_what_is_there() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    h5py(&format!(
        "with h5py.File('{}', 'w') as f:\n    f['acts'] = np.zeros((10, 4), dtype=np.float32)\n",
        store.display()
    ));
    let cfg = config(
        d.path(),
        &base(
            &store.display().to_string(),
            &d.path().join("run").display().to_string(),
        ),
    );
    // named explicitly: the error lists what the file has (unnamed, `acts` would be found)
    let o = train_cli(&cfg, &["data.dataset=\"activations\""], &[]);
    assert_user_error(&o, &["s.h5", "no dataset `activations`", "acts"]);
}

#[test]
fn init_from_with_another_width_is_refused() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(256, 1));
    // a Gemma Scope params.npz written by numpy, d_in = 8 (the store has 16)
    let npz = d.path().join("params.npz");
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import numpy as np\nnp.savez('{}', W_enc=np.zeros((8,32),np.float32), W_dec=np.zeros((32,8),np.float32), \
             b_enc=np.zeros(32,np.float32), b_dec=np.zeros(8,np.float32), threshold=np.ones(32,np.float32))",
            npz.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut body = base(
        &store.display().to_string(),
        &d.path().join("run").display().to_string(),
    );
    body = body.replace(
        "d_sae = 32\n",
        &format!("init_from = \"{}\"\n", npz.display()),
    );
    let cfg = config(d.path(), &body);
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(&o, &["params.npz", "d_in = 8", "d_in = 16"]);
}

#[test]
fn out_of_range_and_unknown_keys_are_named() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(256, 1));
    let cfg = config(
        d.path(),
        &base(
            &store.display().to_string(),
            &d.path().join("run").display().to_string(),
        ),
    );
    let o = train_cli(&cfg, &["train.adam_beta2=1.5"], &[]);
    assert_user_error(&o, &["train.adam_beta2 = 1.5", "[0, 1)"]);
    // a bad --set is blamed on --set, not on the file
    let o = train_cli(&cfg, &["train.learning_rate=1"], &[]);
    assert_user_error(
        &o,
        &["--set", "unknown key `train.learning_rate`", "train.lr"],
    );
    assert!(!stderr(&o).contains("config.toml"), "{}", stderr(&o));
}

#[test]
fn config_errors_say_where_and_what_was_meant() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(256, 1));
    let out = d.path().join("run").display().to_string();
    let body = base(&store.display().to_string(), &out);
    // a misspelt key: its line, and the key meant
    let cfg = config(d.path(), &body.replace("steps = 6", "stpes = 6"));
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(
        &o,
        &[
            "config.toml:8:",
            "unknown key `train.stpes`",
            "did you mean `train.steps`?",
        ],
    );
    // a misspelt section
    let cfg = config(d.path(), &body.replace("[sae]", "[sea]"));
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(
        &o,
        &[
            "config.toml:5:",
            "unknown section `sea`",
            "did you mean `sae`?",
        ],
    );
    // a value of the wrong type: its line
    let cfg = config(
        d.path(),
        &body.replace("batch_size = 64", "batch_size = \"64\""),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_user_error(&o, &["config.toml:3:", "data.batch_size"]);
    // with a --set beside it, the file's own mistake is still the file's
    let o = train_cli(&cfg, &["train.lr=1e-3"], &[]);
    assert_user_error(&o, &["config.toml:3:", "data.batch_size"]);
    // one store as a string, not a list, is a list of one
    let cfg = config(
        d.path(),
        &body.replace(
            &format!("stores = [\"{}\"]", store.display()),
            &format!("stores = \"{}\"", store.display()),
        ),
    );
    let o = train_cli(&cfg, &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_sample_config_run_from_elsewhere_names_the_key_and_the_directory() {
    let d = tempdir().unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/demo.toml");
    let o = bin()
        .current_dir(d.path())
        .args(["train", "--config", sample.to_str().unwrap(), "--headless"])
        .output()
        .unwrap();
    let cwd = d.path().canonicalize().unwrap();
    assert_user_error(
        &o,
        &[
            "data.stores",
            "sample_data/synth.h5",
            "no such file",
            "relative path is taken from the current directory",
            cwd.to_str().unwrap(),
        ],
    );
}

#[test]
fn nan_rows_are_skipped_and_counted_or_stop_the_run() {
    let d = tempdir().unwrap();
    let store = d.path().join("nan.h5");
    h5py_activations(
        &store,
        "x = np.random.default_rng(0).normal(size=(512, 16)).astype(np.float32)\n\
         x[5, 3] = np.nan\nx[300, 0] = np.inf",
    );
    let run_dir = d.path().join("run");
    let cfg = config(
        d.path(),
        &base(&store.display().to_string(), &run_dir.display().to_string()),
    );
    // default: skip and count; 8 steps of 64 rows in file order read rows 0..512 once
    let o = train_cli(&cfg, &["data.shuffle=false", "train.steps=8"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m = metrics(&run_dir);
    assert_eq!(m.last().unwrap().skipped_rows, 2, "both bad rows counted");
    assert!(
        stderr(&o).contains("skipped 1 rows with NaN/Inf"),
        "{}",
        stderr(&o)
    );
    // stop policy: the file and the row are named
    let run2 = d.path().join("run2");
    let o = train_cli(
        &cfg,
        &["data.on_nonfinite=\"stop\"", "data.shuffle=false"],
        &["--out", run2.to_str().unwrap()],
    );
    assert_user_error(&o, &["nan.h5", "row 5", "NaN or Inf"]);
}

#[test]
fn a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let d = tempdir().unwrap();
    let store = d.path().join("big.h5");
    // rows from 512 on are finite but so large that their squared norm overflows f32
    h5py_activations(
        &store,
        "x = np.random.default_rng(0).normal(size=(1024, 16)).astype(np.float32)\n\
         x[512:] *= np.float32(1e25)",
    );
    let run_dir = d.path().join("run");
    let cfg = config(
        d.path(),
        &base(&store.display().to_string(), &run_dir.display().to_string()),
    );
    let o = train_cli(
        &cfg,
        &[
            "data.shuffle=false",
            "data.normalize=\"none\"",
            "train.steps=20",
            "train.checkpoint_every=4",
            "train.log_every=3",
        ],
        &[],
    );
    // batches 0..7 are normal, batch 8 (0-based step 8) is the first huge one
    assert_user_error(&o, &["loss is not finite at step 8", "step-8"]);
    let ckpts = jumpscope::train::checkpoint::list(&run_dir);
    assert_eq!(
        ckpts.last().map(|c| c.0),
        Some(8),
        "the checkpoint after 8 good steps is the last one; nothing after the bad step is written"
    );
    let (state, t) = jumpscope::train::checkpoint::read(&ckpts.last().unwrap().1).unwrap();
    assert_eq!(state.step, 8);
    assert!(t.params_finite());
}

#[test]
fn a_device_this_build_or_machine_lacks_is_one_line_saying_what_is_available() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(300, 1));
    let cfg = config(
        d.path(),
        &base(
            &store.display().to_string(),
            &d.path().join("run").display().to_string(),
        ),
    );
    let o = train_cli(&cfg, &[], &["--device", "tpu"]);
    assert_user_error(&o, &["unknown device `tpu`", "available here: cpu"]);
    if cfg!(feature = "tch") {
        return; // tch builds: tests/it/tch.rs covers cuda without a GPU
    }
    for dev in ["cuda", "cuda:0", "tch-cpu"] {
        let o = train_cli(&cfg, &[], &["--device", dev]);
        assert_user_error(
            &o,
            &[
                dev,
                "built without the tch feature",
                "scripts/dev.sh libtorch",
            ],
        );
    }
    let o = bin()
        .args(["bench", "--device", "cuda", "--steps", "1"])
        .output()
        .unwrap();
    assert_user_error(&o, &["built without the tch feature"]);
}

#[test]
fn watch_refuses_what_is_not_a_run_directory() {
    let d = tempdir().unwrap();
    let missing = d.path().join("nope");
    let o = run(&["watch", missing.to_str().unwrap()]);
    assert_user_error(&o, &["nope", "not a directory"]);
    let o = run(&["watch", d.path().to_str().unwrap()]);
    assert_user_error(&o, &["not a run directory", "config.toml or metrics.jsonl"]);
    std::fs::write(d.path().join("metrics.jsonl"), "").unwrap();
    std::fs::write(d.path().join("config.toml"), "[train]\nlr = -1.0\n").unwrap();
    let o = run(&["watch", d.path().to_str().unwrap()]);
    assert_user_error(&o, &["not a usable run directory", "train.lr"]);
}

#[test]
fn a_run_too_big_for_the_machine_is_refused_before_anything_is_written() {
    let d = tempdir().unwrap();
    let store = d.path().join("s.h5");
    synth_store(&store, &small_spec(500, 2));
    let run = d.path().join("run");
    let cfg = config(
        d.path(),
        &base(&store.display().to_string(), &run.display().to_string()),
    );
    // 64 × 40M × 4 bytes per [batch, d_sae] buffer: terabytes beside the parameters' gigabytes
    let o = train_cli(&cfg, &["sae.d_sae=40000000", "data.batch_size=4096"], &[]);
    assert_user_error(
        &o,
        &[
            "the run needs about",
            "[batch, d_sae] working set",
            "available",
            "lower data.batch_size",
        ],
    );
    assert!(!run.exists(), "no run directory for a refused run");
    // a wide dictionary on a small batch: the parameters dominate
    let o = train_cli(&cfg, &["sae.d_sae=400000000", "data.batch_size=1"], &[]);
    assert_user_error(&o, &["the run needs about", "lower sae.d_sae"]);
}
