"""Precision set up with the device: float32 on CUDA runs its matmuls in TF32, a CPU run leaves the setting alone,
and MFU's matmul roof is measured at a size that suits the device (large on a GPU, cheap on a CPU)."""

from __future__ import annotations

import pytest
import torch

from scratchllm import metrics
from scratchllm.device import resolve_dtype


@pytest.fixture
def tf32_restored():
    before = torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def test_the_roof_is_measured_at_the_devices_size_and_a_gpu_gets_the_larger(monkeypatch):
    shapes = []
    monkeypatch.setattr(metrics, "matmul_flops", lambda dt, shape, device, repeats: shapes.append(shape) or 1.0)
    metrics._cached_peak.cache_clear()
    metrics.matmul_peak_flops("float32", "cpu", repeats=1)
    metrics.matmul_peak_flops("float32", "cpu", n=64, repeats=1)
    metrics._cached_peak.cache_clear()
    side = metrics.matmul_size(torch.device("cpu"))
    assert shapes == [(side, side, side), (64, 64, 64)]
    assert metrics.matmul_size("cuda:1") == metrics.matmul_size(torch.device("cuda")) > side
    assert metrics.matmul_size("mps") == side


@pytest.mark.parametrize("name", ["auto", "float32", "bfloat16"])
def test_a_cpu_run_leaves_the_tf32_switch_alone(name, tf32_restored):
    torch.backends.cuda.matmul.allow_tf32 = False
    resolve_dtype(name, torch.device("cpu"))
    assert torch.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")
def test_float32_on_cuda_turns_on_tf32_and_the_roof_is_measured_with_it(tf32_restored):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("TF32 needs an Ampere or later GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    ieee = metrics.matmul_peak_flops("float32", "cuda", repeats=3)
    assert resolve_dtype("float32", torch.device("cuda")) == torch.float32
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert metrics.matmul_peak_flops("float32", "cuda", repeats=3) > 1.5 * ieee  # a fresh measurement, not the cache
