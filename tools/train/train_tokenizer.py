#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer on the training split of the corpus.

  /usr/bin/python3 tools/train/train_tokenizer.py --vocab-size 3072
writes tools/train/out/tokenizer.json (merges) and prints statistics.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer, train_bpe  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(here, "data"))
    ap.add_argument("--out", default=os.path.join(here, "out", "tokenizer.json"))
    ap.add_argument("--vocab-size", type=int, default=3072)
    args = ap.parse_args()

    docs = [json.loads(l) for l in open(os.path.join(args.data, "train.jsonl"), encoding="utf-8")]
    t0 = time.time()
    merges = train_bpe((d["text"] for d in docs), args.vocab_size,
                       log=lambda s: print(s, file=sys.stderr))
    tok = Tokenizer(merges)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tok.save(args.out)
    print(f"trained {len(merges)} merges (vocab {tok.vocab_size}) in {time.time() - t0:.1f}s")
    # bytes per token per domain, a quick sanity check of the vocabulary
    by_dom = {}
    for d in docs:
        b, n = by_dom.get(d["domain"], (0, 0))
        by_dom[d["domain"]] = (b + len(d["text"].encode()), n + len(tok.encode(d["text"])))
    for dom, (b, n) in by_dom.items():
        print(f"{dom:5s} {b:9d} bytes {n:8d} tokens  {b / n:.2f} bytes/token")


if __name__ == "__main__":
    main()
