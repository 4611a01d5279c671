# Recipes for those who have `just`; each calls scripts/dev.sh, which works without it.

# Train the demo SAE on sample_data/ and evaluate it
demo *ARGS:
    scripts/dev.sh demo {{ARGS}}

# Run every test (release build)
test *ARGS:
    scripts/dev.sh test {{ARGS}}

# cargo fmt --check and clippy with warnings as errors
check:
    scripts/dev.sh check

# Training throughput (pass e.g. --d-in 512 --d-sae 4096 --batch 4096)
bench *ARGS:
    scripts/dev.sh bench {{ARGS}}

# Install LibTorch 2.9.0 (the PyPI torch wheel, ~6.6 GB) into ~/.cache/jumpscope for the tch feature
libtorch:
    scripts/dev.sh libtorch

# Build with the LibTorch devices (tch-cpu, cuda, cuda:N)
build-tch *ARGS:
    scripts/dev.sh build-tch {{ARGS}}

# Every test with the tch feature: golden parity and training on tch-cpu too
test-tch *ARGS:
    scripts/dev.sh test-tch {{ARGS}}

# Training throughput on LibTorch's CPU device
bench-tch *ARGS:
    scripts/dev.sh bench-tch {{ARGS}}

# The PyTorch reference regenerates tests/golden/ exactly
test-reference:
    scripts/dev.sh test-reference
