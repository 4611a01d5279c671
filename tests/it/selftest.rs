//! `jumpscope selftest` through the real binary: it passes on `cpu` (and, built with `tch`, on
//! `tch-cpu`), with a table or JSON; and with the debug hook adding 1e-3 to one gradient it
//! fails, naming the checks and the quantity, and exits 1.

use crate::common::*;
use serde_json::Value;

fn devices() -> Vec<&'static str> {
    if cfg!(feature = "tch") {
        vec!["cpu", "tch-cpu"]
    } else {
        vec!["cpu"]
    }
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "selftest --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[test]
fn selftest_passes_on_the_cpu_devices() {
    for dev in devices() {
        let o = run(&["selftest", "--device", dev, "--no-bench", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{dev}: {}", stderr(&o));
        let r = json(&o);
        assert_eq!(r["passed"], true, "{dev}: {r}");
        let checks = r["checks"].as_array().unwrap();
        // 5 golden cases through each form of the step, then the 30-step comparison
        let golden = checks
            .iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with("golden "))
            .count();
        assert!(golden >= 10, "{dev}: {golden} golden rows");
        assert!(
            checks
                .iter()
                .any(|c| c["name"].as_str().unwrap().starts_with("30 steps")),
            "{dev}: {r}"
        );
        // the instruction set of each CPU kernel is an info row
        assert!(
            checks
                .iter()
                .any(|c| c["name"].as_str().unwrap().starts_with("cpu kernels: ")
                    && c["result"] == "info"),
            "{dev}: {r}"
        );
        for c in checks.iter().filter(|c| c["result"] != "info") {
            let (w, t) = (
                c["worst"].as_f64().unwrap(),
                c["tolerance"].as_f64().unwrap(),
            );
            assert!(w <= t && c["result"] == "pass", "{dev}: {c}");
        }
    }
}

#[test]
fn slow_selftest_prints_a_table_with_the_timings() {
    let o = run(&["selftest", "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("check "), "{out}");
    for needle in [
        "golden gdm_l0_log (sparse)",
        "30 steps cpu vs cpu with the dense tensor-op step",
        "bench 512/4096/4096 --l0 64",
        "bench 768/16384/4096 --l0 64",
        "tokens/s",
        "cpu kernels: sparse step rows (axpy, dot)",
        "instruction sets: matrix products",
    ] {
        assert!(out.contains(needle), "no `{needle}` in:\n{out}");
    }
    // three forms of the step per golden case on the CPU and the 30-step check (benches inform)
    let total = 3 * jumpscope::selftest::golden::FILES.len() + 1;
    let all = format!("selftest on cpu: all {total} checks passed");
    assert!(out.contains(&all), "no `{all}` in:\n{out}");
    // progress goes to stderr, one line per check
    assert!(stderr(&o).contains("selftest: bench 768/16384/4096 --l0 64 …"));
}

#[test]
fn a_perturbed_gradient_fails_the_selftest() {
    for dev in devices() {
        for grad in ["W_dec", "theta"] {
            let o = run(&[
                "selftest",
                "--device",
                dev,
                "--no-bench",
                "--perturb-gradient",
                grad,
            ]);
            assert_eq!(o.status.code(), Some(1), "{dev} {grad}: {}", stderr(&o));
            let out = String::from_utf8_lossy(&o.stdout);
            let key = if grad == "theta" {
                "log_threshold"
            } else {
                grad
            };
            assert!(
                out.contains(&format!("first forward d{key}: max abs error 1.000e-3")),
                "{dev} {grad}:\n{out}"
            );
            assert!(out.contains("FAIL"), "{out}");
            assert!(
                out.contains(&format!("selftest on {dev}:")) && out.contains("checks FAILED"),
                "{out}"
            );
            // every golden row of the perturbed forms fails, and so do the 30 steps
            let failed = out.lines().filter(|l| l.contains(" FAIL ")).count();
            assert!(failed >= 10, "{dev} {grad}: {failed} failures:\n{out}");
            let steps = out.lines().find(|l| l.starts_with("30 steps")).unwrap();
            assert!(steps.contains("FAIL"), "{steps}");
        }
    }
}
