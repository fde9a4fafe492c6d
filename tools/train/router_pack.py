"""Router packs on the PyTorch side: write a pack from trained PackRouters, and
load a pack into a model read from its base GGUF (docs/router-packs.md is the
format; the server's reader is native/src/router_pack.cpp).

Shapes: a numpy array of shape (a, b) is a ggml tensor with ne = {b, a}, so a
torch Linear's [out, in] weight is written as is.  Everything is F32.
"""
import hashlib
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
from gguf_io import _field, import_gguf  # noqa: E402

ARCH = "moe-lens-router-pack"
PREFIX = "moe_lens.router_pack."
VERSION = 1


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pack_routers(model):
    return [b.moe.router for b in model.blocks]


def write_pack(path, model, base_gguf, name, description, llama_src=None):
    """Write the routers of `model` (all PackRouter, same mechanisms) as a pack for base_gguf."""
    gguf = import_gguf(llama_src)
    routers = pack_routers(model)
    if not all(isinstance(r, M.PackRouter) for r in routers):
        raise ValueError("every layer's router must be a PackRouter")
    mech = routers[0].mechanisms()
    cfg = model.c
    w = gguf.GGUFWriter(path, ARCH)
    w.add_name(name)
    kv = lambda k, v, t: w.add_key_value(PREFIX + k, v, t)  # noqa: E731
    T = gguf.GGUFValueType
    kv("version", VERSION, T.UINT32)
    kv("name", name, T.STRING)
    kv("description", description, T.STRING)
    kv("base.sha256", file_sha256(base_gguf), T.STRING)
    kv("base.architecture", "qwen3moe", T.STRING)
    kv("n_embd", cfg.d_model, T.UINT32)
    kv("n_expert", cfg.n_expert, T.UINT32)
    kv("n_expert_used", cfg.n_expert_used, T.UINT32)
    w.add_key_value(PREFIX + "layers", list(range(cfg.n_layer)), T.ARRAY, sub_type=T.UINT32)
    kv("mechanisms", mech, T.STRING)
    if routers[0].use_ant:
        kv("ant.hidden", cfg.ant_hidden, T.UINT32)
        kv("ant.activation", "relu", T.STRING)
    f32 = lambda t: t.detach().float().cpu().numpy().astype(np.float32)  # noqa: E731
    for L, r in enumerate(routers):
        b = f"blk.{L}.router."
        w.add_tensor(b + "weight", f32(r.weight))                       # [E, d] -> ne {d, E}
        if r.use_beta:
            w.add_tensor(b + "beta", f32(r.beta()))
        if r.use_pi:
            w.add_tensor(b + "pi", f32(r.pi))
        if r.use_ant:
            w.add_tensor(b + "ant.in.weight", f32(r.ant_in.weight))     # [H, n_in] -> ne {n_in, H}
            w.add_tensor(b + "ant.in.bias", f32(r.ant_in.bias))
            w.add_tensor(b + "ant.out.weight", f32(r.ant_out.weight))   # [d, H] -> ne {H, d}
            w.add_tensor(b + "ant.out.bias", f32(r.ant_out.bias))
            w.add_tensor(b + "ant.w_pred", f32(r.w_pred))               # [E, d] -> ne {d, E}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_pack(path, llama_src=None):
    """(metadata dict, {tensor name: float32 torch tensor in numpy's shape})."""
    gguf = import_gguf(llama_src)
    r = gguf.GGUFReader(path)
    if _field(r, "general.architecture") != ARCH:
        raise ValueError(f"{path} is not a router pack")
    meta = {k[len(PREFIX):]: _field(r, k) for k in r.fields if k.startswith(PREFIX)}
    tensors = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        tensors[t.name] = torch.from_numpy(np.array(t.data, dtype=np.float32).reshape(shape))
    return meta, tensors


def apply_pack(model, pack_path, base_gguf=None, llama_src=None):
    """Replace every router of `model` (read from its base GGUF) by the pack's."""
    meta, t = read_pack(pack_path, llama_src)
    if base_gguf and meta["base.sha256"] != file_sha256(base_gguf):
        raise ValueError(f"{pack_path} was made for another base model")
    cfg = model.c
    cfg.router, cfg.router_mechanisms = "pack", meta["mechanisms"]
    if "ant.hidden" in meta:
        cfg.ant_hidden = int(meta["ant.hidden"])
    for L, block in enumerate(model.blocks):
        r = M.PackRouter(cfg)
        b = f"blk.{L}.router."
        with torch.no_grad():
            r.weight.copy_(t[b + "weight"])
            if r.use_beta:
                beta = t[b + "beta"].double()
                r.beta_logit.copy_(torch.log(beta / (1 - beta)).float())
                r.fixed_beta = t[b + "beta"]    # exact values: no round trip through the logit
            if r.use_pi:
                r.pi.copy_(t[b + "pi"])
            if r.use_ant:
                r.ant_in.weight.copy_(t[b + "ant.in.weight"])
                r.ant_in.bias.copy_(t[b + "ant.in.bias"])
                r.ant_out.weight.copy_(t[b + "ant.out.weight"])
                r.ant_out.bias.copy_(t[b + "ant.out.bias"])
                r.w_pred.copy_(t[b + "ant.w_pred"])
        block.moe.router = r
    model.eval()
    return meta
