#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ and fails on any crash (a panic, an allocation over
# the limit, a timeout, a sanitizer report).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]   exploration: a random libFuzzer seed for
#                                               SECONDS per target (default 20), corpora kept
#                                               in fuzz/work/ so the next run goes on from them
#   bash scripts/fuzz.sh --ci                   what CI runs: every committed seed, then a
#                                               fixed number of executions per target from a
#                                               fixed libFuzzer seed (about 15 s each here), so
#                                               a run is reproducible: it passes or fails the
#                                               same way wherever the same build runs it
#
# Installs cargo-fuzz (and the nightly toolchain) when missing. The committed seeds in
# fuzz/corpus/<target>/ are read, never written: what a run discovers goes to fuzz/work/
# (ignored; a temporary folder under --ci), and a crashing input to fuzz/artifacts/<target>/,
# whose path the failure names. A fixed crash's input belongs in fuzz/corpus/<target>/.
set -euo pipefail

mode=explore
secs=20
case "${1:-}" in
    --ci) mode=ci ;;
    "") ;;
    *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET | --ci]" >&2
        exit 2
        ;;
    *) secs="$1" ;;
esac
cd "$(dirname "$0")/../fuzz"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Executions per target under --ci: about 15 s each at the rates measured here (BENCHMARKS.md:
# the GGUF target loads whole models, 20 inputs a second; a JSONL line parses at 15,000).
ci_runs() {
    case "$1" in
        gguf) echo 300 ;;
        chat_template) echo 4000 ;;
        tokenizer) echo 6000 ;;
        request) echo 30000 ;;
        safetensors) echo 3000 ;;
        sse) echo 60000 ;;
        *) echo 200000 ;;
    esac
}

scratch=""
trap 'if [ -n "$scratch" ]; then rm -rf "$scratch"; fi' EXIT
if [ "$mode" = ci ]; then
    scratch=$(mktemp -d)
fi

cargo +nightly fuzz build
failed=()
for target in $(cargo +nightly fuzz list); do
    # -timeout: one input taking longer is a finding; -malloc_limit_mb: so is one allocation
    # over 1 GiB (the largest a legitimate tiny input needs is far less); -rss_limit_mb: so is
    # the process growing past 4 GiB.
    limits=(-timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=1024 -print_final_stats=1)
    if [ "$mode" = ci ]; then
        runs=$(ci_runs "$target")
        mkdir -p "$scratch/$target"
        echo "=== fuzz $target: the committed seeds, then $runs executions from seed 1"
        ok=1
        cargo +nightly fuzz run "$target" "corpus/$target" -- -runs=0 "${limits[@]}" || ok=0
        if ((ok)); then
            cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
                -seed=1 -runs="$runs" "${limits[@]}" || ok=0
        fi
    else
        mkdir -p "work/$target"
        echo "=== fuzz $target for ${secs}s"
        ok=1
        cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" -- \
            -max_total_time="$secs" "${limits[@]}" || ok=0
    fi
    if ((!ok)); then
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzzing: no crashes ($mode)"
