"""prepare(): ids on disk decode back to the corpus, splits follow documents, the cache is keyed by content."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scratchllm.config import InputError
from scratchllm.data import BatchStream, Corpus, load_corpus, load_split, prepare
from scratchllm.tokenizer import CharTokenizer, train_bpe


def test_memmaps_decode_back_to_the_split_text(tmp_path, tiny_text):
    tok = train_bpe(tiny_text, 300, progress=False)
    meta = prepare(Corpus("t", [tiny_text]), tok, tmp_path, progress=False)
    cut = int(len(tiny_text) * 0.9)
    assert tok.decode(load_split(tmp_path, "train").tolist()) == tiny_text[:cut]
    assert tok.decode(load_split(tmp_path, "val").tolist()) == tiny_text[cut:]
    assert meta["splits"]["val"]["bytes"] == len(tiny_text[cut:].encode())
    assert meta["dtype"] == "uint16"


def test_several_documents_split_by_document(tmp_path):
    for i in range(10):
        (tmp_path / f"doc{i}.txt").write_text(f"document number {i} " * 20)
    tok = CharTokenizer.train(load_corpus(tmp_path).text)  # the text joins documents with a blank line
    meta = prepare(str(tmp_path), tok, tmp_path / "out", progress=False)
    assert (meta["splits"]["train"]["documents"], meta["splits"]["val"]["documents"]) == (9, 1)
    assert tok.decode(load_split(tmp_path / "out", "val").tolist()) == (tmp_path / "doc9.txt").read_text()


def test_second_call_is_cached_and_a_changed_tokenizer_is_not(tmp_path, tiny_text, tiny_corpus_file):
    tok = CharTokenizer.train(tiny_text)
    prepare(str(tiny_corpus_file), tok, tmp_path / "d", progress=False)
    stamp = (tmp_path / "d" / "train.bin").stat().st_mtime_ns
    prepare(str(tiny_corpus_file), tok, tmp_path / "d", progress=False)
    assert (tmp_path / "d" / "train.bin").stat().st_mtime_ns == stamp
    other = CharTokenizer.train(tiny_text + "~")
    meta = prepare(str(tiny_corpus_file), other, tmp_path / "d", progress=False)
    assert meta["vocab_size"] == other.vocab_size
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["key"] == meta["key"]


def test_too_short_corpus_is_an_input_error(tmp_path):
    (tmp_path / "short.txt").write_text("to be or not to be")
    with pytest.raises(InputError, match="too short"):
        prepare(str(tmp_path / "short.txt"), CharTokenizer.train("to be ornt"), tmp_path / "o", block_size=64,
                progress=False)


def test_batch_stream_resumes_from_its_state():
    data = np.arange(1000, dtype=np.uint16)
    a = BatchStream(data, 4, 8, seed=3)
    a.next()
    state = a.get_state()
    expected = a.next()
    b = BatchStream(data, 4, 8, seed=99)
    b.set_state(state)
    x, y = b.next()
    assert (x == expected[0]).all() and (y == x + 1).all()


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 300), block=st.integers(1, 40), batch=st.integers(1, 9), seed=st.integers(0, 10**6))
def test_batch_stream_reads_every_window_once_per_epoch(length, block, batch, seed):
    """Each epoch tiles the data with back-to-back windows from one offset below block_size, each read once; batches
    (which may straddle epochs) are the same windows read one at a time."""
    assume(length >= block + 1)
    data = np.arange(length, dtype=np.uint32)
    single, firsts = BatchStream(data, 1, block, seed), []
    while single.epoch == 0:
        x, y = single.next()
        assert (y == x + 1).all()
        firsts.append(int(x[0, 0]))
    starts = sorted(firsts[:-1])  # the last read opened epoch 1
    assert starts[0] < block and starts[-1] + block + 1 <= length
    assert starts == list(range(starts[0], starts[0] + block * len(starts), block))
    assert starts[-1] + 2 * block + 1 > length  # no further window would fit
    batched, one_by_one = BatchStream(data, batch, block, seed), BatchStream(data, 1, block, seed)
    rows = torch.cat([batched.next()[0] for _ in range(3)])
    assert torch.equal(rows, torch.cat([one_by_one.next()[0] for _ in range(3 * batch)]))
