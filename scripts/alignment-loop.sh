#!/usr/bin/env bash
# The alignment loop in one recipe (README "The alignment loop", BENCHMARKS.md):
#   1. serve the demo policy (SmolLM2-135M-Instruct) with the demo reward (MiniLM relevance);
#   2. collect pairs from ranked Best-of-N candidates on the training prompts;
#   3. train the policy on them with DPO (LoRA);
#   4. serve the trained policy and measure, on held-out prompts, the mean reward of plain
#      answers (n = 1) and of Best-of-4, against the original policy's at n = 1, 2, 4, 8.
# The first HOLD_OUT prompts of bench/data/instructions.jsonl are held out; the rest train.
#   bash scripts/alignment-loop.sh            # WORK=target/alignment-loop by default
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${WORK:-target/alignment-loop}"
hold_out="${HOLD_OUT:-10}"
candidates="${CANDIDATES:-8}"
steps="${STEPS:-40}"
port="${PORT:-8321}"
mkdir -p "$work"
bash scripts/fetch-models.sh
cargo build --release -p thresh-server -p thresh-trainer
gguf=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
prompts=bench/data/instructions.jsonl
tail -n +"$((hold_out + 1))" "$prompts" >"$work/train-prompts.jsonl"

serve() { # policy, log
  target/release/thresh serve --policy "$1" --port "$port" >"$work/$2" 2>&1 &
  daemon=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.5
  done
  echo "thresh serve did not start; see $work/$2" >&2
  exit 1
}
stop() { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; }
trap stop EXIT

# 1-2. Collect (resumable: a rerun skips the prompts already in pairs.jsonl).
serve "$gguf" serve-original.log
target/release/thresh-train collect --url "http://127.0.0.1:$port" \
  --prompts "$work/train-prompts.jsonl" --out "$work/pairs.jsonl" \
  --candidates "$candidates" --pairs all --min-margin 0.05 --max-tokens 96 --seed 1 \
  | tee "$work/collect.json"
python3 scripts/loop_reward.py --url "http://127.0.0.1:$port" --prompts "$prompts" \
  --first "$hold_out" --ks 1,2,4,8 | tee "$work/original.json"
stop

# 3. DPO with LoRA from the same GGUF the daemon served.
target/release/thresh-train dpo --model "$gguf" --data "$work/pairs.jsonl" \
  --out "$work/dpo" --lora-rank 8 --max-steps "$steps" --batch-size 4 --lr 5e-4 \
  --beta 0.1 --max-len 256 --no-progress | tee "$work/dpo.json"

# 4. Serve the trained policy and measure it the same way.
serve "$work/dpo/model" serve-trained.log
python3 scripts/loop_reward.py --url "http://127.0.0.1:$port" --prompts "$prompts" \
  --first "$hold_out" --ks 1,4 | tee "$work/trained.json"
