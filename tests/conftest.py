"""Shared tiny fixtures: every test builds what it needs in tmp_path from the embedded corpus."""

from __future__ import annotations

import pytest
import torch

from scratchllm.data import load_corpus


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    """The whole embedded corpus (5 MB), loaded once per session."""
    return load_corpus("shakespeare").text


@pytest.fixture(scope="session")
def tiny_text(shakespeare_text) -> str:
    """About 20 KB of Shakespeare: enough for a tokenizer or a few training steps in seconds."""
    return shakespeare_text[:20_000]


@pytest.fixture
def tiny_corpus_file(tmp_path, tiny_text):
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models step ~35x faster on one thread when the 2 cores are shared (OpenMP threads contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def threads(request):
    """Run a test with request.param torch threads (parametrize indirectly): the thread count changes the order
    of reductions, so a property must hold under each."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)
