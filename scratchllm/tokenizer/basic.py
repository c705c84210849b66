"""The teaching version of byte-level BPE training: recount every pair of the whole text after every merge.

Short and slow on purpose (minutes on a megabyte): it is the definition the fast trainer (trainer.py) is tested
against, and the code the guide quotes. Start from the UTF-8 bytes, find the most frequent adjacent pair (ties:
the lowest pair of ids), give it the next id, replace it everywhere, repeat. With `pattern` the text is first cut
into chunks (regex.py's split) and pairs never cross a chunk boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

import regex


def get_stats(ids: Sequence[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count adjacent pairs: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace each non-overlapping `pair`, left to right, by `idx`: [1, 2, 3, 1, 2], (1, 2), 4 -> [4, 3, 4]."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_naive(text: str, n_merges: int, pattern: str | None = None) -> list[tuple[int, int]]:
    """Learn up to `n_merges` merges by full rescans; token 256 + k is merges[k] joined.

    >>> train_naive("aaabdaaabac", 3)   # aa -> 256, ab -> 257, (256, 257) -> 258, as on Wikipedia
    [(97, 97), (97, 98), (256, 257)]

    A best pair whose joined bytes already are a token is merged into that token and adds no new id.
    """
    pieces = regex.findall(pattern, text) if pattern else [text]
    chunks = [list(p.encode("utf-8")) for p in pieces]
    vocab = [bytes([i]) for i in range(256)]
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges:
        stats: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            get_stats(chunk, stats)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))  # highest count, then lowest pair
        joined = vocab[pair[0]] + vocab[pair[1]]
        if joined in vocab:
            idx = vocab.index(joined)
        else:
            idx = len(vocab)
            vocab.append(joined)
            merges.append(pair)
        chunks = [merge(chunk, pair, idx) for chunk in chunks]
    return merges
