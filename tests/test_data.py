"""Corpus loading: the embedded default, files, folders, globs, and bad input."""

from __future__ import annotations

import pytest

from scratchllm.config import InputError
from scratchllm.data import load_corpus


def test_embedded_corpus_equals_shared_file(shakespeare_text):
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare.txt"
    if not shared.exists():
        pytest.skip("../shared/data/shakespeare.txt not beside the checkout")
    assert shakespeare_text == shared.read_bytes().decode("utf-8")


def test_file_folder_and_glob_give_the_same_documents(tmp_path):
    (tmp_path / "a.txt").write_text("first doc")
    (tmp_path / "b.txt").write_text("second doc")
    assert load_corpus(tmp_path).documents == ["first doc", "second doc"]
    assert load_corpus(str(tmp_path / "*.txt")).documents == ["first doc", "second doc"]
    assert load_corpus(tmp_path / "b.txt").documents == ["second doc"]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe then more")
    assert load_corpus(tmp_path / "bad.txt").text == "ok \ufffd\ufffd then more"


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary"])
def test_empty_or_binary_files_are_input_errors(tmp_path, content):
    (tmp_path / "f.bin").write_bytes(content)
    with pytest.raises(InputError):
        load_corpus(tmp_path / "f.bin")


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_corpus(tmp_path / "nope.txt")
