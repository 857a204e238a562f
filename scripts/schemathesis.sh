#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI, pinned) generates requests from thresh's own
# `GET /openapi.json` and runs every check it has (`--checks all`: no server error, the status
# and body each response declares, schema-valid requests accepted, schema-invalid ones
# rejected, ...) against `thresh serve` on the demo models with a small token limit. Exits
# non-zero on any failure.
#
#   bash scripts/schemathesis.sh [MAX_EXAMPLES_PER_OPERATION]   (default 150: over 1,000 cases
#                                                                over the 7 operations)
#
# Knobs (environment): THRESH_BIN (default: $CARGO_TARGET_DIR or target, then debug/thresh,
# built when missing),
# SCHEMATHESIS_REQUIREMENT (schemathesis==4.32.5), SCHEMATHESIS_SEED (0),
# SCHEMATHESIS_REPORT (a folder for the JUnit report; default: none).
set -euo pipefail

examples="${1:-150}"
if ! [[ "$examples" =~ ^[0-9]+$ ]] || [ "$examples" -lt 1 ]; then
    echo "schemathesis: MAX_EXAMPLES_PER_OPERATION must be a positive integer, got '$examples'" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
requirement="${SCHEMATHESIS_REQUIREMENT:-schemathesis==4.32.5}"
seed="${SCHEMATHESIS_SEED:-0}"
thresh="${THRESH_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/thresh}"

if [ ! -x "$thresh" ]; then
    cargo build -p thresh-server
fi
bash scripts/fetch-models.sh

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== schemathesis: installing $requirement into a scratch venv"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$requirement"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
# The demo policy and reward, with limits that keep each generated request to a few
# milliseconds of decoding: at most 4 new tokens, 4 candidates, 1,024 prompt tokens (the hook
# drops prompts that could be longer: a token count is not a JSON Schema keyword).
export SCHEMATHESIS_MAX_INPUT_TOKENS=1024
"$thresh" serve --host 127.0.0.1 --port "$port" \
    --policy models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
    --reward models/all-minilm-l6-v2 \
    --max-tokens-limit 4 --max-n 4 --max-input-tokens "$SCHEMATHESIS_MAX_INPUT_TOKENS" >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
    if curl -fsS "$base/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis: the server exited during start-up:" >&2
        tail -20 "$tmp/server.log" >&2
        exit 1
    fi
    sleep 0.5
done
curl -fsS "$base/health" >/dev/null || { echo "schemathesis: /health never answered" >&2; exit 1; }

report=()
if [ -n "${SCHEMATHESIS_REPORT:-}" ]; then
    mkdir -p "$SCHEMATHESIS_REPORT"
    report=(--report junit --report-dir "$SCHEMATHESIS_REPORT")
fi
echo "== schemathesis: --checks all, up to $examples examples per operation, seed $seed"
rc=0
# scripts/schemathesis_hooks.py drops bodies that break a rule JSON Schema cannot state (one
# field against another, or the prompt's token count; each 400 is documented).
PYTHONPATH="$root/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$tmp/venv/bin/schemathesis" --no-color run "$base/openapi.json" --checks all \
    --max-examples "$examples" --seed "$seed" --workers 1 --request-timeout 60 \
    "${report[@]}" || rc=$?
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis: the server died during the run:" >&2
    tail -20 "$tmp/server.log" >&2
    exit 1
fi
if [ "$rc" != 0 ]; then
    echo "schemathesis: failures (server log tail below)" >&2
    tail -20 "$tmp/server.log" >&2
fi
exit "$rc"
