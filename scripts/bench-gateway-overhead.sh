#!/usr/bin/env bash
# The overhead runs of scripts/bench-gateway-llama.sh and bench-gateway-vllm.sh: RUNS
# alternating runs of REQUESTS plain completions (8 in flight, 32 tokens at most, seed = the
# run), straight to the backend and through the gateway, then their summary. STREAM=1 streams
# them.
#   bash scripts/bench-gateway-overhead.sh OUT_DIR DIRECT_PORT GATEWAY_PORT
set -euo pipefail
out="${1:?usage: bench-gateway-overhead.sh OUT_DIR DIRECT_PORT GATEWAY_PORT}"
direct="${2:?}" gateway="${3:?}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stream=(--no-stream)
[ "${STREAM:-0}" = 1 ] && stream=()
for run in $(seq 1 "${RUNS:-5}"); do
  for port in "$direct" "$gateway"; do
    target/release/thresh-bench load --base-url "http://127.0.0.1:$port" \
      --num-requests "${REQUESTS:-48}" --max-concurrency 8 --max-tokens 32 --warmup-requests 1 \
      --seed "$run" "${stream[@]}" --no-progress --output "$out/ov-$port-$run.json" >/dev/null
  done
done
python3 scripts/bench_gateway_summary.py "$out" "$direct" "$gateway"
