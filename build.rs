//! Build script: with the `tch` feature, checks that the LibTorch being linked is the version tch
//! 0.22 needs (2.9.0) and records its library directory as the binaries' rpath, so that they run
//! without LD_LIBRARY_PATH. Without the feature it does nothing.

use std::path::PathBuf;
use std::process::Command;

const WANT: &str = "2.9.0";
const RECIPE: &str = "run `scripts/dev.sh libtorch` (installs the PyPI wheel torch==2.9.0 into a cache) and build with `scripts/dev.sh build-tch`, or see docs/gpu.md";

fn fail(msg: String) -> ! {
    // a build script's panic message is what cargo shows; keep it to the point
    panic!("\n\njumpscope's tch feature: {msg}\n{RECIPE}\n\n");
}

/// The LibTorch version and library directory the torch-sys build will use.
fn libtorch() -> (String, PathBuf) {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let out = Command::new("python3")
            .args([
                "-c",
                "import torch, os; print(torch.__version__); print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
            ])
            .output()
            .unwrap_or_else(|e| fail(format!("LIBTORCH_USE_PYTORCH is set but python3 failed: {e}")));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        match (out.status.success(), lines.next(), lines.next()) {
            (true, Some(v), Some(lib)) => (v.to_string(), PathBuf::from(lib)),
            _ => fail(format!(
                "LIBTORCH_USE_PYTORCH is set but python3 cannot import torch (PYTHONPATH={}): {}",
                std::env::var("PYTHONPATH").unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
        }
    } else if let Some(dir) = std::env::var_os("LIBTORCH") {
        let dir = PathBuf::from(dir);
        // a libtorch zip has build-version; a torch wheel's package directory has version.py
        let version = std::fs::read_to_string(dir.join("build-version"))
            .ok()
            .or_else(|| {
                std::fs::read_to_string(dir.join("version.py"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("__version__ = "))
                            .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
                    })
            })
            .unwrap_or_else(|| {
                fail(format!(
                    "LIBTORCH={} has neither build-version nor version.py",
                    dir.display()
                ))
            });
        (version.trim().to_string(), dir.join("lib"))
    } else {
        fail("neither LIBTORCH nor LIBTORCH_USE_PYTORCH is set".into())
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for v in [
        "LIBTORCH",
        "LIBTORCH_USE_PYTORCH",
        "PYTHONPATH",
        "CARGO_FEATURE_TCH",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    let (version, lib) = libtorch();
    let base = version.split('+').next().unwrap_or(&version);
    if base != WANT {
        fail(format!(
            "found LibTorch {version} (libraries in {}), but tch 0.22 needs {WANT}",
            lib.display()
        ));
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
