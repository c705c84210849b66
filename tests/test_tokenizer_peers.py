"""Our tokenizer against peer libraries: the HF export encodes identically, HF tokenizers trained with the same
split learns the same vocabulary, compression matches HF's at equal vocab, and the comparison table holds."""

from __future__ import annotations

import json

import pytest

from scratchllm.tokenizer import GPT4_PATTERN, train_bpe
from scratchllm.tokenizer.compare import compare_tokenizers, comparison_markdown, train_hf_bpe, write_comparison
from scratchllm.tokenizer.hf_export import bytes_to_unicode, export_hf

pytestmark = pytest.mark.peer
tokenizers = pytest.importorskip("tokenizers")
EOT = "<|endoftext|>"
GOLDENS = [
    "", " ", "\n", "\r\n\r\n", "   \n\t  x", "a", "Hello, world!", "don't I'LL we've",
    "12345 3.14159 1,000,000", "def f(x):\n    return x ** 2  # square\n",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag", "日本語のテキスト、中文字符", "مرحبا بالعالم", "שלום עולם",
    "naïve café e\u0301", "tab\tsep\u00a0nbsp\u3000ideographic", f"end{EOT}start {EOT}{EOT}", "<|endoftext",
    "ALL'S WELL THAT ENDS WELL\n\n  KING. Sirrah,",
]


@pytest.fixture(scope="module")
def split_text(shakespeare_text):
    cut = int(len(shakespeare_text) * 0.9)
    return shakespeare_text[:cut], shakespeare_text[cut:]


@pytest.fixture(scope="module")
def ours_4096(split_text):
    return train_bpe(split_text[0], 4096, special_tokens=(EOT,), progress=False)


def test_gpt2_byte_map_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values()) and table[32] == "Ġ"


def test_hf_export_loads_and_encodes_identically(ours_4096, split_text, tmp_path):
    export_hf(ours_4096, tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.get_vocab_size() == ours_4096.vocab_size
    for text in [*GOLDENS, split_text[1]]:
        ids = ours_4096.encode(text)
        assert hf.encode(text).ids == ids, text[:40]
        assert hf.decode(ids, skip_special_tokens=False) == text


def test_trained_vocab_equals_hf_tokenizers_with_the_same_split(tiny_text):
    ours = train_bpe(tiny_text, 400, special_tokens=(EOT,), progress=False)
    hf = train_hf_bpe(tiny_text, 400, GPT4_PATTERN)
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    hf_tokens = {bytes(to_byte[c] for c in s) for s in hf.get_vocab() if s != EOT}
    assert hf_tokens == set(ours.vocab)  # same pairs learnt; only the tie order of equal counts differs


def test_bytes_per_token_within_3_percent_of_hf_at_equal_vocab(ours_4096, split_text):
    train, held_out = split_text
    n_bytes = len(held_out.encode())
    ours = n_bytes / len(ours_4096.encode(held_out))
    same_split = n_bytes / len(train_hf_bpe(train, 4096, GPT4_PATTERN).encode(held_out).ids)
    gpt2_split = n_bytes / len(train_hf_bpe(train, 4096).encode(held_out).ids)
    assert abs(ours / same_split - 1) < 0.03
    assert ours > gpt2_split  # the GPT-4 split keeps ".\n" and "'s" whole: fewer tokens than GPT-2's split


def test_compare_tokenizers_table(tiny_text, shakespeare_text, tmp_path):
    result = compare_tokenizers(shakespeare_text[:200_000], 600)
    rows = {r["name"]: r for r in result["rows"]}
    assert {"scratchllm BPE (reference encode)", "scratchllm BPE (fast encode)", "SentencePiece bpe",
            "SentencePiece unigram", "HF tokenizers byte-level BPE", "tiktoken from our ranks (encode_batch)",
            "word-level with <unk>"} <= set(rows)
    byte_level = [n for n in rows if n.startswith(("scratchllm", "tiktoken from", "HF"))]
    assert all(rows[n]["round_trip"] and rows[n]["unknown_share"] == 0 for n in byte_level)
    assert not rows["word-level with <unk>"]["round_trip"] and rows["word-level with <unk>"]["unknown_share"] > 0.05
    ref, fast = rows["scratchllm BPE (reference encode)"], rows["scratchllm BPE (fast encode)"]
    assert ref["bytes_per_token"] == fast["bytes_per_token"] and ref["vocab_size"] == 600
    json_path, md_path = write_comparison(result, tmp_path)
    assert json.loads(json_path.read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    assert md_path.read_text() == comparison_markdown(result) and md_path.read_text().count("\n| ") == len(rows)


@pytest.mark.slow
def test_full_corpus_comparison_ours_within_3_percent_of_hf(shakespeare_text):
    result = compare_tokenizers(shakespeare_text, 4096)
    assert abs(result["ours_vs_hf_bytes_per_token"] - 1) < 0.03


@pytest.mark.slow
def test_hf_export_encodes_the_whole_corpus_identically(shakespeare_text, tmp_path):
    ours = train_bpe(shakespeare_text, 4096, special_tokens=(EOT,), progress=False)
    export_hf(ours, tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.encode(shakespeare_text).ids == ours.encode(shakespeare_text)
