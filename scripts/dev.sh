#!/usr/bin/env bash
# Developer entry point: installs what the build needs (cmake for the bundled HDF5, h5py for
# tests) from PyPI when missing, then runs one of: demo, test, check, bench, setup.
# Usage: scripts/dev.sh demo|test|check|bench|setup
set -euo pipefail
cd "$(dirname "$0")/.."

setup() {
    if ! command -v cmake >/dev/null 2>&1 && [ -z "${CMAKE:-}" ]; then
        echo "setup: installing cmake from PyPI (needed once to build the bundled HDF5)" >&2
        python3 -m pip install --quiet --disable-pip-version-check cmake >&2
    fi
    if [ -z "${CMAKE:-}" ] && ! command -v cmake >/dev/null 2>&1; then
        CMAKE="$(python3 -c 'import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, "cmake"))')"
        export CMAKE
    fi
    if ! python3 -c 'import h5py, numpy' >/dev/null 2>&1; then
        echo "setup: installing h5py and numpy from PyPI (tests write stores with them)" >&2
        python3 -m pip install --quiet --disable-pip-version-check h5py numpy >&2
    fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
    setup)
        setup
        ;;
    demo)
        setup
        cargo build --release --quiet
        bin="${CARGO_TARGET_DIR:-target}/release/jumpscope"
        rm -rf runs/demo
        "$bin" train --config sample_data/demo.toml --out runs/demo --headless "$@"
        "$bin" eval runs/demo/sae --store sample_data/synth.h5
        ;;
    test)
        setup
        cargo test --release "$@"
        ;;
    check)
        cargo fmt --all -- --check
        setup
        cargo clippy --release --all-targets -- -D warnings
        ;;
    bench)
        setup
        cargo build --release --quiet
        "${CARGO_TARGET_DIR:-target}/release/jumpscope" bench "$@"
        ;;
    *)
        echo "usage: scripts/dev.sh demo|test|check|bench|setup [args]" >&2
        exit 2
        ;;
esac
