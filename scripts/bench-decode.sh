#!/usr/bin/env bash
# Decode throughput of thresh against llama.cpp on the same GGUF, in one run (BENCHMARKS.md).
# thresh: a 64-token prompt prefilled once and forked to each batch size, 128 new tokens per row.
# llama.cpp: llama-batched-bench with the same shape (-pps: the prompt is shared, as in thresh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
models="${THRESH_MODELS:-$root/models}"
gguf="$models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
batches="${BATCHES:-1,8,16,32,64}"
reps="${REPS:-3}"
bash scripts/fetch-models.sh >/dev/null
bash scripts/build-llama-cpp.sh
llama="${LLAMA_CPP_DIR:-$root/target/llama.cpp}/bin"
for weights in ${WEIGHTS:-q8_0 dense}; do
  echo "== thresh ($weights weights)"
  cargo bench -q -p thresh-decoding --bench decode -- --model "$gguf" --weights "$weights" \
    --batches "$batches" --reps "$reps"
done
echo "== llama.cpp llama-batched-bench"
"$llama/llama-batched-bench" -m "$gguf" -c 16384 -b 2048 -ub 512 -npp 64 -ntg 128 \
  -npl "$batches" -pps -t "$(nproc)" 2>&1 | grep -E '^\|'
