#!/usr/bin/env bash
# Bounded soak run: `thresh serve` with the demo models under `thresh-bench load --mix`
# (plain, Best-of-N, Speculative Rejection, streamed and client-cancelled requests) for
# MINUTES, sampling the server's RSS, open file descriptors and /metrics counters every
# SOAK_INTERVAL seconds into OUT_DIR/samples.csv, then `thresh-bench soak-report` checks:
# after warm-up RSS grows less than SOAK_MAX_GROWTH_PCT % and no request failed except by
# design (cancelled on purpose). Exits non-zero when a criterion fails.
#
#   scripts/soak.sh [MINUTES] [OUT_DIR]        # defaults: 20, target/soak
#
# Knobs (environment): SOAK_RATE (req/s, 0.5), SOAK_MAX_TOKENS (32), SOAK_CANDIDATES (4),
# SOAK_MIX (plain=4,best-of-n=2,speculative-rejection=2,stream=2,cancel=1),
# SOAK_CONCURRENCY (6), SOAK_WARMUP_S (180), SOAK_INTERVAL (10), SOAK_MAX_GROWTH_PCT (5),
# SOAK_SEED (0), SOAK_NO_BUILD=1 (use the binaries in target/release, or $CARGO_TARGET_DIR/release, as they are),
# SOAK_SERVER_ARGS (extra `thresh serve` flags).
set -euo pipefail

minutes="${1:-20}"
out="${2:-target/soak}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

rate="${SOAK_RATE:-0.5}"
max_tokens="${SOAK_MAX_TOKENS:-32}"
candidates="${SOAK_CANDIDATES:-4}"
mix="${SOAK_MIX:-plain=4,best-of-n=2,speculative-rejection=2,stream=2,cancel=1}"
concurrency="${SOAK_CONCURRENCY:-6}"
warmup_s="${SOAK_WARMUP_S:-180}"
interval="${SOAK_INTERVAL:-10}"
max_growth="${SOAK_MAX_GROWTH_PCT:-5}"
seed="${SOAK_SEED:-0}"

if ! [[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "soak: MINUTES must be a number, got '$minutes'" >&2
  exit 2
fi
duration_s=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
mkdir -p "$out"

if [ "${SOAK_NO_BUILD:-0}" != 1 ]; then
  echo "soak: building release binaries"
  cargo build --release -p thresh-server -p thresh-bench
fi
bash scripts/fetch-models.sh

release="${CARGO_TARGET_DIR:-$root/target}/release"
thresh="$release/thresh"
bench="$release/thresh-bench"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"

server_pid=""
sampler_pid=""
cleanup() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "soak: starting thresh serve on $base (log: $out/server.log)"
# shellcheck disable=SC2086
"$thresh" serve --host 127.0.0.1 --port "$port" ${SOAK_SERVER_ARGS:-} >"$out/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 600); do
  if curl -fsS "$base/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "soak: the server exited during start-up:" >&2
    tail -20 "$out/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "$base/health" >/dev/null || { echo "soak: /health never answered" >&2; exit 1; }

# One sample: elapsed seconds, VmRSS (KiB), open fds, and the request counters of /metrics
# (completion routes only): all, status 4xx, status 5xx, jobs stopped as cancelled.
sample() {
  local t0="$1" now rss fds metrics
  now=$(date +%s.%N)
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo "")
  fds=$(ls "/proc/$server_pid/fd" 2>/dev/null | wc -l)
  metrics=$(curl -fsS --max-time 5 "$base/metrics" 2>/dev/null || true)
  printf '%s\n' "$metrics" | awk -v t="$(awk -v a="$now" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')" \
    -v rss="$rss" -v fds="$fds" '
    /^thresh_requests_total\{/ && /route="\/v1\/(chat\/)?completions"/ {
      n = $NF + 0; req += n
      if (match($0, /status="[0-9]+"/)) {
        s = substr($0, RSTART + 8, RLENGTH - 9) + 0
        if (s >= 400 && s < 500) e4 += n
        if (s >= 500) e5 += n
        if (s == 499) c499 += n
      }
    }
    /^thresh_requests_cancelled_total/ { canc += $NF + 0 }
    END {
      printf "%s,%s,%s,%d,%d,%d,%d,%d\n", t, rss, fds, req, e4 - c499, e5, c499, canc
    }'
}

samples="$out/samples.csv"
echo "elapsed_s,rss_kib,fds,requests,errors_4xx,errors_5xx,client_closed_499,cancelled" >"$samples"
t0=$(date +%s.%N)
(
  while kill -0 "$server_pid" 2>/dev/null; do
    sample "$t0" >>"$samples"
    sleep "$interval"
  done
) &
sampler_pid=$!

echo "soak: $minutes min of --mix $mix at $rate req/s (max_tokens $max_tokens, candidates $candidates)"
load_rc=0
"$bench" load --base-url "$base" --mix "$mix" --request-rate "$rate" \
  --duration "$duration_s" --max-tokens "$max_tokens" --candidates "$candidates" \
  --max-concurrency "$concurrency" --timeout 300 --seed "$seed" --no-progress \
  --output "$out/load.json" | tee "$out/load.txt" || load_rc=$?

kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
sleep 2
sample "$t0" >>"$samples"
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "soak: the server died during the run:" >&2
  tail -20 "$out/server.log" >&2
  exit 1
fi
if [ "$load_rc" != 0 ]; then
  echo "soak: thresh-bench load failed (exit $load_rc)" >&2
  exit 1
fi

"$bench" soak-report --samples "$samples" --load "$out/load.json" --warmup-s "$warmup_s" \
  --max-growth-pct "$max_growth" --chart "$out/soak.svg" --output "$out/soak.json"
