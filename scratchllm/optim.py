"""The optimizer and the learning-rate schedule: the one AdamW factory and the one LR function of the package.

Pretraining, the speedrun, finetuning and lr-find all build their optimizer here, and the trainer asks `lr_at`
for every step's LR. The schedule has named shapes (`TrainConfig.schedule`): "cosine" and "wsd" (warm-up, stable,
decay). Both follow the run's progress, which is steps done or budget spent, whichever is further along, so a run
bounded by the clock ends at its floor when the time runs out. This module owns no loop (train.py).
"""

from __future__ import annotations

import math

import torch

from scratchllm.config import TrainConfig


def make_optimizer(model: torch.nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on >= 2-D parameters only (not norms or biases); the fused kernel on CPU and CUDA
    (several times faster than foreach on a CPU), foreach elsewhere."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    options = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}  # fused: torch >= 2.4
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), **options)


def progress_of(t: TrainConfig, step: int, elapsed_s: float) -> float:
    """How far the run is, 0..1: the larger of steps done / max_steps and time spent / max_minutes."""
    by_steps = step / t.max_steps if t.max_steps > 0 else 0.0
    by_time = elapsed_s / (60.0 * t.max_minutes) if t.max_minutes > 0 else 0.0
    return min(1.0, max(by_steps, by_time))


def lr_at(t: TrainConfig, step: int, elapsed_s: float = 0.0) -> float:
    """The LR of `step`: linear warm-up over warmup_steps, then the schedule's shape from lr to min_lr.

    "cosine" falls along half a cosine as progress goes from the end of warm-up to 1. Example (lr 1, min_lr 0.1,
    warmup 10, max_steps 100): step 0 -> 0.1, step 10 -> ~1, step 100 -> 0.1.
    "wsd" stays at lr, then falls linearly over the last warmdown_frac of the run. Example (lr 1, min_lr 0,
    warmdown 0.5, max_steps 100, warm-up done): step 25 -> 1, step 75 -> 0.5, step 100 -> 0.
    """
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = progress_of(t, step, elapsed_s)
    if t.schedule == "wsd":
        down = min(1.0, (1.0 - progress) / t.warmdown_frac) if t.warmdown_frac > 0 else 1.0
        return t.min_lr + down * (t.lr - t.min_lr)
    start = progress_of(t, t.warmup_steps, 0.0)
    p = min(1.0, max(0.0, (progress - start) / max(1.0 - start, 1e-9)))
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * p)) * (t.lr - t.min_lr)
