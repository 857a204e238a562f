#!/usr/bin/env bash
# Two policy replicas against one behind a thresh gateway, for Best-of-8 requests at 8 clients.
# Replica a (port 8501) is pinned to core 0 and replica b (8502) to core 1 with taskset, one
# compute thread each; gateway 1 (8511) runs over a alone, gateway 2 (8512) over a and b, both
# with the reward model (demo MiniLM) in the gateway, unpinned; gateway 3 (8513) is gateway 2
# with --policy-max-in-flight MAX_IN_FLIGHT (default 4: half the clients). RUNS alternating
# runs of REQUESTS requests (random 32-word prompts, 64 new tokens with ignore_eos, seed = the
# run) go to each gateway; then the summary: requests/s, the ratio per run, the CPU time each
# gateway process used per run (from /proc: what it takes from the replicas' cores), and how
# the two-replica gateways spread their requests.
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
"$bin" serve --port 8513 --policy http://127.0.0.1:8501/v1,http://127.0.0.1:8502/v1 \
  --policy-tokenizer "$gguf" --policy-max-in-flight "${MAX_IN_FLIGHT:-4}" \
  >"$out/gateway-3.log" 2>&1 &
pids+=($!)
declare -A gateway_pid=([8511]=${pids[2]} [8512]=${pids[3]} [8513]=${pids[4]})
# CPU seconds (user + system) process $1 has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
for p in 8501 8502 8511 8512 8513; do
  bash scripts/wait-healthy.sh "http://127.0.0.1:$p/health" 300 "$out/*.log"
done
for run in $(seq 1 "${RUNS:-3}"); do
  for port in 8511 8512 8513; do
    before=$(cpu "${gateway_pid[$port]}")
    target/release/thresh-bench load --base-url "http://127.0.0.1:$port" \
      --dataset random --random-input-len 32 --random-output-len 64 \
      --num-requests "${REQUESTS:-32}" --max-concurrency 8 --warmup-requests 1 \
      --strategy best_of_n --candidates 8 --seed "$run" --no-stream --no-progress \
      --output "$out/fleet-$port-$run.json" >/dev/null
    echo "$port $run $(cpu "${gateway_pid[$port]}") $before" >>"$out/gateway-cpu.txt"
  done
done
for g in 2:8512 3:8513; do
  curl -sf "http://127.0.0.1:${g#*:}/metrics" \
    | grep -E '^thresh_policy_(replica_requests_total|affinity_spills_total)' \
    >"$out/gateway-${g%%:*}.metrics" || true
done
python3 - "$out" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
def runs(port):
    fs = sorted(glob.glob(f"{out}/fleet-{port}-*.json"), key=lambda f: int(f.rsplit("-", 1)[1][:-5]))
    return [json.load(open(f)) for f in fs]
one, two, three = runs(8511), runs(8512), runs(8513)
rps = lambda r: r["throughput"]["requests_per_s"]
p50 = lambda r: r["latency_ms"]["e2e"]["median"]
cpu = {}
for line in open(f"{out}/gateway-cpu.txt"):
    port, run, after, before = line.split()
    cpu.setdefault(int(port), []).append(float(after) - float(before))
for name, port, rs in [("one replica", 8511, one), ("two replicas", 8512, two),
                       ("two, limited", 8513, three)]:
    wall = [r["duration_s"] for r in rs]
    print(f"{name:13} req/s", [round(rps(r), 3) for r in rs], "median %.3f" % statistics.median(map(rps, rs)),
          "| e2e p50 ms", [round(p50(r)) for r in rs],
          "| gateway CPU s", [round(c, 1) for c in cpu[port]],
          "of wall s", [round(w, 1) for w in wall])
for name, rs in [("two", two), ("two, limited", three)]:
    print(f"median ratio ({name} / one, per run): %.3f" % statistics.median(rps(b) / rps(a) for a, b in zip(one, rs)))
for g in (2, 3):
    print(f"gateway {g}:", open(f"{out}/gateway-{g}.metrics").read())
PY
