"""The probe: the passage whose attention the trainer records, and the records themselves.

By default the probe comes from the run's own validation text, not from a corpus the model never saw: a passage
of whole lines, long enough to fill the context, where some words repeat (attention has something to find: a
word attending to its earlier occurrence). `train.probe_text` overrides it. The records (attention/step_*.npz)
hold each layer's attention and its q, k and v, from `GPT.inspect`. This module owns no drawing (viz.py).
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from scratchllm.config import InputError
from scratchllm.model import GPT
from scratchllm.runfolder import ATTENTION_ARRAYS, RunWriter, token_text
from scratchllm.tokenizer import CharTokenizer, Tokenizer

MIN_PROBE_TOKENS = 24


def repeated_words(text: str) -> int:
    """How many word occurrences repeat an earlier word (case-folded). Example: "to be or not to be" -> 2."""
    counts = Counter(w.lower() for w in re.findall(r"[^\W\d_]+", text))
    return sum(n - 1 for n in counts.values())


def choose_probe_text(val_text: str, tokenizer: Tokenizer, block_size: int, candidates: int = 40) -> str:
    """A passage of whole lines from `val_text` with at most block_size tokens (and, where the text allows, at
    least MIN_PROBE_TOKENS), picking among evenly spread starts the one with the most repeated words."""
    lines = [line for line in val_text.splitlines() if line.strip()]
    best, best_score = "", -1
    for start in range(0, len(lines), max(1, len(lines) // candidates)):
        passage = _fill(lines[start:start + 4 * block_size], tokenizer, block_size)
        long_enough = len(probe_ids(tokenizer, passage, block_size)) >= min(MIN_PROBE_TOKENS, block_size)
        score = repeated_words(passage) + (1000 if long_enough else 0)
        if score > best_score:
            best, best_score = passage, score
    return best


def _fill(lines: list[str], tokenizer: Tokenizer, block_size: int) -> str:
    """As many whole lines as fit in block_size tokens (at least the first, which probe_ids then cuts)."""
    text = lines[0] if lines else ""
    for line in lines[1:]:
        longer = f"{text}\n{line}"
        if len(probe_ids(tokenizer, longer, block_size + 1)) > block_size:
            break
        text = longer
    return text


def probe_ids(tokenizer: Tokenizer, text: str, block_size: int) -> list[int]:
    """The probe text's ids cut to block_size; characters a char tokenizer lacks are dropped."""
    if isinstance(tokenizer, CharTokenizer):
        text = "".join(ch for ch in text if ch in tokenizer.stoi)
    try:
        return tokenizer.encode(text)[:block_size]
    except InputError:
        return []


def write_probe(writer: RunWriter, tokenizer: Tokenizer, ids: list[int], text: str) -> None:
    writer.probe(text, ids, [token_text(tokenizer, i) for i in ids])


def record_attention(writer: RunWriter, model: GPT | None, ids: list[int], step: int, device: torch.device) -> None:
    """attention/step_XXXXXX.npz: att (L, H, T, T), q, k, v (L, H, T, hd) as float16, from model.inspect."""
    if not ids or model is None or not writer.enabled:
        return
    layers = model.inspect(torch.tensor([ids], device=device))
    writer.attention(step, {name: torch.stack([layer[name][0] for layer in layers]).float().cpu().numpy()
                            for name in ATTENTION_ARRAYS})
