"""The run doctor: name what went wrong in a training run, with the run's own numbers as evidence.

Each rule reads plain records (the dicts of metrics.jsonl / samples.jsonl, the resolved config.json) and returns
`Finding`s: symptom, evidence, likely cause and fix. `check_step` is the cheap live rule the trainer calls after each
logged step (divergence only); `diagnose` runs every rule on a finished run; `diagnose_run` reads a run folder and
writes doctor.json. This module owns the pretraining rules; `Finding` and the thresholds live in doctor_rules.py,
the finetuning rules (on a finetune's qa_eval.json) in doctor_finetune.py. It does not train, plot or roll back:
train.py acts on a divergence finding.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scratchllm.config import InputError, write_json
from scratchllm.doctor_finetune import diagnose_finetune
from scratchllm.doctor_rules import DEFAULT, Finding, Thresholds, no_target
from scratchllm.runfolder import is_finite, read_jsonl, read_qa_eval


def _train(records: list[dict]) -> list[dict]:
    """The train records that measured a loss (a step with no target measured none: its 0 is no best loss)."""
    return [r for r in records if r.get("kind", "train") == "train" and not no_target(r)]


def _divergence(symptom: str, evidence: str) -> Finding:
    return Finding(
        rule="divergence",
        severity="error",
        symptom=symptom,
        evidence=evidence,
        cause="the learning rate is too high for this model and batch (or gradients are not clipped)",
        fix="lower the LR (e.g. halve train.lr) and clip gradients (grad clip 1.0); "
        "run `scratchllm lr-find` to pick an LR",
    )


def _nonfinite(rec: dict) -> Finding | None:
    for key in ("loss", "grad_norm"):
        value = rec.get(key)
        if value is not None and not is_finite(value):
            evidence = f"{key}={value} at step {rec.get('step')}"
            return _divergence(f"{key} became {value} (not a finite number)", evidence)
    return None


def _exploding_loss(rec: dict, best: tuple[float, int] | None, th: Thresholds) -> Finding | None:
    loss = rec.get("loss")
    if best is None or not is_finite(loss):
        return None
    low, low_step = best
    if loss > low * th.explode_ratio and loss - low > th.explode_margin:
        evidence = (f"loss {loss:.3g} at step {rec.get('step')} vs best {low:.3g} at step {low_step} "
                    f"({loss / low:.1f}x; threshold {th.explode_ratio}x and +{th.explode_margin} nats)")
        return _divergence("the loss exploded", evidence)
    return None


def _sustained_loss(rec: dict, prev: list[dict], best: tuple[float, int] | None, th: Thresholds) -> Finding | None:
    """`best` is the best loss before the window, so a loss that just fell does not count against itself."""
    window = [r["loss"] for r in [*prev[-(th.sustained_window - 1):], rec] if is_finite(r.get("loss"))]
    if best is None or len(window) < th.sustained_window:
        return None
    low, low_step = best
    typical = _median(window)
    if typical > low * th.sustained_ratio and typical - low > th.explode_margin:
        evidence = (f"median loss {typical:.3g} over the {len(window)} logged steps up to step {rec.get('step')} vs "
                    f"best {low:.3g} at step {low_step} ({typical / low:.1f}x; threshold {th.sustained_ratio}x)")
        return _divergence("the loss has stayed far above its best", evidence)
    return None


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _exploding_grad(rec: dict, prev: list[dict], th: Thresholds) -> Finding | None:
    norms = [r["grad_norm"] for r in prev[-th.grad_window:] if is_finite(r.get("grad_norm"))]
    norm = rec.get("grad_norm")
    if len(norms) < max(2, th.grad_window // 2) or not is_finite(norm):
        return None
    typical = _median(norms)
    if typical > 0 and norm > th.grad_ratio * typical:
        evidence = (f"grad norm {norm:.3g} at step {rec.get('step')} vs median {typical:.3g} of the previous "
                    f"{len(norms)} steps ({norm / typical:.0f}x; threshold {th.grad_ratio:.0f}x)")
        return _divergence("the gradient norm exploded", evidence)
    return None


def _best(train: list[dict]) -> tuple[float, int] | None:
    losses = [(r["loss"], r.get("step")) for r in train if is_finite(r.get("loss"))]
    return min(losses, key=lambda x: x[0]) if losses else None


def _judge(rec: dict, prev: list[dict], best: tuple[float, int] | None, best_before: tuple[float, int] | None,
           th: Thresholds) -> Finding | None:
    """`best`: the best loss before `rec`; `best_before`: the best before the sustained window."""
    return (_nonfinite(rec) or _exploding_loss(rec, best, th) or _sustained_loss(rec, prev, best_before, th)
            or _exploding_grad(rec, prev, th))


def check_step(history: list[dict], th: Thresholds = DEFAULT) -> Finding | None:
    """Live divergence check: judge the last train record against those before it.

    Returns a Finding with rule "divergence" for a non-finite loss or grad norm, a loss far above its best so far
    (`explode_ratio` times and `explode_margin` nats), the median of the last few losses well above it
    (`sustained_ratio`), or a grad norm far above its recent median (`grad_ratio`); None otherwise.
    Example: losses [5.7, 5.2, 4.9, 31.0] -> divergence (31.0 > 3 x 4.9 and > 4.9 + 2).
    """
    train = _train(history)
    if not train:
        return None
    return _judge(train[-1], train[:-1], _best(train[:-1]), _best(train[:-th.sustained_window]), th)


def is_healthy(history: list[dict], th: Thresholds = DEFAULT) -> bool:
    """Whether the run is healthy now: the live check was clean at each of the last `sustained_window` logged
    steps, and each of their losses is within `healthy_ratio` of the best loss before them (of the first loss,
    when nothing came before). A run with nothing logged yet is healthy (its initial weights are). Example:
    losses [5.7, 5.0, 4.6, 4.5, 4.4, 4.4, 4.3] -> True;
    [5.7, 5.0, 4.6, 4.5, 4.4, 4.5, 4.6, 5.4] -> False (5.4 > 1.15 x 4.6, the best before the last five).
    """
    train = _train(history)
    window = train[-th.sustained_window:]
    if any(check_step(train[:len(train) - i], th) for i in range(len(window))):
        return False
    if not all(is_finite(r.get("loss")) for r in window):
        return False
    if not window:
        return True
    before = _best(train[:-th.sustained_window]) or (window[0]["loss"], window[0].get("step"))
    return max(r["loss"] for r in window) <= th.healthy_ratio * before[0]


def _first_divergence(train: list[dict], th: Thresholds) -> Finding | None:
    """Replay the live check over a whole history in one pass (prefix minima of the loss)."""
    best: list[tuple[float, int] | None] = [None]  # best[i]: the best loss among train[:i]
    for rec in train:
        loss, low = rec.get("loss"), best[-1]
        best.append((loss, rec.get("step")) if is_finite(loss) and (low is None or loss < low[0]) else low)
    for i, rec in enumerate(train):
        window_start = max(0, i + 1 - th.sustained_window)
        finding = _judge(rec, train[max(0, i - th.grad_window):i], best[i], best[window_start], th)
        if finding:
            return finding
    return None


def _events(metrics: list[dict], name: str) -> list[dict]:
    return [r for r in metrics if r.get("kind") == "event" and r.get("event") == name]


def _rollbacks(events: list[dict]) -> Finding:
    steps = ", ".join(str(e.get("step")) for e in events)
    return Finding(
        rule="divergence",
        severity="warning",
        symptom=f"training diverged and was rolled back {len(events)} time(s), halving the LR each time",
        evidence=f"rollback at step(s) {steps}; last: {events[-1].get('message', '')}",
        cause="the learning rate was too high for this model and batch",
        fix="start the next run at the LR training ended on (or lower) and keep gradient clipping on",
    )


def rule_divergence(metrics: list[dict], th: Thresholds = DEFAULT) -> list[Finding]:
    """Rollbacks are reported as a warning; a divergence nobody recovered from (no rollback, a "stop" event after
    the last allowed rollback, or a run still diverged at its end) as an error."""
    train, rollbacks = _train(metrics), _events(metrics, "rollback")
    if not rollbacks:
        first = _first_divergence(train, th)
        return [first] if first else []
    found = [_rollbacks(rollbacks)]
    stops = [e for e in _events(metrics, "stop") if "diverg" in e.get("message", "")]
    if stops:
        return found + [_divergence(f"training stopped: it kept diverging after {len(rollbacks)} rollback(s)",
                                    stops[-1].get("message", ""))]
    last = check_step(train, th) if train else None
    return found + ([last] if last else [])


def _lr_cause(start: float, end: float, peak_lr: float | None, th: Thresholds) -> str:
    if peak_lr is not None and peak_lr < th.low_lr:
        return f"the learning rate is likely too low: peak LR {peak_lr:.2g} barely moves the weights"
    if end > start * (1 + th.plateau_rel_drop):
        return "the learning rate is likely too high: the loss went up instead of down"
    return "the learning rate is too low (updates too small) or too high (updates bounce around the minimum)"


def rule_not_decreasing(metrics: list[dict], th: Thresholds = DEFAULT) -> list[Finding]:
    """The median loss of the last fifth of training against the first fifth (medians, so that a spike rolled back
    does not count as progress); fires below `plateau_rel_drop`."""
    losses = [r["loss"] for r in _train(metrics) if is_finite(r.get("loss"))]
    if len(losses) < th.plateau_min_records:
        return []
    k = max(3, len(losses) // 5)
    start, end = _median(losses[:k]), _median(losses[-k:])
    drop = (start - end) / abs(start) if start else 0.0
    if drop >= th.plateau_rel_drop:
        return []
    lrs = [r["lr"] for r in _train(metrics) if is_finite(r.get("lr"))]
    peak_lr = max(lrs) if lrs else None
    return [Finding(
        rule="not_decreasing",
        severity="error",
        symptom="the loss is not decreasing",
        evidence=(f"median loss {start:.4g} over the first {k} logged steps, {end:.4g} over the last {k} "
                  f"({drop:+.2%} drop; threshold {th.plateau_rel_drop:.0%}); peak LR {peak_lr:.3g}"
                  if peak_lr is not None else f"median loss {start:.4g} -> {end:.4g} ({drop:+.2%} drop)"),
        cause=_lr_cause(start, end, peak_lr, th),
        fix="run `scratchllm lr-find` with the same config and use its suggested LR, "
        "or sweep the LR by factors of 10 (e.g. 1e-4, 1e-3, 1e-2)",
    )]


_WORD = re.compile(r"\w+|[^\w\s]")


def repetition(text: str, n: int = 4) -> tuple[float, float, int]:
    """(share of repeated word n-grams, distinct-word ratio, number of words) of a text.

    Example: "a b a b a b" -> words 6, 4-grams (a b a b), (b a b a), (a b a b): 1 of 3 repeated -> (0.33, 0.33, 6).
    """
    words = _WORD.findall(text)
    if len(words) < n:
        return 0.0, 1.0, len(words)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams), len(set(words)) / len(words), len(words)


def _repetition_fix(n_embd: int | None, th: Thresholds) -> str:
    if n_embd is not None and n_embd <= th.small_n_embd:
        return (f"widen the model: model.n_embd {n_embd} -> {max(384, 3 * n_embd)} (keep n_embd divisible by "
                "n_head), and train longer; sampling with temperature 0.8-1.0 and top_k helps a little")
    return "train longer or on more data; sample with temperature 0.8-1.0 and top_k/top_p rather than greedily"


def char_repetition(text: str, n: int = 8) -> float:
    """Share of repeated character n-grams: catches loops without spaces ("HELHELHEL...", "....").

    Example: "abcabcabc" with n=3 -> 7 trigrams, 3 distinct -> 4/7 = 0.57 repeated.
    """
    if len(text) < n:
        return 0.0
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams)


def sample_loops(text: str, th: Thresholds = DEFAULT) -> str | None:
    """Why a sample counts as looping (None if it does not): by words when it has enough, else by characters."""
    rep, distinct, n_words = repetition(text)
    if n_words >= th.repeat_min_words:
        if rep > th.repeat_4gram or distinct < th.distinct_words:
            return f"{rep:.0%} of word 4-grams repeated, {distinct:.0%} distinct words"
        return None
    chars = char_repetition(text)
    if len(text) >= th.repeat_min_chars and chars > th.repeat_8chars:
        return f"{chars:.0%} of character 8-grams repeated ({n_words} words in {len(text)} characters)"
    return None


def rule_repetition(samples: list[dict], config: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """Fires when at least half of the last step's samples loop (see `sample_loops`)."""
    if not samples:
        return []
    last = max(s.get("step", 0) for s in samples)
    texts = [s.get("text", "") for s in samples if s.get("step", 0) == last]
    reasons = [r for r in (sample_loops(t, th) for t in texts) if r]
    if not reasons or len(reasons) * 2 < len(texts):
        return []
    n_embd = config.get("model", {}).get("n_embd")
    return [Finding(
        rule="repetition",
        severity="warning",
        symptom="the samples repeat themselves (gibberish loops)",
        evidence=(f"{len(reasons)} of {len(texts)} samples at step {last} loop; first: {reasons[0]} (thresholds: "
                  f"{th.repeat_4gram:.0%} repeated word 4-grams, {th.distinct_words:.0%} distinct words, "
                  f"{th.repeat_8chars:.0%} repeated character 8-grams)" + (f"; n_embd={n_embd}" if n_embd else "")),
        cause="the model is too small or undertrained to hold longer-range context, so it falls into loops",
        fix=_repetition_fix(n_embd, th),
    )]


