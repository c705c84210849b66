"""Text in, batches out: where the corpus comes from and how it reaches the model.

This module owns corpus loading (the embedded Shakespeare, or any user file, folder or glob).
Files are read as bytes and decoded with `errors="replace"`, so invalid UTF-8 never crashes a run.
It does not own tokenization (see `tokenizer/`) or the model.
"""

from __future__ import annotations

import glob
import gzip
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scratchllm.config import InputError

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
