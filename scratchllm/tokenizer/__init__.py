"""Tokenizers: text <-> ids. Read in order base -> basic -> regex -> fast -> trainer; char.py and word.py beside.

    tok = train_bpe(text, 4096)      # byte-level BPE, GPT-4 split, "<|endoftext|>" is id 4095
    ids = tok.encode("Hello")        # tiktoken built from our ranks; tok.encode_reference is the Python twin
    tok.save("tok.json"); tok = load_tokenizer("tok.json")
"""

from scratchllm.tokenizer.base import GPT4_PATTERN, Tokenizer, load_tokenizer, render_token
from scratchllm.tokenizer.char import CharTokenizer
from scratchllm.tokenizer.fast import BPETokenizer
from scratchllm.tokenizer.regex import RegexTokenizer
from scratchllm.tokenizer.trainer import train_bpe
from scratchllm.tokenizer.word import WordTokenizer

__all__ = [
    "GPT4_PATTERN",
    "BPETokenizer",
    "CharTokenizer",
    "RegexTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "load_tokenizer",
    "render_token",
    "train_bpe",
]
