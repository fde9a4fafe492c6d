#!/usr/bin/env python3
"""Check that llama.cpp tokenizes exactly like the training tokenizer.

  /usr/bin/python3 tools/train/check_tokenizer.py [--gguf media/models/demo-moe.gguf]

Texts checked: test/fixtures/tokenizer/multibyte.txt (accents, CJK, emoji,
combining marks, CRLF, odd whitespace), every held-out corpus document if the
corpus has been built, and the fixture documents under test/fixtures/.  The
Python side reads its merges from the GGUF itself, so what is compared is the
tokenizer that ships.  Exit status 1 on any mismatch.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gguf_io import tokenizer_from_gguf  # noqa: E402
from llama_bins import REPO, find_bin  # noqa: E402


def llama_tokenize(binary, gguf_path, text):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        out = subprocess.run([binary, "-m", gguf_path, "-f", path, "--ids", "--no-escape", "--log-disable"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(REPO, "media", "models", "demo-moe.gguf"))
    ap.add_argument("--bin-dir")
    ap.add_argument("--llama-src")
    args = ap.parse_args()
    binary = find_bin("llama-tokenize", args.bin_dir)
    tok = tokenizer_from_gguf(args.gguf, args.llama_src)

    texts = {"multibyte.txt": open(os.path.join(REPO, "test/fixtures/tokenizer/multibyte.txt"),
                                   encoding="utf-8", newline="").read()}
    held = os.path.join(HERE, "data", "heldout.jsonl")
    if os.path.exists(held):
        for line in open(held, encoding="utf-8"):
            d = json.loads(line)
            texts[d["id"]] = d["text"]
    for p in sorted(glob.glob(os.path.join(REPO, "test/fixtures/transitions/*.txt"))) + \
            [os.path.join(REPO, "test/fixtures/demo-sample.md")]:
        if os.path.exists(p):
            texts[os.path.relpath(p, REPO)] = open(p, encoding="utf-8", newline="").read()

    bad = 0
    n_tok = 0
    for name, text in texts.items():
        ours = tok.encode(text, add_bos=True)       # llama-tokenize adds BOS (add_bos=true)
        theirs = llama_tokenize(binary, args.gguf, text)
        n_tok += len(ours)
        if ours != theirs:
            bad += 1
            i = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            print(f"MISMATCH {name}: first difference at token {i}: python {ours[i:i + 5]} "
                  f"llama.cpp {theirs[i:i + 5]} context {tok.decode(ours[max(0, i - 5):i + 5])!r}")
    print(f"{len(texts) - bad}/{len(texts)} texts identical ({n_tok} tokens)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
