#!/usr/bin/env python3
"""Perplexity computed exactly the way llama.cpp's `llama-perplexity` does it,
with the PyTorch model, and (if the binary is found) side by side with it.

  /usr/bin/python3 tools/train/perplexity.py -f heldout.txt [-c 256] [--no-llama]

llama-perplexity (tools/perplexity/perplexity.cpp, perplexity()):
  tokens = tokenize(text, add_special=true)   -> BOS first when add_bos
  n_chunk = len(tokens) // n_ctx
  chunk i = tokens[i*n_ctx : (i+1)*n_ctx], its first token replaced by BOS
  scored: positions first = n_ctx/2 .. n_ctx-2, each predicting the next token
  PPL = exp(mean NLL); "+/-" = PPL * sqrt(var(NLL) / (count - 1))
"""
import argparse
import math
import os
import re
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama_bins import REPO, find_bin  # noqa: E402
from reference_trace import load  # noqa: E402


@torch.no_grad()
def torch_perplexity(model, tok, text, n_ctx):
    tokens = tok.encode(text, add_bos=True)
    n_chunk = len(tokens) // n_ctx
    if n_chunk == 0 or len(tokens) < 2 * n_ctx:
        raise SystemExit(f"need at least {2 * n_ctx} tokens, text has {len(tokens)}")
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    for i in range(n_chunk):
        chunk = tokens[i * n_ctx:(i + 1) * n_ctx]
        chunk[0] = tok.bos_id
        logits, _ = model(torch.tensor([chunk]))
        logp = torch.log_softmax(logits[0].double(), -1)
        for j in range(first, n_ctx - 1):
            v = -float(logp[j, chunk[j + 1]])
            nll += v
            nll2 += v * v
            count += 1
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    return ppl, ppl * math.sqrt(var / (count - 1)), n_chunk, count


def llama_perplexity(binary, gguf, path, n_ctx, threads):
    out = subprocess.run([binary, "-m", gguf, "-f", path, "-c", str(n_ctx), "-t", str(threads),
                          "-b", str(n_ctx)], capture_output=True, text=True)
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out.stdout + out.stderr)
    if m:
        return float(m.group(1)), float(m.group(2))
    # With output captured, the asynchronous logger may drop the last stderr
    # lines; the running estimate "[n]ppl," on stdout after the last chunk is
    # the same number (without the +/-).
    running = re.findall(r"\[(\d+)\]([0-9.]+),", out.stdout)
    if out.returncode != 0 or not running:
        raise SystemExit("llama-perplexity failed:\n" + (out.stdout + out.stderr)[-3000:])
    return float(running[-1][1]), float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", "-m", default=os.path.join(REPO, "media", "models", "demo-moe.gguf"))
    ap.add_argument("--checkpoint")
    ap.add_argument("-f", "--file", required=True)
    ap.add_argument("-c", "--ctx", type=int, default=256)
    ap.add_argument("--bin-dir")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, cfg, tok = load(None if args.checkpoint else args.gguf, args.checkpoint)
    text = open(args.file, encoding="utf-8", newline="").read()
    ppl, err, n_chunk, count = torch_perplexity(model, tok, text, args.ctx)
    print(f"pytorch          PPL = {ppl:.4f} +/- {err:.5f}  ({n_chunk} chunks, {count} scored tokens)")
    if not args.no_llama:
        lp, le = llama_perplexity(find_bin("llama-perplexity", args.bin_dir), args.gguf, args.file,
                                  args.ctx, args.threads)
        print(f"llama-perplexity PPL = {lp:.4f} +/- {le:.5f}")
        print(f"relative difference {abs(lp - ppl) / lp:.2e}")


if __name__ == "__main__":
    main()
