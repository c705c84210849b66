"""Fast paths proven equal to their references: the incremental trainer == the rescan trainer (basic.py), and
tiktoken built from our ranks == the plain-Python encoder (regex.py), on the whole corpus and on generated text."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scratchllm.tokenizer import train_bpe
from scratchllm.tokenizer.base import GPT4_PATTERN
from scratchllm.tokenizer.basic import train_naive
from scratchllm.tokenizer.trainer import count_chunks, train_merges

EOT = "<|endoftext|>"
SPECIALS = (EOT, "<|pad|>")

# Python's `regex` and tiktoken's Rust regex ship their own Unicode tables, and a newer table calls some codepoints
# letters that an older one leaves unassigned, so the two split those differently. The encoders are equal on text
# whose characters are assigned in this Python's `unicodedata` (the oldest table of the three).
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


def only_assigned(text: str) -> bool:
    return all(unicodedata.category(c) != "Cn" for c in text)


@pytest.fixture(scope="module")
def corpus_bpe(shakespeare_text):
    """Vocab 4096 trained on the whole built-in corpus (under a second)."""
    return train_bpe(shakespeare_text, 4096, special_tokens=SPECIALS, progress=False)


def test_incremental_trainer_equals_rescan_trainer_on_shakespeare(tiny_text):
    text = tiny_text[:8000]
    assert train_merges(count_chunks(text), 150) == train_naive(text, 150, GPT4_PATTERN)


@settings(max_examples=80, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("aab c\n1é!"), max_size=300),
    st.booleans(),
)
def test_incremental_trainer_equals_rescan_trainer_on_generated_text(text, split):
    # small alphabets make ties and "same bytes, two ways" merges (a+bc vs ab+c) common
    chunks = count_chunks(text) if split else Counter({text: 1})
    assert train_merges(chunks, 40) == train_naive(text, 40, GPT4_PATTERN if split else None)


def test_trainer_is_deterministic(tiny_text):
    a = train_bpe(tiny_text, 400, progress=False)
    b = train_bpe(tiny_text, 400, progress=False)
    assert a.merges == b.merges


def test_fast_encode_equals_reference_on_whole_corpus(corpus_bpe, shakespeare_text):
    fast = corpus_bpe.encode(shakespeare_text)
    assert fast == corpus_bpe.encode_reference(shakespeare_text)
    assert corpus_bpe.decode_bytes(fast) == shakespeare_text.encode("utf-8")
    assert len(set(fast)) > 3500  # the vocabulary is really used


def test_fast_batch_equals_single(corpus_bpe, tiny_text):
    parts = [tiny_text[i : i + 997] for i in range(0, len(tiny_text), 997)] + ["", EOT]
    assert corpus_bpe.encode_batch(parts) == [corpus_bpe.encode_reference(p) for p in parts]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(ASSIGNED), st.sampled_from((*SPECIALS, "  \n", " the", "'s", "123")))))
def test_fast_encode_equals_reference_on_generated_text(corpus_bpe, pieces):
    text = "".join(pieces)
    assert corpus_bpe.encode(text) == corpus_bpe.encode_reference(text)


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_fast_encode_bytes_equals_reference(corpus_bpe, data):
    assume(only_assigned(data.decode("utf-8", errors="surrogateescape")))
    assert corpus_bpe.encode_bytes(data) == corpus_bpe.encode_bytes_reference(data)
