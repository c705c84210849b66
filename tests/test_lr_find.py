"""LR range test: the schedule is geometric, the suggestion reads an analytic curve correctly, and a real sweep on a
tiny GPT gives the textbook shape (flat, falling, then blowing up) with a suggestion that trains better than LRs 100x
either side of it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from scratchllm.config import InputError, TrainConfig
from scratchllm.data import BatchStream
from scratchllm.lr_find import find_lr, lr_schedule, plot, suggest
from scratchllm.model import GPT, GPTConfig
from scratchllm.optim import make_optimizer
from scratchllm.tokenizer import train_bpe


@given(st.floats(1e-8, 1e-3), st.floats(1.5, 1e6), st.integers(2, 200))
def test_lr_schedule_is_geometric_between_the_endpoints(lr_min, span, steps):
    lrs = lr_schedule(lr_min, lr_min * span, steps)
    assert len(lrs) == steps and lrs[0] == lr_min and lrs[-1] == pytest.approx(lr_min * span)
    ratios = np.diff(np.log(lrs))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)


def test_suggest_reads_an_analytic_curve():
    """loss(x) = 3 - tanh(2 (x + 3)) + 0.5 (x + 1)^2 [x>-1], x = log10 lr: falls fastest at x = -3, bottoms out
    between -2 and -1, rises after."""
    xs = np.linspace(-6, 1, 141)
    loss = 3 - np.tanh(2 * (xs + 3)) + np.where(xs > -1, 0.5 * (xs + 1) ** 2, 0)
    lr_min_loss, steep, suggested = suggest(list(10**xs), list(loss))
    assert math.log10(steep) == pytest.approx(-3, abs=0.06)
    assert math.log10(lr_min_loss) == pytest.approx(xs[np.argmin(loss)])
    assert suggested == min(steep, lr_min_loss / 10)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


TINY = GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="module")
def ids(shakespeare_text):
    tok = train_bpe(shakespeare_text[:20_000], TINY.vocab_size, progress=False)
    return torch.tensor(tok.encode(shakespeare_text[:40_000]))


def _loss_after(ids, lr: float, steps: int = 40) -> float:
    """Mean loss of the last 10 of `steps` AdamW steps at a constant LR, same seed and batches."""
    torch.manual_seed(0)
    model = GPT(TINY)
    opt = make_optimizer(model, TrainConfig(lr=lr, batch_size=8), torch.device("cpu"))
    batches, losses = BatchStream(ids.numpy(), 8, TINY.block_size, seed=1), []
    for _ in range(steps):
        _, loss = model(*batches.next())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[-10:]) / 10


def test_range_test_on_a_tiny_gpt_falls_then_rises_and_suggests_a_good_lr(ids, tmp_path):
    result = find_lr(TINY, ids, TrainConfig(batch_size=8), steps=80, lr_max=100.0, progress=False)
    best = int(np.argmin(result.smoothed))
    assert result.smoothed[best] < result.smoothed[0] - 0.5  # it learned something on the way
    assert result.smoothed[-1] > result.smoothed[best] + 0.3  # and blew up past the minimum
    assert result.stopped_early and len(result.lrs) < 80
    assert 1e-4 <= result.suggested <= 3e-2 and result.suggested < result.lr_min_loss
    # the suggestion trains better than 100x less or 100x more (same seed, same batches)
    at = {factor: _loss_after(ids, result.suggested * factor) for factor in (1 / 100, 1, 100)}
    assert at[1] < at[1 / 100] - 0.5 and at[1] < at[100], at
    paths = plot(result, tmp_path)
    assert [p.name for p in paths] == ["lr_find.png", "lr_find.svg"]
    with Image.open(paths[0]) as im:
        assert im.width > 300
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggested"] == result.suggested and len(saved["losses"]) == len(result.lrs)


def test_find_lr_refuses_a_corpus_shorter_than_the_context():
    with pytest.raises(InputError, match="too small"):
        find_lr(TINY, torch.arange(10), TrainConfig(batch_size=2), steps=5, progress=False)


def test_lr_find_cli_on_a_tiny_config(tmp_path, tiny_corpus_file, capsys):
    from scratchllm.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(f"model: {{n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}}\n"
                      f"data: {{corpus: {tiny_corpus_file}}}\ntokenizer: {{type: bpe, vocab_size: 300}}\n"
                      "train: {batch_size: 8, max_steps: 10, max_minutes: 0, device: cpu}\n")
    out = tmp_path / "lrf"
    assert main(["lr-find", "--config", str(config), "--out", str(out), "--steps", "40", "--lr-max", "100"]) == 0
    printed = capsys.readouterr().out
    suggested = float(printed.split("suggested LR: ")[1].split()[0])
    assert suggested == pytest.approx(json.loads((out / "lr_find.json").read_text())["suggested"], rel=1e-2)
    assert (out / "lr_find.png").is_file() and (out / "lr_find.svg").is_file()
    assert main(["lr-find", "--config", str(config), "--steps", "2"]) == 2
    assert "at least 5 steps" in capsys.readouterr().err