def rule_overfitting(metrics: list[dict], th: Thresholds = DEFAULT) -> list[Finding]:
    """The val - train loss gap at the last eval against its smallest value over the run, once val has risen."""
    evals = [r for r in metrics if r.get("kind") == "eval" and is_finite(r.get("val_loss"))
             and is_finite(r.get("train_loss"))]
    if len(evals) < 2:
        return []
    gaps = [r["val_loss"] - r["train_loss"] for r in evals]
    low = min(range(len(gaps)), key=gaps.__getitem__)
    best_val = min(evals, key=lambda r: r["val_loss"])
    if gaps[-1] <= th.overfit_gap or gaps[-1] - gaps[low] < th.overfit_growth:
        return []
    if evals[-1]["val_loss"] - best_val["val_loss"] < th.overfit_rise:
        return []
    return [Finding(
        rule="overfitting",
        severity="warning",
        symptom="the model is memorising the training text: val loss pulls away from train loss",
        evidence=(f"val - train gap {gaps[low]:.3f} nats at step {evals[low].get('step')} -> {gaps[-1]:.3f} at step "
                  f"{evals[-1].get('step')} (threshold {th.overfit_gap}); best val loss {best_val['val_loss']:.3f} "
                  f"at step {best_val.get('step')}, last {evals[-1]['val_loss']:.3f}"),
        cause="too many passes over too little data for this model size",
        fix="add dropout (model.dropout=0.1-0.2), use more data, a smaller model, or stop at the best-val step",
    )]


