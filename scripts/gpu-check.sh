#!/usr/bin/env bash
# The prepared device check for NVIDIA GPUs (issue: the GPU path). Two halves:
#
#   bash scripts/gpu-check.sh prepare        # here, without a GPU: build and stage the payload
#   bash scripts/gpu-check.sh stash          # there: keep what this call carried (.gpu/stage*)
#   bash scripts/gpu-check.sh run OUT        # there: logits parity, throughput, strategies
#
# `prepare` builds the release binary with `--features cuda` (CUDA 13.0 from PyPI wheels,
# scripts/cuda-toolkit.sh), strips and compresses it, and packs it with the demo models into
# .gpu/stage1, .gpu/stage2, ...: each stage stays under one device call's 64 MiB, so a machine
# with no network receives the ~150 MB payload over consecutive calls to the same warm
# machine, each carrying one stage and running `stash`; the last also runs `run`. The GPU
# machine supplies the driver and the CUDA 13 libraries (cuBLAS, cuRAND, NVRTC, cudart),
# which `run` finds wherever they are installed (system toolkit or Python wheels).
#
# `run` writes gpu-check.json, gpu-check.md and the log to OUT and finishes in a few minutes
# on an H100 (section timings are printed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STASH="${THRESH_GPU_STASH:-/root/thresh-gpu}"
STAGE_BYTES=$((58 * 1024 * 1024))

prepare() {
  bash scripts/fetch-models.sh
  bash scripts/cuda-toolkit.sh --link
  # shellcheck disable=SC1091
  source .cuda/env.sh
  # The binary runs on another machine's CPU: build it for x86-64-v3 (AVX2, FMA) rather than
  # this host's native target (.cargo/config.toml), in a target folder of its own.
  RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$ROOT/target/portable" \
    cargo build --release -p thresh-server --features cuda
  rm -rf .gpu && mkdir -p .gpu/pack
  strip -o .gpu/pack/thresh target/portable/release/thresh
  xz -T0 -6 .gpu/pack/thresh
  local models="${THRESH_MODELS:-$ROOT/models}"
  mkdir -p .gpu/pack/minilm
  cp "$models"/all-minilm-l6-v2/{config.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json} .gpu/pack/minilm/
  # f16 halves MiniLM to 45 MB; the loader widens it to f32 again.
  python3 scripts/safetensors-f16.py "$models/all-minilm-l6-v2/model.safetensors" .gpu/pack/minilm/model.safetensors
  cp "$models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" .gpu/pack/
  # One stream, cut into stage-sized pieces, each piece in its own stage folder.
  tar -C .gpu/pack -cf - . | split -b "$STAGE_BYTES" -d -a 1 - .gpu/piece.
  local i=1
  for p in .gpu/piece.*; do
    mkdir -p ".gpu/stage$i"
    mv "$p" ".gpu/stage$i/"
    i=$((i + 1))
  done
  rm -rf .gpu/pack
  (cd .gpu && for s in stage*; do (cd "$s" && sha256sum piece.*); done >SHA256SUMS && cp SHA256SUMS stage1/)
  local n=$((i - 1))
  echo "gpu-check: $n stages under .gpu/ ($(du -sh .gpu | cut -f1)). Device calls, back to back:" >&2
  for s in $(seq 1 "$n"); do
    local cmd="bash scripts/gpu-check.sh stash"
    [[ $s == "$n" ]] && cmd="$cmd && bash scripts/gpu-check.sh run \$OUT"
    echo "  carry [\".gpu/stage$s\"]  command: $cmd" >&2
  done
}

stash() {
  mkdir -p "$STASH"
  cp -r .gpu/stage*/. "$STASH/"
  ls -la "$STASH"
}

find_cuda_libs() {
  # One folder for cuBLAS and cuBLASLt (their versions must match), others only where missing.
  local dirs=() lib hit d found
  for lib in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13; do
    found=0
    for d in "${dirs[@]}"; do [[ -e "$d/$lib" ]] && found=1; done
    [[ $found == 1 ]] && continue
    hit="$(find /usr/local /usr/lib /usr/lib64 /opt -name "$lib" -not -path '*stubs*' 2>/dev/null | head -1 || true)"
    [[ -n "$hit" ]] && dirs+=("$(dirname "$hit")")
  done
  (
    IFS=:
    echo "${dirs[*]}"
  )
}

run() {
  local out="${1:?usage: gpu-check.sh run OUT}"
  mkdir -p "$out"
  local work="$STASH/unpacked"
  if [[ ! -x "$work/thresh" ]]; then
    if ! (cd "$STASH" && sha256sum -c --quiet SHA256SUMS); then
      echo "gpu-check: the payload in $STASH is incomplete or corrupt: carry every .gpu/stageN" >&2
      exit 1
    fi
    rm -rf "$work" && mkdir -p "$work"
    cat "$STASH"/piece.* | tar -C "$work" -xf -
    xz -d "$work/thresh.xz"
    chmod +x "$work/thresh"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv | tee "$out/nvidia-smi.csv"
  export LD_LIBRARY_PATH="$(find_cuda_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$work/thresh" | grep -E "cuda|cublas|curand|nvrtc|not found" || true
  local t0=$SECONDS
  "$work/thresh" gpu-check --device cuda:0 \
    --policy "$work/SmolLM2-135M-Instruct.Q4_1.gguf" --reward "$work/minilm" \
    --prompts bench/data/instructions.jsonl --out "$out" ${GPU_CHECK_ARGS:-} 2>&1 | tee "$out/gpu-check.log"
  echo "gpu-check: done in $((SECONDS - t0)) s" | tee -a "$out/gpu-check.log"
}

case "${1:-}" in
  prepare) prepare ;;
  stash) stash ;;
  run) run "${2:-}" ;;
  *)
    echo "usage: $0 prepare | stash | run OUT" >&2
    exit 2
    ;;
esac
