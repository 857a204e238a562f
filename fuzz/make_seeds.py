#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (small, hand-made files; no model weights).

Run from the repository root: python3 fuzz/make_seeds.py. The tiny GGUF and safetensors
models here match the TinySpec of fuzz_targets/safetensors.rs (hidden 16, intermediate 24,
1 layer, 2 heads, 1 KV head, vocabulary 32, tied embeddings).
"""
import json
import os
import random
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = random.Random(7)


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def floats(n):
    return [rng.uniform(-0.2, 0.2) for _ in range(n)]


H, I, HEADS, KV, V, CTX = 16, 24, 2, 1, 32, 64
HD = H // HEADS

# Hugging Face names and (rows, cols) shapes of the tiny Llama.
HF = {
    "model.embed_tokens.weight": (V, H),
    "model.layers.0.self_attn.q_proj.weight": (HEADS * HD, H),
    "model.layers.0.self_attn.k_proj.weight": (KV * HD, H),
    "model.layers.0.self_attn.v_proj.weight": (KV * HD, H),
    "model.layers.0.self_attn.o_proj.weight": (H, HEADS * HD),
    "model.layers.0.mlp.gate_proj.weight": (I, H),
    "model.layers.0.mlp.up_proj.weight": (I, H),
    "model.layers.0.mlp.down_proj.weight": (H, I),
    "model.layers.0.input_layernorm.weight": (H,),
    "model.layers.0.post_attention_layernorm.weight": (H,),
    "model.norm.weight": (H,),
}
GG = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
}
for hf, gg in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
               ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
               ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
               ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
               ("post_attention_layernorm", "ffn_norm")]:
    GG[f"model.layers.0.{hf}.weight"] = f"blk.0.{gg}.weight"


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# --- safetensors -------------------------------------------------------------------------
def safetensors(tensors):
    header, blob = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


full = {n: ("F32", s, struct.pack(f"<{numel(s)}f", *floats(numel(s)))) for n, s in HF.items()}
put("safetensors", "tiny-llama-f32", safetensors(full))
one = {"model.norm.weight": ("F16", (H,), struct.pack(f"<{H}e", *floats(H)))}
put("safetensors", "one-f16-tensor", safetensors(one))
meta = b'{"__metadata__":{"format":"pt"}}'.ljust(40)
put("safetensors", "metadata-only", struct.pack("<Q", len(meta)) + meta)

# --- GGUF ----------------------------------------------------------------------------------
TOKENS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
    ["\u0120", "\u010a", "ab", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
TYPES = [1] * 29 + [3, 3, 3]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gval(v):
    """(type id, bytes) of a metadata value."""
    if isinstance(v, bool):
        return 7, struct.pack("<B", v)
    if isinstance(v, int):
        return 4, struct.pack("<I", v)
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        return 8, gstr(v)
    if isinstance(v, list):
        t, _ = gval(v[0])
        return 9, struct.pack("<IQ", t, len(v)) + b"".join(gval(x)[1] for x in v)
    raise TypeError(v)


def gguf(metadata, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        t, b = gval(v)
        out += gstr(k) + struct.pack("<I", t) + b
    data, infos = b"", b""
    for name, (ty, shape, raw) in tensors.items():
        data += b"\0" * (-len(data) % alignment)
        dims = list(reversed(shape))
        infos += gstr(name) + struct.pack("<I", len(dims)) + \
            struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ty, len(data))
        data += raw
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


md = {
    "general.architecture": "llama",
    "llama.embedding_length": H,
    "llama.feed_forward_length": I,
    "llama.block_count": 1,
    "llama.attention.head_count": HEADS,
    "llama.attention.head_count_kv": KV,
    "llama.context_length": CTX,
    "llama.attention.layer_norm_rms_epsilon": 1e-5,
    "llama.rope.freq_base": 10000.0,
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "default",
    "tokenizer.ggml.tokens": TOKENS,
    "tokenizer.ggml.token_type": TYPES,
    "tokenizer.ggml.merges": ["a b"],
    "tokenizer.ggml.bos_token_id": 31,
    "tokenizer.ggml.eos_token_id": 30,
    "tokenizer.ggml.add_bos_token": False,
    "tokenizer.chat_template": CHATML,
}
ts = {}
for hf, shape in HF.items():
    n = numel(shape)
    if hf.endswith("down_proj.weight"):
        ts[GG[hf]] = (1, shape, struct.pack(f"<{n}e", *floats(n)))  # F16
    else:
        ts[GG[hf]] = (0, shape, struct.pack(f"<{n}f", *floats(n)))  # F32
put("gguf", "tiny-llama", gguf(md, ts))
md_q = dict(md, **{"general.architecture": "qwen2", "tokenizer.ggml.pre": "qwen2"})
md_q = {k.replace("llama.", "qwen2."): v for k, v in md_q.items()}
put("gguf", "tiny-qwen2", gguf(md_q, ts))
put("gguf", "metadata-only", gguf({"general.architecture": "llama", "general.alignment": 64,
                                    "x.list": [1, 2, 3]}, {}))

# --- tokenizer.json ------------------------------------------------------------------------
special = lambda i, c: {"id": i, "content": c, "single_word": False, "lstrip": False,
                        "rstrip": False, "normalized": False, "special": True}
bpe = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [special(29, "<|im_start|>"), special(30, "<|im_end|>")],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None,
              "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
              "byte_fallback": False, "ignore_merges": False,
              "vocab": {t: i for i, t in enumerate(TOKENS)}, "merges": ["a b"]},
}
put("tokenizer", "bpe-bytelevel.json", json.dumps(bpe))
wordlevel = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [0],
                                                    "tokens": ["[CLS]"]}}},
    "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
    "model": {"type": "WordLevel", "vocab": {"[CLS]": 0, "[UNK]": 1, "hello": 2, "world": 3},
              "unk_token": "[UNK]"},
}
put("tokenizer", "wordlevel.json", json.dumps(wordlevel))
unigram = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": None,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                      "split": True},
    "post_processor": None,
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                "split": True},
    "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": False,
              "vocab": [["<unk>", 0.0], ["\u2581", -1.0], ["h", -2.0], ["e", -2.0],
                        ["l", -2.0], ["o", -2.0], ["\u2581hello", -0.5]]},
}
put("tokenizer", "unigram.json", json.dumps(unigram))

# --- chat templates (first byte even: template; odd: tokenizer_config.json) ----------------
put("chat_template", "chatml", "\x00" + CHATML)
put("chat_template", "llama3",
    "\x00{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set c = m['content'] | trim %}{% else %}{% set c = m['content'] %}{% endif %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ c }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
put("chat_template", "alternating",
    "\x00{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate') }}{% endif %}{{ m['content'].strip() }}"
    "{% if not loop.last %}{{ eos_token }}{% endif %}{% endfor %}")
put("chat_template", "config-string",
    "\x01" + json.dumps({"bos_token": "<s>", "eos_token": {"content": "<|im_end|>"},
                          "chat_template": CHATML}))
put("chat_template", "config-named",
    "\x01" + json.dumps({"eos_token": "<|im_end|>", "chat_template": [
        {"name": "tool_use", "template": "{{ tools }}"}, {"name": "default", "template": CHATML}]}))

# --- request bodies ------------------------------------------------------------------------
reqs = {
    "completion": {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.7,
                   "top_p": 0.9, "stop": ["\n"], "seed": 1},
    "completion-ids": {"prompt": [72, 105, 33], "max_tokens": 4, "n": 2, "logprobs": 2},
    "chat": {"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hi"}],
             "max_completion_tokens": 16, "stream": True,
             "stream_options": {"include_usage": True}},
    "chat-alignment": {"model": "tiny", "messages": [{"role": "user", "content": "Why?"}],
                       "alignment": {"strategy": "best_of_n", "n": 4, "return_candidates": True,
                                     "score": True}},
    "chat-spec-rejection": {"messages": [{"role": "user", "content": "Hi"}],
                            "alignment": {"strategy": "speculative_rejection"}, "top_k": 5,
                            "min_tokens": 1, "max_tokens": 32, "return_token_ids": True},
    "rewards": {"model": "tiny-rm", "input": [{"prompt": "Hi", "response": "Hello"}]},
    "rewards-messages": {"messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello"}]},
    "correct": {"question": "2+2?", "answer": "5", "max_tokens": 32, "temperature": 0.0},
    "correct-batch": {"inputs": [{"question": "a", "answer": "b"},
                                 {"messages": [{"role": "user", "content": "c"}],
                                  "answer": "d"}]},
}
for name, body in reqs.items():
    put("request", name + ".json", json.dumps(body))

# --- SSE (first byte: chunk size) ----------------------------------------------------------
put("sse", "openai-stream",
    "\x05: started strategy=none\n\n"
    'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\r\n\r\n'
    'data: {"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
put("sse", "multiline-and-fields",
    "\x02event: message\nid: 7\nretry: 10\ndata: {\"a\":\ndata:1}\n\n: comment\ndata:tail")

# --- JSONL ---------------------------------------------------------------------------------
put("bench_jsonl", "prompts.jsonl",
    '{"prompt": "Write a haiku."}\n\n{"prompt": "Name a colour.", "max_tokens": 4}\n'
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},'
    ' {"role": "user", "content": "Bye"}]}\n')

# The first byte picks the format: 0 auto, 1 thresh, 2 hh-rlhf, 3 ultra-feedback,
# 4 pku-safe-rlhf, 5 aligner, 6 kldo, 7 trl-unpaired.
lines = {
    1: [{"prompt": "Hi", "responses": [{"text": "Hello", "label": True, "score": 1.5},
                                        {"text": "Go away", "label": False, "kind": "refusal"}],
         "pairs": [[0, 1]]},
        {"messages": [{"role": "user", "content": "2+2?"}],
         "responses": [{"text": "5"}], "correction": {"answer": "5", "corrected": "4"}}],
    2: [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant: No"}],
    3: [{"prompt": "Hi", "chosen": [{"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello"}],
         "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "No"}],
         "score_chosen": 8.0, "score_rejected": 2.0}],
    4: [{"prompt": "Hi", "response_0": "Hello", "response_1": "No", "is_response_0_safe": True,
         "is_response_1_safe": False, "safer_response_id": 0}],
    5: [{"question": "2+2?", "answer": "5", "correction": "4"}],
    6: [{"safety": "safe", "prompt": "Hi", "acc_responses": ["Hello"], "rej_responses": ["No"]}],
    7: [{"prompt": "Hi", "completion": "Hello", "label": True},
        {"prompt": [{"role": "user", "content": "Hi"}],
         "completion": [{"role": "assistant", "content": "No"}], "label": False}],
}
names = {1: "thresh", 2: "hh-rlhf", 3: "ultra-feedback", 4: "pku-safe-rlhf", 5: "aligner",
         6: "kldo", 7: "trl-unpaired"}
for fmt, rows in lines.items():
    text = "".join(json.dumps(r) + "\n" for r in rows)
    put("trainer_jsonl", names[fmt], bytes([fmt]) + text.encode())
    put("trainer_jsonl", names[fmt] + "-auto", b"\x00\xef\xbb\xbf" + text.encode())
