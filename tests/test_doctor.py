"""Each doctor rule on synthetic histories: it fires on the pattern it names and stays quiet on healthy ones."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchllm.config import InputError
from scratchllm.doctor import (
    char_repetition,
    check_step,
    diagnose,
    diagnose_run,
    is_healthy,
    repetition,
    rule_divergence,
    rule_not_decreasing,
    rule_overfitting,
    rule_repetition,
    rule_too_slow,
)
from scratchllm.doctor_rules import DEFAULT, Finding


def _train(losses, grad_norms=None, lr=1e-3, dt=0.1, tps=1000.0, mfu=0.2):
    norms = grad_norms or [1.0] * len(losses)
    return [{"kind": "train", "step": i, "loss": loss, "lr": lr, "grad_norm": g, "tokens_per_s": tps,
             "mfu": mfu, "elapsed_s": dt * (i + 1), "tokens": 64 * (i + 1)}
            for i, (loss, g) in enumerate(zip(losses, norms, strict=True))]


def _healthy(n=60):
    return [5.7 * math.exp(-i / 30) + 1.5 for i in range(n)]


def test_finding_fields_match_the_contract():
    f = Finding("divergence", "error", "s", "e", "c", "x")
    assert list(f.to_dict()) == ["rule", "severity", "symptom", "evidence", "cause", "fix"]


@pytest.mark.parametrize("key", ["loss", "grad_norm"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_check_step_flags_nonfinite(key, bad):
    history = _train(_healthy(5))
    history[-1][key] = bad
    finding = check_step(history)
    assert finding is not None and finding.rule == "divergence" and finding.severity == "error"
    assert key in finding.evidence


def test_check_step_flags_exploding_loss_with_numbers():
    history = _train([5.7, 5.2, 4.9, 31.0])
    finding = check_step(history)
    assert finding.rule == "divergence"
    assert "31" in finding.evidence and "4.9" in finding.evidence


def test_check_step_ignores_a_moderate_spike():
    assert check_step(_train([5.7, 5.2, 4.9, 6.0])) is None


def test_check_step_flags_exploding_grad_norm_only_after_a_window():
    spike = 2 * DEFAULT.grad_ratio
    finding = check_step(_train(_healthy(13), [1.0] * 12 + [spike]))
    assert finding.rule == "divergence" and f"grad norm {spike:.3g}" in finding.evidence
    assert check_step(_train(_healthy(3), [1.0, 1.0, spike])) is None  # too little history to call a norm typical
    assert check_step(_train(_healthy(13), [1.0] * 12 + [300.0])) is None  # healthy runs spike this high


def test_check_step_ignores_eval_and_event_records():
    history = _train(_healthy(5)) + [{"kind": "eval", "step": 5, "val_loss": float("nan")},
                                     {"kind": "event", "step": 5, "event": "resume", "message": ""}]
    assert check_step(history) is None
    assert check_step([]) is None


@given(st.lists(st.floats(0.01, 20.0), min_size=1, max_size=40))
def test_check_step_never_fires_on_non_increasing_losses(values):
    losses = sorted(values, reverse=True)
    assert check_step(_train(losses)) is None


@given(st.lists(st.floats(0.01, 20.0), min_size=1, max_size=30), st.floats(1.0, 1e6))
def test_check_step_fires_exactly_past_both_thresholds(values, factor):
    best = min(values)
    loss = best * DEFAULT.explode_ratio * factor + DEFAULT.explode_margin
    finding = check_step(_train(values + [loss]))
    assert finding is not None and finding.rule == "divergence"


def test_check_step_flags_a_loss_that_stays_high():
    losses = [5.7, 5.2, 5.0, 10.5, 11.0, 9.8, 10.9]  # each below 3x the best, the median of the last 5 2x it
    finding = check_step(_train(losses))
    assert finding.rule == "divergence" and "median loss 10.5" in finding.evidence
    assert check_step(_train(losses[:5])) is None  # no loss before a window of 5 to compare with
    assert check_step(_train([5.7, 5.2, 5.0, 5.1, 9.0, 9.2, 5.2])) is None  # two high losses: median stays low
    assert check_step(_train([9.0, 9.0, 9.0, 1.0, 1.0])) is None  # a loss that just fell is not judged by itself


@given(st.lists(st.floats(0.5, 50.0), min_size=1, max_size=30))
def test_replay_finds_the_first_step_the_live_check_would_flag(losses):
    history = _train(losses)
    live = next((check_step(history[: i + 1]) for i in range(len(history)) if check_step(history[: i + 1])), None)
    replayed = rule_divergence(history)
    assert (replayed[0] if replayed else None) == live


def test_not_decreasing_fires_on_a_flat_loss_and_blames_a_tiny_lr():
    flat = _train([5.70 - 1e-5 * i for i in range(40)], lr=1e-7)
    (finding,) = rule_not_decreasing(flat)
    assert finding.rule == "not_decreasing" and "too low" in finding.cause and "lr-find" in finding.fix
    assert "1e-07" in finding.evidence


def test_not_decreasing_blames_a_high_lr_when_the_loss_rises():
    (finding,) = rule_not_decreasing(_train([5.0 + 0.01 * i for i in range(40)], lr=0.5))
    assert "too high" in finding.cause


def test_not_decreasing_quiet_on_healthy_or_short_runs():
    assert rule_not_decreasing(_train(_healthy())) == []
    assert rule_not_decreasing(_train([5.7] * (DEFAULT.plateau_min_records - 1))) == []


def _independent_repetition(text, n=4):
    words = text.split()
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return (total - len(grams)) / total, len(set(words)) / len(words)


@given(st.lists(st.sampled_from(["a", "b", "c", "the", "king"]), min_size=4, max_size=60))
def test_repetition_matches_a_counter_based_count(words):
    rep, distinct, n = repetition(" ".join(words))
    want_rep, want_distinct = _independent_repetition(" ".join(words))
    assert n == len(words)
    assert rep == pytest.approx(want_rep) and distinct == pytest.approx(want_distinct)


def test_repetition_rule_fires_on_loops_and_suggests_wider_model():
    loop = "the king is the king is " * 10
    samples = [{"step": 0, "prompt": "", "text": "fresh words " * 20}, {"step": 100, "prompt": "", "text": loop}]
    (finding,) = rule_repetition(samples, {"model": {"n_embd": 128}})
    assert finding.rule == "repetition" and "128 -> 384" in finding.fix


@pytest.mark.parametrize("loop", ["HEL" * 50, "A" * 150, " " * 150, ", .\n.\n" * 30])
def test_repetition_rule_catches_loops_without_words(loop):
    (finding,) = rule_repetition([{"step": 5, "prompt": "", "text": loop}], {"model": {"n_embd": 64}})
    assert "character 8-grams" in finding.evidence and "64 -> 384" in finding.fix


@given(st.text(alphabet="abc ", min_size=8, max_size=80), st.integers(3, 8))
def test_char_repetition_matches_a_counter_based_count(text, n):
    grams = Counter(text[i:i + n] for i in range(len(text) - n + 1))
    total = sum(grams.values())
    want = (total - len(grams)) / total if total else 0.0
    assert char_repetition(text, n) == pytest.approx(want)


def test_repetition_rule_needs_half_of_the_samples_to_loop(tiny_text):
    fine = [{"step": 9, "prompt": "", "text": tiny_text[i:i + 600]} for i in range(0, 1800, 600)]
    loops = [{"step": 9, "prompt": "", "text": "HEL" * 50}] * 2
    assert rule_repetition(fine + loops, {}) == []
    assert len(rule_repetition(fine[:2] + loops, {})) == 1


def test_repetition_rule_quiet_on_real_text(tiny_text):
    samples = [{"step": 9, "prompt": "", "text": tiny_text[i:i + 600]} for i in range(0, 6000, 600)]
    assert rule_repetition(samples, {"model": {"n_embd": 128}}) == []


def _evals(pairs):
    return [{"kind": "eval", "step": 100 * i, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(pairs)]


def test_overfitting_fires_on_a_growing_gap():
    (finding,) = rule_overfitting(_evals([(3.0, 3.05), (2.5, 2.6), (1.8, 2.4), (1.2, 2.7)]))
    assert finding.rule == "overfitting" and "dropout" in finding.fix and "1.500" in finding.evidence


def test_overfitting_quiet_when_val_tracks_train():
    assert rule_overfitting(_evals([(3.0, 3.05), (2.5, 2.58), (2.1, 2.2)])) == []


def test_overfitting_quiet_while_val_still_improves_despite_a_wide_gap():
    # held-out text unlike the training text: the gap widens, yet every eval is val's best so far
    assert rule_overfitting(_evals([(3.0, 3.05), (2.2, 2.5), (1.6, 2.2), (1.3, 2.1)])) == []


def test_too_slow_fires_when_the_steps_do_not_fit_the_budget():
    metrics = _train(_healthy(20), dt=10.0)  # 10 s/step
    (finding,) = rule_too_slow(metrics, {"train": {"max_steps": 1000, "max_minutes": 10}})
    assert finding.severity == "warning" and "bf16" in finding.fix and "DistributedDataParallel" in finding.fix
    assert "1000 steps need ~175.4 min, the budget is 10.0 min" in finding.evidence  # 200 s for 19 steps
    assert rule_too_slow(metrics, {"train": {"max_steps": 50, "max_minutes": 10}}) == []


def test_too_slow_ignores_a_placeholder_step_goal():
    """The quickstart sets max_steps 1,000,000 and lets its time budget end the run."""
    metrics = _train(_healthy(20), dt=0.1, mfu=0.3)
    assert rule_too_slow(metrics, {"train": {"max_steps": 1_000_000, "max_minutes": 8}}) == []


def test_too_slow_reports_low_utilisation_as_info():
    (finding,) = rule_too_slow(_train(_healthy(5), mfu=0.01), {})
    assert finding.severity == "info"


def test_diagnose_healthy_history_is_clean(tiny_text):
    samples = [{"step": 59, "prompt": "", "text": tiny_text[1000:1600]}]
    assert diagnose(_train(_healthy()) + _evals([(3.0, 3.05), (2.5, 2.56)]), samples, {}) == []


def test_diagnose_reports_rollbacks_and_orders_errors_first():
    metrics = _train([5.7, 5.5, 90.0, 5.4] + [5.7] * 30)
    metrics.insert(3, {"kind": "event", "step": 2, "event": "rollback", "message": "lr 10 -> 5"})
    found = diagnose(metrics, [], {})
    assert [f.rule for f in found] == ["not_decreasing", "divergence"]
    assert "rolled back 1 time" in found[1].symptom and "lr 10 -> 5" in found[1].evidence


def test_diagnose_reports_a_run_stopped_after_its_rollbacks():
    metrics = _train([5.7, 5.5, 90.0])
    metrics += [{"kind": "event", "step": 2, "event": "rollback", "message": "lr x0.5"}] * 3
    metrics.append({"kind": "event", "step": 2, "event": "stop", "message": "diverged after 3 rollbacks: loss 90"})
    found = rule_divergence(metrics)
    assert [f.severity for f in found] == ["warning", "error"]
    assert "3 rollback" in found[1].symptom and "loss 90" in found[1].evidence


def test_diagnose_names_the_divergence_not_its_flat_loss():
    found = diagnose(_train([5.7] * 20 + [float("nan")]), [], {})
    assert [f.rule for f in found] == ["divergence"]


def test_diagnose_run_writes_doctor_json(tmp_path):
    lines = [json.dumps(r) for r in _train([float("nan")] * 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    found = diagnose_run(tmp_path)
    saved = json.loads((tmp_path / "doctor.json").read_text())
    assert saved == [f.to_dict() for f in found] and saved[0]["rule"] == "divergence"


def test_diagnose_run_names_missing_or_broken_files(tmp_path):
    with pytest.raises(InputError, match="no metrics.jsonl"):
        diagnose_run(tmp_path)
    with pytest.raises(InputError, match="not found"):
        diagnose_run(tmp_path / "nope")
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train"\n')
    with pytest.raises(InputError, match="line 1"):
        diagnose_run(tmp_path)


def test_doctor_cli_prints_a_table_and_exits_2_on_missing_files(tmp_path, capsys):
    from scratchllm.cli import main

    assert main(["doctor", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    lines = [json.dumps(r) for r in _train([5.7] * 30, lr=1e-7)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["doctor", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not_decreasing" in out and "lr-find" in out and (tmp_path / "doctor.json").is_file()


def _losses(*values: float) -> list[dict]:
    return [{"kind": "train", "step": i + 1, "loss": v} for i, v in enumerate(values)]


def test_is_healthy_on_the_docstring_examples():
    assert is_healthy(_losses(5.7, 5.0, 4.6, 4.5, 4.4, 4.4, 4.3))
    assert not is_healthy(_losses(5.7, 5.0, 4.6, 4.5, 4.4, 4.5, 4.6, 5.4))
    assert is_healthy([])


@given(st.lists(st.floats(0.5, 10.0), min_size=1, max_size=40))
def test_a_falling_loss_is_healthy_and_a_rise_past_the_ratio_is_not(values):
    falling = sorted(values, reverse=True)
    assert is_healthy(_losses(*falling))
    spiked = [*falling, falling[0] * DEFAULT.healthy_ratio * 1.01]  # above 1.15 x any loss before it
    assert not is_healthy(_losses(*spiked))
