"""Read the exported GGUF back into the PyTorch model and the tokenizer.

reference_trace.py, evaluate.py and check_tokenizer.py load the shipped GGUF
rather than the training checkpoint, so they check exactly what llama.cpp
runs (same F16-rounded weights, same merges) and need no checkpoint file.
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import PRE_TYPE, SPECIAL_TOKENS, Tokenizer  # noqa: E402
from model import Config, MoELM  # noqa: E402


def import_gguf(llama_src=None):
    for cand in [llama_src, os.environ.get("LLAMA_CPP_SRC"), "/tmp/llama-src"]:
        if cand and os.path.isdir(os.path.join(cand, "gguf-py")):
            if os.path.join(cand, "gguf-py") not in sys.path:
                sys.path.insert(0, os.path.join(cand, "gguf-py"))
            break
    import gguf
    return gguf


def _field(r, key):
    f = r.get_field(key)
    if f is None:
        return None
    return f.contents()


def tokenizer_from_gguf(path, llama_src=None):
    gguf = import_gguf(llama_src)
    r = gguf.GGUFReader(path)
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == PRE_TYPE
    toks = _field(r, "tokenizer.ggml.tokens")
    merges = _field(r, "tokenizer.ggml.merges")
    index = {t: i for i, t in enumerate(toks)}
    pairs = []
    for m in merges:
        a, b = m.split(" ")
        pairs.append((index[a], index[b]))
    tok = Tokenizer(pairs)
    # the Tokenizer assigns merged ids 256 + rank; make sure the file agrees
    assert tok.token_strings() == toks, "GGUF vocabulary is not in the expected order"
    assert toks[-len(SPECIAL_TOKENS):] == SPECIAL_TOKENS
    assert _field(r, "tokenizer.ggml.bos_token_id") == tok.bos_id
    return tok


def model_from_gguf(path, llama_src=None):
    """Returns (model, config) with weights exactly as stored (F16 -> F32)."""
    gguf = import_gguf(llama_src)
    r = gguf.GGUFReader(path)
    arch = _field(r, "general.architecture")
    assert arch == "qwen3moe", arch
    g = lambda k: _field(r, f"{arch}.{k}")  # noqa: E731
    t = {x.name: torch.from_numpy(np.array(x.data, dtype=np.float32)) for x in r.tensors}
    cfg = Config(vocab_size=t["token_embd.weight"].shape[0], d_model=g("embedding_length"),
                 n_layer=g("block_count"), n_head=g("attention.head_count"),
                 n_kv_head=g("attention.head_count_kv"), head_dim=g("attention.key_length"),
                 n_expert=g("expert_count"), n_expert_used=g("expert_used_count"),
                 d_expert=g("expert_feed_forward_length"), ctx=g("context_length"),
                 rope_base=float(g("rope.freq_base")), norm_eps=float(g("attention.layer_norm_rms_epsilon")))
    sd = {"tok_embd.weight": t["token_embd.weight"], "norm.weight": t["output_norm.weight"],
          "output.weight": t.get("output.weight", t["token_embd.weight"])}
    for i in range(cfg.n_layer):
        b, p = f"blk.{i}.", f"blocks.{i}."
        for gg, pp in [("attn_norm", "attn_norm.weight"), ("attn_q", "attn.wq.weight"),
                       ("attn_k", "attn.wk.weight"), ("attn_v", "attn.wv.weight"),
                       ("attn_output", "attn.wo.weight"), ("attn_q_norm", "attn.q_norm.weight"),
                       ("attn_k_norm", "attn.k_norm.weight"), ("ffn_norm", "ffn_norm.weight"),
                       ("ffn_gate_inp", "moe.router.weight"), ("ffn_gate_exps", "moe.gate"),
                       ("ffn_up_exps", "moe.up"), ("ffn_down_exps", "moe.down")]:
            sd[p + pp] = t[b + gg + ".weight"]
    model = MoELM(cfg)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model, cfg
