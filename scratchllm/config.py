"""Typed configuration machinery shared by every layer: dataclasses <-> dicts, YAML files, `--set a.b=v`.

This module owns no run settings itself (those live beside the code they steer, e.g. `GPTConfig` in
model.py); it only knows how to fill, override, validate and serialise any dataclass tree.
It also defines `InputError`, the one exception type the CLI turns into "one line, exit 2".
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
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
