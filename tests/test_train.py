"""The trainer against identities: accumulation equals one big batch, checkpointing leaves gradients alone, an
interrupted and resumed run equals an uninterrupted one bit for bit, and the schedule hits its endpoints."""

from __future__ import annotations

import json

import pytest
import torch

from scratchllm.config import InputError
from scratchllm.data import BatchStream
from scratchllm.model import GPT, GPTConfig
from scratchllm.train import TrainConfig, accumulate_grads, autocast, load_config, lr_at, train


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
        if session.state["step"] == 7:
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
