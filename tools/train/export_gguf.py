#!/usr/bin/env python3
"""Export a trained checkpoint to a llama.cpp GGUF file (architecture qwen3moe).

  /usr/bin/python3 tools/train/export_gguf.py \
      --checkpoint tools/train/out/ckpt.pt --out media/models/demo-moe.gguf

gguf-py is taken from the llama.cpp source tree: --llama-src, else
$LLAMA_CPP_SRC, else /tmp/llama-src (clone it with
`git clone node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llama-src`).

Tensor names and metadata follow convert_hf_to_gguf.py for Qwen3MoeForCausalLM
and what src/models/qwen3moe.cpp loads.  Matrices are stored as F16; the
norm weights (1-D) and the router (ffn_gate_inp, tiny) stay F32 so that the
router logits are computed without rounding on either side.
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import PRE_TYPE, Tokenizer  # noqa: E402
from model import ROUTERS, Config  # noqa: E402

ARCH = "qwen3moe"


def import_gguf(llama_src):
    for cand in [llama_src, os.environ.get("LLAMA_CPP_SRC"), "/tmp/llama-src"]:
        if cand and os.path.isdir(os.path.join(cand, "gguf-py")):
            sys.path.insert(0, os.path.join(cand, "gguf-py"))
            break
    import gguf
    return gguf


def tensor_map(cfg, sd):
    """(gguf name, array, keep_f32) for every tensor, in llama.cpp layout:
    a numpy array of shape (a, b, c) is a ggml tensor with ne = {c, b, a}."""
    out = [("token_embd.weight", sd["tok_embd.weight"], False)]
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        b = f"blk.{i}."
        out += [
            (b + "attn_norm.weight", sd[p + "attn_norm.weight"], True),
            (b + "attn_q.weight", sd[p + "attn.wq.weight"], False),
            (b + "attn_k.weight", sd[p + "attn.wk.weight"], False),
            (b + "attn_v.weight", sd[p + "attn.wv.weight"], False),
            (b + "attn_output.weight", sd[p + "attn.wo.weight"], False),
            (b + "attn_q_norm.weight", sd[p + "attn.q_norm.weight"], True),
            (b + "attn_k_norm.weight", sd[p + "attn.k_norm.weight"], True),
            (b + "ffn_norm.weight", sd[p + "ffn_norm.weight"], True),
            (b + "ffn_gate_inp.weight", sd[p + "moe.router.weight"], True),    # [E, d]
            (b + "ffn_gate_exps.weight", sd[p + "moe.gate"], False),           # [E, ff, d]
            (b + "ffn_up_exps.weight", sd[p + "moe.up"], False),               # [E, ff, d]
            (b + "ffn_down_exps.weight", sd[p + "moe.down"], False),           # [E, d, ff]
        ]
    out += [("output_norm.weight", sd["norm.weight"], True),
            ("output.weight", sd["output.weight"], False)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "out", "ckpt.pt"))
    ap.add_argument("--tokenizer", help="defaults to the one recorded in the checkpoint")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "media", "models", "demo-moe.gguf"))
    ap.add_argument("--llama-src")
    ap.add_argument("--name", default="MoE Lens demo MoE")
    args = ap.parse_args()
    gguf = import_gguf(args.llama_src)

    ck = torch.load(args.checkpoint, map_location="cpu")
    cfg = Config(**ck["config"])
    if not ROUTERS[cfg.router].exportable:
        sys.exit(f"router '{cfg.router}' has no qwen3moe equivalent; only 'linear' exports")
    tok = Tokenizer.load(args.tokenizer or ck["tokenizer"])
    sd = {k: v.float().numpy() for k, v in ck["model"].items()}

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    w = gguf.GGUFWriter(args.out, ARCH)
    w.add_name(args.name)
    w.add_license("GPL-3.0-or-later")   # the training corpus includes GPL texts
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(cfg.ctx)
    w.add_embedding_length(cfg.d_model)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.d_expert)
    w.add_expert_feed_forward_length(cfg.d_expert)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_kv_head)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_base)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_expert_count(cfg.n_expert)
    w.add_expert_used_count(cfg.n_expert_used)

    # tokenizer: GPT-2 style byte-level BPE with the qwen2 pre-tokenizer
    toks = tok.token_strings()
    types = [gguf.TokenType.NORMAL] * (len(toks) - 1) + [gguf.TokenType.CONTROL]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(PRE_TYPE)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(tok.merge_strings())
    w.add_bos_token_id(tok.bos_id)
    w.add_eos_token_id(tok.eos_id)
    # The model was trained with BOS at the start of every document and every
    # training window, so llama.cpp should add it too.
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    for name, arr, keep_f32 in tensor_map(cfg, sd):
        arr = np.ascontiguousarray(arr.astype(np.float32 if keep_f32 else np.float16))
        w.add_tensor(name, arr)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
