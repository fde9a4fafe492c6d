#!/usr/bin/env python3
"""Build the domain-transition evaluation fixtures from HELD-OUT documents.

  /usr/bin/python3 tools/train/build_fixtures.py

Writes test/fixtures/transitions/NN.txt.  Each file is a sequence of segments
cut from held-out documents of different domains, each preceded by a marker
line `<<<domain:NAME>>>` (format described in test/fixtures/README.md).

The domain sequence is an Eulerian circuit of the complete directed graph on
the domains, repeated CIRCUITS times with different orders, so every ordered
pair (prose->code, code->prose, en->de, en->data, ...) occurs exactly CIRCUITS
times.  Segments are cut at line boundaries to SEG_MIN..SEG_MAX bytes, and no
held-out text is used twice.  Deterministic (seeded RNG).
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DOMAINS = ["en", "de", "code", "data", "math"]
CIRCUITS = 3
SEGS_PER_FILE = 6
SEG_MIN, SEG_MAX = 160, 380


def euler_circuit(nodes, rng):
    """Hierholzer on the complete digraph without self-loops; edges visited in
    a random order so different seeds give different circuits."""
    out = {a: [b for b in nodes if b != a] for a in nodes}
    for a in out:
        rng.shuffle(out[a])
    stack, path = [rng.choice(nodes)], []
    while stack:
        v = stack[-1]
        if out[v]:
            stack.append(out[v].pop())
        else:
            path.append(stack.pop())
    return path[::-1]          # len = edges + 1, first == last


class SegmentSource:
    """Hands out consecutive, non-overlapping line-aligned pieces of held-out text."""

    def __init__(self, docs):
        self.lines = []
        for d in docs:
            self.lines.extend(d["text"].splitlines(keepends=True))
            self.lines.append("\n")
        self.pos = 0

    def take(self, rng):
        target = rng.randint(SEG_MIN, SEG_MAX)
        # skip blank lines at the start of a segment
        while self.pos < len(self.lines) and not self.lines[self.pos].strip():
            self.pos += 1
        out, n = [], 0
        while self.pos < len(self.lines) and n < target:
            ln = self.lines[self.pos]
            if n and n + len(ln.encode()) > SEG_MAX:
                break
            out.append(ln)
            n += len(ln.encode())
            self.pos += 1
        if not out:
            raise SystemExit("ran out of held-out text; lower CIRCUITS or segment sizes")
        text = "".join(out)
        if len(text.encode()) > SEG_MAX and "\n" not in text.rstrip("\n"):
            text = text.encode()[:SEG_MAX].decode("utf-8", "ignore").rsplit(" ", 1)[0]
        return text.rstrip("\n") + "\n"


def main():
    held = os.path.join(HERE, "data", "heldout.jsonl")
    out_dir = os.path.join(REPO, "test", "fixtures", "transitions")
    docs = {d: [] for d in DOMAINS}
    for line in open(held, encoding="utf-8"):
        d = json.loads(line)
        docs[d["domain"]].append(d)
    rng = random.Random(2024)
    src = {d: SegmentSource(docs[d]) for d in DOMAINS}

    seq = []
    for c in range(CIRCUITS):
        circ = euler_circuit(DOMAINS, rng)
        seq.extend(circ if not seq else circ[1:] if seq[-1] == circ[0] else circ)
    # split into files of SEGS_PER_FILE segments; consecutive files overlap by
    # one domain (with a fresh segment) so no transition of the sequence is lost
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if f.endswith(".txt"):
            os.unlink(os.path.join(out_dir, f))
    pairs = {}
    files = [seq[i:i + SEGS_PER_FILE] for i in range(0, len(seq), SEGS_PER_FILE - 1)]
    files = [f for f in files if len(f) >= 2]
    for n, doms in enumerate(files):
        parts = []
        for d in doms:
            parts.append(f"<<<domain:{d}>>>\n{src[d].take(rng)}")
        with open(os.path.join(out_dir, f"{n + 1:02d}.txt"), "w", encoding="utf-8") as fh:
            fh.write("".join(parts))
        for a, b in zip(doms, doms[1:]):
            pairs[f"{a}->{b}"] = pairs.get(f"{a}->{b}", 0) + 1
    print(f"{len(files)} files, {sum(pairs.values())} transitions, "
          f"{len(pairs)} kinds, each kind {min(pairs.values())}..{max(pairs.values())} times", file=sys.stderr)
    with open(os.path.join(out_dir, "index.json"), "w") as fh:
        json.dump({"files": [f"{n + 1:02d}.txt" for n in range(len(files))],
                   "domains": DOMAINS, "transition_counts": dict(sorted(pairs.items()))}, fh, indent=1)


if __name__ == "__main__":
    main()
