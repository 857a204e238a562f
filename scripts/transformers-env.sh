#!/usr/bin/env bash
# A Python environment with Hugging Face transformers on PyTorch, the Best-of-N peer of
# BENCHMARKS.md's daemon benchmark (scripts/bench_transformers.py). PyPI's Linux torch wheel
# brings its CUDA libraries (about 7 GB installed); it runs on the CPU here.
#   bash scripts/transformers-env.sh   # prints the environment's python
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TRANSFORMERS_VENV:-$root/target/transformers-venv}"
if ! "$venv/bin/python" -c "import torch, transformers, gguf, accelerate" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.9.1 transformers==5.24.0 accelerate==1.15.0 gguf==0.19.0 >&2
fi
echo "$venv/bin/python"
