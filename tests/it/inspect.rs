//! `jumpscope inspect` against statistics computed here, straightforwardly, on a small store.
//!
//! The data are built so that every pre-activation is exact in float32 whatever the summation
//! order (inputs and encoder weights are multiples of 1/8, biases of 1/64, eight inputs), and no
//! threshold equals a pre-activation (thresholds are odd multiples of 1/128). So densities,
//! histogram counts and top-k sets can be compared exactly. The store (with token ids and a
//! vocabulary), the Gemma Scope params.npz and the SAELens directory are written by h5py, numpy
//! and safetensors from arrays this test makes.

use crate::common::{assert_user_error, h5py, run, stderr};
use ndarray::{Array1, Array2, Array3};
use std::path::Path;
use tempfile::tempdir;

const D_IN: usize = 8;
const D_SAE: usize = 24;
const N_SEQ: usize = 50;
const SEQ: usize = 20;
const NAN_ROW: usize = 137;

/// A small deterministic generator (the values must be exact, not merely random).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// A multiple of `1/den` in [-span, span].
    fn grid(&mut self, span: i64, den: f32) -> f32 {
        ((self.next() % (2 * span as u64 + 1)) as i64 - span) as f32 / den
    }
}

pub(crate) struct Case {
    x: Vec<f32>,
    w_enc: Vec<f32>,
    b_enc: Vec<f32>,
    w_dec: Vec<f32>,
    b_dec: Vec<f32>,
    theta: Vec<f32>,
    ids: Vec<i64>,
}

pub(crate) fn case() -> Case {
    let mut g = Lcg(42);
    let n = N_SEQ * SEQ;
    let mut x: Vec<f32> = (0..n * D_IN).map(|_| g.grid(8, 8.0)).collect();
    x[NAN_ROW * D_IN + 3] = f32::NAN;
    let w_enc = (0..D_IN * D_SAE).map(|_| g.grid(8, 8.0)).collect();
    let b_enc = (0..D_SAE).map(|_| g.grid(16, 64.0)).collect();
    let w_dec = (0..D_SAE * D_IN).map(|_| g.grid(8, 8.0)).collect();
    let b_dec = (0..D_IN).map(|_| g.grid(8, 64.0)).collect();
    // odd multiples of 1/128 from about 0.1 to 2.5; the last feature never fires
    let mut theta: Vec<f32> = (0..D_SAE)
        .map(|_| (2 * (g.next() % 160) as i64 + 25) as f32 / 128.0)
        .collect();
    theta[D_SAE - 1] = 1001.0 / 128.0 * 100.0;
    let ids = (0..n).map(|_| (g.next() % 100) as i64).collect();
    Case {
        x,
        w_enc,
        b_enc,
        w_dec,
        b_dec,
        theta,
        ids,
    }
}

/// The activations of row `r` (`None` for a row with NaN), computed directly.
fn activations(c: &Case, r: usize) -> Option<Vec<f32>> {
    let x = &c.x[r * D_IN..(r + 1) * D_IN];
    if x.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(
        (0..D_SAE)
            .map(|k| {
                let z: f32 = (0..D_IN)
                    .map(|j| x[j] * c.w_enc[j * D_SAE + k])
                    .sum::<f32>()
                    + c.b_enc[k];
                // JumpReLU: z where z > θ (θ > 0), else 0
                if z > c.theta[k] { z } else { 0.0 }
            })
            .collect(),
    )
}

