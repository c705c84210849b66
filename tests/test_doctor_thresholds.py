"""The doctor's thresholds against the measurements they came from: a plain AdamW loop on a tiny GPT (no trainer),
several LRs and seeds. Healthy LRs never trip the divergence or plateau rules; LR 10 and LR 1e-7 do.
Slow (about 30 s on 2 cores): `pytest -m slow tests/test_doctor_thresholds.py`."""

from __future__ import annotations

import pytest
import torch

from scratchllm.doctor import check_step, rule_divergence, rule_not_decreasing
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import train_bpe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def ids(shakespeare_text):
    tok = train_bpe(shakespeare_text[:20_000], 300, progress=False)
    return torch.tensor(tok.encode(shakespeare_text[:40_000]))


def _history(ids, lr: float, steps: int, seed: int, warmup: int = 10, B: int = 8, T: int = 64) -> list[dict]:
    """Train records as train.py logs them: loss, lr, grad norm before clipping at 1.0."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=300, block_size=T, n_layer=2, n_head=2, n_embd=64))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        start = torch.randint(0, len(ids) - T - 1, (B,), generator=gen)
        x = torch.stack([ids[i:i + T] for i in start])
        y = torch.stack([ids[i + 1:i + T + 1] for i in start])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        history.append({"kind": "train", "step": step, "loss": loss.item(), "lr": group["lr"], "grad_norm": norm})
    return history


@pytest.mark.parametrize("lr", [3e-4, 1e-3, 3e-3])
@pytest.mark.parametrize("seed", [0, 1])
def test_healthy_lrs_trip_nothing(ids, lr, seed):
    history = _history(ids, lr, 150, seed)
    assert all(check_step(history[: i + 1]) is None for i in range(len(history)))
    assert rule_divergence(history) == [] and rule_not_decreasing(history) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_lr_10_diverges_within_a_few_steps(ids, seed):
    history = _history(ids, 10.0, 20, seed)
    first = next(i for i in range(len(history)) if check_step(history[: i + 1]))
    assert first <= 5
    (finding,) = rule_divergence(history)
    assert finding.severity == "error"


@pytest.mark.parametrize("lr", [1e-7, 1e-6, 1e-5])
def test_tiny_lrs_are_flat(ids, lr):
    (finding,) = rule_not_decreasing(_history(ids, lr, 40, 0))
    assert "too low" in finding.cause


def test_lr_1e_4_is_not_flat(ids):
    assert rule_not_decreasing(_history(ids, 1e-4, 40, 0)) == []
