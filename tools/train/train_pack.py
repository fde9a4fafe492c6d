#!/usr/bin/env python3
"""Train a router pack: a router-only fine-tune of a shipped base model.

  /usr/bin/python3 tools/train/train_pack.py --base media/models/demo-moe-fine.gguf \
      --name beta+ant --mechanisms beta+ant --steps 150 \
      --out media/models/packs/demo-moe-fine/beta+ant.routerpack.gguf

The base is read from its GGUF (the weights llama.cpp runs), every layer's router
is replaced by a PackRouter (model.py) that starts as the base's router, and only
the routers train; attention, experts, norms and embeddings stay frozen.  Loss:

  cross-entropy
  + lb_coef      * load-balancing loss   (kept, as in pre-training)
  + z_coef       * router z-loss
  + entropy_coef * mean router entropy   (the `entropy` pack: > 0 sharpens routing,
                                          the AMG text's proposed fine-tune)
  + ant_coef     * MSE(x_hat_t, x_{t+1}) (Ant: the predictor's forecast of the next
                                          router input, detached target)

and Pi's precision is updated after every step from the gate-weighted mean
next-token NLL of the tokens each expert served.  The budget is a number of
steps (not wall time) so that the eight packs of the {beta, Pi, Ant} ablation see
exactly the same batches (same --seed).  The pack is written with router_pack.py;
its description records data, steps, seconds and coefficients.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
from bpe import Tokenizer  # noqa: E402
from gguf_io import model_from_gguf, tokenizer_from_gguf  # noqa: E402
from router_pack import write_pack  # noqa: E402
from train import batch, token_stream  # noqa: E402


def expert_errors(info, nll, n_expert):
    """Per expert: gate-weighted mean NLL of the tokens it served, and whether it served any."""
    ids = info["topi"].reshape(-1)
    w = info["topw"].reshape(-1).detach()
    tok_nll = nll.detach().reshape(-1, 1).expand(-1, info["topi"].shape[-1]).reshape(-1)
    num = torch.zeros(n_expert).index_add(0, ids, w * tok_nll)
    den = torch.zeros(n_expert).index_add(0, ids, w)
    return num / den.clamp(min=1e-9), den > 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the base model's GGUF")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mechanisms", default="", help='"+"-joined subset of beta, pi, ant ("" for a plain router)')
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "out", "tokenizer.json"))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta-lr-mult", type=float, default=10.0)
    ap.add_argument("--beta-init", type=float, default=0.1,
                    help="beta's starting value in every dimension (docs/router-packs.md: why not 0.9)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--lb-coef", type=float, default=0.01)
    ap.add_argument("--z-coef", type=float, default=1e-3)
    ap.add_argument("--entropy-coef", type=float, default=0.0)
    ap.add_argument("--ant-coef", type=float, default=0.5)
    ap.add_argument("--ant-hidden", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-src")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    model, cfg = model_from_gguf(args.base, args.llama_src)
    tok = Tokenizer.load(args.tokenizer)
    tok.path = args.tokenizer
    if tok.token_strings() != tokenizer_from_gguf(args.base, args.llama_src).token_strings():
        raise SystemExit(f"{args.tokenizer} is not the tokenizer of {args.base}")
    train = token_stream(tok, os.path.join(args.data, "train.jsonl"), os.path.join(HERE, "out", "train_tokens.npy"))

    cfg.router, cfg.router_mechanisms, cfg.ant_hidden, cfg.ctx = "pack", args.mechanisms, args.ant_hidden, args.ctx
    cfg.router_beta = args.beta_init
    for block in model.blocks:
        r = M.PackRouter(cfg)
        r.start_from(block.moe.router.weight.detach())
        block.moe.router = r
    for n, p in model.named_parameters():
        p.requires_grad = ".router." in n
    routers = [b.moe.router for b in model.blocks]
    beta_params = [p for n, p in model.named_parameters() if n.endswith("beta_logit")]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("beta_logit")]
    groups = [{"params": other, "lr_mult": 1.0}]
    if beta_params:
        groups.append({"params": beta_params, "lr_mult": args.beta_lr_mult, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"pack {args.name!r} mechanisms {args.mechanisms!r}: {n_train} trainable parameters, {args.steps} steps", flush=True)

    t0 = time.time()
    ema = None
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        x, y = batch(train, args.batch, args.ctx, rng, tok.bos_id)
        logits, infos = model(x)
        nll = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1), reduction="none")
        ce = nll.mean()
        lb = sum(M.load_balance_loss(i, cfg.n_expert, cfg.n_expert_used) for i in infos) / len(infos)
        zl = sum(M.router_z_loss(i) for i in infos) / len(infos)
        ent = sum(M.router_entropy(i) for i in infos) / len(infos)
        loss = ce + args.lb_coef * lb + args.z_coef * zl + args.entropy_coef * ent
        mse = torch.zeros(())
        if routers[0].use_ant:
            # the forecast at t is scored against the next token's router input
            for b, r in zip(model.blocks, routers):
                mse = mse + F.mse_loss(r.last_prediction[:, :-1], b.moe.last_input[:, 1:].detach())
            mse = mse / len(routers)
            loss = loss + args.ant_coef * mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        if routers[0].use_pi:
            for info, r in zip(infos, routers):
                r.update_precision(*expert_errors(info, nll, cfg.n_expert))
        ema = ce.item() if ema is None else 0.9 * ema + 0.1 * ce.item()
        if (step + 1) % 10 == 0 or step == 0:
            rec = {"step": step + 1, "time_s": round(time.time() - t0, 1), "ce": round(ce.item(), 4),
                   "ce_ema": round(ema, 4), "lb": round(lb.item(), 4), "entropy": round(ent.item(), 4)}
            if routers[0].use_ant:
                rec["ant_mse"] = round(mse.item(), 5)
            if routers[0].use_beta:
                rec["beta_mean"] = round(float(torch.stack([r.beta().mean() for r in routers]).mean()), 4)
            print(json.dumps(rec), flush=True)

    wall = time.time() - t0
    coefs = f"lb {args.lb_coef}, z {args.z_coef}, entropy {args.entropy_coef}" + (f", Ant MSE {args.ant_coef}" if routers[0].use_ant else "")
    description = (f"router-only fine-tune of {os.path.basename(args.base)} (everything else frozen), "
                   f"mechanisms: {args.mechanisms or 'none'}; {args.steps} steps of {args.batch} x {args.ctx} "
                   f"training-corpus tokens (seed {args.seed}), AdamW lr {args.lr} cosine"
                   f"{f', beta from {args.beta_init}, beta lr x{args.beta_lr_mult}' if beta_params else ''}; loss: CE + {coefs}; "
                   f"{wall:.0f} s on {args.threads} CPU threads; final train CE (EMA) {ema:.4f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_pack(args.out, model, args.base, args.name, description, args.llama_src)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes): {description}")


if __name__ == "__main__":
    main()
