#!/usr/bin/env bash
# Waits until URL answers 2xx (a /health route), polling every half second.
#   bash scripts/wait-healthy.sh URL SECONDS LOG   # exit 1 after SECONDS, naming LOG
set -euo pipefail
url="${1:?usage: wait-healthy.sh URL SECONDS LOG}" seconds="${2:-60}" log="${3:-its log}"
for _ in $(seq 1 $((seconds * 2))); do
  curl -sf "$url" >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "$url did not become healthy in $seconds s; see $log" >&2
exit 1
