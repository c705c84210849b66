"""The nanoGPT baseline against nanoGPT itself: its get_lr (written out again here from nanoGPT's train.py, not
imported from the baseline), its GPT-2 init, its AdamW groups and its batch offsets. The speedrun's ratios are only
as honest as this bar; benchmarks/SPEEDRUN.md lists every difference that remains and why."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def baseline(load_benchmark):
    return load_benchmark("nanogpt_baseline")


def nanogpt_get_lr(it: int, learning_rate: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    """nanoGPT train.py's get_lr, line for line (the README's CPU command: max_iters = lr_decay_iters)."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


@pytest.mark.parametrize("total_iters", [150, 2000])
def test_lr_schedule_is_nanogpts_get_lr_when_steps_take_equal_time(baseline, total_iters):
    """With a constant step time the budget holds total_iters steps: our time-based schedule must then be nanoGPT's
    get_lr with lr_decay_iters = max_iters = total_iters, at every iteration."""
    r, dt = baseline.RECIPE, 0.05
    seconds, warmup_end_s = total_iters * dt, r["warmup_iters"] * dt
    for it in range(total_iters + 1):
        ours = baseline.lr_at(it, it * dt, seconds, warmup_end_s)
        theirs = nanogpt_get_lr(it, r["lr"], r["min_lr"], r["warmup_iters"], total_iters)
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15), it


def test_lr_peaks_when_warmup_ends_and_floors_when_the_budget_does(baseline):
    r = baseline.RECIPE
    assert baseline.lr_at(0, 0.0, 60.0, 0.0) == pytest.approx(r["lr"] / (r["warmup_iters"] + 1))
    assert baseline.lr_at(r["warmup_iters"], 7.0, 60.0, 7.0) == pytest.approx(r["lr"])  # no cut at the peak
    assert baseline.lr_at(5000, 61.0, 60.0, 7.0) == pytest.approx(r["min_lr"])


def test_init_is_gpt2s_with_scaled_residual_projections_and_a_tied_head(baseline):
    torch.manual_seed(0)
    r = baseline.RECIPE
    L = r["n_layer"]
    model = baseline.NanoGPT(65, r["block_size"], L, r["n_head"], r["n_embd"])
    assert model.lm_head.weight is model.wte.weight
    for name, p in model.named_parameters():
        if p.dim() < 2:
            assert torch.equal(p, torch.ones_like(p)), name  # LayerNorm weights; no biases anywhere
            continue
        expected = 0.02 / math.sqrt(2 * L) if name.endswith(("attn_proj.weight", "mlp_proj.weight")) else 0.02
        assert p.mean().item() == pytest.approx(0.0, abs=4 * expected / math.sqrt(p.numel())), name
        assert p.std().item() == pytest.approx(expected, rel=0.05), name
    assert not any(isinstance(m, torch.nn.Linear) and m.bias is not None for m in model.modules())


def test_weight_decay_falls_on_matrices_only(baseline):
    model = baseline.NanoGPT(65, 64, 2, 4, 128)
    decay, no_decay = baseline.make_optimizer(model).param_groups
    assert decay["weight_decay"] == baseline.RECIPE["weight_decay"] and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert decay["betas"] == (0.9, 0.99)


def test_batches_reach_every_offset_nanogpts_get_batch_reaches(baseline):
    """nanoGPT draws offsets from randint(len - block_size): with 10 ids and block 8, offsets 0 and 1 both occur."""
    ids = torch.arange(10)
    torch.manual_seed(0)
    starts = set()
    for _ in range(50):
        x, y = baseline.get_batch(ids, 4, 8)
        assert torch.equal(y, x + 1)  # targets are the next ids
        starts.update(x[:, 0].tolist())
    assert starts == {0, 1}