pub(crate) fn write_inputs(dir: &Path, c: &Case) {
    use ndarray_npy::write_npy;
    let n = N_SEQ * SEQ;
    write_npy(
        dir.join("x.npy"),
        &Array3::from_shape_vec((N_SEQ, SEQ, D_IN), c.x.clone()).unwrap(),
    )
    .unwrap();
    write_npy(
        dir.join("ids.npy"),
        &Array2::from_shape_vec((N_SEQ, SEQ), c.ids.clone()).unwrap(),
    )
    .unwrap();
    let m2 = |v: &Vec<f32>, r, k| Array2::from_shape_vec((r, k), v.clone()).unwrap();
    write_npy(dir.join("W_enc.npy"), &m2(&c.w_enc, D_IN, D_SAE)).unwrap();
    write_npy(dir.join("W_dec.npy"), &m2(&c.w_dec, D_SAE, D_IN)).unwrap();
    for (name, v) in [
        ("b_enc", &c.b_enc),
        ("b_dec", &c.b_dec),
        ("threshold", &c.theta),
    ] {
        write_npy(dir.join(format!("{name}.npy")), &Array1::from(v.clone())).unwrap();
    }
    assert_eq!(c.ids.len(), n);
    let d = dir.display();
    h5py(&format!(
        "import json, os\n\
         from safetensors.numpy import save_file\n\
         d = '{d}'\n\
         p = {{k: np.load(f'{{d}}/{{k}}.npy') for k in ['W_enc', 'W_dec', 'b_enc', 'b_dec', 'threshold']}}\n\
         with h5py.File(f'{{d}}/store.h5', 'w') as f:\n\
         \x20   f['activations'] = np.load(f'{{d}}/x.npy')\n\
         \x20   f['token_ids'] = np.load(f'{{d}}/ids.npy')\n\
         \x20   f['vocab'] = np.array([f'w{{i}}' for i in range(100)], dtype=object)\n\
         with h5py.File(f'{{d}}/bare.h5', 'w') as f:\n\
         \x20   f['activations'] = np.load(f'{{d}}/x.npy').reshape(-1, {D_IN})\n\
         np.savez(f'{{d}}/params.npz', **p)\n\
         os.makedirs(f'{{d}}/saelens')\n\
         save_file(p, f'{{d}}/saelens/sae_weights.safetensors')\n\
         json.dump({{'architecture': 'jumprelu', 'd_in': {D_IN}, 'd_sae': {D_SAE}, 'dtype': 'float32',\n\
         \x20   'device': 'cpu', 'apply_b_dec_to_input': False, 'normalize_activations': 'none',\n\
         \x20   'reshape_activations': 'none', 'metadata': {{}}}}, open(f'{{d}}/saelens/cfg.json', 'w'))\n"
    ));
}

