"""The budget-aware recipe: measure what this machine trains per second, then choose the run that fits the budget.

A fixed preset is tuned for one machine's pace: five minutes buy speedrun-5min 929-1,201 steps on a 2-core EPYC
but 2,093 on a 2-core Xeon with AMX (issue 21), where the same weight decay let the model overfit the 1.1 MB split.
So before the clock starts, `measure` times a few real training steps of each candidate shape (the real model,
autocast and optimizer step), and `choose`, a pure function of (tokens/s, budget, training tokens), picks the
shape, the weight decay from the passes over the data, and the warm-down. `apply_recipe` is the one call speedrun
and quickstart make; it records what it measured and why in the config (`recipe.why`, saved in config.json).
It owns no loop (train.py) and no setting (config.py). The measurements behind each constant, and what is not
measured yet: benchmarks/SPEEDRUN.md, "The budget-aware recipe: measurements" (MEASUREMENTS below).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch

from scratchllm.config import RunConfig, apply_overrides, validate
from scratchllm.data import DOC_SEPARATOR, BatchStream, load_corpus, split_corpus
from scratchllm.device import autocast, resolve_device, resolve_dtype
from scratchllm.distributed import DistContext
from scratchllm.model import GPT
from scratchllm.optim import make_optimizer
from scratchllm.session import build_model, wrap_model
from scratchllm.tokenizer import build_tokenizer
from scratchllm.train import train_step


@dataclass(frozen=True)
class Shape:
    """A model shape with the batch, context and learning rate it was tuned with (they travel together)."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    lr: float
    min_lr: float
    tie_weights: bool

    def overrides(self) -> dict[str, object]:
        return {"model.n_layer": self.n_layer, "model.n_head": self.n_head, "model.n_embd": self.n_embd,
                "model.block_size": self.block_size, "model.tie_weights": self.tie_weights,
                "train.batch_size": self.batch_size, "train.lr": self.lr, "train.min_lr": self.min_lr}


MEASUREMENTS = 'benchmarks/SPEEDRUN.md, "The budget-aware recipe: measurements"'
# Smallest first; both step 4,096 tokens; 3x256 is both speedrun presets' shape. How they compared: MEASUREMENTS.
SHAPES = (
    Shape("3x256", 3, 4, 256, 128, 32, 2e-3, 1e-4, True),
    Shape("3x320", 3, 4, 320, 128, 32, 2e-3, 1e-4, True),
)
SHAPE_KEYS = tuple(SHAPES[0].overrides())
"""What a Shape sets: layers, heads, width, context, tied head, batch, LR and its floor. They travel together, so
a --set of any of them keeps the config's whole shape (`kept_because`)."""
MIN_STEPS = 2000
"""A larger shape is chosen only when the budget buys it this many optimizer steps: 3x320 lost to 3x256 by less the
longer the race (EPYC: 0.027 bits/byte at 294 steps, 0.007 at 1,038; the faster machine's 5 minutes: 0.004) and
won at 3,823 (EPYC, 10 minutes: 0.004), so it is taken only beyond the races it lost (MEASUREMENTS)."""
WD_PER_PASS = 0.2
"""Weight decay per pass over the training split: 2 at 10 passes and 4 at 20, the best decays measured at ~8-10
and ~20 passes (MEASUREMENTS)."""
WD_RANGE = (0.1, 6.0)
"""Clamp of the passes-derived weight decay: 0.1 is GPT-2's; 6 stays below the 8 that lost at ~17 passes."""
WARMDOWN_FRAC = 0.5
"""Share of the budget the LR falls over, fixed: the one alternative measured, 0.7, tied it (MEASUREMENTS)."""
AUTO_KEYS = ("train.weight_decay", "train.warmdown_frac", "recipe.why")
"""Keys the auto recipe always sets (the shape only when the config's shape is a candidate): a --set of them
would be silently replaced, so the speedrun refuses it unless recipe.mode is "fixed"."""
COMPILE_SPEEDUP = 1.35
"""Compiled regions' tokens/s over `measure`'s eager tokens/s: 1.27-1.47 in the four 5-minute races of the speedrun
bench (1 and 2 threads), 1.33 in the profile (EPYC, MEASUREMENTS); `measure` times eager steps, since compiling
each candidate would cost COMPILE_S."""
COMPILE_S = 24.0
"""Seconds of the budget the first compiled step spends compiling (EPYC, empty inductor cache)."""
SAMPLE_PIECES, PIECE_CHARS = 40, 5_000
"""`training_tokens` trains its tokenizer on 40 pieces of 5,000 characters spread over the training split (200,000
characters); its error against the run's own count: MEASUREMENTS."""


