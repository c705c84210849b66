"""The run folder: its file names, the one writer, and the readers every command shares.

A run folder holds everything of one run (../shared/CLI.md): config.json, tokenizer.json, metrics.jsonl,
samples.jsonl, summary.json, doctor.json, attention/ (probe.json and step_XXXXXX.npz), checkpoints/, figures/,
guide.pdf. This module owns those names and how they are read and written. Readers come in two kinds: strict
ones (`read_jsonl`) raise an InputError naming the broken line, for commands whose answer would be wrong without
it (doctor); lenient ones (`read_jsonl_lenient`) skip and count broken lines, for the report and pictures. It also
owns the text a token is stored as (`token_text`, the form of probe.json's tokens). It owns no training, no model and
no drawing: the trainer, viz, doctor and report all come here for files.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from scratchllm.config import InputError, atomic_write_bytes, write_json

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
DOCTOR = "doctor.json"
ATTENTION = "attention"
PROBE = "attention/probe.json"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
QA_EVAL = "qa_eval.json"  # a finetune's scores on held-out questions
CHAT = "chat"  # the quickstart's finetuning stage: a run folder inside the run folder
ATTENTION_ARRAYS = ("att", "q", "k", "v")


def is_finite(x) -> bool:
    """A real, finite number (not a bool, not None). Example: 1.5 -> True, nan -> False, True -> False."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_run(run_dir) -> bool:
    """Whether `run_dir` looks like a run folder: a directory with a metrics.jsonl or a config.json."""
    run = Path(run_dir)
    return run.is_dir() and ((run / METRICS).is_file() or (run / CONFIG).is_file())


def ensure_writable(run_dir: Path) -> None:
    """Fail before any work when the run folder cannot be created or written."""
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise InputError(f"run folder not writable: {run_dir} ({e.strerror or e})") from None


def require_run(run_dir, command: str) -> Path:
    """The run folder as a Path, or an InputError in one line saying why `command` cannot read it."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder not found: {run}")
    if not is_run(run):
        raise InputError(f"{run} is not a run folder (no {METRICS} or {CONFIG}): {command} reads the folder "
                         "`scratchllm train --out DIR` writes")
    return run


# ----------------------------------------------------------------------------- readers


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file; a broken line is an InputError naming the file and line."""
    records = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"{path}: line {i} is not valid JSON") from None
    return records


def read_jsonl_lenient(path: Path) -> tuple[list[dict], int]:
    """(records, broken line count) of a JSON-lines file; a missing file is ([], 0), non-objects are skipped."""
    if not Path(path).is_file():
        return [], 0
    records, bad = [], 0
    for line in filter(str.strip, Path(path).read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            records.append(json.loads(line))
        except ValueError:
            bad += 1
    return [r for r in records if isinstance(r, dict)], bad


def read_json(path: Path):
    """A JSON file's value, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_qa_eval(run_dir) -> dict | None:
    """A finetune's qa_eval.json, or None when the folder has none (no finetune, or not scored yet) or it is no JSON
    object."""
    value = read_json(Path(run_dir) / QA_EVAL)
    return value if isinstance(value, dict) else None


def read_probe(run_dir) -> dict:
    """attention/probe.json as {"text", "token_ids", "tokens"}; missing or broken parts come back empty."""
    probe = read_json(Path(run_dir) / PROBE)
    probe = probe if isinstance(probe, dict) else {}
    ids = probe.get("token_ids") if isinstance(probe.get("token_ids"), list) else []
    tokens = probe.get("tokens") if isinstance(probe.get("tokens"), list) else []
    return {"text": str(probe.get("text") or ""), "token_ids": [int(i) for i in ids if isinstance(i, int)],
            "tokens": [str(t) for t in tokens]}


def token_text(tokenizer, i: int) -> str:
    """Token `i` as probe.json and every label write it: its bytes as UTF-8, a cut multi-byte character shown
    as U+FFFD. Example: a BPE token of bytes b" th" -> " th"."""
    return tokenizer.token_bytes(i).decode("utf-8", errors="replace")


def attention_files(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every attention/step_XXXXXX.npz record, in step order."""
    found = []
    for path in (Path(run_dir) / ATTENTION).glob("step_*.npz"):
        match = re.fullmatch(r"step_(\d+)\.npz", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def load_attention(path: Path) -> dict[str, np.ndarray]:
    """One attention record as float32 arrays: att (L, H, T, T); q, k, v (L, H, T, hd).
    An unreadable file, or one without a 4-D att, is a ValueError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name].astype(np.float32) for name in ATTENTION_ARRAYS if name in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"unreadable attention record {Path(path).name}: {type(e).__name__}") from None
    if "att" not in arrays or arrays["att"].ndim != 4:
        raise ValueError(f"attention record {Path(path).name} has no att array of shape (L, H, T, T)")
    return arrays


# ----------------------------------------------------------------------------- the writer


class RunWriter:
    """Appends metrics.jsonl / samples.jsonl records and writes run files atomically; silent when not `enabled`
    (ranks other than 0 under torchrun). `fresh` clears what an earlier run in the same folder left."""

    def __init__(self, run_dir: Path, enabled: bool = True, fresh: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        if enabled and fresh:
            for name in (METRICS, SAMPLES, SUMMARY):
                (self.run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / ATTENTION, ignore_errors=True)
            shutil.rmtree(self.run_dir / CHECKPOINTS, ignore_errors=True)

    def append(self, name: str, record: dict) -> None:
        if self.enabled:
            with open(self.run_dir / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def metric(self, record: dict) -> None:
        self.append(METRICS, record)

    def event(self, step: int, event: str, message: str, **details) -> None:
        self.metric({"kind": "event", "step": step, "event": event, "message": message, **details})

    def write_json(self, name: str, obj) -> None:
        if self.enabled:
            write_json(self.run_dir / name, obj)

    def bytes(self, name: str, data: bytes) -> None:
        if self.enabled:
            atomic_write_bytes(self.run_dir / name, data)

    def probe(self, text: str, ids: list[int], tokens: list[str]) -> None:
        self.write_json(PROBE, {"text": text, "token_ids": ids, "tokens": tokens})

    def attention(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        """attention/step_XXXXXX.npz, arrays stored as float16 (compressed)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, step=np.array(step), **{k: v.astype(np.float16) for k, v in arrays.items()})
        self.bytes(f"{ATTENTION}/step_{step:06d}.npz", buf.getvalue())
