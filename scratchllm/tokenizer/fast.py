"""The fast encoder: the same ranks handed to `tiktoken.Encoding` (Rust), built locally with no download.

`BPETokenizer` is the class users get from `train_bpe` and `load_tokenizer`: `encode` runs in tiktoken, while
`encode_reference` (regex.py, plain Python) stays beside it; tests prove both give identical ids.
tiktoken's merge rule (lowest-ranked joined bytes first, leftmost on ties) is the rule regex.py implements.
One caveat: the split pattern's letter and number classes come from each regex engine's own Unicode table, so a
codepoint assigned only in the newer table may be chunked differently by the two; ids still decode exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from scratchllm.tokenizer.regex import RegexTokenizer


class BPETokenizer(RegexTokenizer):
    """Byte-level BPE whose `encode`/`encode_batch`/`encode_bytes` run in tiktoken."""

    type_name = "bpe"

    @cached_property
    def encoding(self):
        """The `tiktoken.Encoding` for these ranks and special tokens (built on first use)."""
        import tiktoken

        return tiktoken.Encoding(
            name=f"scratchllm-bpe-{self.vocab_size}",
            pat_str=self.pattern,
            mergeable_ranks=self.ranks,
            special_tokens=self.special_tokens,
        )

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special="all")

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]:
        return self.encoding.encode_batch(list(texts), num_threads=num_threads, allowed_special="all")

    def encode_bytes(self, data: bytes) -> list[int]:
        """Any bytes -> ids, split exactly as `encode_bytes_reference` splits them."""
        try:
            return self.encoding.encode_ordinary(data.decode("utf-8"))
        except UnicodeDecodeError:
            chunks = self._split(data.decode("utf-8", errors="surrogateescape"))
            piece = self.encoding._encode_single_piece  # rank merge of one chunk, in Rust
            return [i for c in chunks for i in piece(c.encode("utf-8", errors="surrogateescape"))]
