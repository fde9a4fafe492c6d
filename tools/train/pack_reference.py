#!/usr/bin/env python3
"""Compact PyTorch reference traces of a model and its router packs, for the
parity test in npm test (test/integration/pack-parity.test.ts).

  /usr/bin/python3 tools/train/pack_reference.py \
      --gguf media/models/demo-moe-fine.gguf \
      --packs media/models/packs/demo-moe-fine \
      --out test/fixtures/parity/demo-moe-fine.packs.json.gz \
      test/fixtures/transitions/01.txt test/fixtures/transitions/05.txt ...

For the model's own routers and then each pack (docs/router-packs.md; the base
read from the GGUF, the pack applied by router_pack.apply_pack), every text
(marker lines removed, as check_parity.py does) is run as one sequence, and
only what the test compares is kept: token ids, the selected experts of every
(token, layer) sorted ascending (uint8), and log p(next token) (float32).  The
full comparison (router probabilities, every fixture) is check_parity.py's.

Output (gzip'd JSON, arrays base64 little-endian):
  {"format": "moe-lens-pack-reference", "version": 1, "model", "model_sha256",
   "n_layer", "n_expert", "k",
   "files": [{"file", "n_tokens", "token_ids" (i32)}],
   "routers": [{"pack": null | "packs/.../NAME.gguf", "name", "sha256",
                "files": [{"experts" (u8 [T][L][k]), "logprob_next" (f32 [T], NaN last)}]}]}
"""
import argparse
import base64
import glob
import gzip
import json
import os
import re
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama_bins import REPO  # noqa: E402
from reference_trace import load, trace_ids  # noqa: E402
from router_pack import apply_pack, file_sha256, read_pack  # noqa: E402

b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()  # noqa: E731


def fixture_text(path):
    text = open(path, encoding="utf-8", newline="").read()
    return re.sub(r"^<<<domain:\w+>>>\n", "", text, flags=re.M)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--packs", required=True, help="folder of the model's router packs (*.gguf)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, cfg, tok = load(args.gguf)
    texts = [fixture_text(f) for f in args.files]
    ids = [tok.encode(t, add_bos=True) for t in texts]
    packs = sorted(glob.glob(os.path.join(args.packs, "*.gguf")))
    out = {"format": "moe-lens-pack-reference", "version": 1, "model": os.path.relpath(args.gguf, REPO),
           "model_sha256": file_sha256(args.gguf), "n_layer": cfg.n_layer, "n_expert": cfg.n_expert,
           "k": cfg.n_expert_used,
           "files": [{"file": os.path.relpath(f, REPO), "n_tokens": len(i), "token_ids": b64(np.array(i, "<i4"))}
                     for f, i in zip(args.files, ids)],
           "routers": []}
    for pack in [None, *packs]:
        if pack:
            model, cfg, tok = load(args.gguf)
            apply_pack(model, pack, args.gguf)
        entry = {"pack": os.path.relpath(pack, REPO) if pack else None,
                 "name": read_pack(pack)[0]["name"] if pack else "(model's routers)",
                 "sha256": file_sha256(pack) if pack else out["model_sha256"], "files": []}
        for seq in ids:
            logp, infos = trace_ids(model, seq)
            experts = torch.stack([i["topi"][0] for i in infos], 1).sort(-1).values   # [T, L, k]
            lp = np.full(len(seq), np.nan, "<f4")
            lp[:-1] = logp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].numpy()
            entry["files"].append({"experts": b64(experts.numpy().astype("u1")), "logprob_next": b64(lp)})
        out["routers"].append(entry)
        print(f"{entry['name']}: {sum(len(i) for i in ids)} tokens", flush=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
