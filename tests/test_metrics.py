"""metrics: bits per byte and perplexity against closed-form identities, MFU against its definition."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scratchllm import metrics


def test_uniform_byte_model_is_eight_bits_per_byte():
    # a model that spreads its mass evenly over 256 byte values pays ln(256) nats = 8 bits per byte-token
    assert metrics.bits_per_byte(math.log(256), n_tokens=1000, n_bytes=1000) == pytest.approx(8.0)


@given(st.floats(0.01, 20.0), st.integers(1, 10_000), st.integers(1, 10_000))
def test_bits_per_byte_is_total_bits_over_bytes(loss, tokens, n_bytes):
    total_bits = loss * tokens / math.log(2)  # nats -> bits, summed over every token
    assert metrics.bits_per_byte(loss, tokens, n_bytes) == pytest.approx(total_bits / n_bytes)


def test_perplexity_matches_cross_entropy_of_uniform_logits():
    vocab = 37
    loss = torch.nn.functional.cross_entropy(torch.zeros(5, vocab), torch.arange(5)).item()
    assert metrics.perplexity(loss) == pytest.approx(vocab)
    assert math.isfinite(metrics.perplexity(1e6))


def test_mfu_is_achieved_over_peak_flops():
    assert metrics.mfu(flops_per_token=6e6, tokens_per_s=1e4, peak_flops=1.2e11) == pytest.approx(0.5)
    assert metrics.mfu(6e6, 1e4, 0.0) == 0.0


def test_matmul_peak_is_plausible():
    assert 1e8 < metrics.matmul_peak_flops("float32", n=256, repeats=2) < 1e15
    assert "threads" in metrics.hardware_name("cpu")


def test_matmul_flops_counts_two_m_k_n_per_second_of_its_fastest_round(monkeypatch):
    """A clock that advances 1 s per reading makes every round take 1 s: the answer is then the FLOP count of one
    (m x k) @ (k x n) product, for a shape whose three sides differ."""
    ticks = iter(range(10_000))
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(ticks))
    assert metrics.matmul_flops("float32", (48, 80, 16), repeats=3) == 2 * 48 * 80 * 16


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_rss_is_at_least_the_current_rss_the_kernel_reports():
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    status = Path("/proc/self/status").read_text()
    current_mb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024
    assert metrics.peak_memory_mb("cpu") >= current_mb - 1
    assert metrics.peak_rss_mb() >= 64


def test_measuring_the_matmul_roof_leaves_the_training_rng_alone():
    """train() measures the roof after seeding the model; drawing from the global RNG there would shift dropout
    masks between a first and a cached second measurement, and break bitwise resume."""
    before = torch.get_rng_state()
    metrics.matmul_peak_flops("float32", n=64, repeats=1)
    assert torch.equal(torch.get_rng_state(), before)
