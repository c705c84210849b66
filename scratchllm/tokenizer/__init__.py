"""Tokenizers: text <-> ids. Read in order base -> basic -> regex -> fast -> trainer; char.py and word.py beside.

>>> tok = train_bpe(text, 4096)        # byte-level BPE, GPT-4 split, "<|endoftext|>" as id 4095
>>> tok.decode(tok.encode("Hello"))    # encode runs in tiktoken; tok.encode_reference is the plain-Python twin
'Hello'
"""

from scratchllm.tokenizer.base import GPT4_PATTERN, Tokenizer, load_tokenizer
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
    "train_bpe",
]
