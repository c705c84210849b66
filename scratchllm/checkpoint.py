"""A model checkpoint is a folder: model.safetensors (weights) + config.json (GPTConfig, meta) + tokenizer.json.

Saving stages every file as a temp file first and renames them only once all are written, config.json last; it
records the weights' SHA-256, so a save cut off between renames is detected on load rather than silently mixed.
Loading never unpickles: weights come from safetensors, settings from JSON, and any damage is a `CheckpointError`
naming the file. Optimizer state is the trainer's business (train.py writes it beside these files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from scratchllm.config import InputError, from_dict
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import Tokenizer, load_tokenizer

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
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
