"""Export a `BPETokenizer` as a Hugging Face `tokenizer.json` that `tokenizers.Tokenizer.from_file` loads, and the
`tokenizer_config.json` beside it that `AutoTokenizer.from_pretrained` reads.

The adapter owns only the translation: bytes -> GPT-2's printable byte-to-unicode alphabet, our split pattern as a
`Split` pre-tokenizer followed by `ByteLevel(use_regex=False)`, and a merge list ordered like tiktoken's ranks
(every split of each token into two tokens, ranked by the token's id, as transformers' TikTokenConverter does).
A test proves HF encodes the corpus to the same ids. It writes JSON itself; the `tokenizers` package is not needed.
The chat template is not made here: convert/chat_template.py makes it, and convert/folder.py passes it to
`tokenizer_config` when it writes a model folder.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from scratchllm.config import atomic_write_text
from scratchllm.tokenizer.regex import RegexTokenizer


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: printable Latin-1 maps to itself, b" " -> "Ġ"."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _as_unicode(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def hf_merges(tok: RegexTokenizer) -> list[list[str]]:
    """Every (left, right) split of every token into two tokens, ordered by the joined token's id, then by ids."""
    merges = []
    for token in tok.vocab[256:]:
        splits = [(token[:k], token[k:]) for k in range(1, len(token))]
        splits = [(a, b) for a, b in splits if a in tok.ranks and b in tok.ranks]
        splits.sort(key=lambda ab: (tok.ranks[ab[0]], tok.ranks[ab[1]]))
        merges.extend([_as_unicode(a), _as_unicode(b)] for a, b in splits)
    return merges


def to_hf_dict(tok: RegexTokenizer) -> dict:
    """The `tokenizer.json` structure (tokenizers 0.19+) for a byte-level BPE tokenizer."""
    added = [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for s, i in tok.special_tokens.items()
    ]
    split = {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    model = {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
        "ignore_merges": True,  # a chunk that is a whole token stays one token, as in tiktoken
        "vocab": {_as_unicode(t): i for i, t in enumerate(tok.vocab)},
        "merges": hf_merges(tok),
    }
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]},
        "post_processor": None, "decoder": {**byte_level, "use_regex": True}, "model": model,
    }


def export_hf(tok: RegexTokenizer, path: str | os.PathLike) -> None:
    """Write `tokenizer.json` for Hugging Face atomically."""
    atomic_write_text(path, json.dumps(to_hf_dict(tok), ensure_ascii=False, indent=1) + "\n")


def tokenizer_config(tok: RegexTokenizer, model_max_length: int, chat_template: str | None = None,
                     eos: str | None = None) -> dict:
    """`tokenizer_config.json`: a plain fast tokenizer that adds no tokens of its own; "<|endoftext|>" (when we
    have it) is its bos, and its eos unless `eos` names another of our special tokens (a chat model's "<|end|>");
    our other special tokens are its extra special tokens."""
    bos = "<|endoftext|>" if "<|endoftext|>" in tok.special_tokens else None
    if eos is not None and eos not in tok.special_tokens:
        raise ValueError(f"eos {eos!r} is not one of the tokenizer's special tokens")
    eos = eos if eos is not None else bos
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False, "add_bos_token": False, "add_eos_token": False,
        "bos_token": bos, "eos_token": eos, "unk_token": None, "pad_token": None,
        "extra_special_tokens": [s for s in tok.special_tokens if s not in (bos, eos)],
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    return config

