"""A small decoder-only MoE transformer that computes exactly what llama.cpp's
`qwen3moe` graph computes (src/models/qwen3moe.cpp):

  x = tok_embd[ids]
  per layer:
    h   = x + Wo · Attn(RoPE_neox(RMSNorm_head(Wq·n)), RoPE_neox(RMSNorm_head(Wk·n)), Wv·n),
          n = RMSNorm(x)                              (causal, scale 1/sqrt(head_dim))
    x   = h + MoE(RMSNorm(h))
  logits = output · RMSNorm(x)

  MoE(u): p = softmax(router(u)); S = top-k(p); w = p[S] / sum(p[S]);
          sum_{e in S} w_e · down_e(silu(gate_e(u)) * up_e(u))

All norms are RMSNorm with a learned weight (y = x / sqrt(mean(x^2) + eps) * w),
no biases anywhere, no shared expert.

The router is pluggable (ROUTERS): the plain linear router maps onto qwen3moe's
ffn_gate_inp and is exported with the model; PackRouter (the Affinity text's
beta / Pi / Ant on the router input) is trained by train_pack.py and exported
as a router pack by export_pack.py.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 3072
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4
    head_dim: int = 32
    n_expert: int = 8
    n_expert_used: int = 2
    d_expert: int = 256
    ctx: int = 256
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    router: str = "linear"
    router_beta: float = 0.9      # router="beta": its beta; router="pack": beta's starting value
    # only for router="pack": the trained mechanisms ("beta+pi+ant" order, "" for a plain
    # router) and the Ant predictor's hidden width (docs/router-packs.md)
    router_mechanisms: str = ""
    ant_hidden: int = 48

    def to_dict(self):
        return asdict(self)


# When set, activations are rounded to float16 where a ggml backend may round
# them (inputs of matmuls with F16 weights, the F16 KV cache, attention
# probabilities).  Off by default: against llama.cpp's CPU backend plain F32
# activations match better (see reference_trace.py).  Never used in training.
F16_EMULATION = False
# llama.cpp keeps K and V in an F16 KV cache by default; reference_trace.py
# turns this on to round them the same way (measured: halves the largest
# log-prob difference against llama.cpp's CPU backend).
F16_KV = False


def _r16(x):
    return x.half().float() if F16_EMULATION else x


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_neox(x, pos, base):
    """NeoX-style RoPE (ggml GGML_ROPE_TYPE_NEOX): dimension i pairs with
    i + d/2, angle = pos * base^(-2i/d).  x: [B, H, T, D]."""
    d = x.shape[-1]
    inv = base ** (-torch.arange(0, d // 2, dtype=torch.float32) * 2 / d)
    ang = pos.float()[:, None] * inv[None, :]            # [T, d/2]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.wq = nn.Linear(c.d_model, c.n_head * c.head_dim, bias=False)
        self.wk = nn.Linear(c.d_model, c.n_kv_head * c.head_dim, bias=False)
        self.wv = nn.Linear(c.d_model, c.n_kv_head * c.head_dim, bias=False)
        self.wo = nn.Linear(c.n_head * c.head_dim, c.d_model, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.norm_eps)
        self.k_norm = RMSNorm(c.head_dim, c.norm_eps)

    def forward(self, x, pos):
        B, T, _ = x.shape
        c = self.c
        xr = _r16(x)
        q = self.wq(xr).view(B, T, c.n_head, c.head_dim)
        k = self.wk(xr).view(B, T, c.n_kv_head, c.head_dim)
        v = self.wv(xr).view(B, T, c.n_kv_head, c.head_dim)
        q = rope_neox(self.q_norm(q).transpose(1, 2), pos, c.rope_base)
        k = rope_neox(self.k_norm(k).transpose(1, 2), pos, c.rope_base)
        v = v.transpose(1, 2)
        if c.n_kv_head != c.n_head:
            rep = c.n_head // c.n_kv_head
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if F16_EMULATION:
            q = _r16(q)
        if F16_EMULATION or F16_KV:
            k, v = k.half().float(), v.half().float()
        att = (q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (_r16(att) @ v).transpose(1, 2).reshape(B, T, -1)
        return self.wo(_r16(y))


# ----------------------------------------------------------------- routers ---
class LinearRouter(nn.Module):
    """logits = W u  (qwen3moe's ffn_gate_inp).  Exportable."""
    exportable = True

    def __init__(self, c: Config):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c.n_expert, c.d_model) * 0.02)

    def forward(self, u):                       # u: [B, T, d] -> [B, T, E]
        return u @ self.weight.t()


