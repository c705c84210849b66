"""Pure measures of a training run: bits per byte, perplexity, model FLOPs utilisation, memory, matmul peak.

This module owns only arithmetic and measurement helpers (no training loop, no files). Units are stated per
function: losses in nats per token, throughput in tokens per second, FLOPs per second, memory in MB.
"""

from __future__ import annotations

import functools
import math
import platform
import resource
import sys
import time


def bits_per_byte(loss_nats: float, n_tokens: int, n_bytes: int) -> float:
    """Mean token loss (nats) over a text -> bits per byte of that text: loss x tokens / (bytes x ln 2).

    >>> round(bits_per_byte(math.log(256), 100, 100), 6)   # uniform over bytes, one token per byte: 8 bits
    8.0
    """
    return loss_nats * n_tokens / (n_bytes * math.log(2))


def perplexity(loss_nats: float) -> float:
    """exp(loss): the effective number of equally likely next tokens (capped to stay finite)."""
    return math.exp(min(loss_nats, 700.0))


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s (FLOPs per token x tokens/s) over peak FLOP/s (0..1)."""
    return tokens_per_s * flops_per_token / peak_flops if peak_flops > 0 else 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def peak_memory_mb(device="cpu") -> float:
    """Peak memory in MB: CUDA's peak allocated on a GPU, else the process's peak RSS."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


MATMUL_SIZES = {"cuda": 8192}  # n per device type: a GPU reaches its peak only on large matmuls; 1024 elsewhere


def matmul_size(device="cpu") -> int:
    """The matmul side MFU's roof is measured at: 8192 on CUDA, where small matmuls leave a large GPU far below its
    peak, 1024 elsewhere, which a CPU already runs at full speed and which keeps the measurement cheap there."""
    return MATMUL_SIZES.get(str(device).split(":")[0], 1024)


def matmul_peak_flops(dtype="float32", device="cpu", n: int | None = None, repeats: int = 20) -> float:
    """Best measured FLOP/s of an n x n matmul in `dtype` (name or torch.dtype) on `device`: MFU's roof.

    n defaults to `matmul_size(device)`. The best of 20, so a moment's competition for the cores cannot halve the
    roof (with the best of 5, a `make demo` run measured about half of it and reported an MFU of 1.05). Cached per
    dtype, device, size, thread count and, on CUDA, whether float32 matmuls run in TF32, so repeated runs in one
    process measure once.
    """
    import torch

    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tf32 = str(device).startswith("cuda") and torch.backends.cuda.matmul.allow_tf32
    return _cached_peak(dt, str(device), n or matmul_size(device), repeats, torch.get_num_threads(), tf32)


@functools.cache
def _cached_peak(dt, device: str, n: int, repeats: int, threads: int, tf32: bool) -> float:
    """matmul_flops of an n x n matmul; `threads` and `tf32` only key the cache."""
    return matmul_flops(dt, (n, n, n), device, repeats)


def matmul_flops(dtype, shape: tuple[int, int, int], device="cpu", repeats: int = 20) -> float:
    """Best FLOP/s of an (m x k) @ (k x n) matmul, `shape` = (m, k, n), over `repeats` after one warm-up, measured
    afresh on each call: the roof of MFU at a model's own shapes (benchmarks/profile_step.py)."""
    import torch

    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    m, k, n = shape
    gen = torch.Generator(device).manual_seed(0)  # its own: measuring must not move the training's RNG
    a = torch.randn(m, k, device=device, generator=gen).to(dt)
    b = torch.randn(k, n, device=device, generator=gen).to(dt)
    best = float("inf")
    for _ in range(repeats + 1):  # the first round warms up
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def hardware_name(device="cpu") -> str:
    """One line naming the hardware: the GPU model on CUDA, else the CPU model and torch's thread count."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{_cpu_model() or 'CPU'}, {torch.get_num_threads()} threads"


def hardware_info(device="cpu") -> dict:
    """Torch version, threads and the CPU or GPU model, for summaries and benchmark results."""
    import torch

    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "cpu_model": _cpu_model()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()