def _goal(config: dict) -> tuple[int | None, float | None]:
    """(planned steps, time budget in seconds) from the resolved config's train.max_steps / train.max_minutes."""
    train = config.get("train", {})
    minutes = train.get("max_minutes")
    return train.get("max_steps") or None, minutes * 60 if minutes else None


_SPEED_FIX = ("use bf16 autocast (fast on GPUs and on CPUs with AMX; on small CPU models it can be slower), "
              "torch.compile for models wider than ~256, a larger batch per step, and DistributedDataParallel "
              "(`scratchllm train --nproc N`) on several GPUs; or shrink the goal (fewer steps, a smaller model)")


def _eta(last: dict, planned: int) -> float | None:
    step, elapsed = last.get("step"), last.get("elapsed_s")
    if not (is_finite(step) and is_finite(elapsed)) or step <= 0:
        return None
    return (planned - step) * elapsed / step


def rule_too_slow(metrics: list[dict], config: dict, th: Thresholds = DEFAULT) -> list[Finding]:
    """Fires when the planned steps cannot fit the time budget at the measured speed (warning: elapsed + ETA over
    the budget), or when the model FLOPs utilisation is far below what this hardware reaches (info)."""
    train = [r for r in _train(metrics) if is_finite(r.get("elapsed_s"))]
    if len(train) < 2:
        return []
    last, (planned, budget) = train[-1], _goal(config)
    speed = f"{last.get('tokens_per_s', float('nan')):,.0f} tokens/s at step {last.get('step')}"
    eta = _eta(last, planned) if planned else None
    total = last["elapsed_s"] + eta if eta is not None else None
    if total is not None and budget and budget * 1.05 < total < budget * th.step_goal_ratio:
        return [Finding(
            rule="too_slow", severity="warning", symptom="training is too slow to reach its planned steps in time",
            evidence=f"{speed}; {planned} steps need ~{total / 60:.1f} min, the budget is {budget / 60:.1f} min",
            cause="the model, batch or context is too large for this hardware at its current speed",
            fix=_SPEED_FIX)]
    mfu = last.get("mfu")
    if is_finite(mfu) and 0 < mfu < th.slow_mfu:
        return [Finding(
            rule="too_slow", severity="info", symptom="the hardware is mostly idle during training",
            evidence=f"{speed}; model FLOPs utilisation {mfu:.1%} (threshold {th.slow_mfu:.0%})",
            cause="small matrices, Python overhead or data loading dominate each step", fix=_SPEED_FIX)]
    return []