class BetaRouter(LinearRouter):
    """Example variant: LIF-style temporal memory on the router logits,
    U_t = beta * U_{t-1} + (1 - beta) * z_t (scale-preserving form), reset at
    the start of every sequence.  Not exportable to qwen3moe; it shows where
    router variants plug in."""
    exportable = False

    def __init__(self, c: Config):
        super().__init__(c)
        self.beta = c.router_beta

    def forward(self, u):
        z = super().forward(u)
        T = z.shape[1]
        t = torch.arange(T)
        decay = (self.beta ** (t[:, None] - t[None, :]).clamp(min=0).float()) * (t[:, None] >= t[None, :])
        return (1 - self.beta) * torch.einsum("ts,bse->bte", decay, z)


class PackRouter(LinearRouter):
    """The router of a router pack (docs/router-packs.md, "Math, per token"):
    the Affinity text's mechanisms on the router input x_t (the ffn_norm output),
    each optional:

      beta: h_t = beta * h_{t-1} + x_t, per input dimension, beta = sigmoid(beta_logit);
            the logits read h_t instead of x_t
      ant:  x_hat_t = W2 relu(W1 [x_t, h_t] + b1) + b2, a forecast of x_{t+1};
            z_t += W_pred x_hat_t (train.py adds 0.5 * MSE(x_hat_t, x_{t+1}))
      pi:   z_t[e] *= pi[e], pi from an EMA of each expert's error, updated once per
            training step by update_precision() and frozen in the pack

    Every sequence starts with the state at zero at position 0.  Exported by
    export_pack.py, never into the base GGUF."""
    exportable = False
    PI_MOMENTUM = 0.95

    def __init__(self, c: Config):
        super().__init__(c)
        mech = [m for m in c.router_mechanisms.split("+") if m]
        unknown = set(mech) - {"beta", "pi", "ant"}
        if unknown:
            raise ValueError(f"unknown router mechanism(s): {sorted(unknown)}")
        self.use_beta, self.use_pi, self.use_ant = ("beta" in mech), ("pi" in mech), ("ant" in mech)
        d, E = c.d_model, c.n_expert
        if self.use_beta:
            self.beta_init = c.router_beta
            self.beta_logit = nn.Parameter(torch.full((d,), math.log(c.router_beta / (1 - c.router_beta))))
        if self.use_ant:
            self.ant_in = nn.Linear(2 * d if self.use_beta else d, c.ant_hidden)
            self.ant_out = nn.Linear(c.ant_hidden, d)
            self.w_pred = nn.Parameter(torch.zeros(E, d))
        if self.use_pi:
            self.register_buffer("pi", torch.ones(E))
            self.register_buffer("pi_var", torch.ones(E))
        self.last_prediction = None   # x_hat of the last forward (Ant's training loss)
        self.fixed_beta = None        # beta as read from a pack (exact, not via the logit)

    def mechanisms(self):
        return "+".join(m for m, on in (("beta", self.use_beta), ("pi", self.use_pi), ("ant", self.use_ant)) if on)

    def start_from(self, base_weight):
        """Initialise as a router-only fine-tune of base_weight, so that the first step
        routes about like the base: h is about 1/(1 - beta) times x where x changes
        slowly, so W starts at (1 - beta_0) W, and with a small beta_0 h stays close to x."""
        with torch.no_grad():
            self.weight.copy_(base_weight * ((1 - self.beta_init) if self.use_beta else 1.0))

    def beta(self):
        return self.fixed_beta if self.fixed_beta is not None else torch.sigmoid(self.beta_logit)

    def forward(self, u):                       # u: [B, T, d] -> [B, T, E]
        h = None
        if self.use_beta:
            b = self.beta()
            state = torch.zeros_like(u[:, 0])
            steps = []
            for t in range(u.shape[1]):         # the server's recurrence, step by step
                state = b * state + u[:, t]
                steps.append(state)
            h = torch.stack(steps, 1)
        z = (h if h is not None else u) @ self.weight.t()
        if self.use_ant:
            a = torch.cat([u, h], -1) if h is not None else u
            x_hat = self.ant_out(F.relu(self.ant_in(a)))
            self.last_prediction = x_hat
            z = z + x_hat @ self.w_pred.t()
        if self.use_pi:
            z = z * self.pi
        return z

    @torch.no_grad()
    def update_precision(self, err, served):
        """err[e]: this step's gate-weighted mean error of expert e; served[e]: whether
        e served any token.  var_e <- m var_e + (1 - m) err_e for served experts, then
        pi = 1 / (var + eps) normalised to mean 1."""
        m = self.PI_MOMENTUM
        self.pi_var.copy_(torch.where(served, m * self.pi_var + (1 - m) * err, self.pi_var))
        pi = 1.0 / (self.pi_var + 1e-6)
        self.pi.copy_(pi / pi.mean())


ROUTERS = {"linear": LinearRouter, "beta": BetaRouter, "pack": PackRouter}


