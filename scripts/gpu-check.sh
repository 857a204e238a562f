#!/usr/bin/env bash
# The prepared device check for NVIDIA GPUs (issue: the GPU path). Two halves:
#
#   bash scripts/gpu-check.sh prepare        # here, without a GPU: build and stage the payload
#   bash scripts/gpu-check.sh stash          # there: keep what this call carried (.gpu/stage*)
#   bash scripts/gpu-check.sh run OUT        # there: throughput, trainer, strategies, parity
#
# `prepare` builds the release binary with `--features cuda` (CUDA 13.0 from PyPI wheels,
# scripts/cuda-toolkit.sh), strips and compresses it, and packs it with the demo models into
# .gpu/stage1, .gpu/stage2, ...: each stage stays under one device call's 64 MiB, so a machine
# with no network receives the ~150 MB payload over consecutive calls to the same warm
# machine, each carrying one stage and running `stash`; the last also runs `run`. The GPU
# machine supplies the driver and the CUDA 13 libraries (cuBLAS, cuRAND, NVRTC, cudart),
# which `run` finds wherever they are installed (system toolkit or Python wheels).
#
# `run` writes three parts to OUT, each in its own folder as soon as it finishes, so a run cut
# short keeps what it measured: decode/ (throughput at batch 1 to 1024 with the host and the
# device sampler, and the sampler's share of a step), trainer/ (a few LoRA SFT and DPO steps of
# thresh-train on the GPU: tokens/s and peak device memory) and strategies/ (Speculative
# Rejection against Best-of-N up to N = 4096 in the paper's relative-compute metric, merged
# requests, CPU/GPU logits parity). GPU_CHECK_PARTS="decode trainer" runs only those parts;
# GPU_CHECK_ARGS adds flags to every `thresh gpu-check` call. About 7 minutes on an H100.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STASH="${THRESH_GPU_STASH:-/root/thresh-gpu}"
STAGE_BYTES=$((58 * 1024 * 1024))
# The device `run` measures; GPU_CHECK_DEVICE=cpu dry-runs the script with CPU binaries.
DEVICE="${GPU_CHECK_DEVICE:-cuda:0}"

prepare() {
  bash scripts/fetch-models.sh
  bash scripts/cuda-toolkit.sh --link
  # shellcheck disable=SC1091
  source .cuda/env.sh
  # The binary runs on another machine's CPU: build it for x86-64-v3 (AVX2, FMA) rather than
  # this host's native target (.cargo/config.toml), in a target folder of its own.
  RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$ROOT/target/portable" \
    cargo build --release -p thresh-server -p thresh-trainer --features cuda
  rm -rf .gpu && mkdir -p .gpu/pack
  local bin
  for bin in thresh thresh-train; do
    strip -o ".gpu/pack/$bin" "target/portable/release/$bin"
    xz -T0 -6 ".gpu/pack/$bin"
  done
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
    xz -d "$work/thresh.xz" "$work/thresh-train.xz"
    chmod +x "$work/thresh" "$work/thresh-train"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv | tee "$out/nvidia-smi.csv"
  export LD_LIBRARY_PATH="$(find_cuda_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$work/thresh" | grep -E "cuda|cublas|curand|nvrtc|not found" || true
  local t0=$SECONDS part
  for part in ${GPU_CHECK_PARTS:-decode trainer strategies}; do
    case "$part" in
      # A failing part is reported and the next one still runs.
      decode) check "$work" "$out/decode" --sections throughput || echo "gpu-check: decode failed" ;;
      trainer) trainer "$work" "$out/trainer" ;;
      strategies)
        check "$work" "$out/strategies" --sections quality,merged,parity --n-prompts 4 ||
          echo "gpu-check: strategies failed"
        ;;
      *) echo "gpu-check: unknown part $part (decode, trainer, strategies)" >&2 ;;
    esac
    echo "gpu-check: $part done at $((SECONDS - t0)) s" | tee -a "$out/gpu-check.log"
  done
}

# One `thresh gpu-check` call writing to its own folder.
check() {
  local work="$1" dir="$2"
  shift 2
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  "$work/thresh" gpu-check --device "$DEVICE" \
    --policy "$work/SmolLM2-135M-Instruct.Q4_1.gguf" --reward "$work/minilm" \
    --prompts bench/data/instructions.jsonl --out "$dir" "$@" ${GPU_CHECK_ARGS:-} 2>&1 | tee "$dir/gpu-check.log"
}

# A few LoRA SFT and DPO steps of thresh-train on the GPU: its summary (tokens/s, peak device
# memory as the driver reports it) and metrics come back; the trained models stay behind.
trainer() {
  local work="$1" dir="$2" cmd
  mkdir -p "$dir"
  for cmd in sft dpo; do
    rm -rf "$STASH/train/$cmd"
    "$work/thresh-train" "$cmd" --model "$work/SmolLM2-135M-Instruct.Q4_1.gguf" \
      --data data/demo/pairs.jsonl --out "$STASH/train/$cmd" --lora-rank 8 \
      --max-steps "${GPU_CHECK_TRAIN_STEPS:-10}" --batch-size 8 --checkpoint-every 0 \
      --no-progress --device "$DEVICE" >"$dir/$cmd.json" 2>"$dir/$cmd.log" ||
      echo "gpu-check: thresh-train $cmd failed (see $dir/$cmd.log)" | tee -a "$dir/$cmd.log"
    cp "$STASH/train/$cmd/metrics.jsonl" "$dir/$cmd-metrics.jsonl" 2>/dev/null || true
    echo "thresh-train $cmd:" && cat "$dir/$cmd.json"
  done
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
