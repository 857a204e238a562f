#!/usr/bin/env bash
# A thresh gateway over llama.cpp's llama-server (BENCHMARKS.md, "A gateway over
# llama-server"): the same plain requests straight to llama-server and through the gateway
# (alternating runs), then the strategies sweep through the gateway. One run on this machine;
# the gateway and llama-server share its cores.
#   bash scripts/bench-gateway-llama.sh OUT_DIR     # RUNS=5 REQUESTS=48 by default
# STREAM=1: the plain requests are streamed (and time to first token compared); QUALITY=0
# skips the strategies sweep.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:?usage: bench-gateway-llama.sh OUT_DIR}"
mkdir -p "$out"
bash scripts/fetch-models.sh
bash scripts/build-llama-cpp.sh
cargo build --release -p thresh-server -p thresh-bench
gguf=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
llama_port="${LLAMA_PORT:-8403}" gateway_port="${GATEWAY_PORT:-8404}"
# 8 slots of 2048 tokens; --no-repack keeps hosts with AMX from crashing (scripts/build-llama-cpp.sh).
# --top-k 0 --min-p 0: the direct requests sample as the gateway's do (it sends thresh's
# defaults, OpenAI's: no top-k, no min-p), not with llama-server's own top-k 40, min-p 0.05.
target/llama.cpp/bin/llama-server -m "$gguf" -np 8 -c 16384 -t "$(nproc)" --no-repack \
  --top-k 0 --min-p 0 \
  --host 127.0.0.1 --port "$llama_port" >"$out/llama-server.log" 2>&1 &
peer=$!
target/release/thresh serve --port "$gateway_port" --policy "http://127.0.0.1:$llama_port" \
  --policy-tokenizer "$gguf" --policy-startup-timeout 120 >"$out/gateway.log" 2>&1 &
gateway=$!
trap 'kill $peer $gateway 2>/dev/null || true' EXIT
bash scripts/wait-healthy.sh "http://127.0.0.1:$gateway_port/health" 120 "$out/gateway.log"
bash scripts/bench-gateway-overhead.sh "$out" "$llama_port" "$gateway_port"
[ "${QUALITY:-1}" = 1 ] && target/release/thresh-bench quality --base-url "http://127.0.0.1:$gateway_port" --prompts 8 \
  --n0 2 --multiples 1,4 --alphas 0.5,0.9 --sr-candidates 8 --max-tokens 64 --seed 1 \
  --output "$out/quality.json"
true
