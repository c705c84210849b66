"""The trainer against identities: accumulation equals one big batch, checkpointing leaves gradients alone, an
interrupted and resumed run equals an uninterrupted one bit for bit, and the schedule hits its endpoints."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from scratchllm import train as trainer
from scratchllm.cli import main
from scratchllm.config import PRESETS, InputError, TrainConfig, load_config
from scratchllm.data import BatchStream
from scratchllm.device import autocast
from scratchllm.model import GPT, GPTConfig
from scratchllm.optim import lr_at
from scratchllm.probe import repeated_words
from scratchllm.train import accumulate_grads, train


def _cfg(corpus, *extra):
    return load_config("tiny", [f"data.corpus={corpus}", "train.sample_tokens=4", *extra])


def _losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


def _grads(model, micro):
    model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    accumulate_grads(model, micro, lambda: autocast(torch.device("cpu"), torch.float32), scaler)
    return [p.grad.clone() for p in model.parameters()]


def _model_and_batch(b=8):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32))
    data = torch.randint(0, 50, (4000,)).numpy()
    return model, BatchStream(data, b, 16, seed=1).next()


def test_grad_accumulation_equals_one_big_batch():
    model, (x, y) = _model_and_batch(8)
    big = _grads(model, [(x, y)])
    small = _grads(model, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])
    for a, b in zip(big, small, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_activation_checkpointing_gives_identical_grads():
    model, (x, y) = _model_and_batch(4)
    plain = _grads(model, [(x, y)])
    model.grad_checkpointing = True
    for a, b in zip(plain, _grads(model, [(x, y)]), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_lr_schedule_endpoints():
    t = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100, max_minutes=0)
    assert lr_at(t, 0) == pytest.approx(0.1)
    assert lr_at(t, 10) == pytest.approx(1.0)
    assert lr_at(t, 100) == pytest.approx(0.1)
    assert lr_at(t, 55) == pytest.approx(0.55)  # cosine midpoint: halfway between lr and min_lr
    timed = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=0, max_steps=10**6, max_minutes=1)
    assert lr_at(timed, 5, elapsed_s=60.0) == pytest.approx(0.1)  # the time budget ends first


def test_resume_after_interrupt_is_bitwise_identical(tmp_path, tiny_corpus_file):
    cfg = _cfg(tiny_corpus_file, "train.max_steps=12", "train.max_minutes=0", "train.checkpoint_every=100",
               "model.dropout=0.1")
    train(cfg, tmp_path / "full", progress=False)

    def stop_at_7(session):
        if session.state.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False, on_step=stop_at_7)
    events = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "interrupt"
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    full, cut = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert full[12] == cut[12] and full[9] == cut[9]


def test_resume_with_a_different_config_names_the_keys(tmp_path, tiny_corpus_file):
    train(_cfg(tiny_corpus_file, "train.max_steps=2"), tmp_path, progress=False)
    with pytest.raises(InputError, match=r"train\.lr.*train\.max_steps|train\.max_steps.*train\.lr"):
        train(_cfg(tiny_corpus_file, "train.max_steps=4", "train.lr=0.5"), tmp_path, resume=True, progress=False)


def test_divergence_rolls_back_halves_the_lr_then_stops_with_advice(tmp_path, tiny_corpus_file, monkeypatch):
    monkeypatch.setattr(trainer, "MAX_ROLLBACKS", 3)
    cfg = _cfg(tiny_corpus_file, "train.lr=30", "train.warmup_steps=1", "train.grad_clip=0")
    result = train(cfg, tmp_path, progress=False)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if r["kind"] == "event"]
    assert [e["event"] for e in events] == ["rollback"] * 3 + ["stop"]
    first_lrs = [r["lr"] for r in records if r["kind"] == "train" and r["step"] == 1]
    assert first_lrs == [30 * 0.5**i for i in range(4)]
    assert result["status"] == "diverged" and "lower the LR" in result["advice"]


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_file_validates(path):
    cfg = load_config(str(path))
    assert cfg.train.max_steps > 0 or cfg.train.max_minutes > 0


def test_cli_train_tiny_end_to_end(tmp_path, tiny_corpus_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--set", f"data.corpus={tiny_corpus_file}", "--max-steps", "3",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and math.isfinite(summary["final_val_bpb"])
    for name in ("config.json", "tokenizer.json", "samples.jsonl", "attention/probe.json",
                 "attention/step_000000.npz", "attention/step_000003.npz", "checkpoints/latest/trainer_state.json"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("argv", [
    ["--set", "data.corpus=/no/such/corpus.txt"],
    ["--set", "train.no_such_key=1"],
    ["--preset", "no-such-preset"],
    ["--set", "train.max_steps=0", "--set", "train.max_minutes=0"],
    ["--dtype", "float16", "--device", "cpu"],
])
def test_bad_input_exits_2_with_one_line(tmp_path, argv, capsys):
    argv = (["--preset", "tiny"] if "--preset" not in argv else []) + argv
    assert main(["train", *argv, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_run_folder_fails_before_training(tmp_path, tiny_corpus_file):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="not writable"):
        train(_cfg(tiny_corpus_file), blocker / "run", progress=False)


def test_cli_prepare_char(tmp_path, tiny_corpus_file, capsys):
    assert main(["prepare", "--corpus", str(tiny_corpus_file), "--tokenizer", "char", "--out", str(tmp_path)]) == 0
    assert Path(tmp_path / "train.bin").stat().st_size > 0 and (tmp_path / "tokenizer.json").is_file()


def test_every_preset_ships_inside_the_package_and_loads():
    """Presets are package data (a wheel install has no source tree); ./configs is a link to them."""
    import scratchllm
    from scratchllm.config import PRESETS, load_preset
    assert PRESETS.parent == Path(scratchllm.__file__).resolve().parent
    names = sorted(p.stem for p in PRESETS.glob("*.yaml"))
    assert {"tiny", "shakespeare-char", "shakespeare-bpe", "gpt2-124m", "speedrun-1min", "speedrun-5min"} <= set(names)
    for name in names:
        assert load_preset(name).model.n_layer >= 1


def test_resume_into_a_folder_with_nothing_to_resume_starts_fresh_and_says_so(tmp_path, tiny_corpus_file, capsys):
    cfg = _cfg(tiny_corpus_file, "train.max_steps=3")

    def killed_before_its_first_checkpoint(session):
        raise SystemExit(1)  # not Ctrl-C: no checkpoint is saved on the way out

    with pytest.raises(SystemExit):
        train(cfg, tmp_path / "killed", progress=False, on_step=killed_before_its_first_checkpoint)
    shutil.rmtree(tmp_path / "killed" / "checkpoints")
    for folder in (tmp_path / "killed", tmp_path / "empty"):
        capsys.readouterr()
        summary = train(cfg, folder, resume=True, progress=False)
        err = [line for line in capsys.readouterr().err.splitlines() if "resume" in line]
        assert len(err) == 1 and "starting a fresh run" in err[0] and str(folder) in err[0]
        assert summary["steps"] == 3 and _losses(folder) == _losses(tmp_path / "killed")


def test_the_probe_is_a_passage_of_the_runs_own_validation_text(tmp_path, tiny_text):
    corpus = tmp_path / "milton.txt"
    corpus.write_text(tiny_text.upper(), encoding="utf-8")  # a corpus the built-in probe line is not from
    train(_cfg(corpus, "train.max_steps=1", "model.block_size=64"), tmp_path / "run", progress=False)
    probe = json.loads((tmp_path / "run" / "attention" / "probe.json").read_text())
    val = tiny_text.upper()[int(len(tiny_text) * 0.9):]
    assert probe["text"] in val and 24 <= len(probe["token_ids"]) <= 64
    assert repeated_words(probe["text"]) > 0
    own = "To be, or not to be, that is the question"
    train(_cfg(corpus, "train.max_steps=1", f"train.probe_text={own}"), tmp_path / "own", progress=False)
    assert json.loads((tmp_path / "own" / "attention" / "probe.json").read_text())["text"] == own
