"""benchmarks/profile_step.py on the tiny preset: its runners are recipe.step_runner's, its step time counts every
micro-batch of a step, and its results go through config.write_json. The timings themselves are the benchmark's."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def profile_step(load_benchmark):
    return load_benchmark("profile_step")


def test_step_time_counts_every_micro_batch(profile_step, one_thread):
    runner = profile_step.build_runner("base", "tiny", ["train.grad_accum=2"])
    assert runner.run.tokens_per_step == 2 * 8 * 32  # grad_accum x batch x context
    m = profile_step.measure(runner, warmup=1, steps=2, profiled=1, peak=1e12)
    assert m["step_ms"] == pytest.approx(1e3 * 2 * 8 * 32 / m["tokens_per_s"])
    assert m["profile"]["profiled_step_ms"] > 0


def test_foreach_variant_swaps_only_the_optimizer(profile_step, one_thread):
    fused, foreach = (profile_step.build_runner("x", "tiny", [], optimizer=o) for o in ("fused", "foreach"))
    assert [p.shape for p in fused.run.optimizer.param_groups[0]["params"]] == \
        [p.shape for p in foreach.run.optimizer.param_groups[0]["params"]]
    assert foreach.run.optimizer.param_groups[0]["foreach"] and isinstance(foreach.run.optimizer, torch.optim.AdamW)
    before = [p.detach().clone() for p in foreach.run.gpt.parameters()]
    foreach.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, foreach.run.gpt.parameters(), strict=True))


def test_write_result_writes_json_whole(profile_step, tmp_path, monkeypatch):
    monkeypatch.setattr(profile_step, "RESULTS", tmp_path / "results")
    out = profile_step.write_result("x.json", {"a": 1})
    assert json.loads(out.read_text()) == {"a": 1} and [p.name for p in out.parent.iterdir()] == ["x.json"]
