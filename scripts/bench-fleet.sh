#!/usr/bin/env bash
# Two policy replicas against one behind a thresh gateway, for Best-of-8 requests at 8 clients.
# Replica a (port 8501) is pinned to core 0 and replica b (8502) to core 1 with taskset, one
# compute thread each; gateway 1 (8511) runs over a alone, gateway 2 (8512) over a and b, both
# with the reward model (demo MiniLM) in the gateway, unpinned. RUNS alternating runs of
# REQUESTS requests (random 32-word prompts, 64 new tokens with ignore_eos, seed = the run) go
# to each gateway; then the summary: requests/s, generated tokens/s, the ratio per run, and
# how the two-replica gateway spread its requests.
#   bash scripts/bench-fleet.sh OUT_DIR
set -euo pipefail
out="${1:?usage: bench-fleet.sh OUT_DIR}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$out"
gguf=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
bin=target/release/thresh
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for r in "a 0 8501" "b 1 8502"; do
  set -- $r
  RAYON_NUM_THREADS=1 taskset -c "$2" "$bin" serve --port "$3" >"$out/replica-$1.log" 2>&1 &
  pids+=($!)
done
"$bin" serve --port 8511 --policy http://127.0.0.1:8501/v1 --policy-tokenizer "$gguf" \
  >"$out/gateway-1.log" 2>&1 &
pids+=($!)
"$bin" serve --port 8512 --policy http://127.0.0.1:8501/v1,http://127.0.0.1:8502/v1 \
  --policy-tokenizer "$gguf" >"$out/gateway-2.log" 2>&1 &
pids+=($!)
for p in 8501 8502 8511 8512; do
  bash scripts/wait-healthy.sh "http://127.0.0.1:$p/health" 300 "$out/*.log"
done
for run in $(seq 1 "${RUNS:-3}"); do
  for port in 8511 8512; do
    target/release/thresh-bench load --base-url "http://127.0.0.1:$port" \
      --dataset random --random-input-len 32 --random-output-len 64 \
      --num-requests "${REQUESTS:-32}" --max-concurrency 8 --warmup-requests 1 \
      --strategy best_of_n --candidates 8 --seed "$run" --no-stream --no-progress \
      --output "$out/fleet-$port-$run.json" >/dev/null
  done
done
curl -sf http://127.0.0.1:8512/metrics | grep '^thresh_policy_replica_requests_total' \
  >"$out/gateway-2.metrics" || true
python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
def runs(port):
    fs = sorted(glob.glob(f"{out}/fleet-{port}-*.json"), key=lambda f: int(f.rsplit("-", 1)[1][:-5]))
    return [json.load(open(f)) for f in fs]
one, two = runs(8511), runs(8512)
rps = lambda r: r["throughput"]["requests_per_s"]
print("one replica  req/s", [round(rps(r), 3) for r in one], "median %.3f" % statistics.median(map(rps, one)))
print("two replicas req/s", [round(rps(r), 3) for r in two], "median %.3f" % statistics.median(map(rps, two)))
print("median ratio (two / one, per run): %.3f" % statistics.median(rps(b) / rps(a) for a, b in zip(one, two)))
p50 = lambda r: r["latency_ms"]["e2e"]["median"]
print("e2e p50 ms one", [round(p50(r)) for r in one], "two", [round(p50(r)) for r in two])
print(open(f"{out}/gateway-2.metrics").read())
PY
