"""Text generation: choose the next token (temperature, top-k, top-p), loop naively or with a KV cache, stream text.

The naive loop (`NaiveContext`) re-reads the whole context for every new token: obviously right, O(T) work per
layer and token for the projections and O(T²) for attention. The cached loop (`CachedContext`) feeds only the new
token and reuses the keys and values already computed. Past block_size the naive loop keeps the last block_size
tokens; the cached loop, when its cache is full, rebuilds it from the last block_size // 2 tokens (a sliding window
moved in jumps, so one re-read is shared by block_size // 2 new tokens). Beyond block_size the two may therefore
differ; within it they agree token for token. Sampling owns its own seeded torch.Generator: no global RNG touched.
"""

from __future__ import annotations

import codecs
import warnings
from collections.abc import Iterator, Sequence

import torch

from scratchllm.config import InputError
from scratchllm.model import GPT, KVCache


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> int:
    """One id from next-token logits (vocab,). temperature 0 = argmax; top-k keeps the k likeliest; top-p keeps
    the smallest set whose probability reaches p (the likeliest token always stays)."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)  # (vocab,)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs >= top_p  # mass before this token already reaches p
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator))


class NaiveContext:
    """Next-token logits by running the model over the last block_size ids, every time."""

    def __init__(self, model: GPT):
        self.model, self.device = model, next(model.parameters()).device

    def next_logits(self, ids: Sequence[int]) -> torch.Tensor:
        window = torch.tensor([list(ids[-self.model.config.block_size:])], device=self.device)  # (1, T)
        return self.model(window, last_only=True)[0][0, -1]  # (vocab,)


class CachedContext:
    """Next-token logits feeding the model only the ids its KV cache has not seen yet."""

    def __init__(self, model: GPT):
        param = next(model.parameters())
        self.model, self.device = model, param.device
        self.cache = KVCache(model.config, batch_size=1, device=param.device, dtype=param.dtype)
        self.start = 0  # index in ids of the first position held in the cache

    def next_logits(self, ids: Sequence[int]) -> torch.Tensor:
        block = self.model.config.block_size
        new = list(ids[self.start + self.cache.pos:])
        if self.cache.pos + len(new) > block:  # full: rebuild from the last block // 2 ids (or the whole prompt)
            keep = min(len(ids), block) if self.cache.pos == 0 else max(1, block // 2)
            self.start, self.cache.pos = len(ids) - keep, 0
            new = list(ids[self.start:])
        new = torch.tensor([new], device=self.device)  # (1, T)
        return self.model(new, kv_cache=self.cache, last_only=True)[0][0, -1]  # (vocab,)


def _check(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0 (0 = greedy); got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be >= 1; got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise InputError(f"top_p must be in (0, 1]; got {top_p}")


def crop_prompt(ids: Sequence[int], block_size: int) -> list[int]:
    """The prompt's last block_size ids, with a warning when that cuts anything."""
    ids = [int(i) for i in ids]
    if not ids:
        raise InputError("the prompt is empty: give at least one token")
    if len(ids) > block_size:
        warnings.warn(f"prompt of {len(ids)} tokens is longer than the context ({block_size}); "
                      f"keeping its last {block_size}", stacklevel=3)
    return ids[-block_size:]


@torch.no_grad()
def iter_tokens(model: GPT, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, seed: int | None = None, stop_tokens: Sequence[int] = (),
                use_cache: bool = True) -> Iterator[int]:
    """Yield new ids one at a time; a stop token ends the stream and is not yielded."""
    _check(max_new_tokens, temperature, top_k, top_p)
    ids = crop_prompt(idx.flatten().tolist() if torch.is_tensor(idx) else idx, model.config.block_size)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    context = CachedContext(model) if use_cache else NaiveContext(model)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            token = sample_next_token(context.next_logits(ids), temperature, top_k, top_p, generator)
            if token in stop_tokens:
                return
            ids.append(token)
            yield token
    finally:
        model.train(was_training)


def generate(model: GPT, idx, max_new_tokens: int, **kwargs) -> list[int]:
    """The new ids (the prompt not repeated) for prompt ids `idx` (a list or a (1, T) tensor); kwargs as iter_tokens.

    >>> generate(model, [5, 9], 3, temperature=0)     # greedy
    [12, 5, 9]
    """
    return list(iter_tokens(model, idx, max_new_tokens, **kwargs))


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    if prompt:
        return tokenizer.encode(prompt)
    if "<|endoftext|>" in tokenizer.special_tokens:  # an empty prompt starts a fresh document
        return [tokenizer.special_tokens["<|endoftext|>"]]
    raise InputError("the prompt is empty and the tokenizer has no <|endoftext|> token to start from")


def stream_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int, **kwargs) -> Iterator[str]:
    """Yield the continuation of `prompt` as text pieces, holding back bytes of a character cut between tokens."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in iter_tokens(model, _prompt_ids(tokenizer, prompt), max_new_tokens, **kwargs):
        if piece := decoder.decode(tokenizer.decode_bytes([token])):
            yield piece
    if tail := decoder.decode(b"", final=True):
        yield tail


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int, **kwargs) -> str:
    """The continuation of `prompt` (without the prompt itself) as one string."""
    return "".join(stream_text(model, tokenizer, prompt, max_new_tokens, **kwargs))