def run_experts(flat, ids, weights, gate, up, down):
    """sum_j weights[n, j] * expert_{ids[n, j]}(flat[n]) for every token n.

    The (token, slot) pairs are sorted by expert and each expert runs once on
    its contiguous chunk.  The expert matrices are taken apart with one
    unbind, whose backward stacks the gradients once: indexing gate[e] per
    expert builds a full-size zero gradient for each of the 64 experts and
    adds them up.  Measured on whole training steps of the fine-grained model
    (6 layers x 64 experts, batch 16 x 256, 2 threads, nothing else running):
    about 5.5 s with a per-expert index, 4.2 s with this.  A zero-padded
    [E, C, d] block is no better: trained routers load the busiest expert up
    to 6x the mean.
    """
    N, k = ids.shape
    flat_ids = ids.reshape(-1)
    order = torch.argsort(flat_ids, stable=True)
    load = torch.bincount(flat_ids, minlength=gate.shape[0]).tolist()
    token = order // k
    gates, ups, downs = gate.unbind(0), up.unbind(0), down.unbind(0)
    ys = [_r16(F.silu(x @ gates[e].t()) * (x @ ups[e].t())) @ downs[e].t()
          for e, x in enumerate(flat[token].split(load)) if load[e]]
    y = torch.cat(ys)
    return flat.new_zeros(flat.shape).index_add(0, token, y * weights.reshape(-1)[order, None])


class MoE(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.router = ROUTERS[c.router](c)
        s = 1 / math.sqrt(c.d_model)
        # expert weights stored as [E, out, in], the layout of ffn_*_exps
        self.gate = nn.Parameter(torch.randn(c.n_expert, c.d_expert, c.d_model) * s)
        self.up = nn.Parameter(torch.randn(c.n_expert, c.d_expert, c.d_model) * s)
        self.down = nn.Parameter(torch.randn(c.n_expert, c.d_model, c.d_expert) / math.sqrt(c.d_expert))

    def forward(self, u):
        """Returns (output, info) where info holds what the losses and the
        traces need: router logits, probs, selected ids and weights."""
        B, T, d = u.shape
        k = self.c.n_expert_used
        self.last_input = u                                  # the router input x_t (Ant's target)
        logits = self.router(u)                              # [B, T, E]
        probs = logits.float().softmax(-1)
        topw, topi = probs.topk(k, dim=-1)                   # descending order
        w = topw / topw.sum(-1, keepdim=True).clamp(min=6.103515625e-5)
        flat = _r16(u.reshape(-1, d))
        out = run_experts(flat, topi.reshape(-1, k), w.reshape(-1, k), self.gate, self.up, self.down)
        info = {"logits": logits, "probs": probs, "topi": topi, "topw": w}
        return out.view(B, T, d), info


class Block(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.attn_norm = RMSNorm(c.d_model, c.norm_eps)
        self.attn = Attention(c)
        self.ffn_norm = RMSNorm(c.d_model, c.norm_eps)
        self.moe = MoE(c)

    def forward(self, x, pos):
        h = x + self.attn(self.attn_norm(x), pos)
        m, info = self.moe(self.ffn_norm(h))
        return h + m, info


class MoELM(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.tok_embd = nn.Embedding(c.vocab_size, c.d_model)
        nn.init.normal_(self.tok_embd.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        nn.init.normal_(self.output.weight, std=0.02)
        for b in self.blocks:   # scale residual projections down, GPT-2 style
            nn.init.normal_(b.attn.wo.weight, std=0.02 / math.sqrt(2 * c.n_layer))
            for n in (b.attn.wq, b.attn.wk, b.attn.wv):
                nn.init.normal_(n.weight, std=0.02)

    def forward(self, ids):
        """ids: [B, T] -> logits [B, T, V], list of per-layer router info."""
        T = ids.shape[1]
        pos = torch.arange(T)
        x = self.tok_embd(ids)
        infos = []
        for b in self.blocks:
            x, info = b(x, pos)
            infos.append(info)
        return self.output(_r16(self.norm(x))), infos


# ------------------------------------------------------------ aux losses ---
def load_balance_loss(info, n_expert, k):
    """Switch-Transformer style: E * sum_e f_e * P_e, where f_e is the share of
    top-k slots routed to expert e and P_e the mean router probability.
    Equals 1 when routing is uniform."""
    probs = info["probs"].reshape(-1, n_expert)
    counts = F.one_hot(info["topi"].reshape(-1), n_expert).float().mean(0) * 1.0
    return n_expert * (counts * probs.mean(0)).sum()


def router_entropy(info):
    """Mean entropy (nats) of the full router distribution over E experts."""
    p = info["probs"]
    return -(p * torch.log(p.clamp(min=1e-9))).sum(-1).mean()


def router_z_loss(info):
    return torch.logsumexp(info["logits"].float(), dim=-1).pow(2).mean()
