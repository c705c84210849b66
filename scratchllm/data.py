"""Text in, batches out: where the corpus comes from and how it reaches the model.

This module owns corpus loading (the embedded Shakespeare, or any user file, folder or glob), the train/val split,
`prepare` (encode once into uint16/uint32 train.bin/val.bin + meta.json, cached by a hash of corpus + tokenizer)
and `BatchStream` (windows in seeded epochs, whose (seed, epoch, position) state is saved for an exact resume).
Files are read as bytes and decoded with `errors="replace"`, so invalid UTF-8 never crashes a run.
It does not own tokenization (see `tokenizer/`) or the model.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scratchllm.config import InputError, atomic_write_bytes, write_json
from scratchllm.tokenizer import Tokenizer

BUILTIN_CORPORA = {"shakespeare": "shakespeare.txt.gz"}
DOC_SEPARATOR = "\n\n"


class CorpusError(InputError):
    """A corpus path that cannot be used; the message names the problem in one line."""


@dataclass
class Corpus:
    """The raw text of a corpus, as a list of documents (one per file, or one for the built-in)."""

    name: str
    documents: list[str]

    @property
    def text(self) -> str:
        return DOC_SEPARATOR.join(self.documents)

    def head(self, chars: int | None) -> Corpus:
        """The first `chars` characters of the whole text as one document (None: this corpus unchanged)."""
        return self if chars is None else Corpus(self.name, [self.text[:chars]])


def _read_builtin(name: str) -> str:
    blob = resources.files("scratchllm.assets").joinpath(BUILTIN_CORPORA[name]).read_bytes()
    return gzip.decompress(blob).decode("utf-8", errors="replace")


def _expand(spec: str) -> list[Path]:
    """A file, a folder (every file below it, sorted) or a glob pattern -> the files it names."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if path.is_file():
        return [path]
    if any(ch in spec for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
    raise CorpusError(f"corpus not found: {spec}")


def _read_text_file(path: Path) -> str:
    """Read one file as text; refuse binary files (NUL bytes) rather than train on garbage."""
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise CorpusError(f"not a text file (contains NUL bytes): {path}")
    return raw.decode("utf-8", errors="replace")


def load_corpus(*specs: str | os.PathLike) -> Corpus:
    """Load the built-in corpus by name (`"shakespeare"`) or user text from files, folders and globs.

    >>> load_corpus("shakespeare").text[:10]
    "ALL'S WELL"
    """
    if not specs:
        raise CorpusError("no corpus given")
    documents: list[str] = []
    for spec in map(str, specs):
        if spec in BUILTIN_CORPORA:
            documents.append(_read_builtin(spec))
            continue
        files = _expand(spec)
        if not files:
            raise CorpusError(f"no files match: {spec}")
        documents.extend(_read_text_file(f) for f in files)
    documents = [d for d in documents if d]
    if not documents:
        raise CorpusError(f"corpus is empty: {' '.join(map(str, specs))}")
    return Corpus(name=" ".join(map(str, specs)), documents=documents)


# ----------------------------------------------------------------------------- split and prepare


def split_corpus(corpus: Corpus, val_fraction: float = 0.1) -> dict[str, list[str]]:
    """Documents for train and val: whole documents from the end go to val until it holds `val_fraction` of the
    bytes (at least one document stays in train); a single document is cut by position instead.
    Example: 10 files of equal size, 0.1 -> 9 train, 1 val; one 1,000-character text -> [:900], [900:]."""
    docs = corpus.documents
    if len(docs) == 1:
        cut = int(len(docs[0]) * (1 - val_fraction))
        return {"train": [docs[0][:cut]], "val": [docs[0][cut:]]}
    sizes = [len(d.encode("utf-8")) for d in docs]
    goal, val_bytes, first_val = val_fraction * sum(sizes), 0, len(docs)
    while first_val > 1 and val_bytes < goal:
        first_val -= 1
        val_bytes += sizes[first_val]
    return {"train": docs[:first_val], "val": docs[first_val:]}


def _cache_key(splits: dict[str, list[str]], tokenizer: Tokenizer) -> str:
    digest = hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True).encode())
    for name in ("train", "val"):
        for doc in splits[name]:
            digest.update(name.encode() + doc.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def _encode_split(docs: list[str], tokenizer: Tokenizer, dtype, bar: tqdm) -> np.ndarray:
    """Encode documents one by one (joined by DOC_SEPARATOR's tokens) into one id array."""
    sep = tokenizer.encode(DOC_SEPARATOR) if len(docs) > 1 else []
    parts = []
    for i, doc in enumerate(docs):
        parts.append(np.asarray(tokenizer.encode(doc) + (sep if i < len(docs) - 1 else []), dtype=dtype))
        bar.update(len(doc))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _cached(out_dir: Path, key: str) -> dict | None:
    try:
        meta = json.loads((out_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    sizes_ok = all((out_dir / f"{s}.bin").is_file() and (out_dir / f"{s}.bin").stat().st_size
                   == meta["splits"][s]["tokens"] * np.dtype(meta["dtype"]).itemsize for s in ("train", "val"))
    return meta if meta.get("key") == key and sizes_ok else None


def prepare(corpus: str | Corpus, tokenizer: Tokenizer, out_dir: str | os.PathLike, val_fraction: float = 0.1,
            block_size: int = 1, progress: bool = True) -> dict:
    """Encode a corpus into out_dir/train.bin + val.bin (uint16 ids, uint32 past 65,536) and meta.json with the
    token and byte counts of each split (bits per byte needs both). A second call with the same corpus and
    tokenizer returns the cached meta at once. A split shorter than block_size + 1 tokens is an InputError."""
    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    out_dir, splits = Path(out_dir), split_corpus(corpus, val_fraction)
    key = _cache_key(splits, tokenizer)
    if (meta := _cached(out_dir, key)) is not None:
        return meta
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    total = sum(len(d) for docs in splits.values() for d in docs)
    meta = {"key": key, "corpus": corpus.name, "dtype": np.dtype(dtype).name, "vocab_size": tokenizer.vocab_size,
            "val_fraction": val_fraction, "splits": {}}
    with tqdm(total=total, unit="char", unit_scale=True, desc="prepare", disable=not progress, file=sys.stderr) as bar:
        for name, docs in splits.items():
            ids = _encode_split(docs, tokenizer, dtype, bar)
            if len(ids) < block_size + 1:
                raise InputError(f"corpus too short: the {name} split of {corpus.name} has {len(ids)} tokens, "
                                 f"block_size {block_size} needs at least {block_size + 1}")
            atomic_write_bytes(out_dir / f"{name}.bin", ids.tobytes())
            n_bytes = sum(len(d.encode("utf-8")) for d in docs) + len(DOC_SEPARATOR) * (len(docs) - 1)
            meta["splits"][name] = {"tokens": int(len(ids)), "bytes": n_bytes, "documents": len(docs)}
    write_json(out_dir / "meta.json", meta)
    return meta


def load_split(out_dir: str | os.PathLike, split: str) -> np.ndarray:
    """The ids of one prepared split as a read-only memmap."""
    meta = json.loads((Path(out_dir) / "meta.json").read_text())
    return np.memmap(Path(out_dir) / f"{split}.bin", dtype=meta["dtype"], mode="r")


# ----------------------------------------------------------------------------- batches


class BatchStream:
    """Windows of `data` visited in epochs: (x, y) pairs of (B, T) int64 tensors, y = x shifted by one.

    Each epoch cuts data into back-to-back windows of T + 1 ids from a random offset (ids offset + kT .. + T) and
    visits them in a random order, so every token is read once per epoch; windows drawn with replacement would
    leave a third of them unread by the end of a pass and read others twice.
    Offset and order come from (seed, epoch), so the state is just
    (seed, epoch, position) and resumes exactly. Example: data [0..9], T 3, offset 1 -> windows [1..4] and [4..7].
    """

    def __init__(self, data: np.ndarray, batch_size: int, block_size: int, seed: int, device="cpu"):
        if len(data) < block_size + 1:
            raise InputError(f"{len(data)} tokens cannot fill one window of block_size {block_size} + 1")
        self.data, self.batch_size, self.block_size, self.device = data, batch_size, block_size, device
        self.seed = seed
        self._begin(epoch=0, position=0)

    def epoch_starts(self, epoch: int) -> np.ndarray:
        """Where each window of `epoch` starts, in the order they are visited."""
        rng, T = np.random.default_rng((self.seed, epoch)), self.block_size
        offset = int(rng.integers(min(T, len(self.data) - T)))  # at least one window fits: len(data) >= T + 1
        return offset + T * rng.permutation((len(self.data) - 1 - offset) // T)

    def next(self, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = batch_size or self.batch_size, self.block_size
        starts: list[int] = []
        while len(starts) < B:  # a batch may straddle epochs (tiny data: several)
            if self.position == len(self.order):
                self._begin(self.epoch + 1, position=0)
            take = self.order[self.position:self.position + B - len(starts)].tolist()
            starts += take
            self.position += len(take)
        rows = torch.from_numpy(np.stack([np.asarray(self.data[s:s + T + 1], dtype=np.int64) for s in starts]))
        if torch.device(self.device).type == "cuda":
            rows = rows.pin_memory().to(self.device, non_blocking=True)
        else:
            rows = rows.to(self.device)
        return rows[:, :-1], rows[:, 1:]  # (B, T) each

    def get_state(self) -> torch.Tensor:
        return torch.tensor([self.seed, self.epoch, self.position])

    def set_state(self, state: torch.Tensor) -> None:
        self.seed, epoch, position = (int(v) for v in state)
        self._begin(epoch, position)

    def _begin(self, epoch: int, position: int) -> None:
        self.epoch, self.position, self.order = epoch, position, self.epoch_starts(epoch)

