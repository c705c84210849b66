"""Shared tiny fixtures: every test builds what it needs in tmp_path from the embedded corpus."""

from __future__ import annotations

import importlib.util
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from scratchllm.config import load_config
from scratchllm.data import load_corpus
from scratchllm.train import train

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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


@contextmanager
def _torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models step ~35x faster on one thread when the 2 cores are shared (OpenMP threads contend)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="session")
def finetune_base(tmp_path_factory, tiny_text):
    """(base run folder, qa.jsonl) shared by the finetuning tests: the `tiny` preset trained 20 steps on 20 KB of
    Shakespeare at context 64, and 40 number-word answers ("Say the number 1 in words." -> "one"). Read only:
    finetune into a folder of your own, or copy the base run first to write beside it."""
    folder = tmp_path_factory.mktemp("finetune_base")
    corpus = folder / "tiny.txt"
    corpus.write_text(tiny_text, encoding="utf-8")
    cfg = load_config("tiny", [f"data.corpus={corpus}", "train.max_steps=20", "train.sample_tokens=8",
                               "model.block_size=64", "train.device=cpu"])
    with _torch_threads(1):  # session-scoped, so built before any module's one_thread
        train(cfg, folder / "base", progress=False)
    data = folder / "qa.jsonl"
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
    rows = [{"instruction": f"Say the number {i} in words.", "output": w} for i, w in enumerate(words * 5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder / "base", data


@pytest.fixture
def threads(request):
    """Run a test with request.param torch threads (parametrize indirectly): the thread count changes the order
    of reductions, so a property must hold under each."""
    with _torch_threads(request.param):
        yield request.param


@pytest.fixture(scope="session")
def load_benchmark():
    """load_benchmark(name) imports benchmarks/NAME.py (a folder of scripts, not a package) once per session. The
    module is registered in sys.modules while the session runs, since a dataclass there looks its module up."""
    loaded: dict = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
