"""LR range test: the schedule is geometric, the suggestion reads an analytic curve correctly, and a real sweep on a
tiny model gives the textbook shape (flat, falling, then blowing up) with a suggestion inside the falling part."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from scratchllm.lr_find import lr_schedule, plot, range_test, suggest


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


class _Bigram(torch.nn.Module):
    """A one-hidden-layer next-character model with GPT's call convention: model(x, y) -> (logits, loss)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.embed, self.head = torch.nn.Embedding(vocab, 32), torch.nn.Linear(32, vocab)

    def forward(self, x, y):
        logits = self.head(torch.relu(self.embed(x)))  # (B, T, V)
        return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def _char_batches(text: str, seed: int = 0):
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    gen = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            start = torch.randint(0, len(ids) - 33, (16,), generator=gen)
            yield torch.stack([ids[i:i + 32] for i in start]), torch.stack([ids[i + 1:i + 33] for i in start])

    return len(chars), batches()


def test_range_test_on_a_tiny_model_falls_then_rises(tiny_text, tmp_path):
    torch.manual_seed(0)
    vocab, batches = _char_batches(tiny_text)
    model = _Bigram(vocab)
    result = range_test(model, torch.optim.AdamW(model.parameters()), batches, lr_schedule(1e-6, 100, 120))
    best = int(np.argmin(result.smoothed))
    assert result.smoothed[best] < result.smoothed[0] - 0.5  # it learned something on the way
    assert result.smoothed[-1] > result.smoothed[best] + 0.3  # and blew up past the minimum
    assert result.stopped_early and len(result.lrs) < 120
    assert 1e-4 <= result.suggested <= 0.5 and result.suggested < result.lr_min_loss
    paths = plot(result, tmp_path)
    assert [p.name for p in paths] == ["lr_find.png", "lr_find.svg"]
    with Image.open(paths[0]) as im:
        assert im.width > 300
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggested"] == result.suggested and len(saved["losses"]) == len(result.lrs)
