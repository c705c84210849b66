"""Word-level tokenizer with `<unk>`: the baseline that shows why subword tokenizers exist.

Words are the split pattern's chunks (" the", "," ...); the `vocab_size - 1` most frequent become ids and any
other word becomes `<unk>` (id 0), so held-out text loses information. Byte-level BPE (regex.py) never does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scratchllm.config import InputError
from scratchllm.tokenizer.base import GPT4_PATTERN, Tokenizer, split_specials, splitter

UNK = "<unk>"


class WordTokenizer(Tokenizer):
    """Id 0 is `<unk>`, ids 1.. the known words (most frequent first), special tokens last."""

    type_name = "word"

    def __init__(self, words: Sequence[str], special_tokens: Sequence[str] = (), pattern: str = GPT4_PATTERN):
        self.words = [UNK, *words]
        self.pattern = pattern
        self.stoi = {w: i for i, w in enumerate(self.words)}
        first = len(self.words)
        self.special_tokens = {s: first + k for k, s in enumerate(dict.fromkeys(special_tokens))}
        self._split = splitter(pattern)
        self._bytes = [t.encode("utf-8") for t in (*self.words, *self.special_tokens)]

    @classmethod
    def train(
        cls, text: str, vocab_size: int, special_tokens: Sequence[str] = (), pattern: str = GPT4_PATTERN
    ) -> WordTokenizer:
        """Keep the most frequent words (ties: first seen first) so that the vocabulary has `vocab_size` ids."""
        n_words = vocab_size - 1 - len(special_tokens)
        if n_words < 1:
            raise InputError(f"vocab size must exceed 1 + {len(special_tokens)} special token(s), got {vocab_size}")
        counts: Counter = Counter()
        split = splitter(pattern)
        for piece, is_special in split_specials(text, special_tokens):
            if not is_special:
                counts.update(split(piece))
        return cls([w for w, _ in counts.most_common(n_words)], special_tokens, pattern)

    @property
    def vocab_size(self) -> int:
        return len(self.words) + len(self.special_tokens)

    def token_bytes(self, i: int) -> bytes:
        self.check_ids([i])
        return self._bytes[i]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece, is_special in split_specials(text, list(self.special_tokens)):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                ids.extend([self.stoi.get(w, 0) for w in self._split(piece)])
        return ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Ids -> bytes; `<unk>` comes back as the literal text "<unk>" (the word itself is lost)."""
        self.check_ids(ids)
        table = self._bytes
        return b"".join([table[i] for i in ids])

    def to_dict(self) -> dict:
        return {
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "vocab_size": self.vocab_size,
            "words": self.words[1:],
        }

    @classmethod
    def from_dict(cls, data: dict) -> WordTokenizer:
        specials = sorted(data["special_tokens"].items(), key=lambda kv: kv[1])
        tok = cls(data["words"], [s for s, _ in specials], data["pattern"])
        if tok.special_tokens != data["special_tokens"] or tok.vocab_size != data["vocab_size"]:
            raise ValueError("special token ids or vocab_size do not match the words")
        return tok
