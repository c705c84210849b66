"""Tokenizers: text <-> ids. Read in order base -> basic -> regex -> fast -> trainer; char.py and word.py beside.

    tok = train_bpe(text, 4096)      # byte-level BPE, GPT-4 split, "<|endoftext|>" is id 4095
    ids = tok.encode("Hello")        # tiktoken built from our ranks; tok.encode_reference is the Python twin
    tok.save("tok.json"); tok = load_tokenizer("tok.json")
"""

from scratchllm.config import TokenizerConfig
from scratchllm.tokenizer.base import GPT4_PATTERN, Tokenizer, load_tokenizer, render_token
from scratchllm.tokenizer.char import CharTokenizer
from scratchllm.tokenizer.fast import BPETokenizer
from scratchllm.tokenizer.regex import RegexTokenizer
from scratchllm.tokenizer.trainer import train_bpe
from scratchllm.tokenizer.word import WordTokenizer


def build_tokenizer(cfg: TokenizerConfig, train_text: str, progress: bool = False) -> Tokenizer:
    """The tokenizer a run's config asks for: loaded from cfg.path, else trained on `train_text`."""
    if cfg.path:
        return load_tokenizer(cfg.path)
    if cfg.type == "char":
        return CharTokenizer.train(train_text)
    return train_bpe(train_text, cfg.vocab_size, progress=progress)


__all__ = [
    "GPT4_PATTERN",
    "build_tokenizer",
    "BPETokenizer",
    "CharTokenizer",
    "RegexTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "load_tokenizer",
    "render_token",
    "train_bpe",
]
