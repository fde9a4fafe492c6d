#!/usr/bin/env python3
"""Train the demo MoE model on CPU.

  /usr/bin/python3 tools/train/train.py --minutes 35

Loss = next-token cross-entropy
     + lb_coef      * load-balancing loss (mean over layers; 1.0 = uniform)
     + z_coef       * router z-loss
     + entropy_coef * mean router entropy (negative values push routers
                      towards higher entropy, positive towards sharper routing)

The learning-rate schedule is a cosine over *wall time* (--minutes), not over
steps, so the run ends on time even when other jobs share the CPU.  Training
windows are random ctx-token slices of the concatenated training documents
(each document is preceded by BOS); the first token of every window is
replaced by BOS, which is exactly what llama-perplexity does at each chunk
start, so the model is trained for the situation it is evaluated in.

--init CKPT starts from an existing checkpoint (e.g. to fine-tune a router
variant with --router beta, or --freeze-except router).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer  # noqa: E402
from model import (Config, MoELM, load_balance_loss, router_entropy,  # noqa: E402
                   router_z_loss)

HERE = os.path.dirname(os.path.abspath(__file__))


def token_stream(tok, path, cache):
    """Concatenate BOS + document tokens for every document in a JSONL file."""
    if cache and os.path.exists(cache) and os.path.getmtime(cache) > max(
            os.path.getmtime(path), os.path.getmtime(tok.path)):
        return np.load(cache)
    ids = []
    for line in open(path, encoding="utf-8"):
        d = json.loads(line)
        ids.append(tok.bos_id)
        ids.extend(tok.encode(d["text"]))
    arr = np.array(ids, dtype=np.int32)
    if cache:
        np.save(cache, arr)
    return arr


def batch(stream, bs, ctx, rng, bos_id):
    starts = rng.integers(0, len(stream) - ctx - 1, size=bs)
    x = np.stack([stream[s:s + ctx + 1] for s in starts]).astype(np.int64)
    x[:, 0] = bos_id
    x = torch.from_numpy(x)
    return x[:, :-1], x[:, 1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "out", "tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "out", "ckpt.pt"))
    ap.add_argument("--init", help="start from this checkpoint")
    ap.add_argument("--minutes", type=float, default=35.0, help="wall-time budget")
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--lb-coef", type=float, default=0.01)
    ap.add_argument("--z-coef", type=float, default=1e-3)
    ap.add_argument("--entropy-coef", type=float, default=0.0)
    ap.add_argument("--freeze-except", default="", help="comma list of name substrings to keep trainable")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    # architecture (with --init only --ctx, --router and --router-beta apply)
    for k, v in Config().to_dict().items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    tok = Tokenizer.load(args.tokenizer)
    tok.path = args.tokenizer
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    train = token_stream(tok, os.path.join(args.data, "train.jsonl"),
                         os.path.join(os.path.dirname(args.out), "train_tokens.npy"))
    held = token_stream(tok, os.path.join(args.data, "heldout.jsonl"), None)
    print(f"train tokens {len(train)}, held-out tokens {len(held)}, threads {torch.get_num_threads()}")

    if args.init:
        ck = torch.load(args.init)
        cfg = Config(**ck["config"])
        # architecture comes from the checkpoint; only these may change on a
        # fine-tune: the context length (e.g. a long-context phase) and the router
        cfg.ctx = args.ctx
        cfg.router = args.router
        cfg.router_beta = args.router_beta
        model = MoELM(cfg)
        missing, unexpected = model.load_state_dict(ck["model"], strict=False)
        print("init from", args.init, "missing", missing, "unexpected", unexpected)
    else:
        cfg = Config(**{k: getattr(args, k) for k in Config().to_dict()})
        cfg.vocab_size = tok.vocab_size
        model = MoELM(cfg)
    assert cfg.vocab_size == tok.vocab_size
    if args.freeze_except:
        keep = args.freeze_except.split(",")
        for n, p in model.named_parameters():
            p.requires_grad = any(s in n for s in keep)
    n_params = sum(p.numel() for p in model.parameters())
    print("config", cfg.to_dict(), f"params {n_params / 1e6:.2f}M")

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))

    def lr_at(step, frac):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        f = args.min_lr_frac
        return args.lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    @torch.no_grad()
    def evaluate(n=8):
        model.eval()
        g = np.random.default_rng(123)
        x, y = batch(held, n, cfg.ctx, g, tok.bos_id)
        logits, _ = model(x)
        model.train()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1)).item()

    log = []
    t0 = time.time()
    budget = args.minutes * 60
    step = 0
    ema = None
    while step < args.max_steps:
        frac = (time.time() - t0) / budget
        if frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, frac)
        x, y = batch(train, args.batch, cfg.ctx, rng, tok.bos_id)
        logits, infos = model(x)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        lb = sum(load_balance_loss(i, cfg.n_expert, cfg.n_expert_used) for i in infos) / len(infos)
        zl = sum(router_z_loss(i) for i in infos) / len(infos)
        ent = sum(router_entropy(i) for i in infos) / len(infos)
        loss = ce + args.lb_coef * lb + args.z_coef * zl + args.entropy_coef * ent
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = ce.item() if ema is None else 0.95 * ema + 0.05 * ce.item()
        step += 1
        if step % 25 == 0 or step == 1:
            el = time.time() - t0
            rec = {"step": step, "time_s": round(el, 1), "lr": opt.param_groups[0]["lr"],
                   "ce": round(ce.item(), 4), "ce_ema": round(ema, 4), "lb": round(lb.item(), 4),
                   "z": round(zl.item(), 3), "entropy": round(ent.item(), 4)}
            if step % 100 == 0:
                rec["heldout_ce"] = round(evaluate(), 4)
            log.append(rec)
            print(json.dumps(rec), flush=True)

    wall = time.time() - t0
    final = {"steps": step, "wall_s": round(wall, 1), "ce_ema": round(ema, 4),
             "heldout_ce": round(evaluate(32), 4), "tokens_seen": step * args.batch * cfg.ctx}
    print("final", json.dumps(final))
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "tokenizer": os.path.abspath(args.tokenizer),
                "train_args": vars(args), "log": log, "final": final}, args.out)
    print("saved", args.out)


if __name__ == "__main__":
    main()
