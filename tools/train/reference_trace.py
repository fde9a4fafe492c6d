#!/usr/bin/env python3
"""Per-token reference trace of the PyTorch model, for parity with llama.cpp.

  /usr/bin/python3 tools/train/reference_trace.py --text FILE --out trace.json \
      [--gguf media/models/demo-moe.gguf | --checkpoint tools/train/out/ckpt.pt]

The text is tokenized as llama.cpp does with add_special=true (BOS first,
since the GGUF sets add_bos) and evaluated in ONE sequence at positions
0..n-1, like a single llama_decode over the prompt.  Texts longer than the
trained context (256) are evaluated anyway (llama.cpp would too, given a
larger n_ctx) but quality drops past it; --max-tokens truncates.

By default the weights come from the GGUF (bit-identical to what llama.cpp
loads); with --checkpoint the matrices are rounded through F16 exactly as
export_gguf.py does.  Activations are computed in F32 except K and V, which
are rounded to F16 like llama.cpp's default F16 KV cache (--no-f16-kv turns
that off).  Measured against llama.cpp's CPU backend this matches best;
--f16-emulation (also round matmul inputs and attention probabilities to F16)
made the differences larger there and is kept for experiments with other
backends.

Output JSON:
  {"model", "n_layer", "n_expert", "n_expert_used", "add_bos", "n_tokens",
   "tokens": [{"pos", "id", "piece",
               "logprob_next"   (log p(token[pos+1] | tokens[..pos]), null at the end),
               "experts"        [n_layer][k]  selected expert ids, descending prob,
               "weights"        [n_layer][k]  their renormalised gate weights,
               "probs"          [n_layer][E]  full softmax router distribution}]}
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
from gguf_io import model_from_gguf, tokenizer_from_gguf  # noqa: E402
from llama_bins import REPO  # noqa: E402


def load(gguf_path=None, checkpoint=None, llama_src=None, f16_kv=True):
    """(model, cfg, tokenizer) from a GGUF, or from a checkpoint with the
    export's F16 rounding applied.  f16_kv: round K/V like llama.cpp's cache."""
    M.F16_KV = f16_kv
    if checkpoint:
        from bpe import Tokenizer
        ck = torch.load(checkpoint, map_location="cpu")
        cfg = M.Config(**ck["config"])
        model = M.MoELM(cfg)
        sd = {}
        for k, v in ck["model"].items():
            # export keeps 1-D norms and the router in F32, everything else F16
            keep = v.dim() < 2 or k.endswith("router.weight")
            sd[k] = v.float() if keep else v.half().float()
        model.load_state_dict(sd)
        model.eval()
        return model, cfg, Tokenizer.load(ck["tokenizer"])
    model, cfg = model_from_gguf(gguf_path, llama_src)
    return model, cfg, tokenizer_from_gguf(gguf_path, llama_src)


@torch.no_grad()
def trace_ids(model, ids):
    """Run one sequence; returns (log-softmax [T, V], list of per-layer infos)."""
    logits, infos = model(torch.tensor([ids]))
    return torch.log_softmax(logits[0].double(), -1), infos


def build_trace(model, cfg, tok, ids):
    logp, infos = trace_ids(model, ids)
    out = []
    for t, tid in enumerate(ids):
        rec = {"pos": t, "id": tid,
               "piece": tok.decode_bytes([tid]).decode("utf-8", "backslashreplace")
               if tid < 256 + len(tok.merges) else "<|endoftext|>",
               "logprob_next": round(float(logp[t, ids[t + 1]]), 6) if t + 1 < len(ids) else None,
               "experts": [info["topi"][0, t].tolist() for info in infos],
               "weights": [[round(float(x), 6) for x in info["topw"][0, t]] for info in infos],
               "probs": [[round(float(x), 6) for x in info["probs"][0, t]] for info in infos]}
        out.append(rec)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.path.join(REPO, "media", "models", "demo-moe.gguf"))
    ap.add_argument("--checkpoint", "--model-dir", dest="checkpoint",
                    help="training checkpoint instead of the GGUF")
    ap.add_argument("--text", required=True, help="UTF-8 text file")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--no-bos", action="store_true")
    ap.add_argument("--f16-emulation", action="store_true",
                    help="round activations to F16 where ggml could; measured to match llama.cpp CPU worse, so off")
    ap.add_argument("--no-f16-kv", action="store_true")
    ap.add_argument("--llama-src")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    M.F16_EMULATION = args.f16_emulation

    model, cfg, tok = load(None if args.checkpoint else args.gguf, args.checkpoint, args.llama_src,
                           f16_kv=not args.no_f16_kv)
    text = open(args.text, encoding="utf-8", newline="").read()
    ids = tok.encode(text, add_bos=not args.no_bos)
    if args.max_tokens:
        ids = ids[:args.max_tokens]
    if len(ids) > cfg.ctx:
        print(f"note: {len(ids)} tokens > trained context {cfg.ctx}", file=sys.stderr)
    toks = build_trace(model, cfg, tok, ids)
    res = {"model": os.path.relpath(args.checkpoint or args.gguf, REPO), "n_layer": cfg.n_layer,
           "n_expert": cfg.n_expert, "n_expert_used": cfg.n_expert_used, "add_bos": not args.no_bos,
           "f16_emulation": M.F16_EMULATION, "f16_kv": M.F16_KV, "n_tokens": len(ids), "tokens": toks}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False)
    lps = [t["logprob_next"] for t in toks if t["logprob_next"] is not None]
    print(f"{len(ids)} tokens, mean NLL {-sum(lps) / max(1, len(lps)):.4f} nats -> {args.out}")


if __name__ == "__main__":
    main()
