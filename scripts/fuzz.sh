#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and fails on any crash (a panic,
# an allocation over the limit, a timeout, a sanitizer report).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20: about 3 minutes for the 8 targets,
#                                                plus the build)
#
# Installs cargo-fuzz (and the nightly toolchain) when missing. The committed seeds in
# fuzz/corpus/<target>/ are read, never written: what a run discovers goes to fuzz/work/
# (ignored), and a crashing input to fuzz/artifacts/<target>/, whose path the failure names.
set -euo pipefail

secs="${1:-20}"
cd "$(dirname "$0")/../fuzz"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build
failed=()
for target in $(cargo +nightly fuzz list); do
    mkdir -p "work/$target"
    echo "=== fuzz $target for ${secs}s"
    # -timeout: one input taking longer is a finding; -malloc_limit_mb: so is one allocation
    # over 1 GiB (the largest a legitimate tiny input needs is far less); -rss_limit_mb: so is
    # the process growing past 4 GiB.
    if ! cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=1024 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzzing: no crashes in ${secs}s per target"
