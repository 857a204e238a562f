"""Best-of-N sampling with Hugging Face transformers on PyTorch (CPU), the peer of
`server/examples/bench_http.rs`: the same GGUF, chat prompt, temperature and token count.

Prints one JSON line per repetition: {"seconds": generation wall time, "answers": [texts]}.
The caller scores the answers with its own reward model.

    python scripts/bench_transformers.py --gguf models/.../SmolLM2-135M-Instruct.Q4_1.gguf
"""

import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompt", default="Give me one tip for staying healthy.")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.8)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    folder, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": args.prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]

    def sample(tokens: int, seed: int):
        torch.manual_seed(seed)
        with torch.inference_mode():
            return model.generate(
                ids,
                do_sample=True,
                temperature=args.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=tokens,
                min_new_tokens=tokens,  # EOS is ignored until the last token, as ignore_eos
                num_return_sequences=args.n,
                pad_token_id=tok.eos_token_id,
            )

    sample(4, 0)  # warm-up
    for rep in range(args.reps):
        t = time.perf_counter()
        out = sample(args.tokens, rep + 1)
        seconds = time.perf_counter() - t
        new = out[:, ids.shape[1]:]
        assert new.shape[1] == args.tokens, new.shape
        answers = tok.batch_decode(new, skip_special_tokens=True)
        print(json.dumps({"seconds": seconds, "answers": answers}), flush=True)


if __name__ == "__main__":
    main()
