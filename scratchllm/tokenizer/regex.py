"""The reference BPE encoder in plain Python: GPT-4 split pattern, merge by rank, special tokens, exact bytes.

It adds to basic.py what a real tokenizer needs: text is first cut at special tokens and then into chunks by the
split pattern, and each chunk is merged on its own (with a cache, since chunks repeat). Merging follows tiktoken's
rule, so fast.py can hand the same ranks to tiktoken: repeatedly join the adjacent pair whose joined bytes have
the lowest id, leftmost first. It does not train (trainer.py) and is not the fast path (fast.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from scratchllm.config import InputError
from scratchllm.tokenizer.base import GPT4_PATTERN, Tokenizer, split_specials, splitter


class RegexTokenizer(Tokenizer):
    """Byte-level BPE from a merge list: id 256 + k is the bytes of merges[k] joined; specials come last."""

    type_name = "bpe"

    def __init__(self, merges: Sequence[Sequence[int]], special_tokens=(), pattern: str = GPT4_PATTERN):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.pattern = pattern
        self.vocab = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])  # IndexError if a merge names a later id
        self.ranks = {token: i for i, token in enumerate(self.vocab)}
        if len(self.ranks) != len(self.vocab):
            raise ValueError("two merges give the same bytes")
        first = len(self.vocab)
        self.special_tokens = {s: first + k for k, s in enumerate(dict.fromkeys(special_tokens))}
        self._special_bytes = {i: s.encode("utf-8") for s, i in self.special_tokens.items()}
        self._split = splitter(pattern)
        self._cache: dict[bytes, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def token_bytes(self, i: int) -> bytes:
        self.check_ids([i])
        return self.vocab[i] if i < len(self.vocab) else self._special_bytes[i]

    def bpe(self, chunk: bytes) -> list[int]:
        """Merge one chunk by rank: with ranks {b'ab': 256, b'abc': 257}, b"abcab" -> [257, 256].

        As in tiktoken, a chunk that is itself a token is that token, whatever the merges would do.
        Quadratic in the chunk's length, which is fine for word-sized chunks (and the cache does the rest).
        """
        ranks = self.ranks
        if chunk in ranks:
            return [ranks[chunk]]
        parts = [chunk[i : i + 1] for i in range(len(chunk))]
        while len(parts) > 1:
            joined = [ranks.get(parts[i] + parts[i + 1], -1) for i in range(len(parts) - 1)]
            candidates = [r for r in joined if r >= 0]
            if not candidates:
                break
            i = joined.index(min(candidates))
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [ranks[p] for p in parts]

    def encode_chunks(self, chunks: Sequence[str | bytes]) -> list[int]:
        """Encode pre-split chunks through the per-chunk cache."""
        cache, ids = self._cache, []
        for chunk in chunks:
            key = chunk if isinstance(chunk, bytes) else chunk.encode("utf-8")
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self.bpe(key)
            ids.extend(hit)
        return ids

    def encode_ordinary_reference(self, text: str) -> list[int]:
        """Text -> ids with special tokens treated as plain text."""
        return self.encode_chunks(self._split(text))

    def encode_reference(self, text: str) -> list[int]:
        """Text -> ids; literal special tokens (e.g. "<|endoftext|>") become their single ids."""
        ids: list[int] = []
        for piece, is_special in split_specials(text, list(self.special_tokens)):
            ids.extend([self.special_tokens[piece]] if is_special else self.encode_ordinary_reference(piece))
        return ids

    def encode_bytes_reference(self, data: bytes) -> list[int]:
        """Any bytes, invalid UTF-8 included -> ids: stray bytes ride through the split as surrogate escapes."""
        chunks = self._split(data.decode("utf-8", errors="surrogateescape"))
        return self.encode_chunks([c.encode("utf-8", errors="surrogateescape") for c in chunks])

    def encode(self, text: str) -> list[int]:
        return self.encode_reference(text)

    def encode_bytes(self, data: bytes) -> list[int]:
        return self.encode_bytes_reference(data)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        self.check_ids(ids)
        vocab, n = self.vocab, len(self.vocab)
        return b"".join(vocab[i] if i < n else self._special_bytes[i] for i in ids)

    def to_dict(self) -> dict:
        return {
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "vocab_size": self.vocab_size,
            "merges": [list(m) for m in self.merges],
        }

    @classmethod
    def from_dict(cls, data: dict) -> RegexTokenizer:
        specials = sorted(data["special_tokens"].items(), key=lambda kv: kv[1])
        tok = cls(data["merges"], [s for s, _ in specials], data["pattern"])
        if tok.special_tokens != data["special_tokens"] or tok.vocab_size != data["vocab_size"]:
            raise ValueError("special token ids or vocab_size do not match the merges")
        return tok


def check_vocab_size(vocab_size: int, n_special: int) -> int:
    """Number of merges a BPE vocabulary of `vocab_size` ids leaves room for; too small is an `InputError`."""
    n_merges = vocab_size - 256 - n_special
    if n_merges < 1:
        raise InputError(f"vocab size must exceed 256 + {n_special} special token(s), got {vocab_size}")
    return n_merges
