"""Tokenizer basics: the Wikipedia BPE example, exact byte round trips, special tokens, the file format,
and the char / word baselines."""

from __future__ import annotations

import json

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.config import InputError
from scratchllm.tokenizer import CharTokenizer, WordTokenizer, load_tokenizer, train_bpe
from scratchllm.tokenizer.base import GPT4_PATTERN, split_specials

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def bpe(tiny_text):
    return train_bpe(tiny_text, 512, special_tokens=(EOT, "<|pad|>"), progress=False)


def test_wikipedia_example_aaabdaaabac():
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: aa -> Z, ab -> Y, ZY -> X gives "XdXac"
    tok = train_bpe("aaabdaaabac", 259, special_tokens=(), progress=False)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    assert tok.encode_reference("aaabdaaabac") == tok.encode("aaabdaaabac")


def test_pattern_is_tiktoken_cl100k(monkeypatch):
    from tiktoken_ext import openai_public

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})  # the pattern, not the ranks
    assert GPT4_PATTERN == openai_public.cl100k_base()["pat_str"]
    text = "Hello world's 12345 don't\n\n  ok!!\r\n"
    assert regex.findall(GPT4_PATTERN, text) == [
        "Hello", " world", "'s", " ", "123", "45", " don", "'t", "\n\n", " ", " ok", "!!\r\n"
    ]


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_decode_bytes_of_encode_is_exact(bpe, text):
    assert bpe.decode_bytes(bpe.encode(text)) == text.encode("utf-8")
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(st.binary())
def test_any_bytes_round_trip_invalid_utf8_included(bpe, data):
    assert bpe.decode_bytes(bpe.encode_bytes(data)) == data
    assert bpe.decode_bytes(bpe.encode_bytes_reference(data)) == data


def test_special_tokens_are_single_ids_after_the_merges(bpe):
    eot = bpe.special_tokens[EOT]
    assert eot == len(bpe.merges) + 256 and bpe.special_tokens["<|pad|>"] == eot + 1 and bpe.vocab_size == 512
    ids = bpe.encode(f"to be{EOT}or not{EOT}")
    assert ids.count(eot) == 2 and ids[-1] == eot
    assert bpe.decode(ids) == f"to be{EOT}or not{EOT}"
    assert eot not in bpe.encode_ordinary_reference(EOT)


def test_render_token_labels_are_printable():
    from scratchllm.tokenizer import render_token

    assert render_token(b" the") == " the" and render_token(b"\n") == "\\u000a"
    assert render_token(b"\xe2\x82") == "\ufffd"  # half a character


def test_split_specials_prefers_the_longest():
    pieces = list(split_specials("a<|x|><|xy|>b", ["<|x|>", "<|xy|>"]))
    assert pieces == [("a", False), ("<|x|>", True), ("<|xy|>", True), ("b", False)]


def test_save_load_round_trip_is_readable_json(bpe, tmp_path, tiny_text):
    path = tmp_path / "tok.json"
    bpe.save(path)
    data = json.loads(path.read_text())
    assert (data["format"], data["version"], data["type"]) == ("scratchllm-tokenizer", 1, "bpe")
    assert len(path.read_text().splitlines()) > len(bpe.merges)  # one merge a line
    loaded = load_tokenizer(path)
    assert type(loaded) is type(bpe) and loaded.special_tokens == bpe.special_tokens
    assert loaded.encode(tiny_text) == bpe.encode(tiny_text)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not a scratchllm tokenizer file"),
        ('{"format": "scratchllm-tokenizer", "version": 99, "type": "bpe"}', "version 99"),
        ('{"format": "scratchllm-tokenizer", "version": 1, "type": "bpe", "merges": [[1, 9999]]}', "corrupt"),
        ('{"format": "scratchllm-tokenizer", "version": 1, "type": "nope"}', "unknown type"),
    ],
)
def test_bad_tokenizer_files_raise_input_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_tokenizer(path)


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(tmp_path / "nope.json")


def test_empty_special_token_is_refused():
    with pytest.raises(InputError, match="empty string"):
        train_bpe("hello hello", 300, special_tokens=("",), progress=False)


def test_vocab_size_limits():
    with pytest.raises(InputError, match="must exceed 256"):
        train_bpe("hello hello", 256, special_tokens=(), progress=False)
    with pytest.raises(InputError, match="larger than this text can give"):
        train_bpe("hello hello", 1000, progress=False)


def test_decode_rejects_out_of_range_ids(bpe):
    with pytest.raises(InputError, match="out of range"):
        bpe.decode([1, bpe.vocab_size])
    with pytest.raises(InputError, match="out of range"):
        bpe.decode([-1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.just(EOT)), max_size=8).map("".join))
def test_char_tokenizer_round_trip(text):
    tok = CharTokenizer.train(text, special_tokens=(EOT,))
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set("".join(p for p, s in split_specials(text, [EOT]) if not s))) + 1


def test_char_tokenizer_names_unknown_characters(tmp_path):
    tok = CharTokenizer.train("abc")
    with pytest.raises(InputError, match=r"'z'"):
        tok.encode("abz")
    tok.save(tmp_path / "c.json")
    assert load_tokenizer(tmp_path / "c.json").encode("cab") == tok.encode("cab") == [2, 0, 1]


def test_word_tokenizer_maps_unseen_words_to_unk(tmp_path, tiny_text):
    tok = WordTokenizer.train(tiny_text, 300, special_tokens=(EOT,))
    assert tok.vocab_size == 300 and tok.special_tokens[EOT] == 299
    ids = tok.encode(f" the zyzzyva{EOT}")
    assert ids == [tok.stoi[" the"], 0, 299]
    assert tok.decode(ids) == f" the<unk>{EOT}"
    tok.save(tmp_path / "w.json")
    assert load_tokenizer(tmp_path / "w.json").encode(tiny_text) == tok.encode(tiny_text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.text(alphabet=" \t\r\n\x0b\x0c\x1c'sSlL1a.!"))
def test_ascii_split_twin_equals_regex_module(text):
    from scratchllm.tokenizer.base import splitter

    assert splitter(GPT4_PATTERN)(text) == regex.findall(GPT4_PATTERN, text)


TRICKY = ["\n", "\n\n", " \n", "\r\n", "\n ", "x", "’", "\u3000", "\x1c", ".", "!\n", "  ", "\u2028", "a", "1",
          "'s", "\t", "\x85", "é"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(TRICKY), max_size=80).map("".join) | st.text(),
    st.integers(1, 20),
)
def test_cutting_into_blocks_keeps_every_chunk(text, size):
    from scratchllm.tokenizer.base import blocks

    pieces = list(blocks(text, size))
    assert "".join(pieces) == text
    assert [c for p in pieces for c in regex.findall(GPT4_PATTERN, p)] == regex.findall(GPT4_PATTERN, text)


def test_splitter_on_long_mixed_text(tiny_text):
    from scratchllm.tokenizer.base import splitter

    text = (tiny_text + "’ café 日本\u3000\x1c\n") * 3
    assert splitter(GPT4_PATTERN)(text) == regex.findall(GPT4_PATTERN, text)