@dataclass(frozen=True)
class Prediction:
    """What a budget buys one shape: `predict`'s answer."""

    tokens_per_s: float
    """As measured (eager)."""
    tokens: float
    """Tokens trained in the budget."""
    steps: int
    """Optimizer steps in the budget."""
    passes: float
    """Passes over the training split."""


@dataclass(frozen=True)
class Recipe:
    """What `choose` picked, and the record of why."""

    shape: str
    """The chosen shape's name."""
    predicted: dict[str, Prediction]
    """What the budget buys each candidate shape, by name."""
    overrides: dict[str, object]
    """The settings it sets, as dotted keys."""
    because: dict[str, str]
    """The rule behind the shape, the weight decay and the warm-down, in words."""
    seconds: float
    data_tokens: float
    compiled: bool

    @property
    def chosen(self) -> Prediction:
        return self.predicted[self.shape]

    def why(self, **extra) -> dict:
        """The record config.json keeps under recipe.why (plain JSON: "chosen" holds the shape's name, steps,
        tokens and passes; "shapes" every candidate's; "set" the overrides), with `extra` entries added."""
        return {"seconds": self.seconds, "data_tokens": self.data_tokens, "compiled": self.compiled,
                "shapes": {name: dataclasses.asdict(p) for name, p in self.predicted.items()},
                "chosen": {"shape": self.shape, **dataclasses.asdict(self.chosen)}, "because": self.because,
                "set": self.overrides, **extra}


def weight_decay_for(passes: float) -> float:
    """The passes-derived weight decay, clamped to WD_RANGE. Example: 10 passes -> 2.0, 20 -> 4.0, 1 -> 0.2."""
    low, high = WD_RANGE
    return round(min(high, max(low, WD_PER_PASS * passes)), 3)


