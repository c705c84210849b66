"""Every run setting, and the machinery that fills them: typed dataclasses <-> dicts, YAML files, `--set a.b=v`.

This module owns the settings of a run as one `RunConfig` tree (`GPTConfig` for the model, `DataConfig`,
`TokenizerConfig`, `TrainConfig`), the presets shipped in scratchllm/configs/, loading, overrides and validation.
It owns no behaviour those settings steer: model.py builds the model, train.py runs the loop. It also defines
`InputError`, the one exception type the CLI turns into "one line, exit 2".
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class InputError(ValueError):
    """Bad usage or bad input from the user. The CLI prints its message on one line and exits with 2."""


def to_dict(obj: Any) -> dict:
    """A dataclass tree -> plain dict (JSON/YAML ready)."""
    return dataclasses.asdict(obj)


def _coerce(kind: Any, value: Any, where: str) -> Any:
    """Convert `value` to the annotated field type `kind` (handles nested dataclasses, Optional, str->number)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or value == "none" or value == "None":
            return None
        return _coerce(args[0], value, where)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(kind, value, prefix=where + ".")
    if origin in (list, tuple):
        (item,) = typing.get_args(kind)[:1] or (str,)
        items = value.split(",") if isinstance(value, str) else list(value)
        return [_coerce(item, v, where) for v in items if v != ""]
    if kind is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise InputError(f"{where}: expected true/false, got {value!r}")
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: expected a number, got {value!r}") from None
    if kind is int and not isinstance(value, bool):
        try:
            number = float(value)  # accepts "1e4" as well as "10000"
        except (TypeError, ValueError):
            number = float("nan")
        if not number.is_integer():
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return int(number)
    if kind is str:
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass `cls` from a dict; unknown keys are an `InputError` naming them."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}")
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(obj: T, overrides: list[str]) -> T:
    """Apply `key.sub=value` strings to a dataclass tree, returning a new validated tree."""
    data = to_dict(obj)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise InputError(f"unknown config key: {key}")
            node = node[part]
        if leaf not in node:
            raise InputError(f"unknown config key: {key}")
        node[leaf] = yaml.safe_load(value) if value.strip() else value
    return from_dict(type(obj), data)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; a missing or malformed file is an `InputError`."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise InputError(f"config file is not valid YAML: {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"config file must hold a mapping: {path}")
    return data


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ----------------------------------------------------------------------------- the model's settings


