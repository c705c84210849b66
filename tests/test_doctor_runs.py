"""The doctor on tiny REAL trainings through `train()` (the `tiny` preset: 2 layers, 64 wide, BPE 300, a few
dozen steps of 8 x 32 tokens on 20 KB of Shakespeare): LR 10 diverges, is rolled back live (events in
metrics.jsonl) and is diagnosed as divergence; LR 1e-7 is diagnosed as not decreasing; a healthy LR gives no warning
and no error; a time budget too short for the planned steps is too slow; 600 steps over 3 KB overfit."""

from __future__ import annotations

import json
import shutil

import pytest

from scratchllm.config import apply_overrides, load_preset
from scratchllm.doctor import diagnose_run, is_healthy
from scratchllm.runfolder import read_jsonl
from scratchllm.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shakespeare_text):
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(shakespeare_text[:20_000], encoding="utf-8")
    return path


def _tiny(corpus, *overrides: str):
    """The `tiny` preset (2 layers, 64 wide, BPE 300, batch 8 x 32 tokens) on `corpus`, with overrides."""
    return apply_overrides(load_preset("tiny"), [f"data.corpus={corpus}", "train.device=cpu", *overrides])


def _run(corpus, out, lr: float, steps: int = 40, warmup: int = 5) -> dict:
    cfg = _tiny(corpus, f"train.lr={lr}", f"train.min_lr={lr / 10}", f"train.warmup_steps={warmup}",
                f"train.max_steps={steps}", "train.max_minutes=0", "train.eval_every=20", "train.sample_tokens=64",
                "train.record_attention_every=20")  # checkpoints every 10 steps, as the preset says
    return train(cfg, out, progress=False)


def _rules(findings, severities=("error", "warning")) -> set[str]:
    return {f.rule for f in findings if f.severity in severities}


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
def test_lr_10_diverges_is_rolled_back_to_a_healthy_checkpoint_and_finishes_below_its_start(corpus, tmp_path,
                                                                                            threads):
    """Whatever the CPU's floating-point path: every rollback lands on a checkpoint saved while the run was healthy
    (never on one saved as the loss began to rise), the run goes on to its planned end, and ends below its start."""
    cfg = _tiny(corpus, "train.lr=10", "train.min_lr=1", "train.warmup_steps=100", "train.max_steps=40",
                "train.max_minutes=0", "train.eval_every=20", "train.sample_tokens=16", "train.checkpoint_every=5")
    summary = train(cfg, tmp_path, progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 40 and summary["rollbacks"] >= 1
    assert summary["lr_scale"] == 0.5 ** summary["rollbacks"]
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    rollbacks = [r for r in metrics if r.get("kind") == "event" and r.get("event") == "rollback"]
    assert len(rollbacks) == summary["rollbacks"]
    for event in rollbacks:  # the records the live doctor had seen up to the step it went back to were healthy
        before = metrics[:metrics.index(event)]
        seen = {r["step"]: r for r in before if r.get("kind") == "train" and r["step"] <= event["to_step"]}
        assert event["checkpoint"] == "healthy" and event["to_step"] % 5 == 0 and event["to_step"] < event["from_step"]
        assert is_healthy([seen[k] for k in sorted(seen)])
    evals = [r for r in metrics if r.get("kind") == "eval"]
    assert evals[-1]["step"] == 40 and evals[-1]["val_loss"] < evals[0]["val_loss"]  # below where it started
    findings = diagnose_run(tmp_path)
    divergence = [f for f in findings if f.rule == "divergence"]
    assert divergence and f"rolled back {len(rollbacks)} time" in divergence[0].symptom
    assert json.loads((tmp_path / "doctor.json").read_text())[0]["rule"] in {f.rule for f in findings}


def test_lr_1e_7_is_diagnosed_as_not_decreasing(corpus, tmp_path):
    _run(corpus, tmp_path, lr=1e-7)
    findings = diagnose_run(tmp_path)
    (flat,) = [f for f in findings if f.rule == "not_decreasing"]
    assert flat.severity == "error" and "too low" in flat.cause and "lr-find" in flat.fix
    assert "divergence" not in _rules(findings)


@pytest.fixture(scope="module")
def healthy(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("healthy")
    return run, _run(corpus, run, lr=3e-3)


def test_healthy_run_triggers_no_warning_or_error(healthy):
    run, summary = healthy
    findings = diagnose_run(run)
    assert _rules(findings) == set(), [f.evidence for f in findings]
    assert summary.get("rollbacks", 0) == 0


def test_greedy_samples_of_the_tiny_model_loop(healthy, tmp_path):
    """The trainer samples at temperature 0.8, where a tiny model babbles without looping; greedy decoding of the
    same checkpoint falls into the loops the repetition rule names."""
    from scratchllm.checkpoint import load_model
    from scratchllm.generate import generate_text

    run, _ = healthy
    shutil.copytree(run, tmp_path / "run")
    model, tok, _ = load_model(run / "checkpoints" / "latest")
    texts = [generate_text(model, tok, prompt, 150, temperature=0) for prompt in ("\n", "ROMEO:")]
    with open(tmp_path / "run" / "samples.jsonl", "a", encoding="utf-8") as f:
        f.writelines(json.dumps({"step": 10**6, "prompt": "", "text": text}) + "\n" for text in texts)
    (loops,) = [f for f in diagnose_run(tmp_path / "run") if f.rule == "repetition"]
    assert "n_embd 64 -> 384" in loops.fix


def test_a_run_cut_short_by_its_time_budget_is_too_slow(corpus, tmp_path):
    cfg = _tiny(corpus, "train.max_steps=2000", "train.max_minutes=0.02", "train.eval_every=5000",
                "train.eval_batches=1", "train.log_every=5", "train.checkpoint_every=5000", "train.sample_tokens=16")
    summary = train(cfg, tmp_path, progress=False)
    assert summary["steps"] < 2000  # 1.2 s is not enough for 2000 steps (~2 ms each on an idle core)
    (slow,) = [f for f in diagnose_run(tmp_path) if f.rule == "too_slow"]
    assert slow.severity == "warning" and "2000 steps need" in slow.evidence and "bf16" in slow.fix


def test_600_steps_over_3_kb_overfit(tmp_path, shakespeare_text):
    corpus = tmp_path / "small.txt"
    corpus.write_text(shakespeare_text[:3_000], encoding="utf-8")
    cfg = _tiny(corpus, "train.max_steps=600", "train.max_minutes=0", "train.warmup_steps=10", "train.eval_every=100",
                "train.eval_batches=4", "train.log_every=10", "train.checkpoint_every=100", "train.sample_tokens=32")
    train(cfg, tmp_path / "run", progress=False)
    (overfit,) = [f for f in diagnose_run(tmp_path / "run") if f.rule == "overfitting"]
    assert overfit.severity == "warning" and "dropout" in overfit.fix