def predict(tokens_per_s: float, seconds: float, tokens_per_step: int, data_tokens: float,
            compiled: bool) -> Prediction:
    """What a budget buys one shape: compiled runs step COMPILE_SPEEDUP faster after COMPILE_S of compiling.
    Example: 10,000 tokens/s, 100 s eager, 4,096 a step, 500,000 in the split -> 1e6 tokens, 244 steps, 2 passes."""
    rate = tokens_per_s * (COMPILE_SPEEDUP if compiled else 1.0)
    train_s = max(0.0, seconds - (COMPILE_S if compiled else 0.0))
    tokens = rate * train_s
    return Prediction(tokens_per_s, tokens, int(tokens // tokens_per_step), tokens / data_tokens)


def choose(tokens_per_s: dict[str, float], seconds: float, data_tokens: float, shapes=SHAPES,
           compiled: bool = False, grad_accum: int = 1, kept: str | None = None) -> Recipe:
    """The rule, a pure function of the measurements (`tokens_per_s` per shape name), the budget and the training
    split's size in tokens: the largest shape that makes MIN_STEPS (else the smallest), weight decay WD_PER_PASS
    x its passes (clamped to WD_RANGE), warm-down WARMDOWN_FRAC. `kept`: why `shapes` is the config's own shape
    alone (`kept_because`), which the record then gives as the reason for the shape."""
    predicted = {s.name: predict(tokens_per_s[s.name], seconds, s.batch_size * s.block_size * grad_accum,
                                 data_tokens, compiled) for s in shapes}
    fits = [s for s in shapes if predicted[s.name].steps >= MIN_STEPS]
    shape = fits[-1] if fits else shapes[0]
    run = predicted[shape.name]
    because = {
        "shape": (f"{shape.name}: the config's own shape, kept: {kept}" if kept else
                  f"{shape.name}: the largest shape making >= {MIN_STEPS} steps ({run.steps})" if fits else
                  f"{shape.name}: no shape makes {MIN_STEPS} steps, so the smallest"),
        "train.weight_decay": f"{WD_PER_PASS} x {run.passes:.2f} passes, clamped to {list(WD_RANGE)}",
        "train.warmdown_frac": f"fixed at {WARMDOWN_FRAC} ({MEASUREMENTS})",
    }
    overrides = {**shape.overrides(), "train.weight_decay": weight_decay_for(run.passes),
                 "train.warmdown_frac": WARMDOWN_FRAC}
    return Recipe(shape.name, predicted, overrides, because, seconds, data_tokens, compiled)


def shape_of(cfg: RunConfig) -> Shape:
    """cfg's shape; named after the candidate it equals, else "as configured"."""
    m, t = cfg.model, cfg.train
    own = Shape("as configured", m.n_layer, m.n_head, m.n_embd, m.block_size, t.batch_size, t.lr, t.min_lr,
                m.tie_weights)
    same = [s for s in SHAPES if dataclasses.replace(s, name=own.name) == own]
    return same[0] if same else own


def kept_because(cfg: RunConfig, set_by_hand: Collection[str] = ()) -> str | None:
    """Why the recipe keeps cfg's own shape, or None when it chooses among SHAPES: it keeps a shape any of whose
    SHAPE_KEYS was set by hand (`set_by_hand`: the dotted keys of the command's --set), and a shape that is not a
    candidate (another preset's). Example: speedrun-5min with model.n_embd=320 set by hand is 3x320, a candidate,
    and is kept."""
    hand = [key for key in set_by_hand if key in SHAPE_KEYS]
    if hand:
        return f"set by hand ({', '.join(hand)})"
    return None if shape_of(cfg) in SHAPES else "not one of the candidates"


def candidates(cfg: RunConfig, set_by_hand: Collection[str] = ()) -> tuple[Shape, ...]:
    """Every candidate shape, or cfg's own shape alone when the recipe keeps it (`kept_because`), which the recipe
    then measures but does not change."""
    return SHAPES if kept_because(cfg, set_by_hand) is None else (shape_of(cfg),)


def with_shape(cfg: RunConfig, shape: Shape) -> RunConfig:
    return with_overrides(cfg, shape.overrides())


def with_overrides(cfg: RunConfig, overrides: dict[str, object]) -> RunConfig:
    return validate(apply_overrides(cfg, [f"{key}={value!r}" for key, value in overrides.items()]))


@dataclass(frozen=True)
class Speed:
    """One shape's measured pace (`measure`'s answer)."""

    tokens_per_s: float
    step_ms: float
    """The median step's milliseconds."""
    params: int


def measure(cfg: RunConfig, shapes=SHAPES, steps: int = 3) -> dict[str, Speed]:
    """Tokens/s of a few real optimizer steps of each shape (`step_runner`, eager): a warm-up step left out, then
    the median of `steps`. The shapes take their steps in turn, so a burst of other work on a shared machine slows
    them alike."""
    eager = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=False))
    runners = {shape.name: step_runner(with_shape(eager, shape)) for shape in shapes}
    times = {name: [] for name in runners}
    for _ in range(steps + 1):
        for name, runner in runners.items():
            tick = time.perf_counter()
            runner.step()
            times[name].append(time.perf_counter() - tick)
    result = {}
    for name, runner in runners.items():
        step_s = statistics.median(times[name][1:])
        result[name] = Speed(runner.tokens_per_step / step_s, 1000 * step_s, runner.gpt.num_params())
    return result


@dataclass
class StepRunner:
    """A config's model and optimizer as train() builds them, stepped as train() steps them, on random tokens."""

    cfg: RunConfig
    gpt: GPT
    """The GPT itself (its parameters, FLOPs per token, compiled regions)."""
    model: torch.nn.Module
    """What the step calls (session.wrap_model's: compiled regions inside when train.compile)."""
    optimizer: torch.optim.Optimizer
    batches: BatchStream
    device: torch.device
    dtype: torch.dtype
    scaler: torch.amp.GradScaler

    @property
    def tokens_per_step(self) -> int:
        t = self.cfg.train
        return t.batch_size * t.grad_accum * self.cfg.model.block_size

    def step(self) -> None:
        """One optimizer step of train.grad_accum micro-batches at the peak LR (train.train_step)."""
        t = self.cfg.train
        micro = [self.batches.next() for _ in range(t.grad_accum)]
        train_step(self.model, self.optimizer, micro, t, t.lr, lambda: autocast(self.device, self.dtype), self.scaler)


