"""`scratchllm tokenizer ...` through `scratchllm.cli.main`: the happy path round-trips, and every bad input gives
exit code 2, one line on stderr and no file."""

from __future__ import annotations

import json

import pytest

from scratchllm.cli import main
from scratchllm.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory, tiny_text):
    folder = tmp_path_factory.mktemp("tok")
    (folder / "corpus.txt").write_text(tiny_text, encoding="utf-8")
    out = folder / "tok.json"
    assert main(["tokenizer", "train", "--input", str(folder / "corpus.txt"), "--vocab-size", "400",
                 "--out", str(out), "--hf-out", str(folder / "hf.json")]) == 0
    return out


@pytest.mark.parametrize("action", ["train", "encode", "decode", "compare"])
def test_help_names_an_example(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", action, "--help"])
    assert exit_info.value.code == 0 and "Example: scratchllm tokenizer" in " ".join(capsys.readouterr().out.split())


def test_train_encode_decode_round_trip(tok_file, capsys):
    capsys.readouterr()
    text = "To be, or not to be<|endoftext|> — ünïcödé"
    assert main(["tokenizer", "encode", "--tokenizer", str(tok_file), text]) == 0
    ids = capsys.readouterr().out.split()
    assert [int(i) for i in ids] == load_tokenizer(tok_file).encode(text)
    assert main(["tokenizer", "decode", "--tokenizer", str(tok_file), *ids]) == 0
    assert capsys.readouterr().out == text + "\n"
    hf = pytest.importorskip("tokenizers").Tokenizer.from_file(str(tok_file.parent / "hf.json"))
    assert hf.encode(text).ids == [int(i) for i in ids]


def test_encode_file_and_comma_ids(tok_file, tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes(b"caf\xc3\xa9 \xff bytes")
    assert main(["tokenizer", "encode", "--tokenizer", str(tok_file), "--input", str(tmp_path / "in.txt")]) == 0
    ids = capsys.readouterr().out.split()
    assert main(["tokenizer", "decode", "--tokenizer", str(tok_file), ",".join(ids)]) == 0
    assert capsys.readouterr().out == "café \ufffd bytes\n"  # invalid UTF-8 in a file is read as U+FFFD


@pytest.mark.parametrize("kind", ["char", "word"])
def test_train_char_and_word(kind, tiny_corpus_file, tmp_path):
    out = tmp_path / f"{kind}.json"
    assert main(["tokenizer", "train", "--type", kind, "--input", str(tiny_corpus_file), "--vocab-size", "300",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["type"] == kind


def test_compare_writes_tables(tmp_path, capsys, tiny_corpus_file):
    assert main(["tokenizer", "compare", "--input", str(tiny_corpus_file), "--vocab-size", "300",
                 "--out", str(tmp_path)]) == 0
    assert "| scratchllm BPE (fast encode) |" in capsys.readouterr().out
    assert (tmp_path / "tokenizer_comparison.json").exists() and (tmp_path / "tokenizer_comparison.md").exists()


def _bad_inputs(tmp_path, tok_file):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "small.txt").write_text("hello hello hello")
    (tmp_path / "corrupt.json").write_text('{"format": "scratchllm-tokenizer", "version": 1, "type": "bpe", "merg')
    (tmp_path / "v2.json").write_text(tok_file.read_text().replace('"version": 1', '"version": 2'))
    out = str(tmp_path / "out.json")
    train = ["tokenizer", "train", "--out", out, "--vocab-size"]
    return [
        (train + ["1000", "--input", str(tmp_path / "missing.txt")], "corpus not found"),
        (train + ["1000", "--input", str(tmp_path / "empty.txt")], "empty"),
        (train + ["1000", "--input", str(tmp_path / "binary.bin")], "NUL"),
        (train + ["256", "--input", str(tmp_path / "small.txt")], "must exceed 256"),
        (train + ["5000", "--input", str(tmp_path / "small.txt")], "larger than this text can give"),
        (["tokenizer", "encode", "--tokenizer", str(tmp_path / "corrupt.json"), "x"], "not valid JSON"),
        (["tokenizer", "encode", "--tokenizer", str(tmp_path / "v2.json"), "x"], "version 2"),
        (["tokenizer", "encode", "--tokenizer", str(tmp_path / "nope.json"), "x"], "not found"),
        (["tokenizer", "encode", "--tokenizer", str(tok_file)], "TEXT or --input"),
        (["tokenizer", "decode", "--tokenizer", str(tok_file), "12", "x3"], "not a token id"),
        (["tokenizer", "decode", "--tokenizer", str(tok_file), "400"], "out of range"),
        (["tokenizer", "compare", "--input", str(tmp_path / "small.txt"), "--vocab-size", "256"], "must exceed"),
    ]


def test_bad_input_exits_2_with_one_line_and_no_file(tok_file, tmp_path, capsys):
    for argv, message in _bad_inputs(tmp_path, tok_file):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "out.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
