"""The one bits-per-byte evaluator: total cross-entropy over a set of windows, divided by the bytes predicted.

Quality is reported in bits per byte so models with different tokenizers compare on the same text: a token that
stands for 4 bytes and costs 8 bits scores 2 bits/byte. The trainer scores fixed random windows at each
evaluation; the speedrun and finetuning score every held-out byte in contiguous windows (exact_bpb). All come
here. Targets of -1 (masked, as in finetuning) count neither nats nor bytes. It owns no training and no data
format.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch.nn import functional as F

from scratchllm.device import autocast, resolve_device, resolve_dtype
from scratchllm.model import GPT
from scratchllm.tokenizer import Tokenizer


def token_byte_lengths(tokenizer: Tokenizer) -> torch.Tensor:
    """(vocab,) bytes each token id stands for: the weights that turn nats per token into bits per byte."""
    return torch.tensor([len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size)], dtype=torch.float64)


def contiguous_batches(ids: torch.Tensor, block_size: int, batch: int = 32) -> Iterator[tuple[torch.Tensor, ...]]:
    """Every id after the first as a target once: non-overlapping windows of block_size, `batch` at a time, the
    short last window alone. Example: 10 ids, block 4 -> inputs ids[0:4], ids[4:8], ids[8:9]."""
    windows = [ids[s:s + block_size + 1] for s in range(0, len(ids) - 1, block_size)]
    full = [w for w in windows if len(w) == block_size + 1]
    for i in range(0, len(full), batch):
        rows = torch.stack(full[i:i + batch])  # (b, T + 1)
        yield rows[:, :-1], rows[:, 1:]
    for w in windows:
        if len(w) != block_size + 1:
            yield w[None, :-1], w[None, 1:]


@torch.no_grad()
def score(model: GPT, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], byte_lengths: torch.Tensor,
          autocast_factory) -> dict:
    """{"loss": nats per target token, "bpb": bits per byte of the targets, "tokens", "bytes"} over `batches` of
    (x, y); the model is in eval mode meanwhile. A uniform model scores log2(vocab) x tokens / bytes."""
    was_training = model.training
    model.eval()
    nats, tokens, n_bytes = 0.0, 0, 0.0
    for x, y in batches:
        with autocast_factory():
            logits, _ = model(x)  # (b, t, vocab)
        nats += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum").item()
        kept = y[y >= 0].cpu()
        tokens += kept.numel()
        n_bytes += byte_lengths[kept].sum().item()
    model.train(was_training)
    return {"loss": nats / max(tokens, 1), "bpb": nats / math.log(2) / max(n_bytes, 1.0), "tokens": tokens,
            "bytes": n_bytes}


def exact_bpb(model: GPT, ids, tokenizer: Tokenizer, block_size: int, device: str = "auto",
              dtype: str = "auto") -> dict:
    """score() over every id of `ids` after the first, in contiguous windows of block_size, on the config's
    `device` and `dtype` (names as train.device / train.dtype take them); the model moves there."""
    where = resolve_device(device)
    precision = resolve_dtype(dtype, where)
    ids = torch.as_tensor(ids, dtype=torch.long).to(where)
    return score(model.to(where), contiguous_batches(ids, block_size), token_byte_lengths(tokenizer),
                 lambda: autocast(where, precision))
