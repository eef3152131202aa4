#!/usr/bin/env bash
# The test command (README, .ci/run): format, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --locked --profile ci
echo "== doc tests"
cargo test --workspace --doc --locked
