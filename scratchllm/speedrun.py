"""The CPU speedrun: the best Shakespeare model this machine can train in a fixed wall-clock budget.

This module owns the speedrun recipe (a `SpeedrunConfig` preset: tokenizer size, model shape, optimizer, a
wall-clock LR schedule), the fixed data split (the first 1,115,394 bytes of the corpus, 90/10, as nanoGPT's
Shakespeare), a time-budgeted training loop and an exact bits-per-byte evaluator over every held-out byte. The
tokenizer is trained once before the clock starts (well under a second) and its time is reported apart.
It does not own the baseline it is judged against (benchmarks/nanogpt_baseline.py) nor the general trainer (train.py).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from scratchllm.config import InputError
from scratchllm.data import BatchStream, load_corpus
from scratchllm.metrics import matmul_peak_flops, peak_rss_mb
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer, train_bpe
from scratchllm.train import PRESETS, RunConfig, TrainConfig, load_config
from scratchllm.train import make_optimizer as make_train_optimizer

PREFIX_BYTES = 1_115_394  # the size of nanoGPT's tiny Shakespeare, the split its published numbers use


@dataclass
class SpeedrunTrain:
    """Optimizer and schedule of a budgeted run; the schedule runs on the wall clock, not on a step count."""

    batch_size: int = 16
    """Sequences per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    min_lr_frac: float = 0.05
    """The LR ends at lr x min_lr_frac when the budget runs out."""
    warmup_steps: int = 30
    """Linear warm-up over the first steps."""
    warmdown_frac: float = 0.5
    """Fraction of the budget, at its end, over which the LR falls linearly to its floor."""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices (not on norms or biases)."""
    beta2: float = 0.99
    """AdamW's second-moment decay (beta1 is 0.9)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    bf16: bool = True
    """bfloat16 autocast for matmuls (AMX on recent Xeons); weights and optimizer stay fp32."""
    compile: bool = False
    """torch.compile the training step's block and head (GPT.compile_regions); the compilation is paid out of the
    budget (the first step's time)."""
    seed: int = 1337
    """Seed of initialisation and batch sampling."""


@dataclass
class SpeedrunConfig:
    """A speedrun recipe: the tokenizer's size, the model and the training settings."""

    vocab_size: int = 1024
    """Byte-level BPE vocabulary trained on the training split (the model's vocab_size follows it)."""
    model: GPTConfig = field(default_factory=lambda: GPTConfig(vocab_size=1024))
    """Model shape and architecture (vocab_size is overwritten by the tokenizer's)."""
    train: SpeedrunTrain = field(default_factory=SpeedrunTrain)
    """Optimizer and schedule."""


READ_TRAIN_KEYS = ("batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "beta2", "grad_clip", "dtype",
                   "compile", "seed")
"""The train.* keys of a train() config that from_run_config carries into the recipe; the rest (max_minutes,
grad_accum, beta1, evaluation and checkpoint cadence ...) belong to train() alone."""


def from_run_config(run: RunConfig) -> SpeedrunConfig:
    """The speedrun recipe in a train() config: presets are shared, so `scratchllm train --preset speedrun-5min`
    trains the same model (with train()'s cosine schedule, and its evaluations inside the wall clock)."""
    if run.tokenizer.type != "bpe":
        raise InputError(f"the speedrun trains a BPE tokenizer; got tokenizer.type {run.tokenizer.type!r}")
    t = run.train
    train = SpeedrunTrain(batch_size=t.batch_size, lr=t.lr, min_lr_frac=t.min_lr / t.lr, warmup_steps=t.warmup_steps,
                          weight_decay=t.weight_decay, beta2=t.beta2, grad_clip=t.grad_clip,
                          bf16=t.dtype == "bfloat16", compile=t.compile, seed=t.seed)
    return SpeedrunConfig(vocab_size=run.tokenizer.vocab_size, model=run.model, train=train)


