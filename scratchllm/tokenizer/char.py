"""Character-level tokenizer: one id per distinct character of the training text, special tokens after.

The smallest honest baseline (nanoGPT's "baby GPT" uses it). It cannot encode a character it never saw, and
says which ones (an `InputError`), rather than guessing; byte-level BPE (regex.py) has no such gap.
"""

from __future__ import annotations

from collections.abc import Sequence

from scratchllm.config import InputError
from scratchllm.tokenizer.base import Tokenizer, split_specials


class CharTokenizer(Tokenizer):
    """Ids 0..n-1 are the sorted characters; special tokens follow."""

    type_name = "char"

    def __init__(self, chars: str, special_tokens: Sequence[str] = ()):
        self.chars = "".join(sorted(set(chars)))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        first = len(self.chars)
        self.special_tokens = {s: first + k for k, s in enumerate(dict.fromkeys(special_tokens))}
        self.itos = list(self.chars) + list(self.special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Sequence[str] = ()) -> CharTokenizer:
        """The vocabulary of `text` (special tokens in it are not split into characters): "abca" -> a, b, c."""
        chars = set()
        for piece, is_special in split_specials(text, special_tokens):
            if not is_special:
                chars.update(piece)
        return cls("".join(chars), special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def token_bytes(self, i: int) -> bytes:
        self.check_ids([i])
        return self.itos[i].encode("utf-8")

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        stoi = self.stoi
        for piece, is_special in split_specials(text, list(self.special_tokens)):
            if is_special:
                ids.append(self.special_tokens[piece])
                continue
            try:
                ids.extend([stoi[c] for c in piece])
            except KeyError:
                missing = sorted(set(piece) - set(stoi))
                shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise InputError(f"{len(missing)} character(s) not in the char vocabulary: {shown}") from None
        return ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        self.check_ids(ids)
        itos = self.itos
        return "".join([itos[i] for i in ids]).encode("utf-8")

    def to_dict(self) -> dict:
        return {"chars": self.chars, "special_tokens": self.special_tokens, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        specials = sorted(data["special_tokens"].items(), key=lambda kv: kv[1])
        tok = cls(data["chars"], [s for s, _ in specials])
        if tok.special_tokens != data["special_tokens"] or tok.vocab_size != data["vocab_size"]:
            raise ValueError("special token ids or vocab_size do not match the characters")
        return tok
