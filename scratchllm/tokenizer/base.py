"""What every tokenizer shares: the `Tokenizer` interface, special-token splitting, and the one JSON file format.

The file is human-readable and versioned: {"format": "scratchllm-tokenizer", "version": 1, "type": ...}; the
"type" field picks the class on load. A corrupt file or another version is an `InputError` with a clear line.
This module knows no algorithm: BPE lives in basic.py -> regex.py -> fast.py, char/word in char.py / word.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import regex

from scratchllm.config import InputError, atomic_write_text

# The GPT-4 (cl100k_base) split pattern: contractions, letter runs with one leading non-letter, 1-3 digits,
# punctuation runs, newlines, and whitespace that keeps the last space for the next word.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
# The same pattern for pure-ASCII text, where \p{L} is [A-Za-z], \p{N} is [0-9] and \s is the six ASCII spaces: the
# standard `re` module runs it about twice as fast as `regex` runs the Unicode one (possessive needs Python 3.11).
_S, _NS = r"[\t\n\x0b\x0c\r ]", r"[^\t\n\x0b\x0c\r ]"
GPT4_PATTERN_ASCII = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{1,3}+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]++[\r\n]*+|"""
    rf"""{_S}++$|{_S}*[\r\n]|{_S}+(?!{_NS})|{_S}"""
)
_SAFE_CUT = re.compile(r"\n(?=\S)")  # re's \S is narrower than Unicode's, so every cut it finds is safe
FORMAT, VERSION = "scratchllm-tokenizer", 1
TOKENIZER_TYPES: dict[str, type[Tokenizer]] = {}


def blocks(text: str, size: int = 1 << 12) -> Iterator[str]:
    """Cut `text` into pieces of about `size` characters, each cut right after a newline that a non-space follows.

    No GPT-4 chunk crosses such a cut (a chunk holding a newline ends at the end of its newline run), so
    splitting each piece on its own gives exactly the chunks of the whole text.
    """
    start = 0
    while start < len(text):
        cut = _SAFE_CUT.search(text, start + size)
        end = cut.end() if cut else len(text)
        yield text[start:end]
        start = end


def splitter(pattern: str) -> Callable[[str], list[str]]:
    """`findall` for `pattern`; for the GPT-4 pattern, pure-ASCII blocks take the faster `re` twin (same chunks)."""
    findall = regex.compile(pattern).findall
    if pattern != GPT4_PATTERN or sys.version_info < (3, 11):
        return findall
    ascii_findall = re.compile(GPT4_PATTERN_ASCII).findall

    def split(text: str) -> list[str]:
        if text.isascii():
            return ascii_findall(text)
        if len(text) < 1 << 13:
            return findall(text)
        return [c for block in blocks(text) for c in (ascii_findall if block.isascii() else findall)(block)]

    return split


def split_specials(text: str, special_tokens: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """Cut `text` at literal special tokens: "a<|e|>b" -> ("a", False), ("<|e|>", True), ("b", False).

    The longest special wins where two start at the same place; empty pieces are skipped.
    """
    if not special_tokens:
        if text:
            yield text, False
        return
    if not all(special_tokens):
        raise InputError("a special token cannot be the empty string")
    alternatives = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
    for i, piece in enumerate(regex.split(f"({alternatives})", text)):
        if piece:
            yield piece, i % 2 == 1


def render_token(token: bytes) -> str:
    """Printable label for a token: invalid UTF-8 becomes U+FFFD and control characters become \\uXXXX."""
    text = token.decode("utf-8", errors="replace")
    return "".join(c if unicodedata.category(c)[0] != "C" else f"\\u{ord(c):04x}" for c in text)


class Tokenizer:
    """Text <-> ids. Subclasses set `type_name` and implement encode, decode_bytes, token_bytes, to_dict."""

    type_name = ""
    special_tokens: dict[str, int]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            TOKENIZER_TYPES[cls.type_name] = cls

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        raise NotImplementedError

    def token_bytes(self, i: int) -> bytes:
        raise NotImplementedError

    def to_dict(self) -> dict:
        """The type-specific fields of the file (format, version and type are added by `save`)."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; a cut through a multi-byte character shows as U+FFFD instead of failing."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def check_ids(self, ids: Sequence[int]) -> None:
        """Raise an `InputError` naming the first id outside [0, vocab_size)."""
        if len(ids) and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise InputError(f"token id {bad} is out of range for a vocabulary of {self.vocab_size}")

    def save(self, path: str | os.PathLike) -> None:
        """Write the versioned JSON file atomically (temp file + rename)."""
        data = {"format": FORMAT, "version": VERSION, "type": self.type_name, **self.to_dict()}
        atomic_write_text(path, dumps_readable(data))


def dumps_readable(data: dict) -> str:
    """JSON with one top-level field per line and each list item (a merge, say) on its own short line."""
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f"  {json.dumps(key)}: [\n    {items}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def read_tokenizer_file(path: str | os.PathLike) -> dict:
    """Read and check the header of a tokenizer file; any problem is an `InputError` naming the file."""
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError(f"tokenizer file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"tokenizer file is not valid JSON: {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a scratchllm tokenizer file (no \"format\": \"{FORMAT}\"): {path}")
    if data.get("version") != VERSION:
        raise InputError(f"tokenizer file {path} has version {data.get('version')!r}; this scratchllm reads {VERSION}")
    if data.get("type") not in TOKENIZER_TYPES:
        raise InputError(f"tokenizer file {path} has unknown type {data.get('type')!r}")
    return data


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load any tokenizer saved with `tok.save(path)`; the file's "type" picks the class."""
    data = read_tokenizer_file(path)
    fields = {k: v for k, v in data.items() if k not in ("format", "version", "type")}
    try:
        return TOKENIZER_TYPES[data["type"]].from_dict(fields)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise InputError(f"tokenizer file {path} is corrupt: {type(e).__name__}: {e}") from None
