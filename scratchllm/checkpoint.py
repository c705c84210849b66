"""A model checkpoint is a folder: model.safetensors (weights) + config.json (GPTConfig, meta) + tokenizer.json.

Saving stages every file as a temp file first and renames them only once all are written, config.json last; it
records the weights' SHA-256, so a save cut off between renames is detected on load rather than silently mixed.
Loading never unpickles: weights come from safetensors, settings from JSON, and any damage is a `CheckpointError`
naming the file. A run's trainer checkpoints (checkpoints/latest, and checkpoints/healthy, the last one saved while
training was healthy) add the optimizer state, the RNGs and the batch position beside the model as one
`TrainerCheckpoint`, swapped in whole by renames. Gathering sharded state is the trainer's business, not this module's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from scratchllm.config import InputError, from_dict
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer, load_tokenizer

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
TRAINER_JSON, TRAINER_TENSORS = "trainer_state.json", "trainer_state.safetensors"
LATEST, HEALTHY = "latest", "healthy"
FORMAT, VERSION = "scratchllm-checkpoint", 1


class CheckpointError(InputError):
    """A checkpoint folder that is missing, damaged or from an incompatible version; the message names the file."""


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder itself, or a run folder whose checkpoints/latest/ holds one."""
    path = Path(path)
    for candidate in (path / "checkpoints" / "latest", path):  # a run folder's own config.json is a RunConfig
        if (candidate / CONFIG).is_file() or (candidate / WEIGHTS).is_file():
            return candidate
    raise CheckpointError(f"no checkpoint at {path}: expected {WEIGHTS} + {CONFIG}, or a run folder with "
                          "checkpoints/latest/")


def model_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """The state dict as safetensors wants it: contiguous CPU tensors, the tied head stored once (as wte)."""
    state = model.state_dict()
    if model.config.tie_weights:
        state.pop("lm_head.weight")
    return {name: t.detach().cpu().contiguous() for name, t in state.items()}


def _stage(directory: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def save_model(directory: str | os.PathLike, model: GPT, tokenizer: Tokenizer | None,
               extra: dict | None = None) -> Path:
    """Write the checkpoint folder; `extra` (JSON-able: step, val loss...) comes back as `meta` from load_model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = save_safetensors(model_tensors(model), metadata={"format": "pt"})
    info = {"format": FORMAT, "version": VERSION, "model": dataclasses.asdict(model.config),
            "weights": {"file": WEIGHTS, "bytes": len(weights), "sha256": hashlib.sha256(weights).hexdigest()},
            "tokenizer": TOKENIZER if tokenizer is not None else None, "meta": extra or {}}
    staged: dict[str, Path] = {}
    try:
        staged[WEIGHTS] = _stage(directory, WEIGHTS)
        staged[WEIGHTS].write_bytes(weights)
        if tokenizer is not None:
            staged[TOKENIZER] = _stage(directory, TOKENIZER)
            tokenizer.save(staged[TOKENIZER])
        staged[CONFIG] = _stage(directory, CONFIG)
        staged[CONFIG].write_text(json.dumps(info, indent=2) + "\n")
        for name in (WEIGHTS, TOKENIZER, CONFIG):  # config.json last: it is the commit point
            if name in staged:
                os.replace(staged.pop(name), directory / name)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    if tokenizer is None:
        (directory / TOKENIZER).unlink(missing_ok=True)
    return directory


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {path}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file is not valid JSON: {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"not a scratchllm checkpoint config (no \"format\": \"{FORMAT}\"): {path}")
    if info.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {info.get('version')!r}; this scratchllm reads {VERSION}")
    return info


def _read_weights(path: Path, expected: dict) -> dict[str, torch.Tensor]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {path}") from None
    if expected.get("sha256") not in (None, hashlib.sha256(raw).hexdigest()):
        raise CheckpointError(f"{path} is truncated or corrupt: {len(raw)} bytes, {expected.get('bytes')} expected, "
                              "and its SHA-256 does not match config.json")
    try:
        return load_safetensors(raw)
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"{path} is not a readable safetensors file: {str(e).splitlines()[0]}") from None


def _fill(model: GPT, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy tensors into model, refusing missing, unexpected or mis-shaped entries."""
    own = model.state_dict()
    needed = set(own) - ({"lm_head.weight"} if model.config.tie_weights else set())
    if missing := sorted(needed - set(tensors)):
        raise CheckpointError(f"{path} lacks {len(missing)} tensor(s), e.g. {missing[0]}")
    if unexpected := sorted(set(tensors) - set(own)):
        raise CheckpointError(f"{path} has unexpected tensor(s), e.g. {unexpected[0]}")
    for name, t in tensors.items():
        if t.shape != own[name].shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(t.shape)}, config.json implies "
                                  f"{tuple(own[name].shape)}")
    model.load_state_dict(tensors, strict=False)


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[GPT, Tokenizer | None, dict]:
    """Checkpoint (or run) folder -> (model in train mode on `device`, tokenizer or None, meta dict)."""
    directory = resolve_checkpoint(directory)
    info = _read_info(directory / CONFIG)
    try:
        config = from_dict(GPTConfig, info.get("model") or {})
    except InputError as e:
        raise CheckpointError(f"{directory / CONFIG}: bad model config: {e}") from None
    model = GPT(config)
    _fill(model, _read_weights(directory / WEIGHTS, info.get("weights") or {}), directory / WEIGHTS)
    tokenizer = None
    if info.get("tokenizer"):
        try:
            tokenizer = load_tokenizer(directory / TOKENIZER)
        except InputError as e:
            raise CheckpointError(str(e)) from None
    return model.to(device), tokenizer, info.get("meta") or {}


