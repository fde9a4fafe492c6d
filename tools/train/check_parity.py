#!/usr/bin/env python3
"""Parity between the PyTorch reference and llama.cpp on the shipped GGUF.

  /usr/bin/python3 tools/train/check_parity.py [FILES...] [--gguf M] [--router-pack P]

For each text (default: test/fixtures/demo-sample.md and the transition
fixtures, markers removed) it runs reference_trace.py's model and the
project's own server (out/bin/moe-lens-server, `npm run build:native`; its
/v1/trace with every router probability), and compares:
  - token ids must be identical,
  - the selected expert set must match on >= --min-expert-match of the
    (token, layer) pairs of all texts together,
  - the mean |log p(next) difference| over all tokens of all texts must be
    <= --max-mean-logprob-diff (2e-3 nats).
Per text it prints the same and the largest difference, over all tokens and
over the tokens whose experts match in every layer.  A near-tie router flip
changes that token's output by design of top-k routing, and later tokens
through attention; flips are counted by the expert-match share, and single
differences are printed, not limited: with 64 nearly flat experts (the
fine-grained model) one flip moved log p by up to 0.68 nats.
Each text must fit in one server window (the model's training context), so
that both sides evaluate it as one sequence.
"""
import argparse
import base64
import glob
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare_traces import compare  # noqa: E402
from llama_bins import REPO, find_bin  # noqa: E402
from reference_trace import build_trace, load  # noqa: E402
from router_pack import apply_pack  # noqa: E402


class Server:
    """moe-lens-server on loopback with a per-run token (native/API.md)."""

    def __init__(self, binary, gguf, threads, router_pack=None):
        self.token = secrets.token_hex(16)
        pack = ["--router-pack", router_pack] if router_pack else []
        self.proc = subprocess.Popen([binary, "-m", gguf, "-t", str(threads), "--port", "0", *pack],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "MOE_LENS_TOKEN": self.token})
        ready = json.loads(self.proc.stdout.readline() or '{"event":"error","message":"no ready line"}')
        if ready.get("event") != "ready":
            self.proc.kill()
            raise SystemExit(f"moe-lens-server did not start: {ready.get('message')}")
        self.url = f"http://{ready['host']}:{ready['port']}"

    def trace(self, text, top_n):
        """The trace's records in the reference's per-token form."""
        req = urllib.request.Request(self.url + "/v1/trace", data=json.dumps({"text": text, "top_n": top_n}).encode(),
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            records = [json.loads(line) for line in r if line.strip()]
        header = records[0]
        if len(header["windows"]) != 1:
            raise SystemExit(f"{header['n_tokens']} tokens do not fit in one server window; parity needs one sequence")
        L, K, N = header["n_moe_layers"], header["k"], header["top_n"]
        tokens = []
        for b in (x for x in records if x["type"] == "batch"):
            arr = lambda name, dt: np.frombuffer(base64.b64decode(b[name]), dtype=dt)  # noqa: E731
            ids, nll = arr("token_ids", "<i4"), arr("nll", "<f4")
            experts = arr("experts", "<i4").reshape(-1, L, K)
            top_ids, top_probs = arr("top_ids", "<i4").reshape(-1, L, N), arr("top_probs", "<f4").reshape(-1, L, N)
            for i in range(b["count"]):
                probs = np.zeros((L, header["model"]["n_expert"]))
                for m in range(L):
                    probs[m, top_ids[i, m]] = top_probs[i, m]
                tokens.append({"id": int(ids[i]), "logprob_next": None if np.isnan(nll[i]) else -float(nll[i]),
                               "experts": experts[i].tolist(), "probs": probs.tolist()})
        if records[-1]["type"] == "error":
            raise SystemExit(f"trace failed: {records[-1]['message']}")
        return tokens

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--gguf", default=os.path.join(REPO, "media", "models", "demo-moe.gguf"))
    ap.add_argument("--router-pack", help="a router pack for --gguf: both sides route with it")
    ap.add_argument("--bin-dir", help="where moe-lens-server is (default: out/bin, then the build cache)")
    ap.add_argument("--min-expert-match", type=float, default=0.99)
    ap.add_argument("--max-mean-logprob-diff", type=float, default=0.002)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    files = args.files or [os.path.join(REPO, "test/fixtures/demo-sample.md")] + \
        sorted(glob.glob(os.path.join(REPO, "test/fixtures/transitions/*.txt")))
    model, cfg, tok = load(args.gguf)
    if args.router_pack:
        meta = apply_pack(model, args.router_pack, args.gguf)
        print(f"router pack {meta['name']!r} (mechanisms {meta['mechanisms'] or 'none'})")
    server = Server(find_bin("moe-lens-server", args.bin_dir), args.gguf, args.threads, args.router_pack)

    try:
        ok = True
        tot_pairs = tot_match = n_dlp = 0
        sum_dlp = 0.0
        worst = 0.0
        for f in files:
            text = open(f, encoding="utf-8", newline="").read()
            text = re.sub(r"^<<<domain:\w+>>>\n", "", text, flags=re.M)
            theirs = {"tokens": server.trace(text, cfg.n_expert)}
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
            print(f"{os.path.relpath(f, REPO)}: {r['tokens']} tokens, experts match "
                  f"{100 * r['expert_set_match']:.2f}% (ordered {100 * r['expert_order_match']:.2f}%), "
                  f"|dlogp| max {r['logprob_abs_diff_max']:.2e} mean {r['logprob_abs_diff_mean']:.2e} "
                  f"(tokens with no flip in any layer: {r['tokens_same_experts']}, mean {r['logprob_abs_diff_mean_same_experts']:.2e}, "
                  f"max {r['logprob_abs_diff_max_same_experts']:.2e}), "
                  f"|dprob| max {r['router_prob_abs_diff_max']:.2e}")
            sum_dlp += r["logprob_abs_diff_mean"] * r["scored_tokens"]
            n_dlp += r["scored_tokens"]
    finally:
        server.close()
    mean_dlp = sum_dlp / max(1, n_dlp)
    ok &= tot_match >= args.min_expert_match * tot_pairs and mean_dlp <= args.max_mean_logprob_diff
    print(f"overall: experts match on {tot_match}/{tot_pairs} (token, layer) pairs "
          f"({100 * tot_match / max(1, tot_pairs):.2f}%), mean |dlogp| {mean_dlp:.2e} over {n_dlp} tokens, "
          f"worst |dlogp| {worst:.2e} "
          f"-> {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