CHOICES = {
    "norm": ("pre", "post"),
    "norm_type": ("layernorm", "rmsnorm"),
    "activation": ("gelu", "relu", "relu2", "swiglu"),
    "positions": ("learned", "rope"),
    "attention": ("sdpa", "reference"),
}


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    """Number of token ids the model reads and predicts (the tokenizer's vocab_size)."""
    block_size: int = 256
    """Context length: the most positions the model attends over at once."""
    n_layer: int = 4
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; n_embd must divide evenly among them."""
    n_embd: int = 128
    """Width of the residual stream (C)."""
    dropout: float = 0.0
    """Dropout probability on embeddings, attention weights and residual branches (training only)."""
    bias: bool = False
    """Biases in the linear layers and LayerNorms (GPT-2 had them; they barely matter)."""
    norm: str = "pre"
    """Norm placement: "pre" (GPT-2, normalise each branch's input) or "post" (the 2017 Transformer's)."""
    norm_type: str = "layernorm"
    """"layernorm" (centre and scale) or "rmsnorm" (scale only, as Llama)."""
    activation: str = "gelu"
    """MLP non-linearity: "gelu" (GPT-2's tanh form), "relu", "relu2" (relu squared) or "swiglu" (gated)."""
    positions: str = "learned"
    """"learned" absolute position embeddings (GPT-2) or "rope" rotary embeddings applied to q and k."""
    qk_norm: bool = False
    """RMS-normalise q and k per head before the dot product (steadies training at high learning rates)."""
    tie_weights: bool = True
    """Share the token embedding matrix with the output head (GPT-2 does)."""
    attention: str = "sdpa"
    """"sdpa" (PyTorch's fused kernel) or "reference" (the explicit softmax(QKᵀ/√d)V the guide prints, which can
    also be the faster one on CPU in bf16 at short contexts: benchmarks/SPEEDRUN.md)."""

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"model.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"model.{name} must be a positive integer; got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise InputError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise InputError(f"model.positions=rope needs an even head size; n_embd/n_head is {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"model.dropout must be in [0, 1); got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# ----------------------------------------------------------------------------- a run's settings

PRESETS = Path(__file__).resolve().parent / "configs"  # shipped in the package; ./configs links here
DTYPE_NAMES = ("float32", "bfloat16", "float16")
SCHEDULES = ("cosine", "wsd")


@dataclass
class DataConfig:
    corpus: str = "shakespeare"
    """Built-in corpus name ("shakespeare"), or a text file, folder or glob."""
    val_fraction: float = 0.1
    """Share of the corpus held out for validation (whole documents from the end, else the last part of the text)."""
    prefix_chars: int | None = None
    """Use only the first this many characters of the corpus, as one text (the speedrun's nanoGPT split: the
    first 1,115,394); None = all of it."""
    mask: str = "assistant"
    """Finetuning only: which tokens of a conversation are trained: "assistant" (the replies and their end token)
    or "all" (the prompt too)."""
    replay: float = 0.4
    """Finetuning only: the share of each batch's rows that are windows of the base run's own training text, all
    trained, so the model keeps its first job while it learns the new one (0 = conversations only)."""


@dataclass
class TokenizerConfig:
    type: str = "bpe"
    """"bpe" (byte-level BPE trained on the train split) or "char" (one id per character of the train split)."""
    vocab_size: int = 1024
    """BPE vocabulary size including <|endoftext|> (ignored for "char", whose size is the character count)."""
    path: str | None = None
    """Use this saved tokenizer.json instead of training one."""


@dataclass
class TrainConfig:
    max_steps: int = 2000
    """Stop after this many optimizer steps (0 = no step limit; then max_minutes must be set)."""
    max_minutes: float = 10.0
    """Stop after this much wall-clock time (0 = no limit). The LR schedule follows whichever limit ends first."""
    eval_in_budget: bool = True
    """Whether evaluations, samples, attention records and checkpoints count against max_minutes (the speedrun
    counts training steps only, as the baseline it races does)."""
    batch_size: int = 12
    """Sequences per micro-batch."""
    grad_accum: int = 1
    """Micro-batches whose gradients are summed into one optimizer step (effective batch = batch_size x this)."""
    lr: float = 1e-3
    """Peak AdamW learning rate, reached after warm-up."""
    min_lr: float = 1e-4
    """Floor the LR schedule ends at."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr over this many steps."""
    schedule: str = "cosine"
    """LR shape after warm-up: "cosine" (down to min_lr as the run progresses) or "wsd" (warm-up, stable, decay:
    flat at lr, then linear down to min_lr over the last warmdown_frac of the run)."""
    warmdown_frac: float = 0.5
    """"wsd" only: the share of the run, at its end, over which the LR falls to min_lr."""
    weight_decay: float = 0.1
    """AdamW weight decay, on matrices and embeddings only (not on norms or biases)."""
    beta1: float = 0.9
    """AdamW first-moment decay."""
    beta2: float = 0.99
    """AdamW second-moment decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off; the norm is logged either way)."""
    dtype: str = "auto"
    """"float32", "bfloat16" (autocast), "float16" (autocast + grad scaler, CUDA only) or "auto"."""
    device: str = "auto"
    """"auto" (CUDA, then Apple MPS, then CPU), or a torch device string such as "cpu" or "cuda:0"."""
    compile: bool = False
    """torch.compile the block and the head of training steps (GPT.compile_regions): its compilation is paid once,
    at the first step, and pays back over a long enough run."""
    parallel: str = "ddp"
    """Under torchrun: "ddp" (every rank holds the whole model) or "fsdp" (FSDP2 shards parameters, gradients and
    optimizer state across ranks, for models one device cannot hold; bfloat16 dtype = bf16 mixed precision)."""
    grad_checkpointing: bool = False
    """Recompute each block's activations in backward: less memory, about a third more compute."""
    eval_every: int = 250
    """Evaluate (val loss, perplexity, bits per byte) every this many steps, and at the end."""
    eval_batches: int = 20
    """Micro-batches per split in each evaluation (the same batches every time)."""
    log_every: int = 10
    """Write a train record to metrics.jsonl every this many steps."""
    sample_every: int = 0
    """Write a sample to samples.jsonl every this many steps (0 = at each evaluation); always at the end."""
    sample_tokens: int = 200
    """Tokens generated per sample."""
    sample_prompt: str = "\n"
    """Prompt the samples continue."""
    checkpoint_every: int = 500
    """Save checkpoints/latest every this many steps (also at the end and on Ctrl-C)."""
    seed: int = 1337
    """Seed of initialisation, batch sampling, dropout and samples."""
    record_attention_every: int = 0
    """Record the attention of the probe text every this many steps (0 = only at the start and the end)."""
    probe_text: str = ""
    """Text whose attention maps are recorded (cut to block_size tokens); empty = a passage of the run's own
    validation text with repeated words in it (probe.py chooses it)."""


RECIPE_MODES = ("auto", "fixed")


@dataclass
class RecipeConfig:
    """Whether the budget-aware recipe (recipe.py) sets the run, and its record of why."""

    mode: str = "fixed"
    """How `scratchllm speedrun` and `quickstart` (the commands that own a wall-clock budget) set a run: "fixed"
    trains the settings as given; "auto", which the speedrun presets set, measures this machine first and chooses
    the shape among the speedrun shapes (when the preset's shape is one of them), the weight decay from the passes
    over the data and the warm-down (recipe.py): a rule measured on the speedrun shapes only, so not the default.
    `scratchllm train` always trains the settings as given."""
    why: dict | None = None
    """Written by the auto recipe, not by hand: the tokens/s it measured per shape, the steps, tokens and passes
    it predicted, and the rule behind each value it set (None when nothing was chosen)."""


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved as the run folder's config.json."""

    model: GPTConfig = field(default_factory=GPTConfig)
    """Model shape (vocab_size follows the tokenizer)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which text to train on and how to split it."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Which tokenizer to train or load."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimizer, schedule, precision, evaluation and checkpointing."""
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    """Whether a budgeted command chooses settings from this machine's measured speed, and why it chose them."""


def validate(cfg: RunConfig) -> RunConfig:
    """Refuse settings that cannot run, with one line naming the key; returns cfg."""
    t = cfg.train
    if t.max_steps <= 0 and t.max_minutes <= 0:
        raise InputError("train.max_steps or train.max_minutes must be set (> 0) so that the run ends")
    for name in ("batch_size", "grad_accum", "eval_every", "eval_batches", "log_every", "checkpoint_every"):
        if getattr(t, name) < 1:
            raise InputError(f"train.{name} must be >= 1; got {getattr(t, name)}")
    if t.dtype not in (*DTYPE_NAMES, "auto"):
        raise InputError(f"train.dtype must be one of auto, {', '.join(DTYPE_NAMES)}; got {t.dtype!r}")
    if t.parallel not in ("ddp", "fsdp"):
        raise InputError(f"train.parallel must be ddp or fsdp; got {t.parallel!r}")
    if cfg.tokenizer.type not in ("bpe", "char"):
        raise InputError(f"tokenizer.type must be bpe or char; got {cfg.tokenizer.type!r}")
    if not 0 < cfg.data.val_fraction < 1:
        raise InputError(f"data.val_fraction must be in (0, 1); got {cfg.data.val_fraction}")
    if t.lr <= 0 or t.min_lr < 0:
        raise InputError("train.lr must be > 0 and train.min_lr >= 0")
    if cfg.data.mask not in ("assistant", "all"):
        raise InputError(f"data.mask must be assistant or all; got {cfg.data.mask!r}")
    if not 0 <= cfg.data.replay < 1:
        raise InputError(f"data.replay is a share of each batch, from 0 up to (not including) 1; got {cfg.data.replay}")
    if t.schedule not in SCHEDULES:
        raise InputError(f"train.schedule must be one of {', '.join(SCHEDULES)}; got {t.schedule!r}")
    if cfg.recipe.mode not in RECIPE_MODES:
        raise InputError(f"recipe.mode must be one of {', '.join(RECIPE_MODES)}; got {cfg.recipe.mode!r}")
    if not 0 <= t.warmdown_frac <= 1:
        raise InputError(f"train.warmdown_frac must be in [0, 1]; got {t.warmdown_frac}")
    return cfg


def load_config(path_or_preset: str | None = None, overrides: list[str] = ()) -> RunConfig:
    """A preset name (configs/NAME.yaml) or a YAML path, then `key=value` overrides; validated."""
    cfg = RunConfig()
    if path_or_preset:
        path = Path(path_or_preset)
        if not path.suffix:
            path = PRESETS / f"{path_or_preset}.yaml"
            if not path.is_file():
                names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
                raise InputError(f"unknown preset {path_or_preset!r}; choose one of {names}")
        cfg = from_dict(RunConfig, load_yaml(path))
    return validate(apply_overrides(cfg, list(overrides)))


def load_preset(name: str) -> RunConfig:
    """The RunConfig of configs/NAME.yaml (tiny, shakespeare-char, shakespeare-bpe, gpt2-124m)."""
    return load_config(name)


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ. Example: {"a": {"b": 1}} vs {"a": {"b": 2}} -> ["a.b"]."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def check_resume_config(saved: dict, cfg: RunConfig, saved_world: int = 1, world_size: int = 1) -> None:
    """Resuming must use the saved config (settings added since it was saved count as their defaults, so older
    run folders still resume): otherwise an InputError listing the keys that differ.

    Only how the work is spread may change: train.parallel, and the number of processes as long as
    grad_accum x processes (so the global batch) stays: 2 ranks x grad_accum 2 resume as 1 process x grad_accum 4.
    """
    try:
        saved = to_dict(from_dict(RunConfig, saved))
    except InputError as e:
        raise InputError(f"cannot resume: the saved config.json does not load: {e}") from None
    differ = [k for k in config_diff(saved, to_dict(cfg)) if k not in ("train.parallel", "train.grad_accum")]
    saved_accum = saved["train"]["grad_accum"]
    if saved_accum * saved_world != cfg.train.grad_accum * world_size:
        differ.append(f"train.grad_accum x processes (was {saved_accum} x {saved_world}, now "
                      f"{cfg.train.grad_accum} x {world_size})")
    if differ:
        raise InputError(f"cannot resume with a different config; keys that differ: {', '.join(differ)}")