def check_recipe_keys(overrides: list[str]) -> None:
    """An override the recipe would silently ignore is an InputError: it reads model.*, tokenizer.vocab_size and
    the train keys of READ_TRAIN_KEYS; the budget comes from the minutes given, the corpus from its own argument."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        section, _, name = key.partition(".")
        read = section == "model" or key == "tokenizer.vocab_size" or (section == "train" and name in READ_TRAIN_KEYS)
        if not read:
            raise InputError(f"the speedrun does not read {key}; it reads model.*, tokenizer.vocab_size and "
                             f"train.{{{','.join(READ_TRAIN_KEYS)}}}")


def load_speedrun_config(path: str | Path, overrides: list[str] = ()) -> SpeedrunConfig:
    """A speedrun recipe from a train() YAML file (the format of configs/*.yaml), then `key=value` overrides."""
    check_recipe_keys(overrides)
    return from_run_config(load_config(str(path), overrides))


def load_speedrun_preset(minutes: float, overrides: list[str] = ()) -> SpeedrunConfig:
    """The preset tuned for the nearest budget: configs/speedrun-1min.yaml below 3 minutes, else speedrun-5min.yaml;
    then `key=value` overrides (e.g. "train.weight_decay=4")."""
    return load_speedrun_config(PRESETS / ("speedrun-1min.yaml" if minutes < 3 else "speedrun-5min.yaml"), overrides)


def split_corpus(text: str, prefix_bytes: int | None = PREFIX_BYTES, val_frac: float = 0.1) -> dict[str, str]:
    """train / val: the first `prefix_bytes` characters split 90/10 (None = the whole text); holdout: the last
    10% of the whole text, never used for a choice. Example: 100 chars, prefix 50 -> train 45, val 5, holdout 10."""
    head = text if prefix_bytes is None else text[:prefix_bytes]
    cut = int(len(head) * (1 - val_frac))
    return {"train": head[:cut], "val": head[cut:], "holdout": text[int(len(text) * (1 - val_frac)):]}


def lr_at(cfg: SpeedrunTrain, step: int, frac: float) -> float:
    """Warm-up over the first steps, flat, then linear warm-down to lr x min_lr_frac as `frac` (of the budget
    spent) reaches 1. Example with lr 1, warmdown 0.5, floor 0: frac 0.25 -> 1, frac 0.75 -> 0.5, frac 1 -> 0."""
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    down = min(1.0, max(0.0, (1.0 - frac) / cfg.warmdown_frac)) if cfg.warmdown_frac > 0 else 1.0
    return cfg.lr * warm * (cfg.min_lr_frac + (1.0 - cfg.min_lr_frac) * down)


def make_optimizer(model: GPT, cfg: SpeedrunTrain) -> torch.optim.AdamW:
    """train()'s AdamW with the recipe's settings. Its fused kernel matters here: on 2 cores the 5-minute model's
    update takes 1 ms fused against 8.5 ms foreach, of a 160-190 ms step."""
    t = TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, beta2=cfg.beta2)
    return make_train_optimizer(model, t, torch.device("cpu"))


def token_byte_lengths(tok: Tokenizer) -> torch.Tensor:
    """(vocab,) bytes each token id stands for: the weights that turn nats per token into bits per byte."""
    return torch.tensor([len(tok.token_bytes(i)) for i in range(tok.vocab_size)], dtype=torch.float64)


@torch.no_grad()
def evaluate_bpb(model: GPT, ids: torch.Tensor, byte_lengths: torch.Tensor, bf16: bool = False,
                 batch: int = 32) -> float:
    """Bits per byte over every id of `ids` after the first, in non-overlapping windows of block_size.

    Total cross-entropy (nats) / ln 2 / the bytes of the predicted ids, so models with different tokenizers are
    compared on the same text. A uniform model scores log2(vocab) x tokens / bytes.
    """
    was_training, T = model.training, model.config.block_size
    model.eval()
    windows = [ids[s:s + T + 1] for s in range(0, len(ids) - 1, T)]
    full = [w for w in windows if len(w) == T + 1]
    groups = [torch.stack(full[i:i + batch]) for i in range(0, len(full), batch)]
    groups += [w[None] for w in windows if len(w) != T + 1]  # the short last window, alone
    nats = 0.0
    for rows in groups:  # (b, t + 1)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            logits, _ = model(rows[:, :-1])  # (b, t, vocab)
        nats += F.cross_entropy(logits.float().flatten(0, 1), rows[:, 1:].flatten(), reduction="sum").item()
    model.train(was_training)
    return nats / math.log(2) / byte_lengths[ids[1:]].sum().item()


def train_for(model: GPT, data: torch.Tensor, cfg: SpeedrunTrain, seconds: float, on_point=None,
              points: int = 10, progress: bool = False) -> dict:
    """Train `model` on `data` for `seconds` of wall clock; the LR schedule follows the clock, so it ends at its floor
    when time runs out. `on_point(step, elapsed)` is called at most `points` times, at the first step past each
    of `points` even marks of the clock (its time is not counted)."""
    T = model.config.block_size
    opt, stream = make_optimizer(model, cfg), BatchStream(data.numpy(), cfg.batch_size, T, cfg.seed)
    bar = tqdm(total=round(seconds), unit="s", desc="speedrun", disable=not progress, file=sys.stderr)
    if cfg.compile:
        model.compile_regions()  # training steps only; the evaluations run eager
    step, elapsed, next_point, losses = 0, 0.0, 0.0, []
    model.train()
    while elapsed < seconds:
        if on_point is not None and elapsed >= next_point:
            on_point(step, elapsed)
            next_point = (math.floor(elapsed * points / seconds) + 1) * seconds / points  # skip the marks compile ate
        start = time.perf_counter()
        x, y = stream.next()
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, elapsed / seconds)
        with torch.autocast("cpu", torch.bfloat16, enabled=cfg.bf16):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        elapsed += time.perf_counter() - start
        if step % 50 == 0:
            losses.append({"step": step, "elapsed_s": elapsed, "loss": loss.item()})
            bar.update(min(round(elapsed), round(seconds)) - bar.n)
    bar.close()
    return {"steps": step, "train_seconds": elapsed, "tokens": step * cfg.batch_size * T, "train_loss": losses}


def speedrun(minutes: float, config: SpeedrunConfig | None = None, corpus: str = "shakespeare",
             prefix_bytes: int | None = PREFIX_BYTES, curve_bytes: int = 32768, progress: bool = False) -> dict:
    """Train the speedrun recipe for `minutes` of wall clock on the split of `corpus`; return the report:
    val and holdout bits/byte, tokens/s, MFU, steps, params, peak memory, the val curve and the recipe."""
    if minutes <= 0:
        raise InputError(f"speedrun needs a positive number of minutes; got {minutes}")
    cfg = config or load_speedrun_preset(minutes)
    split = split_corpus(load_corpus(corpus).text, prefix_bytes)
    torch.manual_seed(cfg.train.seed)
    start = time.perf_counter()
    tok = train_bpe(split["train"], cfg.vocab_size, progress=False)
    tokenizer_s = time.perf_counter() - start
    ids = {k: torch.tensor(tok.encode(v), dtype=torch.long) for k, v in split.items()}
    model = GPT(GPTConfig(**{**asdict(cfg.model), "vocab_size": tok.vocab_size}))
    lengths, bf16 = token_byte_lengths(tok), cfg.train.bf16
    curve_ids, curve = torch.tensor(tok.encode(split["val"][:curve_bytes]), dtype=torch.long), []

    def point(step: int, elapsed: float) -> None:
        curve.append({"step": step, "elapsed_s": elapsed, "val_bpb": evaluate_bpb(model, curve_ids, lengths, bf16)})

    run = train_for(model, ids["train"], cfg.train, minutes * 60.0, on_point=point, progress=progress)
    point(run["steps"], run["train_seconds"])
    tokens_per_s = run["tokens"] / run["train_seconds"]
    return {
        "recipe": "scratchllm speedrun", "minutes": minutes, "corpus": corpus,
        "bpb": {k: evaluate_bpb(model, ids[k], lengths, bf16) for k in ("val", "holdout")},
        "bytes": {k: len(v.encode()) for k, v in split.items()},
        "bytes_per_token": {k: len(split[k].encode()) / max(len(v), 1) for k, v in ids.items()},
        "tokenizer_seconds": tokenizer_s, "steps": run["steps"], "train_seconds": run["train_seconds"],
        "tokens_per_s": tokens_per_s, "params": model.num_params(), "flops_per_token": model.flops_per_token(),
        "mfu": model.flops_per_token() * tokens_per_s / matmul_peak_flops("bfloat16" if bf16 else "float32"),
        "peak_rss_mb": peak_rss_mb(),
        "config": asdict(cfg), "curve": curve, "train_loss": run["train_loss"],
    }
