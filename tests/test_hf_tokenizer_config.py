"""tokenizer_config.json's bos, eos and extra special tokens, written out by hand for a plain and a chat tokenizer."""

from __future__ import annotations

import pytest

from scratchllm.chat import add_chat_tokens
from scratchllm.tokenizer import train_bpe
from scratchllm.tokenizer.hf_export import tokenizer_config

TEXT = "To be, or not to be, that is the question. " * 4


def test_plain_tokenizer_ends_at_endoftext():
    config = tokenizer_config(train_bpe(TEXT, 270), 64)
    assert (config["bos_token"], config["eos_token"], config["extra_special_tokens"]) == \
        ("<|endoftext|>", "<|endoftext|>", [])


def test_chat_tokenizer_can_end_at_end_of_turn_and_keeps_the_rest_extra():
    config = tokenizer_config(add_chat_tokens(train_bpe(TEXT, 270)), 64, eos="<|end|>")
    assert (config["bos_token"], config["eos_token"]) == ("<|endoftext|>", "<|end|>")
    assert sorted(config["extra_special_tokens"]) == sorted(["<|system|>", "<|user|>", "<|assistant|>"])


def test_an_eos_the_tokenizer_lacks_is_refused():
    with pytest.raises(ValueError, match="<\\|end\\|>"):
        tokenizer_config(train_bpe(TEXT, 270), 64, eos="<|end|>")
