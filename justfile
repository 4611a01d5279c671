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
