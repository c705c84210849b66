"""The bar the speedrun must clear: nanoGPT's CPU "baby GPT" recipe, re-implemented in plain PyTorch.

Deliberately independent of scratchllm (own model, own char encoding, own evaluator), so that nothing of ours can
handicap it. Recipe from nanoGPT's README CPU command + config/train_shakespeare_char.py: char-level, 4 layers,
4 heads, 128 wide, block 64, batch 12, dropout 0, no biases, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on
matrices), 100 warm-up iterations, cosine to 1e-4, grad clip 1, fp32. The one change to training: the cosine runs
from the end of warm-up to the end of the wall-clock budget (nanoGPT's user would set max_iters = lr_decay_iters
to fill it), so any budget gets a fully decayed run. Every difference from nanoGPT's train.py, and why it is
there, is in benchmarks/SPEEDRUN.md ("Is the baseline honest?"); tests/test_nanogpt_baseline.py checks the
schedule against nanoGPT's get_lr, the init, the optimizer groups and the batch offsets.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
from torch.nn import functional as F

RECIPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, lr=1e-3, min_lr=1e-4,
              warmup_iters=100, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0)


class Block(nn.Module):
    """nanoGPT's pre-norm block: LayerNorm (no bias) -> causal self-attention, LayerNorm -> 4x GELU MLP."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.attn_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.ln_2 = nn.LayerNorm(n_embd, bias=False)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    """Token + learned position embeddings, blocks, final LayerNorm, head tied to the token embedding."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def char_vocab(alphabet: str) -> dict[str, int]:
    """nanoGPT's prepare.py: the vocabulary is every character of the whole text file, ids in sorted order."""
    return {c: i for i, c in enumerate(sorted(set(alphabet)))}


def char_encode(text: str, stoi: dict[str, int]) -> torch.Tensor:
    return torch.tensor([stoi[c] for c in text], dtype=torch.long)


@torch.no_grad()
def eval_bits_per_byte(model: nn.Module, ids: torch.Tensor, n_bytes: int, block_size: int, batch: int = 64) -> float:
    """Cross-entropy over every position of `ids` in non-overlapping windows, in bits per byte of the predicted text.

    Each window of block_size + 1 ids predicts its last block_size; neighbours share one id, so every id after the
    first is predicted exactly once. `n_bytes` is the byte length of those predicted ids (for ASCII chars, len - 1).
    """
    was_training = model.training
    model.eval()
    windows = [ids[s:s + block_size + 1] for s in range(0, len(ids) - 1, block_size)]
    full = [w for w in windows if len(w) == block_size + 1]
    groups = [torch.stack(full[i:i + batch]) for i in range(0, len(full), batch)]
    groups += [w[None] for w in windows if len(w) != block_size + 1]  # the short last window, alone
    total = 0.0
    for rows in groups:  # (b, t + 1)
        logits, _ = model(rows[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(), reduction="sum").item()
    model.train(was_training)
    return total / math.log(2) / n_bytes


def lr_at(iteration: int, elapsed: float, seconds: float, warmup_end_s: float) -> float:
    """nanoGPT's get_lr with time in place of iterations: linear warm-up over warmup_iters, then cosine from lr to
    min_lr as the time since warm-up ended (at warmup_end_s) goes from 0 to the rest of the budget.

    With a constant step time dt this is get_lr with lr_decay_iters = seconds / dt. Example (warm-up 100 steps of
    0.1 s, budget 100 s): iteration 0 -> lr/101, iteration 100 -> lr, 55 s -> (lr + min_lr) / 2, 100 s -> min_lr.
    """
    r = RECIPE
    if iteration < r["warmup_iters"]:
        return r["lr"] * (iteration + 1) / (r["warmup_iters"] + 1)
    ratio = min(max((elapsed - warmup_end_s) / max(seconds - warmup_end_s, 1e-9), 0.0), 1.0)
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["lr"] - r["min_lr"])


def get_batch(ids: torch.Tensor, batch_size: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT's get_batch: batch_size windows at uniform random offsets 0 .. len - block_size - 1 (every window
    whose target, shifted by one, still fits), x (B, T) and y = x shifted left by one."""
    ix = torch.randint(len(ids) - block_size, (batch_size,))
    x = torch.stack([ids[i:i + block_size] for i in ix])  # (B, T)
    y = torch.stack([ids[i + 1:i + block_size + 1] for i in ix])
    return x, y


def make_optimizer(model: nn.Module) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": RECIPE["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=RECIPE["lr"], betas=RECIPE["betas"])


def train_baseline(train_text: str, eval_texts: dict[str, str], seconds: float, alphabet: str = "",
                   seed: int = 1337, curve_points: int = 10, curve_ids: int = 16384) -> dict:
    """Train the recipe for `seconds` of wall clock (evals pause the clock), then measure bits/byte on each of
    `eval_texts` (ASCII); the curve tracks the first one's first `curve_ids` characters."""
    torch.manual_seed(seed)
    stoi = char_vocab(alphabet + train_text + "".join(eval_texts.values()))
    train_ids = char_encode(train_text, stoi)
    evals = {name: char_encode(text, stoi) for name, text in eval_texts.items()}
    curve_set = next(iter(evals.values()))[:curve_ids + 1]
    r = RECIPE
    model = NanoGPT(len(stoi), r["block_size"], r["n_layer"], r["n_head"], r["n_embd"])
    opt = make_optimizer(model)
    T, B = r["block_size"], r["batch_size"]
    curve, it, elapsed, next_point, warmup_end_s = [], 0, 0.0, 0.0, 0.0
    while elapsed < seconds:
        if elapsed >= next_point:
            curve.append({"step": it, "elapsed_s": elapsed,
                          "val_bpb": eval_bits_per_byte(model, curve_set, len(curve_set) - 1, T)})
            next_point += seconds / curve_points
        if it == r["warmup_iters"]:
            warmup_end_s = elapsed
        start = time.perf_counter()
        x, y = get_batch(train_ids, B, T)
        for group in opt.param_groups:
            group["lr"] = lr_at(it, elapsed, seconds, warmup_end_s)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        it += 1
        elapsed += time.perf_counter() - start
    curve.append({"step": it, "elapsed_s": elapsed,
                  "val_bpb": eval_bits_per_byte(model, curve_set, len(curve_set) - 1, T)})
    bpb = {name: eval_bits_per_byte(model, ids, len(ids) - 1, T) for name, ids in evals.items()}
    return {"recipe": "nanoGPT baby GPT, char-level (plain PyTorch)", "bpb": bpb, "steps": it,
            "train_seconds": elapsed, "tokens_per_s": it * B * T / elapsed,
            "params": sum(p.numel() for p in model.parameters()), "vocab_size": len(stoi), "curve": curve}
