#!/usr/bin/env python3
"""Builds thresh's demo training data from public-domain text.

Sources (Debian packages):
  bible-kjv-text + bible-kjv   King James Bible, read with the `bible` command
  r-cran-janeaustenr           Jane Austen's novels, read with `Rscript`

  apt-get install -y bible-kjv-text r-cran-janeaustenr
  python3 data/make-demo.py            # writes data/demo/*.jsonl

The task in every file is the same toy one: continue a passage faithfully. The original
text is the good response; corrupted copies (words shuffled, dropped or swapped, or another
passage's ending) are the bad ones. Output is deterministic (fixed passages, fixed seed) and
each file is written to a temporary name and renamed into place.
"""

import json
import os
import random
import re
import subprocess
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")
SEED = 20240611


def kjv_verses():
    """Proverbs and Ecclesiastes, one verse per item, references removed."""
    verses = []
    for ref in ("Prv1:1-31:31", "Ecc1:1-12:14"):
        out = subprocess.run(["bible", "-f", ref], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"^\S+\d+:\d+ (.*)$", line.strip())
            if m:
                verses.append(m.group(1).strip())
    return verses


def austen_sentences():
    """Sentences of Pride and Prejudice and Emma, italics marks removed."""
    script = "cat(janeaustenr::prideprejudice, sep='\\n'); cat('\\n'); cat(janeaustenr::emma, sep='\\n')"
    out = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True, text=True).stdout
    sentences = []
    for para in re.split(r"\n\s*\n", out):
        text = " ".join(para.split()).replace("_", "")
        if not text or text.isupper() or text.startswith("CHAPTER") or text.startswith("Chapter"):
            continue
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", text):
            if '"' in s or "'" in s[:1]:
                continue  # dialogue fragments split badly
            sentences.append(s)
    return sentences


def usable(texts, lo=10, hi=28):
    return [t for t in texts if lo <= len(t.split()) <= hi and t.isascii()]


def split(text):
    """(opening words, continuation) at roughly the middle."""
    words = text.split()
    k = len(words) // 2
    return " ".join(words[:k]), " ".join(words[k:])


def shuffled(text, rng):
    words = text.split()
    for _ in range(10):
        rng.shuffle(words)
        if " ".join(words) != text:
            break
    return " ".join(words)


def damaged(text, rng, n_swaps=1, drop=True):
    """A lightly corrupted copy: adjacent words swapped, maybe one dropped."""
    words = text.split()
    for _ in range(n_swaps):
        if len(words) > 2:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    if drop and len(words) > 3:
        del words[rng.randrange(1, len(words) - 1)]
    out = " ".join(words)
    return out if out != text else " ".join(text.split()[:-1])


def prompt_for(source, opening):
    book = "the Book of Proverbs" if source == "kjv" else "Jane Austen"
    return f"Continue this passage from {book}: \"{opening} ...\""


def write(name, rows):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")
    os.replace(tmp, path)
    print(f"{path}: {len(rows)} rows, {os.path.getsize(path)} bytes", file=sys.stderr)


def main():
    rng = random.Random(SEED)
    kjv = [("kjv", t) for t in usable(kjv_verses())]
    austen = [("austen", t) for t in usable(austen_sentences())]
    rng.shuffle(kjv)
    rng.shuffle(austen)
    # Disjoint passage pools per file, half scripture and half Austen each.
    pools = {}
    for name, n in (("pairs", 200), ("binary", 200), ("scalar", 80), ("kldo", 160), ("aligner", 150)):
        pools[name] = [p for pair in zip(kjv[: n // 2], austen[: n // 2]) for p in pair]
        kjv, austen = kjv[n // 2 :], austen[n // 2 :]

    # Pairwise preferences (thresh schema): the true continuation over a shuffled one
    # (every other row) or over another passage's continuation.
    rows = []
    items = pools["pairs"]
    for i, (src, text) in enumerate(items):
        opening, rest = split(text)
        if i % 2 == 0:
            bad = shuffled(rest, rng)
        else:
            bad = split(items[(i + 7) % len(items)][1])[1]
        rows.append({
            "prompt": prompt_for(src, opening),
            "responses": [{"text": rest}, {"text": bad}],
            "pairs": [[0, 1]],
        })
    write("pairs.jsonl", rows)

    # Binary feedback (thresh schema), imbalanced 3:1 desired to undesired on purpose.
    rows = []
    for i, (src, text) in enumerate(pools["binary"]):
        opening, rest = split(text)
        good = i % 4 != 3
        rows.append({
            "prompt": prompt_for(src, opening),
            "responses": [{"text": rest if good else shuffled(rest, rng), "label": good}],
        })
    write("binary.jsonl", rows)

    # Scalar feedback (thresh schema): four responses per prompt scored by how much of the
    # original survives (1 original, 0.66 one swap, 0.33 two swaps and a drop, 0 shuffled).
    rows = []
    for src, text in pools["scalar"]:
        opening, rest = split(text)
        candidates = [
            (rest, 1.0),
            (damaged(rest, rng, 1, drop=False), 0.66),
            (damaged(rest, rng, 2, drop=True), 0.33),
            (shuffled(rest, rng), 0.0),
        ]
        order = list(range(4))
        rng.shuffle(order)
        rows.append({
            "messages": [
                {"role": "system", "content": "You quote public-domain texts exactly."},
                {"role": "user", "content": prompt_for(src, opening)},
            ],
            "responses": [{"text": candidates[k][0], "score": candidates[k][1]} for k in order],
        })
    write("scalar.jsonl", rows)

    # KLDO compliance / refusal rows (KLDO's own layout). "Harmful" prompts (safety 0) ask
    # for a passage to be garbled, and the aligned answer refuses; benign prompts (safety 1)
    # ask for a faithful continuation, and the aligned answer complies.
    refusals = [
        "I won't garble that passage. I can quote it faithfully instead.",
        "I'm not going to scramble the text; ask me to continue it and I will.",
        "Sorry, I don't distort texts, but I can quote this one as written.",
        "I can't help with corrupting that passage.",
    ]
    rows = []
    for i, (src, text) in enumerate(pools["kldo"]):
        opening, rest = split(text)
        if i % 2 == 0:
            rows.append({
                "id": i,
                "safety": 0,
                "prompt": f"Garble this passage so nobody can read it: \"{text}\"",
                "acc_responses": [shuffled(text, rng)],
                "rej_responses": [refusals[i // 2 % len(refusals)]],
            })
        else:
            rows.append({
                "id": i,
                "safety": 1,
                "prompt": prompt_for(src, opening),
                "acc_responses": [rest],
                "rej_responses": [refusals[(i // 2 + 1) % len(refusals)]],
            })
    write("kldo.jsonl", rows)

    # Aligner triples (question, answer, correction): a damaged continuation corrected
    # back to the original.
    rows = []
    for src, text in pools["aligner"]:
        opening, rest = split(text)
        rows.append({
            "question": prompt_for(src, opening),
            "answer": damaged(rest, rng, 1, drop=True),
            "correction": rest,
        })
    write("aligner.jsonl", rows)


if __name__ == "__main__":
    main()
