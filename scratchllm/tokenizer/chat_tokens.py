"""The chat format's turn tokens, named once: chat.py renders conversations with them and convert/chat_template.py
writes the same names into a Hugging Face chat template, so the two cannot drift apart.

A conversation reads "<|endoftext|><|user|>Who?<|end|><|assistant|>Romeo.<|end|>": each role's token opens its turn
and <|end|> closes it. This module owns the names only; adding them to a tokenizer and rendering live in chat.py.
"""

from __future__ import annotations

from scratchllm.tokenizer.base import Tokenizer

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)  # the order they are appended to a vocabulary in
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
BOS = "<|endoftext|>"  # opens a rendered conversation when the tokenizer has it


def has_chat_tokens(tokenizer: Tokenizer | None) -> bool:
    """True when the tokenizer has every turn token, i.e. it belongs to a finetuned (chat) model."""
    return tokenizer is not None and all(t in tokenizer.special_tokens for t in CHAT_TOKENS)