# ----------------------------------------------------------------------------- trainer checkpoints


@dataclass
class TrainerState:
    """Where a run stands; saved as trainer_state.json so a resumed run goes on exactly."""

    step: int = 0
    """Optimizer steps done."""
    elapsed_s: float = 0.0
    """Seconds of the budget spent (the wall clock, less evaluation when train.eval_in_budget is off)."""
    train_s: float = 0.0
    """Seconds spent inside training steps (for tokens per second)."""
    tokens: int = 0
    """Training tokens seen."""
    lr_scale: float = 1.0
    """Multiplier on the scheduled LR: halved by each rollback."""
    rollbacks: int = 0
    """Rollbacks to the healthy checkpoint so far."""
    best_val_bpb: float | None = None
    """Best validation bits per byte so far."""
    last_val_bpb: float | None = None
    """Validation bits per byte of the last evaluation."""
    last_eval_step: int | None = None
    """Step of the last evaluation."""
    status: str = "running"
    """"running", "diverged" (rollbacks spent) or "interrupted"."""
    advice: str | None = None
    """What to change, when the run stopped diverged."""

    @classmethod
    def from_json(cls, record: dict) -> TrainerState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass
class TrainerCheckpoint:
    """Everything a run needs to go on exactly: weights, optimizer state, RNG states and the batch position.
    model and optimizer are single-process ones (gathered first under FSDP2), so any world size can resume."""

    model: GPT
    tokenizer: Tokenizer
    optimizer: dict
    """optimizer.state_dict() of the whole model."""
    rng: dict[str, torch.Tensor]
    """"torch", "batches" (the batch source's position), and "cuda" where there is one."""
    state: TrainerState = field(default_factory=TrainerState)
    world_size: int = 1


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimizer state dict split into tensors ("state.<param>.<name>") and its JSON-able param groups."""
    tensors = {f"state.{i}.{k}": v.detach().cpu().contiguous() for i, s in state["state"].items()
               for k, v in s.items()}
    return tensors, state["param_groups"]


def _optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    """The inverse of _optimizer_tensors: the state dict optimizer.load_state_dict takes."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    return {"state": state, "param_groups": groups}


def _swap_in(root: Path, stage: Path, name: str) -> None:
    """Replace root/name by the staged folder: two renames, the old copy kept as .previous-NAME between them."""
    target, old = root / name, root / f".previous-{name}"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    stage.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def save_trainer_checkpoint(run_dir: Path, ckpt: TrainerCheckpoint, name: str = LATEST) -> Path:
    """Write checkpoints/NAME whole or not at all: staged in a sibling folder, then swapped in by renames."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    tensors, groups = _optimizer_tensors(ckpt.optimizer)
    rng = {f"rng.{k}": v for k, v in ckpt.rng.items()}
    (stage / TRAINER_TENSORS).write_bytes(save_safetensors({**tensors, **rng}))
    record = {**dataclasses.asdict(ckpt.state), "world_size": ckpt.world_size, "param_groups": groups}
    (stage / TRAINER_JSON).write_text(json.dumps(record, indent=2) + "\n")
    save_model(stage, ckpt.model, ckpt.tokenizer, extra={"step": ckpt.state.step})
    _swap_in(root, stage, name)
    return root / name


def copy_trainer_checkpoint(run_dir: Path, source: str, name: str) -> None:
    """checkpoints/SOURCE copied whole to checkpoints/NAME (staged, then swapped in). The files are hard links:
    a save never rewrites a file in place (it stages a new folder and renames it), so the copy costs no I/O."""
    root = Path(run_dir) / "checkpoints"
    stage = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    shutil.copytree(root / source, stage, dirs_exist_ok=True, copy_function=os.link)
    _swap_in(root, stage, name)


def trainer_checkpoint_dir(run_dir: Path, name: str = LATEST) -> Path | None:
    """checkpoints/NAME, or the copy a swap cut off between its two renames left; None when neither is there."""
    root = Path(run_dir) / "checkpoints"
    for candidate in (root / name, root / f".previous-{name}"):
        if (candidate / TRAINER_JSON).is_file():
            return candidate
    return None


def load_trainer_checkpoint(run_dir: Path, name: str = LATEST) -> TrainerCheckpoint:
    """The trainer checkpoint checkpoints/NAME of a run folder (model on the CPU); CheckpointError when damaged."""
    where = trainer_checkpoint_dir(run_dir, name)
    if where is None:
        raise CheckpointError(f"no checkpoint to resume at {Path(run_dir) / 'checkpoints' / name}")
    model, tokenizer, _ = load_model(where)
    try:
        record = json.loads((where / TRAINER_JSON).read_text())
        tensors = load_safetensors((where / TRAINER_TENSORS).read_bytes())
    except Exception as e:  # JSON and safetensors each raise their own error types for damage
        raise CheckpointError(f"{where}: unreadable trainer state: {str(e).splitlines()[0]}") from None
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    optimizer = _optimizer_state(tensors, record.get("param_groups", []))
    return TrainerCheckpoint(model, tokenizer, optimizer, rng, TrainerState.from_json(record),
                             record.get("world_size", 1))
