#!/usr/bin/env bash
# The daemon's benchmark (BENCHMARKS.md, "The HTTP daemon"): thresh serve on the demo models
# against llama.cpp's llama-server on the same GGUF, in one run on this machine.
#   bash scripts/bench-serve.sh            # BENCH_* variables pass through to the example
#   WITH_TRANSFORMERS=1 bash scripts/bench-serve.sh   # also Hugging Face transformers (7 GB env)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/fetch-models.sh
bash scripts/build-llama-cpp.sh
gguf=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
port="${LLAMA_PORT:-8399}"
threads="${LLAMA_THREADS:-$(nproc)}"
# 8 slots of 2048 tokens: room for the chat prompt plus 128 new tokens per slot.
target/llama.cpp/bin/llama-server -m "$gguf" -np 8 -c 16384 -t "$threads" \
  --host 127.0.0.1 --port "$port" >target/llama-server.log 2>&1 &
peer=$!
trap 'kill $peer 2>/dev/null || true' EXIT
bash scripts/wait-healthy.sh "http://127.0.0.1:$port/health" 60 target/llama-server.log
if [ "${WITH_TRANSFORMERS:-0}" = 1 ]; then
  BENCH_TRANSFORMERS="$(bash scripts/transformers-env.sh)"
  export BENCH_TRANSFORMERS
fi
BENCH_PEER="http://127.0.0.1:$port" cargo run --release -p thresh-server --example bench_http
