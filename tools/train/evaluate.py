#!/usr/bin/env python3
"""Quality of the exported model on held-out text, per domain.

  /usr/bin/python3 tools/train/evaluate.py [--gguf media/models/demo-moe.gguf] [--json out.json]

Prints
  1. bits per byte per domain on the held-out documents of the corpus
     (tools/train/data/heldout.jsonl; a uniform distribution over bytes
     gives 8).  Each document is cut into chunks of n_ctx-1 tokens, each chunk
     is evaluated as BOS + chunk, and every chunk token is scored; bits are
     divided by the UTF-8 bytes of the scored tokens.
  2. per layer, the share of top-k routing slots each expert receives in
     each domain, and the mutual information I(domain; expert) in bits
     (0 = routing ignores the domain; its ceiling is log2(#domains) = 2.32).
"""
import argparse
import json
import math
import os
import sys
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama_bins import REPO  # noqa: E402
from reference_trace import load  # noqa: E402

DOMAIN_ORDER = ["en", "de", "code", "data", "math"]


def chunks(ids, n):
    return [ids[i:i + n] for i in range(0, len(ids), n)]


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.path.join(REPO, "media", "models", "demo-moe.gguf"))
    ap.add_argument("--checkpoint")
    ap.add_argument("--heldout", default=os.path.join(HERE, "data", "heldout.jsonl"))
    ap.add_argument("--max-tokens-per-domain", type=int, default=40000)
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, cfg, tok = load(None if args.checkpoint else args.gguf, args.checkpoint)
    E, L, k = cfg.n_expert, cfg.n_layer, cfg.n_expert_used

    docs = defaultdict(list)
    for line in open(args.heldout, encoding="utf-8"):
        d = json.loads(line)
        docs[d["domain"]].append(d["text"])
    domains = [d for d in DOMAIN_ORDER if d in docs] + sorted(set(docs) - set(DOMAIN_ORDER))

    res = {"model": os.path.relpath(args.checkpoint or args.gguf, REPO), "domains": {}}
    usage = {}
    for dom in domains:
        bits = 0.0
        nbytes = 0
        ntok = 0
        counts = torch.zeros(L, E)
        batch = []
        for text in docs[dom]:
            for c in chunks(tok.encode(text), cfg.ctx - 1):
                if ntok >= args.max_tokens_per_domain:
                    break
                batch.append(c)
                ntok += len(c)
        for c in batch:
            ids = torch.tensor([[tok.bos_id] + c])
            logits, infos = model(ids)
            logp = torch.log_softmax(logits[0, :-1].double(), -1)
            tgt = ids[0, 1:]
            bits += float(-logp.gather(1, tgt[:, None]).sum()) / math.log(2)
            nbytes += len(tok.decode_bytes(c))
            for l, info in enumerate(infos):
                # routing of the chunk's own tokens (position 0 is BOS)
                counts[l] += torch.bincount(info["topi"][0, 1:].reshape(-1), minlength=E).float()
        usage[dom] = counts / counts.sum(1, keepdim=True)
        res["domains"][dom] = {"docs": len(docs[dom]), "tokens": ntok, "bytes": nbytes,
                               "bits_per_byte": round(bits / nbytes, 4),
                               "bits_per_token": round(bits / ntok, 4)}

    print(f"model {res['model']}: {L} layers, {E} experts, top-{k}")
    print("\nBits per byte on held-out text (uniform over bytes = 8.00)")
    print(f"{'domain':8s} {'docs':>5s} {'tokens':>7s} {'bytes':>8s} {'bits/byte':>9s} {'bits/token':>10s}")
    tb = tt = 0.0
    for dom in domains:
        r = res["domains"][dom]
        print(f"{dom:8s} {r['docs']:5d} {r['tokens']:7d} {r['bytes']:8d} {r['bits_per_byte']:9.3f} {r['bits_per_token']:10.3f}")
        tb += r["bits_per_byte"] * r["bytes"]
        tt += r["bytes"]
    res["all_bits_per_byte"] = round(tb / tt, 4)
    print(f"{'all':8s} {'':5s} {'':7s} {int(tt):8d} {tb / tt:9.3f}")

    print("\nExpert usage per layer and domain: % of top-k slots (each row sums to 100)")
    res["usage"] = {}
    res["mutual_information_bits"] = []
    for l in range(L):
        print(f"layer {l}  " + " ".join(f"{'e' + str(e):>5s}" for e in range(E)) + "   top expert")
        for dom in domains:
            u = usage[dom][l]
            print(f"  {dom:6s}  " + " ".join(f"{100 * float(x):5.1f}" for x in u) + f"   e{int(u.argmax())}")
            res["usage"].setdefault(dom, []).append([round(float(x), 4) for x in u])
        # I(D;E) with domains weighted equally: H(E) - mean_d H(E|d)
        P = torch.stack([usage[d][l] for d in domains])
        pm = P.mean(0)
        h = lambda p: float(-(p * torch.log2(p.clamp(min=1e-12))).sum())  # noqa: E731
        mi = h(pm) - sum(h(P[i]) for i in range(len(domains))) / len(domains)
        res["mutual_information_bits"].append(round(mi, 4))
    print("\nI(domain; expert) per layer, bits (0 = domain-blind, max log2(%d) = %.2f): %s"
          % (len(domains), math.log2(len(domains)), " ".join(f"L{l}={m:.3f}" for l, m in
                                                           enumerate(res["mutual_information_bits"]))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