def diagnose(metrics: list[dict], samples: list[dict], config: dict, th: Thresholds = DEFAULT,
             qa_eval: dict | None = None) -> list[Finding]:
    """Run every rule on a run's records (the finetuning rules too, given a finetune's qa_eval.json); errors
    first, then warnings, then info. Pure: reads nothing. A divergence the run never recovered from hides the
    not-decreasing finding it causes."""
    diverged = rule_divergence(metrics, th)
    unrecovered = any(f.severity == "error" for f in diverged)  # then a flat or rising loss is its consequence
    found = (diverged + ([] if unrecovered else rule_not_decreasing(metrics, th)) + rule_overfitting(metrics, th)
             + rule_repetition(samples, config, th) + rule_too_slow(metrics, config, th)
             + (diagnose_finetune(metrics, qa_eval, th) if qa_eval is not None else []))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(found, key=lambda f: order.get(f.severity, 3))


def read_run(run_dir) -> tuple[list[dict], list[dict], dict]:
    """(metrics, samples, config) of a run folder; a missing metrics.jsonl is an InputError naming it."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder not found: {run}")
    if not (run / "metrics.jsonl").is_file():
        raise InputError(f"{run} has no metrics.jsonl: is it a run folder written by `scratchllm train`?")
    samples = read_jsonl(run / "samples.jsonl") if (run / "samples.jsonl").is_file() else []
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    return read_jsonl(run / "metrics.jsonl"), samples, config


def diagnose_run(run_dir, th: Thresholds = DEFAULT) -> list[Finding]:
    """Diagnose a run folder and write its findings to RUN/doctor.json (atomically)."""
    findings = diagnose(*read_run(run_dir), th, qa_eval=read_qa_eval(run_dir))
    write_json(Path(run_dir) / "doctor.json", [f.to_dict() for f in findings])
    return findings
