"""`scratchllm generate / export / import-hf` through `scratchllm.cli.main`, checked against the library calls."""

from __future__ import annotations

import json

import pytest
import torch

from scratchllm.checkpoint import load_model, save_model
from scratchllm.cli import main
from scratchllm.generate import generate, generate_text
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n"


def make_run(tmp_path, tokenizer=True, **kw):
    tok = CharTokenizer.train(ALPHABET)
    torch.manual_seed(0)
    base = {"vocab_size": tok.vocab_size, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
    model = GPT(GPTConfig(**{**base, **kw}))
    save_model(tmp_path / "run" / "checkpoints" / "latest", model, tok if tokenizer else None, {"step": 3})
    (tmp_path / "run" / "config.json").write_text(json.dumps({"model": base}))  # as train writes: the RunConfig
    return tmp_path / "run", model, tok


def test_generate_prints_prompt_and_the_library_continuation(tmp_path, capsys):
    run, model, tok = make_run(tmp_path)
    args = ["generate", "--run", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--temperature", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out == "ROMEO:" + generate_text(model, tok, "ROMEO:", 20, temperature=0) + "\n"
    assert main([*args, "--stream"]) == 0
    assert capsys.readouterr().out == out
    assert main([*args, "--no-cache"]) == 0
    assert capsys.readouterr().out == out


def test_generate_with_seed_is_reproducible_from_a_checkpoint_folder(tmp_path, capsys):
    run, _, _ = make_run(tmp_path)
    args = ["generate", "--checkpoint", str(run / "checkpoints" / "latest"), "--prompt", "To be", "--seed", "4",
            "--top-k", "10", "--top-p", "0.9", "--max-new-tokens", "30"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first


def test_prompt_character_missing_from_char_vocab_exits_2_naming_it(tmp_path, capsys):
    run, _, _ = make_run(tmp_path)
    assert main(["generate", "--run", str(run), "--prompt", "naïve ☃"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "☃" in err


def test_long_prompt_warns_on_one_line_and_still_generates(tmp_path, capsys):
    run, _, _ = make_run(tmp_path)
    assert main(["generate", "--run", str(run), "--prompt", "a" * 50, "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "longer than the context" in err


def test_prompt_ids_without_tokenizer(tmp_path, capsys):
    run, model, _ = make_run(tmp_path, tokenizer=False)
    args = ["generate", "--run", str(run), "--max-new-tokens", "5", "--temperature", "0"]
    assert main([*args, "--prompt-ids", "1,2,3"]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in generate(model, [1, 2, 3], 5, temperature=0)]
    assert main([*args, "--prompt", "hello"]) == 2
    assert "--prompt-ids" in capsys.readouterr().err
    assert main([*args, "--prompt-ids", "1,999"]) == 2
    assert "999" in capsys.readouterr().err


def test_run_tokenizer_is_used_when_the_checkpoint_has_none(tmp_path, capsys):
    run, model, tok = make_run(tmp_path, tokenizer=False)
    tok.save(run / "tokenizer.json")
    assert main(["generate", "--run", str(run), "--prompt", "ab", "--max-new-tokens", "5", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == "ab" + generate_text(model, tok, "ab", 5, temperature=0) + "\n"


def test_missing_run_exits_2(tmp_path, capsys):
    assert main(["generate", "--run", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_bad_sampling_flag_exits_2(tmp_path, capsys):
    run, _, _ = make_run(tmp_path)
    assert main(["generate", "--run", str(run), "--prompt", "x", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err


def test_export_then_import_hf_round_trip(tmp_path, capsys):
    run, model, tok = make_run(tmp_path)
    assert main(["export", "--run", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    assert main(["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    back, tok2, meta = load_model(tmp_path / "back")
    assert meta["imported_from"] == str(tmp_path / "hf")
    assert tok2.encode("abc") == tok.encode("abc")
    for name, t in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name


def test_export_of_a_rope_model_exits_2_naming_the_option(tmp_path, capsys):
    run, _, _ = make_run(tmp_path, positions="rope", norm="post")  # RoPE alone goes to GPT-NeoX; no family is post-norm
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "hf")]) == 2
    assert "norm=post" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("command", ["generate", "export", "import-hf"])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "Example: scratchllm " + command in " ".join(capsys.readouterr().out.split())