fn inspect_json(args: &[&str]) -> serde_json::Value {
    let o = run(&[&["inspect"], args, &["--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

#[test]
fn statistics_match_a_direct_computation_for_npz_and_saelens() {
    let d = tempdir().unwrap();
    let c = case();
    write_inputs(d.path(), &c);
    let store = d.path().join("store.h5");
    let (k, bins, ctx) = (5usize, 8usize, 2usize);
    let common = [
        "--store",
        store.to_str().unwrap(),
        "--top-k",
        "5",
        "--bins",
        "8",
        "--context",
        "2",
        "--batch",
        "64",
    ];
    let npz = d.path().join("params.npz");
    let saelens = d.path().join("saelens");
    let r = inspect_json(&[&[npz.to_str().unwrap()][..], &common].concat());
    let r2 = inspect_json(&[&[saelens.to_str().unwrap()][..], &common].concat());
    assert_eq!(r["sae"]["format"], "gemma-scope");
    assert_eq!(r2["sae"]["format"], "saelens");
    assert_eq!(
        r["features"], r2["features"],
        "both formats give the same report"
    );

    // the direct computation
    let n = N_SEQ * SEQ;
    let acts: Vec<Option<Vec<f32>>> = (0..n).map(|row| activations(&c, row)).collect();
    let tokens = acts.iter().flatten().count();
    assert_eq!(r["n_tokens"], tokens as u64);
    let active: usize = acts
        .iter()
        .flatten()
        .map(|a| a.iter().filter(|v| **v != 0.0).count())
        .sum();
    assert!((r["l0"].as_f64().unwrap() - active as f64 / tokens as f64).abs() < 1e-12);
    let feats = r["features"].as_array().unwrap();
    assert_eq!(feats.len(), D_SAE);
    let mut fired_features = 0;
    for (i, f) in feats.iter().enumerate() {
        assert_eq!(f["index"], i);
        let vals: Vec<(f32, usize)> = acts
            .iter()
            .enumerate()
            .filter_map(|(row, a)| a.as_ref().map(|a| (a[i], row)))
            .filter(|(v, _)| *v != 0.0)
            .collect();
        // density: fraction of tokens where it fires
        assert_eq!(
            f["density"].as_f64().unwrap(),
            vals.len() as f64 / tokens as f64,
            "feature {i}"
        );
        assert_eq!(f["threshold"].as_f64().unwrap(), c.theta[i] as f64);
        let norm = (0..D_IN)
            .map(|j| (c.w_dec[i * D_IN + j] as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((f["decoder_norm"].as_f64().unwrap() - norm).abs() < 1e-6);
        let top = f["top"].as_array().unwrap();
        let edges: Vec<f64> = f["histogram"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_f64().unwrap())
            .collect();
        let counts: Vec<u64> = f["histogram"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_u64().unwrap())
            .collect();
        if vals.is_empty() {
            assert_eq!(
                (f["max"].as_f64(), top.len(), edges.len()),
                (Some(0.0), 0, 0)
            );
            continue;
        }
        fired_features += 1;
        let max = vals.iter().map(|v| v.0).fold(0.0f32, f32::max) as f64;
        assert!(
            (f["max"].as_f64().unwrap() - max).abs() < 1e-6,
            "feature {i}"
        );
        let mean = vals.iter().map(|v| v.0 as f64).sum::<f64>() / vals.len() as f64;
        assert!((f["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
        // histogram: bins+1 even edges from 0 to a power of two above the maximum
        assert_eq!(edges.len(), bins + 1);
        let hi = edges[bins];
        assert!(
            hi > max && hi / 2.0 <= max && hi.log2().fract() == 0.0,
            "{hi} for max {max}"
        );
        let mut want = vec![0u64; bins];
        for (v, _) in &vals {
            let b = (0..bins)
                .find(|&b| edges[b] <= *v as f64 && (*v as f64) < edges[b + 1])
                .unwrap();
            want[b] += 1;
        }
        assert_eq!(counts, want, "feature {i} histogram");
        // top-k: largest first, equal activations earlier position first
        let mut sorted = vals.clone();
        sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let want_top: Vec<(f64, u64)> = sorted
            .iter()
            .take(k)
            .map(|(v, p)| (*v as f64, *p as u64))
            .collect();
        let got_top: Vec<(f64, u64)> = top
            .iter()
            .map(|t| {
                (
                    t["activation"].as_f64().unwrap(),
                    t["position"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got_top, want_top, "feature {i} top-{k}");
        // context: ±2 tokens inside the sequence, ids and vocabulary strings
        for t in top {
            let pos = t["position"].as_u64().unwrap() as usize;
            let (s0, s1) = (pos / SEQ * SEQ, pos / SEQ * SEQ + SEQ);
            let (a, b) = (pos.saturating_sub(ctx).max(s0), (pos + ctx + 1).min(s1));
            let cx = &t["context"];
            assert_eq!(cx["start"], a as u64);
            assert_eq!(cx["active"], (pos - a) as u64);
            let ids: Vec<i64> = cx["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(ids, c.ids[a..b].to_vec());
            let strs: Vec<String> = ids.iter().map(|i| format!("w{i}")).collect();
            assert_eq!(cx["tokens"], serde_json::json!(strs));
        }
    }
    assert!(
        fired_features > D_SAE / 2,
        "most features fire: {fired_features}"
    );
    assert_eq!(r["silent"], (D_SAE - fired_features) as u64);
    assert!(
        r["silent"].as_u64().unwrap() >= 1,
        "the last feature never fires"
    );

    // FVU against a direct reconstruction
    let (mut err, mut sum, mut sq) = (0f64, vec![0f64; D_IN], 0f64);
    for (row, a) in acts.iter().enumerate() {
        let Some(a) = a else { continue };
        for (j, s) in sum.iter_mut().enumerate() {
            let xhat = c.b_dec[j] as f64
                + (0..D_SAE)
                    .map(|k| a[k] as f64 * c.w_dec[k * D_IN + j] as f64)
                    .sum::<f64>();
            let x = c.x[row * D_IN + j] as f64;
            err += (x - xhat).powi(2);
            *s += x;
            sq += x * x;
        }
    }
    let fvu = err / (sq - sum.iter().map(|s| s * s).sum::<f64>() / tokens as f64);
    assert!(
        (r["fvu"].as_f64().unwrap() - fvu).abs() < 1e-5 * fvu.max(1.0),
        "{} vs {fvu}",
        r["fvu"]
    );
}

#[test]
fn one_feature_a_saved_report_and_a_store_without_tokens() {
    let d = tempdir().unwrap();
    let c = case();
    write_inputs(d.path(), &c);
    let npz = d.path().join("params.npz");
    let store = d.path().join("store.h5");
    let out = d.path().join("report.json");
    let o = run(&[
        "inspect",
        npz.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let full: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // reopened without the store: the same report, and one feature of it
    let again = inspect_json(&[out.to_str().unwrap()]);
    assert_eq!(again, full);
    let one = inspect_json(&[out.to_str().unwrap(), "--feature", "3"]);
    assert_eq!(one, full["features"][3]);
    for key in [
        "index",
        "density",
        "mean",
        "max",
        "threshold",
        "histogram",
        "top",
    ] {
        assert!(one.get(key).is_some(), "feature JSON lacks `{key}`");
    }
    // a store without token ids: positions only, and it says so
    let bare = d.path().join("bare.h5");
    let o = run(&[
        "inspect",
        npz.to_str().unwrap(),
        "--store",
        bare.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no token ids: top activations show positions only"),
        "{}",
        stderr(&o)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["context_note"].as_str().unwrap().contains("no token ids"));
    let f0 = &r["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| !f["top"].as_array().unwrap().is_empty())
        .unwrap()["top"][0];
    assert!(
        f0.get("position").is_some() && f0.get("context").is_none(),
        "{f0}"
    );
}

#[test]
fn inspect_bad_input_is_one_line() {
    let d = tempdir().unwrap();
    let c = case();
    write_inputs(d.path(), &c);
    let npz = d.path().join("params.npz");
    let store = d.path().join("store.h5");
    let s = store.to_str().unwrap();
    // not an SAE of any known format
    let o = run(&[
        "inspect",
        d.path().join("x.npy").to_str().unwrap(),
        "--store",
        s,
    ]);
    assert_user_error(&o, &["x.npy", "SAELens", "params.npz"]);
    // d_in mismatch
    h5py(&format!(
        "with h5py.File('{}', 'w') as f:\n    f['activations'] = np.zeros((10, 5), np.float32)\n",
        d.path().join("narrow.h5").display()
    ));
    let o = run(&[
        "inspect",
        npz.to_str().unwrap(),
        "--store",
        d.path().join("narrow.h5").to_str().unwrap(),
    ]);
    assert_user_error(&o, &["d_in = 8", "d_in = 5"]);
    // --feature out of range, before any work
    let o = run(&[
        "inspect",
        npz.to_str().unwrap(),
        "--store",
        s,
        "--feature",
        "24",
    ]);
    assert_user_error(&o, &["--feature 24", "24 features (0 to 23)"]);
    // no store
    let o = run(&["inspect", npz.to_str().unwrap()]);
    assert_user_error(&o, &["--store is needed"]);
    // bins
    let o = run(&[
        "inspect",
        npz.to_str().unwrap(),
        "--store",
        s,
        "--bins",
        "10",
    ]);
    assert_user_error(&o, &["--bins 10", "power of two"]);
    // a file that is not a report
    std::fs::write(d.path().join("junk.json"), "{\"a\": 1}").unwrap();
    let o = run(&["inspect", d.path().join("junk.json").to_str().unwrap()]);
    assert_user_error(&o, &["junk.json", "not a jumpscope inspect report"]);
}
