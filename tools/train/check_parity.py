#!/usr/bin/env python3
"""Parity between the PyTorch reference and llama.cpp on the shipped GGUF.

  /usr/bin/python3 tools/train/check_parity.py [FILES...]

For each text (default: test/fixtures/demo-sample.md and the transition
fixtures, markers removed) it runs reference_trace.py's model and
native/llama_trace.cpp (compiled on first use against the llama.cpp static
libraries of the project's CMake build cache, or --build-dir), and compares:
  - token ids must be identical,
  - the selected expert set must match on >= --min-expert-match of
    (token, layer) pairs,
  - mean |log p(next) difference| <= --max-mean-logprob-diff (2e-3 nats),
  - max |log p(next) difference| <= --max-logprob-diff (0.25 nats) for every
    token, and <= --max-logprob-diff-no-flip (1e-2) in a text where no
    (token, layer) pair selects different experts.  A near-tie router flip
    changes that token's output, and through attention later tokens a little,
    by design of top-k routing; it is counted by the expert-match share.
Also compares perplexity with llama-perplexity on the concatenated held-out
text when --perplexity FILE is given.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare_traces import compare  # noqa: E402
from llama_bins import REPO  # noqa: E402
from reference_trace import build_trace, load  # noqa: E402


def build_llama_trace(build_dir, out):
    build_dir = build_dir or sorted(glob.glob(os.path.expanduser("~/.cache/moe-lens/native/*/build")))[-1]
    src = os.path.join(os.path.dirname(build_dir), "llama.cpp")
    libs = [os.path.join(build_dir, "llama.cpp", p) for p in
            ["src/libllama.a", "ggml/src/libggml.a", "ggml/src/libggml-cpu.a", "ggml/src/libggml-base.a"]]
    cmd = ["g++", "-O2", "-std=c++17", os.path.join(HERE, "native", "llama_trace.cpp"),
           "-I" + os.path.join(src, "include"), "-I" + os.path.join(src, "ggml", "include"),
           *libs, "-fopenmp", "-lpthread", "-ldl", "-o", out]
    subprocess.run(cmd, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--gguf", default=os.path.join(REPO, "media", "models", "demo-moe.gguf"))
    ap.add_argument("--build-dir", help="llama.cpp CMake build dir with the static libraries")
    ap.add_argument("--llama-trace", default=os.path.join(HERE, "out", "llama_trace"))
    ap.add_argument("--min-expert-match", type=float, default=0.99)
    ap.add_argument("--max-logprob-diff", type=float, default=0.25)
    ap.add_argument("--max-logprob-diff-no-flip", type=float, default=0.01)
    ap.add_argument("--max-mean-logprob-diff", type=float, default=0.002)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not os.path.exists(args.llama_trace):
        os.makedirs(os.path.dirname(args.llama_trace), exist_ok=True)
        build_llama_trace(args.build_dir, args.llama_trace)
    files = args.files or [os.path.join(REPO, "test/fixtures/demo-sample.md")] + \
        sorted(glob.glob(os.path.join(REPO, "test/fixtures/transitions/*.txt")))
    model, cfg, tok = load(args.gguf)

    ok = True
    tot_pairs = tot_match = 0
    worst = 0.0
    for f in files:
        text = open(f, encoding="utf-8", newline="").read()
        text = re.sub(r"^<<<domain:\w+>>>\n", "", text, flags=re.M)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as tf:
            tf.write(text)
        try:
            out = subprocess.run([args.llama_trace, args.gguf, tf.name, str(args.threads)],
                                 capture_output=True, text=True, check=True).stdout
        finally:
            os.unlink(tf.name)
        theirs = json.loads(out)
        ids = [t["id"] for t in theirs["tokens"]]
        if ids != tok.encode(text, add_bos=True):
            print(f"{os.path.relpath(f, REPO)}: TOKEN IDS DIFFER")
            ok = False
            continue
        ours = {"tokens": build_trace(model, cfg, tok, ids)}
        r = compare(ours, theirs)
        tot_pairs += r["pairs"]
        tot_match += round(r["expert_set_match"] * r["pairs"])
        worst = max(worst, r["logprob_abs_diff_max"])
        limit = args.max_logprob_diff if r["expert_set_match"] < 1.0 else args.max_logprob_diff_no_flip
        print(f"{os.path.relpath(f, REPO)}: {r['tokens']} tokens, experts match "
              f"{100 * r['expert_set_match']:.2f}% (ordered {100 * r['expert_order_match']:.2f}%), "
              f"|dlogp| max {r['logprob_abs_diff_max']:.2e} mean {r['logprob_abs_diff_mean']:.2e}, "
              f"|dprob| max {r['router_prob_abs_diff_max']:.2e}")
        ok &= (r["expert_set_match"] >= args.min_expert_match
               and r["logprob_abs_diff_mean"] <= args.max_mean_logprob_diff
               and r["logprob_abs_diff_max"] <= limit)
    print(f"overall: experts match on {tot_match}/{tot_pairs} (token, layer) pairs "
          f"({100 * tot_match / max(1, tot_pairs):.2f}%), worst |dlogp| {worst:.2e} "
          f"-> {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
