#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 20).
# Usage: fuzz/run-all.sh [SECONDS] [extra libFuzzer flags...]
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked).
# Exits non-zero if any target finds a crash; crashing inputs are saved in
# fuzz/artifacts/TARGET/.
set -euo pipefail

secs="${1:-20}"
shift || true
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS] [libFuzzer flags...]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"
toolchain="${FUZZ_TOOLCHAIN:-+nightly}"

cargo "$toolchain" fuzz build
# Valid records to start from (rewrites corpus/*/seed-*; the rest of the
# corpus the fuzzer grew is kept between runs).
cargo "$toolchain" run --quiet --release --example seeds
failed=()
for target in $(cargo "$toolchain" fuzz list); do
    echo "=== $target (${secs}s)"
    mkdir -p "corpus/$target"
    if ! cargo "$toolchain" fuzz run "$target" -- -max_total_time="$secs" "$@"; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "all targets ran ${secs}s without a crash"
