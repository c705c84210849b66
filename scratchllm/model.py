"""The GPT: a decoder-only transformer that reads top to bottom, leaves first (as nanoGPT's model.py).

Norms -> rotary positions -> attention (the explicit five-line reference beside PyTorch's fused SDPA, one flag picks)
-> MLP -> Block -> GPT. Parameter names follow GPT-2's (transformer.h.0.attn.c_attn ...) so convert.py maps them to
Hugging Face one to one. This module owns the architecture and its KV cache; sampling lives in generate.py, files
in checkpoint.py. Shapes: B batch, T new positions, S positions attended (past + new), C width, H heads, hd = C / H.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from scratchllm.config import GPTConfig, InputError

# ----------------------------------------------------------------------------- norms


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's always has one)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) * weight: LayerNorm without centring or bias."""

    def __init__(self, ndim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def make_norm(config: GPTConfig, ndim: int) -> nn.Module:
    return LayerNorm(ndim, config.bias) if config.norm_type == "layernorm" else RMSNorm(ndim)


# ----------------------------------------------------------------------------- rotary positions


def rope_tables(block_size: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * frequency, each (block_size, head_dim / 2)."""
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hd/2,)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), freqs)  # (T, hd/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i + hd/2}) of x (B, H, T, hd) by its position's angle (GPT-NeoX half layout)."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, hd/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ----------------------------------------------------------------------------- attention


def causal_mask(T: int, S: int, device=None) -> torch.Tensor:
    """(T, S) booleans, True where query i may see key j: the last T of S positions are the queries."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)


def reference_attention(q, k, v, dropout: float = 0.0):
    """Attention in five lines: scores, causal mask, softmax, weighted sum of the values. Returns (y, att, scores)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S): how well each query matches each key
    mask = causal_mask(q.size(-2), k.size(-2), q.device)  # (T, S): no peeking at later positions
    att = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, H, T, S), each row sums to 1
    y = F.dropout(att, dropout) @ v if dropout else att @ v  # (B, H, T, hd): a weighted average of values
    return y, att, scores


def sdpa_attention(q, k, v, dropout: float = 0.0):
    """The same result through PyTorch's fused kernel (no (T, S) matrix kept, so no weights to show)."""
    T, S = q.size(-2), k.size(-2)
    if T == S:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
    mask = None if T == 1 else causal_mask(T, S, q.device)  # one new token sees every cached position
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


class KVCache:
    """Keys and values of the positions seen so far, per layer, preallocated to block_size; `pos` = how many."""

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, 2, batch_size, config.n_head, config.block_size, config.head_dim)
        self.kv = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, hd) after the past; return all keys and values so far, (B, H, pos + T, hd)."""
        end = self.pos + k.size(2)
        self.kv[layer, 0, :, :, self.pos:end] = k
        self.kv[layer, 1, :, :, self.pos:end] = v
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.n_embd, self.layer = config.n_head, config.n_embd, layer
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.q_norm = RMSNorm(config.head_dim) if config.qk_norm else None
        self.k_norm = RMSNorm(config.head_dim) if config.qk_norm else None
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout, self.attention = config.dropout, config.attention

    def forward(self, x, rope=None, cache: KVCache | None = None, trace: list | None = None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, H, S, hd)
        dropout = self.dropout if self.training else 0.0
        if trace is not None or self.attention == "reference":
            y, att, scores = reference_attention(q, k, v, dropout)
            if trace is not None:
                trace.append({"q": q, "k": k, "v": v, "att": att, "scores": scores})
        else:
            y = sdpa_attention(q, k, v, dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


# ----------------------------------------------------------------------------- feed-forward and block


def swiglu_hidden(n_embd: int) -> int:
    """SwiGLU's hidden width: 8/3 x n_embd (as many weights as a 4x MLP), rounded up to a multiple of 64."""
    return 64 * math.ceil(8 * n_embd / 3 / 64)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.activation = config.activation
        hidden = swiglu_hidden(config.n_embd) if self.activation == "swiglu" else 4 * config.n_embd
        width = 2 * hidden if self.activation == "swiglu" else hidden  # swiglu: gate and value in one matmul
        self.c_fc = nn.Linear(config.n_embd, width, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.c_fc(x)  # (B, T, hidden) or (B, T, 2 * hidden)
        if self.activation == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "relu2":
            h = F.relu(h).square()
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """One transformer block: attention then MLP, each a residual branch with its norm before (pre) or after (post)."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.pre = config.norm == "pre"
        self.ln_1 = make_norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache=None, trace=None):
        if self.pre:
            x = x + self.attn(self.ln_1(x), rope, cache, trace)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, rope, cache, trace))
        return self.ln_2(x + self.mlp(x))


# ----------------------------------------------------------------------------- the model


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.grad_checkpointing = False
        self.compiled = None  # (blocks, head): torch.compile'd regions for training steps, see compile_regions
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd) if config.positions == "learned" else None,
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            ln_f=make_norm(config, config.n_embd) if config.norm == "pre" else nn.Identity(),  # post: already normed
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        if config.positions == "rope":
            cos, sin = rope_tables(config.block_size, config.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; non_embedding drops the position table (the token table stays: it is also the head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.transformer.wpe is not None:
            n -= self.transformer.wpe.weight.numel()
        if non_embedding and not self.config.tie_weights:
            n -= self.transformer.wte.weight.numel()  # untied: the input table is a lookup, not a matmul
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token, forward + backward: 6 x matmul weights + 12 x L x C x T for attention (PaLM)."""
        cfg, T = self.config, seq_len or self.config.block_size
        return 6.0 * self.num_params(non_embedding=True) + 12.0 * cfg.n_layer * cfg.n_embd * T

    def _embed(self, idx: torch.Tensor, start: int):
        """Token (+ position) embeddings of idx (B, T) at positions start.. -> x (B, T, C) and the rope angles."""
        T = idx.size(1)
        if start + T > self.config.block_size:
            raise InputError(f"sequence of {start + T} positions exceeds block_size {self.config.block_size}")
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.transformer.wpe is not None:
            x = x + self.transformer.wpe(torch.arange(start, start + T, device=idx.device))  # (T, C) broadcast
        else:
            rope = (self.rope_cos[start:start + T], self.rope_sin[start:start + T])  # (T, hd/2) each
        return self.transformer.drop(x), rope

    def compile_regions(self) -> None:
        """Run training steps through torch.compile'd code: the block, and the head with its loss.

        All n_layer blocks share Block.forward, so one compiled graph serves every layer (the weights are its
        inputs), which compiles much faster than the whole model (benchmarks/SPEEDRUN.md has the measurements).
        Evaluation and generation (eval mode, varying shapes) stay eager, so they never trigger a recompilation.
        """
        self.compiled = ([torch.compile(block) for block in self.transformer.h], torch.compile(self._head))

    def _head(self, x: torch.Tensor, targets: torch.Tensor | None):
        """Final norm, output head and mean cross-entropy on targets (-1 = ignore): x (B, T, C) -> logits, loss."""
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        total = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction="sum")
        return logits, total / (targets != -1).sum().clamp(min=1)  # all targets ignored: 0, not 0/0

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                last_only: bool = False):
        """idx (B, T) -> logits (B, T, vocab) and the mean cross-entropy on targets (-1 = ignore), or None.

        With a kv_cache, idx holds only the new positions; they attend to the cached ones and are appended.
        last_only: logits for the last position only, (B, 1, vocab), as generation needs (skips a T x vocab matmul).
        """
        compiled = self.compiled if self.training and kv_cache is None and not last_only else None
        blocks, head = compiled or (self.transformer.h, self._head)
        x, rope = self._embed(idx, kv_cache.pos if kv_cache is not None else 0)
        for block in blocks:
            if self.grad_checkpointing and self.training and kv_cache is None:
                x = checkpoint(block, x, rope, use_reentrant=False)  # recompute activations in backward
            else:
                x = block(x, rope, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += idx.size(1)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        return head(x, targets)

    @torch.no_grad()
    def inspect(self, idx: torch.Tensor) -> list[dict]:
        """Per layer, through the reference path in eval mode: q, k, v (B, H, T, hd) as attention sees them (after
        qk_norm and rope), att (post-softmax) and scores (before the mask), both (B, H, T, T)."""
        was_training = self.training
        self.eval()
        x, rope = self._embed(idx, 0)
        layers = []
        for block in self.transformer.h:
            trace = []
            x = block(x, rope, trace=trace)
            layers.append(trace[0])
        self.train(was_training)
        return layers
