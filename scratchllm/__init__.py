"""scratchllm: build a language model from scratch, and a PDF guide of your own run.

Trace a run by reading, in order: data.py (text) -> tokenizer/ (tokens) -> model.py (logits, loss)
-> train.py (optimizer, checkpoints) -> generate.py (samples) -> viz.py, doctor.py -> report/ (PDF).
Names are re-exported lazily so `import scratchllm` (and `scratchllm --help`) stays fast. Functions named like
their module (`train`, `generate`, `quickstart`, `speedrun`) are imported from it: `from scratchllm.train import train`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "InputError": "scratchllm.config",
    "load_corpus": "scratchllm.data",
    "Tokenizer": "scratchllm.tokenizer",
    "BPETokenizer": "scratchllm.tokenizer",
    "CharTokenizer": "scratchllm.tokenizer",
    "WordTokenizer": "scratchllm.tokenizer",
    "train_bpe": "scratchllm.tokenizer",
    "load_tokenizer": "scratchllm.tokenizer",
    "compare_tokenizers": "scratchllm.tokenizer.compare",
    "GPT": "scratchllm.model",
    "GPTConfig": "scratchllm.model",
    "generate_text": "scratchllm.generate",
    "stream_text": "scratchllm.generate",
    "save_model": "scratchllm.checkpoint",
    "load_model": "scratchllm.checkpoint",
    "export_hf": "scratchllm.convert",
    "import_hf": "scratchllm.convert",
    "diagnose_run": "scratchllm.doctor",
    "render_all": "scratchllm.viz",
    "build_report": "scratchllm.report",
    "RunConfig": "scratchllm.config",
    "load_preset": "scratchllm.config",
    "load_config": "scratchllm.config",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scratchllm' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
