#!/usr/bin/env python3
"""Mean reward of a thresh daemon's answers on held-out prompts (the alignment loop's
measurement, BENCHMARKS.md "The alignment loop").

For each k in --ks, every prompt is asked with several seeds: k = 1 is a plain answer scored
by the daemon's reward model (`alignment.score`), k > 1 is Best-of-k. Prints one JSON object:
{"k": {"mean_reward": ..., "answers": ...}, ...}. Python 3 standard library only.

    python3 scripts/loop_reward.py --url http://127.0.0.1:8080 \
        --prompts bench/data/instructions.jsonl --first 10 --seeds 4 --ks 1,4
"""
import argparse
import concurrent.futures
import json
import statistics
import urllib.request


def ask(url, prompt, k, seed, max_tokens, temperature):
    if k == 1:
        alignment = {"strategy": "none", "score": True}
    else:
        alignment = {"strategy": "best_of_n", "candidates": k}
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "alignment": alignment,
    }
    req = urllib.request.Request(
        url.rstrip("/") + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=900) as r:
        v = json.load(r)
    reward = v["choices"][0].get("reward")
    if reward is None:
        raise SystemExit(f"no reward in the answer: {v}")
    return reward


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--first", type=int, default=10, help="the first N prompts of the file")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--ks", default="1,4")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=4)
    a = p.parse_args()
    with open(a.prompts) as f:
        prompts = [json.loads(l)["prompt"] for l in f if l.strip()][: a.first]
    out = {}
    for k in [int(x) for x in a.ks.split(",")]:
        jobs = [(q, s) for q in prompts for s in range(a.seeds)]
        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
            rewards = list(
                pool.map(
                    lambda j: ask(a.url, j[0], k, 1000 + j[1], a.max_tokens, a.temperature),
                    jobs,
                )
            )
        out[str(k)] = {"mean_reward": statistics.fmean(rewards), "answers": len(rewards)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
