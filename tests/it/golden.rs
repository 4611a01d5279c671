//! Golden parity: our f32 training reproduces the PyTorch reference (float64) of
//! `tests/golden/*.json` (written by `reference/jumprelu_torch.py golden`, built into the
//! binary by `selftest::golden`) to 1e-5 absolute: first-forward loss parts and gradients, and
//! per-step loss parts and every parameter after each Adam step. Through every form of the step:
//! flex with tensor ops, fused dense and fused sparse, and (built with `tch`) LibTorch's CPU
//! device dense and sparse. The cases cover JumpReLU's sparsity losses, the baselines (TopK
//! and BatchTopK with AuxK, ReLU with its L1 penalty), and transcoders and skip-transcoders (a
//! second site as the target, the trained skip), and Matryoshka dictionaries (nested widths
//! whose prefix reconstructions join the loss) of JumpReLU, BatchTopK and a TopK skip-transcoder.

use burn::tensor::Device;
use jumpscope::sae::kernels::Kernels;
use jumpscope::selftest::golden::{FILES, cases};
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The project's shared material, when a checkout has it beside the clone (a user's clone does
/// not; `JUMPSCOPE_SHARED` points elsewhere).
fn shared_golden() -> Option<PathBuf> {
    let dir = std::env::var_os("JUMPSCOPE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("golden");
    dir.is_dir().then_some(dir)
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_binary_builds_in_every_committed_case() {
    let built: Vec<String> = FILES.iter().map(|(n, _)| format!("{n}.json")).collect();
    assert_eq!(built, names(&golden_dir()));
}

// A clone may have no ../shared beside it: the test says so by being ignored, and
// `scripts/dev.sh test` runs it where the shared cases are there.
#[test]
#[ignore = "compares with ../shared/golden, which a clone may lack; scripts/dev.sh test runs it where it is there"]
fn the_repository_copies_equal_the_shared_golden_cases() {
    let shared =
        shared_golden().expect("../shared/golden (or $JUMPSCOPE_SHARED/golden) beside the clone");
    // the repository holds the shared JumpReLU cases and its own baselines' cases besides
    let ours = names(&golden_dir());
    for name in names(&shared) {
        assert!(
            ours.contains(&name),
            "tests/golden lacks the shared case {name}"
        );
        let ours = std::fs::read(golden_dir().join(&name)).unwrap();
        let theirs = std::fs::read(shared.join(&name)).unwrap();
        assert!(
            ours == theirs,
            "tests/golden/{name} differs from {}: copy it again",
            shared.join(&name).display()
        );
    }
}

/// Every form of the step this build has: `(label, device, kernels, sparse_below)`.
fn variants() -> Vec<(&'static str, Device, Kernels, f64)> {
    let mut v = vec![
        ("generic", Device::flex(), Kernels::TensorOps, 0.0),
        ("fused", Device::flex(), Kernels::HostFused, 0.0),
        ("sparse", Device::flex(), Kernels::HostFused, f64::INFINITY),
    ];
    if cfg!(feature = "tch") {
        let tch = jumpscope::device::resolve("tch-cpu").expect("a tch build has tch-cpu");
        v.push(("tch-cpu", tch.clone(), Kernels::TensorOps, 0.0));
        v.push(("tch-cpu sparse", tch, Kernels::TensorOps, f64::INFINITY));
    }
    v
}

#[test]
fn every_case_matches_the_reference_through_every_form_of_the_step() {
    let mut errs = Vec::new();
    let (mut checked, mut with_steps) = (0, 0);
    for case in cases().unwrap() {
        for (tag, device, kernels, below) in variants() {
            let out = case.check(&device, kernels, below).unwrap();
            // 9 first-forward quantities, and 4 per step plus 5 parameters where steps exist
            assert!(out.errors.len() >= 9, "{} [{tag}]", case.name);
            // a skip-transcoder case checks W_skip's gradient and its value after training
            let skip_checked = out
                .errors
                .iter()
                .filter(|(q, _)| q.contains("W_skip"))
                .count();
            let is_skip = case.name.contains("skip_transcoder");
            assert_eq!(
                skip_checked,
                if is_skip { 2 } else { 0 },
                "{} [{tag}]",
                case.name
            );
            errs.extend(
                out.mismatches()
                    .into_iter()
                    .map(|m| format!("{} [{tag}] {m}", case.name)),
            );
            checked += 1;
            with_steps += usize::from(case.has_steps());
        }
    }
    assert_eq!(checked, 16 * variants().len());
    assert_eq!(
        with_steps,
        15 * variants().len(),
        "fifteen multi-step cases"
    );
    assert!(errs.is_empty(), "golden mismatches:\n{}", errs.join("\n"));
}
