"""The incremental byte-level BPE trainer: `train_bpe(text, vocab_size) -> BPETokenizer`.

It owns training only (encoding lives in regex.py / fast.py). Unlike the rescan trainer in basic.py it counts
each distinct pre-token chunk once, keeps pair counts plus an index pair -> chunks, rewrites only the chunks a
merge touches, and takes the best pair from a heap with lazy deletion. Both trainers pick the same pairs:
highest count first, ties broken by the lowest pair of ids `(a, b)`; a test proves the merge lists equal.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from scratchllm.config import InputError
from scratchllm.tokenizer.base import GPT4_PATTERN, split_specials, splitter
from scratchllm.tokenizer.fast import BPETokenizer
from scratchllm.tokenizer.regex import check_vocab_size


def count_chunks(text: str, pattern: str = GPT4_PATTERN, special_tokens=()) -> Counter:
    """Pre-tokenize and count each distinct chunk once: "a cat a cat" -> {'a': 1, ' cat': 2, ' a': 1}.

    Special tokens are cut out of the training text first, so no merge ever spans one.
    """
    finder = splitter(pattern)
    counts: Counter = Counter()
    for part, is_special in split_specials(text, special_tokens):
        if not is_special:
            counts.update(finder(part))
    return counts


class _PairIndex:
    """Chunks as strings of token ids (one `chr(id)` per token), pair counts, pair -> chunk index, and a heap.

    Storing a chunk [116, 104, 101] as the 3-character string "the" lets `str.replace` do each merge in C, and
    a pair (a, b) is the 2-character string chr(a) + chr(b): comparing those compares (a, b) as id pairs.
    """

    def __init__(self, chunks: Counter):
        self.words = [w.encode("utf-8").decode("latin-1") for w in chunks]
        self.freqs = list(chunks.values())
        self.counts: defaultdict[str, int] = defaultdict(int)
        self.where: defaultdict[str, list[int]] = defaultdict(list)  # may hold stale or repeated entries
        counts, where = self.counts, self.where
        for i, (w, f) in enumerate(zip(self.words, self.freqs, strict=True)):
            for k in range(len(w) - 1):
                pair = w[k : k + 2]
                counts[pair] += f
                where[pair].append(i)
        self.heap = [(-c, p) for p, c in counts.items()]
        heapq.heapify(self.heap)

    def pop_best(self) -> str | None:
        """The pair with the highest count (lowest pair on ties), or None when no pair is left."""
        heap, counts = self.heap, self.counts
        while heap:
            neg, pair = heap[0]
            current = counts.get(pair, 0)
            if current == -neg:
                heapq.heappop(heap)
                return pair
            if current > 0:  # stale entry with a higher count: reinsert at the true count
                heapq.heapreplace(heap, (-current, pair))
            else:
                heapq.heappop(heap)
        return None

    def merge(self, pair: str, new: str) -> None:
        """Replace `pair` by the one-character token `new` in every chunk that holds it; update counts by deltas.

        Most chunks hold the pair once, e.g. "xaby" with pair "ab": only xa, ab, by go and xN, Ny come, so
        only those change; a chunk with several matches is recounted in full.
        """
        words, freqs, where = self.words, self.freqs, self.where
        delta: defaultdict[str, int] = defaultdict(int)
        for i in where.pop(pair):
            old = words[i]
            merged = old.replace(pair, new)
            shrink = len(old) - len(merged)  # number of matches: 0 for a stale index entry
            if shrink != 1:
                if shrink:
                    words[i] = self._recount(old, merged, new, freqs[i], i, delta)
                continue
            words[i] = merged
            f = freqs[i]
            j = old.find(pair)
            if j:
                delta[old[j - 1 : j + 1]] -= f
                p = old[j - 1] + new
                delta[p] += f
                where[p].append(i)
            if j + 2 < len(old):
                delta[old[j + 1 : j + 3]] -= f
                p = new + old[j + 2]
                delta[p] += f
                where[p].append(i)
        self.counts.pop(pair, None)
        delta.pop(pair, None)
        self._apply(delta)

    def _recount(self, old: str, merged: str, new: str, f: int, i: int, delta: defaultdict) -> str:
        """Delta of a chunk rewritten in several places: minus all its old pairs, plus all its new ones."""
        for k in range(len(old) - 1):
            delta[old[k : k + 2]] -= f
        for k in range(len(merged) - 1):
            p = merged[k : k + 2]
            delta[p] += f
            if new in p:
                self.where[p].append(i)
        return merged

    def _apply(self, delta: dict[str, int]) -> None:
        """Add the deltas to the pair counts; a pair whose count grew gets a fresh heap entry."""
        counts, heap = self.counts, self.heap
        for p, d in delta.items():
            if d:
                c = counts[p] + d
                if c:
                    counts[p] = c
                    if d > 0:
                        heapq.heappush(heap, (-c, p))
                else:
                    del counts[p]


def train_merges(chunks: Counter, n_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """Learn up to `n_merges` new tokens from counted chunks; returns the merge list, new id = 256 + index.

    A pair whose bytes already form a token (e.g. "ab"+"c" after "a"+"bc") is merged into that token's id and
    adds no new entry, so every id has distinct bytes (what tiktoken's rank table needs).
    """
    from tqdm import tqdm

    index = _PairIndex(chunks)
    vocab = [bytes([i]) for i in range(256)]
    known = {b: i for i, b in enumerate(vocab)}
    merges: list[tuple[int, int]] = []
    bar = tqdm(total=n_merges, desc="BPE merges", unit="merge", disable=not progress, leave=False)
    while len(merges) < n_merges:
        pair = index.pop_best()
        if pair is None:
            break
        a, b = ord(pair[0]), ord(pair[1])
        joined = vocab[a] + vocab[b]
        target = known.get(joined)
        if target is None:
            target = known[joined] = len(vocab)
            vocab.append(joined)
            merges.append((a, b))
            bar.update()
        index.merge(pair, chr(target))
    bar.close()
    return merges


def train_bpe(
    text: str,
    vocab_size: int,
    special_tokens=("<|endoftext|>",),
    progress: bool = True,
    pattern: str = GPT4_PATTERN,
) -> BPETokenizer:
    """Train a byte-level BPE tokenizer of `vocab_size` ids in all: 256 bytes + merges + special tokens.

    >>> tok = train_bpe("aaabdaaabac", 259, special_tokens=(), progress=False)
    >>> tok.encode("aaabdaaabac")
    [258, 100, 258, 97, 99]
    """
    special_tokens = tuple(dict.fromkeys(special_tokens))
    n_merges = check_vocab_size(vocab_size, len(special_tokens))
    merges = train_merges(count_chunks(text, pattern, special_tokens), n_merges, progress)
    if len(merges) < n_merges:
        most = 256 + len(merges) + len(special_tokens)
        raise InputError(f"vocab size {vocab_size} is larger than this text can give (at most {most})")
    return BPETokenizer(merges, special_tokens, pattern)
