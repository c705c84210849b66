"""Where a run computes and in what precision: device resolution, dtype resolution and the autocast context.

It owns the one rule for "auto" (CUDA, then Apple MPS, then CPU; bf16 on CUDA that has it, fp32 elsewhere) so the
trainer, the speedrun and lr-find pick the same. It owns no model and no loop.
"""

from __future__ import annotations

import contextlib

import torch

from scratchllm.config import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if present, else mps, else cpu; anything else as torch parses it."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError:
            raise InputError(f"train.device: not a device: {name!r}") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bf16 on CUDA that has it (else fp16), float32 elsewhere (bf16 is slower for small CPU models)."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "float16" and device.type != "cuda":
        raise InputError(f"train.dtype=float16 needs CUDA (its grad scaler is CUDA-only); on {device.type} use "
                         "bfloat16 or float32")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for the forward pass; a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
