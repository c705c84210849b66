"""The learning-rate range test (Smith 2015, as popularised by fastai): train a fresh model for a few dozen steps
while the LR grows exponentially, watch the smoothed loss fall then blow up, and suggest an LR from the curve.

This module owns the sweep, its suggestion, its plot (PNG + SVG) and lr_find.json. It borrows the corpus split,
tokenizer, batches, device choice and AdamW from the trainer's modules (data.py, tokenizer/, device.py, optim.py),
and never writes a checkpoint: the swept model is thrown away.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from scratchllm.config import InputError, RunConfig, TrainConfig, atomic_write_bytes, validate, write_json
from scratchllm.data import BatchStream, load_corpus, split_corpus
from scratchllm.device import resolve_device
from scratchllm.model import GPT, GPTConfig
from scratchllm.optim import make_optimizer
from scratchllm.tokenizer import build_tokenizer


@dataclass
class LRFindResult:
    """The curve of one range test and the LRs read off it."""

    lrs: list[float] = field(default_factory=list)
    """LR used at each step (exponentially increasing)."""
    losses: list[float] = field(default_factory=list)
    """Raw batch loss at each step."""
    smoothed: list[float] = field(default_factory=list)
    """Bias-corrected exponential moving average of the loss."""
    stopped_early: bool = False
    """True when the smoothed loss passed `stop_factor` x its best before the last LR."""
    lr_min_loss: float = math.nan
    """LR where the smoothed loss was lowest."""
    lr_steepest: float = math.nan
    """LR where the smoothed loss fell fastest per decade of LR."""
    suggested: float = math.nan
    """The LR to train with: lr_min_loss / 10, unless the steepest point is lower."""


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> list[float]:
    """Exponentially spaced LRs from lr_min to lr_max. Example: (1e-4, 1e-2, 3) -> [1e-4, 1e-3, 1e-2]."""
    if steps < 2:
        return [lr_min]
    ratio = lr_max / lr_min
    return [lr_min * ratio ** (i / (steps - 1)) for i in range(steps)]


def suggest(lrs: list[float], smoothed: list[float], skip: int = 3) -> tuple[float, float, float]:
    """(lr at min smoothed loss, lr of steepest descent, suggested lr) of a range-test curve.

    Steepest descent is the most negative d(loss)/d(log10 lr) before the minimum (ignoring the first `skip`
    points, where the moving average is still warming up); the suggestion is min-loss lr / 10, or the steepest
    point when that is lower, since a curve with a late minimum would otherwise suggest too large an LR.
    """
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    lr_min_loss = lrs[best]
    logs = [math.log10(lr) for lr in lrs]
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, best)]
    candidates = range(min(skip, max(len(slopes) - 1, 0)), len(slopes))
    steep = lrs[1 + min(candidates, key=slopes.__getitem__)] if slopes else lr_min_loss / 10
    return lr_min_loss, steep, min(lr_min_loss / 10, steep)


def range_test(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator, lrs: list[float],
               beta: float = 0.9, stop_factor: float = 4.0, progress: Callable | None = None) -> LRFindResult:
    """Train `model` one batch per LR in `lrs`, stopping once the smoothed loss exceeds stop_factor x its best.

    `model(x, y)` returns (logits, loss), as GPT does; `batches` yields (x, y); `progress` is called once a step.
    """
    result, avg = LRFindResult(), 0.0
    model.train()
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(batches)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item() if math.isfinite(loss.item()) else math.inf
        avg = beta * avg + (1 - beta) * min(value, 1e9)  # bias-corrected EMA, as in fastai
        result.lrs.append(lr)
        result.losses.append(value)
        result.smoothed.append(avg / (1 - beta ** len(result.lrs)))
        if progress:
            progress()
        if not math.isfinite(value) or result.smoothed[-1] > stop_factor * min(result.smoothed):
            result.stopped_early = lr != lrs[-1]
            break
    result.lr_min_loss, result.lr_steepest, result.suggested = suggest(result.lrs, result.smoothed)
    return result


def find_lr(model_config: GPTConfig, ids: torch.Tensor, t: TrainConfig, steps: int = 100, lr_min: float = 1e-7,
            lr_max: float = 10.0, device: str | torch.device = "cpu", progress: bool = True) -> LRFindResult:
    """Range test of a fresh GPT on token ids with the trainer's AdamW and batches (t: batch size, betas, weight
    decay, seed), `steps` LRs from lr_min to lr_max."""
    if len(ids) <= model_config.block_size + 1:
        raise InputError(f"corpus too small for lr-find: {len(ids)} tokens, need more than "
                         f"{model_config.block_size + 1}")
    torch.manual_seed(t.seed)
    model = GPT(model_config).to(device)
    optimizer = make_optimizer(model, t, torch.device(device))
    stream = BatchStream(ids.numpy(), t.batch_size, model_config.block_size, seed=t.seed + 1, device=device)
    batches = iter(stream.next, None)
    with tqdm(total=steps, desc="lr-find", unit="step", disable=not progress, file=sys.stderr) as bar:
        return range_test(model, optimizer, batches, lr_schedule(lr_min, lr_max, steps), progress=bar.update)


def lr_find_run(cfg: RunConfig, out_dir, steps: int = 100, lr_min: float = 1e-7, lr_max: float = 10.0,
                progress: bool = True) -> tuple[LRFindResult, list[Path]]:
    """The range test for a training config (RunConfig): same corpus split, tokenizer, model, batch size and
    AdamW settings as `scratchllm train` would use; writes lr_find.{png,svg,json} into out_dir."""
    validate(cfg)
    if steps < 5 or not 0 < lr_min < lr_max:
        raise InputError(f"lr-find needs at least 5 steps and 0 < lr_min < lr_max; got {steps}, {lr_min}, {lr_max}")
    corpus = load_corpus(cfg.data.corpus).head(cfg.data.prefix_chars)
    text = "\n\n".join(split_corpus(corpus, cfg.data.val_fraction)["train"])
    tokenizer = build_tokenizer(cfg.tokenizer, text, progress)
    model_config = dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    t = cfg.train
    result = find_lr(model_config, ids, t, steps, lr_min, lr_max, resolve_device(t.device), progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = (f"LR range test: {model_config.n_layer} layers x {model_config.n_embd} wide, batch {t.batch_size} x "
             f"{cfg.model.block_size} tokens")
    return result, plot(result, out, title)


def plot(result: LRFindResult, out_dir: Path, title: str = "Learning-rate range test") -> list[Path]:
    """loss vs LR (log scale) with the suggested LR marked; writes lr_find.png and lr_find.svg."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, ".", alpha=0.35, label="batch loss")
    ax.plot(result.lrs, result.smoothed, lw=2, label="smoothed loss")
    ax.axvline(result.suggested, color="tab:green", ls="--", label=f"suggested LR {result.suggested:.2g}")
    ax.axvline(result.lr_min_loss, color="tab:red", ls=":", label=f"lowest loss at LR {result.lr_min_loss:.2g}")
    finite = [v for v in result.losses if math.isfinite(v)]
    ax.set_ylim(min(finite) * 0.95, min(max(finite), result.smoothed[0] * 1.6))
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss (nats per token)", title=title)
    ax.legend(fontsize=8)
    paths = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130, bbox_inches="tight")
        atomic_write_bytes(out_dir / f"lr_find.{ext}", buf.getvalue())
        paths.append(out_dir / f"lr_find.{ext}")
    record = asdict(result)
    record["losses"] = [v if math.isfinite(v) else None for v in result.losses]  # strict JSON has no Infinity
    write_json(out_dir / "lr_find.json", record)
    return paths
