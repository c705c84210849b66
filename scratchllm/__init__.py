"""scratchllm: build a language model from scratch, and a PDF guide of your own run.

Trace a run by reading, in order: data.py (text) -> tokenizer/ (tokens) -> model.py (logits, loss)
-> train.py (optimizer, checkpoints) -> generate.py (samples) -> viz.py, doctor.py -> report/ (PDF).
Names are re-exported lazily so `import scratchllm` (and `scratchllm --help`) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_corpus": "scratchllm.data",
    "InputError": "scratchllm.config",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scratchllm' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
