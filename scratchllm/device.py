"""Where a run computes and in what precision: device resolution, dtype resolution and the autocast context.

It owns the one rule for "auto" (CUDA, then Apple MPS, then CPU; bf16 on CUDA that has it, fp32 elsewhere) so the
trainer, the speedrun and lr-find pick the same, and float32 on CUDA runs its matmuls in TF32. It owns no model and
no loop.
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
    """"auto": bf16 on CUDA that has it (else fp16), float32 elsewhere (bf16 is slower for small CPU models).

    float32 on CUDA also turns on TF32 matmuls (`use_tf32`): every run's dtype is resolved here, before its model.
    """
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "float16" and device.type != "cuda":
        raise InputError(f"train.dtype=float16 needs CUDA (its grad scaler is CUDA-only); on {device.type} use "
                         "bfloat16 or float32")
    if name == "float32" and device.type == "cuda":
        use_tf32()
    return DTYPES[name]


def use_tf32() -> None:
    """Let float32 matmuls on CUDA run on the tensor cores in TF32 (10-bit mantissa, float32 range): several times
    faster on Ampere and later, as nanoGPT trains. The flag is process-wide but CUDA-only: CPU matmuls keep full
    float32 (torch.set_float32_matmul_precision("high") would also switch oneDNN's CPU matmuls to TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = True


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for the forward pass; a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