def step_runner(cfg: RunConfig, random_tokens: int = 200_000) -> StepRunner:
    """cfg's model (with the vocab of its tokenizer), compiled regions when train.compile, optimizer, autocast and
    scaler, built by the trainer's own functions (session.build_model and wrap_model, optim.make_optimizer), on
    windows of `random_tokens` random ids: a step's cost does not depend on which ids, so no corpus is read.
    What `measure` times and benchmarks/profile_step.py profiles."""
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=cfg.tokenizer.vocab_size))
    device = resolve_device(cfg.train.device)
    dtype = resolve_dtype(cfg.train.dtype, device)
    gpt = build_model(cfg, device)
    model = wrap_model(gpt, cfg, DistContext(device=str(device)))
    ids = np.random.default_rng(0).integers(0, cfg.model.vocab_size, random_tokens)
    return StepRunner(cfg=cfg, gpt=gpt, model=model, optimizer=make_optimizer(gpt, cfg.train, device),
                      batches=BatchStream(ids, cfg.train.batch_size, cfg.model.block_size, seed=1, device=device),
                      device=device, dtype=dtype,
                      scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16))


@dataclass(frozen=True)
class TokenEstimate:
    """The training split's size in tokens, from its bytes and the bytes per token of a sample of it."""

    bytes: int
    """UTF-8 bytes of the training split (its documents joined as train() joins them)."""
    sample_bytes: int
    sample_tokens: int
    """The sample's tokens under a tokenizer trained on the sample itself."""

    @property
    def tokens(self) -> int:
        return round(self.bytes * self.sample_tokens / self.sample_bytes)


def spread_sample(text: str, pieces: int = SAMPLE_PIECES, chars: int = PIECE_CHARS) -> str:
    """`pieces` slices of `chars` characters spaced evenly over `text`, joined; `text` itself when it is no longer.
    Example: "abcdefgh", 2 pieces of 2 -> "abef"."""
    if len(text) <= pieces * chars:
        return text
    step = len(text) // pieces
    return "".join(text[i * step:i * step + chars] for i in range(pieces))


def training_tokens(cfg: RunConfig) -> TokenEstimate:
    """Tokens in the training split the run will read, estimated without training the run's tokenizer (train()
    trains that): a tokenizer of cfg's kind trained on a spread sample of the split (`spread_sample`) and its bytes
    per token there scale the split's bytes. A split no longer than the sample is counted exactly."""
    corpus = load_corpus(cfg.data.corpus).head(cfg.data.prefix_chars)
    text = DOC_SEPARATOR.join(split_corpus(corpus, cfg.data.val_fraction)["train"])
    sample = spread_sample(text)
    ids = build_tokenizer(cfg.tokenizer, sample).encode(sample)
    return TokenEstimate(len(text.encode()), len(sample.encode()), len(ids))


def apply_recipe(cfg: RunConfig, steps: int = 3, set_by_hand: Collection[str] = ()) -> RunConfig:
    """cfg as the budget-aware recipe sets it, with recipe.why recording the measurements and the rule; cfg
    unchanged when recipe.mode is "fixed". The budget is train.max_minutes (a clock-bounded run); `set_by_hand`:
    the keys the command's --set gave, so a shape set by hand is kept even when it equals a candidate."""
    if cfg.recipe.mode == "fixed":
        return cfg
    shapes = candidates(cfg, set_by_hand)
    measured = measure(cfg, shapes, steps)
    data = training_tokens(cfg)
    recipe = choose({name: m.tokens_per_s for name, m in measured.items()}, 60.0 * cfg.train.max_minutes,
                    data.tokens, shapes, cfg.train.compile, cfg.train.grad_accum, kept_because(cfg, set_by_hand))
    why = recipe.why(threads=torch.get_num_threads(), load_avg_1min=os.getloadavg()[0],
                     measured={name: dataclasses.asdict(m) for name, m in measured.items()},
                     data_estimate=dataclasses.asdict(data))
    chosen = with_overrides(cfg, recipe.overrides)
    return dataclasses.replace(chosen, recipe=dataclasses.replace(chosen.recipe, why=why))
