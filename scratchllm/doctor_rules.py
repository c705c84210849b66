"""The doctor's shared vocabulary: what a finding is, and where each rule fires.

`Finding` (symptom, evidence, cause, fix) is what every rule returns and doctor.json stores; `Thresholds` holds each
rule's measured trigger values, pretraining and finetuning alike, so a test or a caller can move them in one place.
Kept apart so the pretraining rules (doctor.py) and the finetuning rules (doctor_finetune.py) share one definition
without importing each other. No rule lives here, and nothing here reads a run folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Finding:
    """One diagnosed problem in a run."""

    rule: str
    """Which rule fired: divergence, not_decreasing, repetition, too_slow, overfitting; for a finetune also
    never_ends, template_leak, all_masked, truncated, forgetting."""
    severity: str
    """"error" (the run is broken), "warning" (it works, badly) or "info" (worth knowing)."""
    symptom: str
    """What the user sees, in one sentence."""
    evidence: str
    """The numbers from this run that show it."""
    cause: str
    """The likely cause."""
    fix: str
    """What to change, as concrete settings where possible."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """Where each rule fires; the values were measured on tiny real runs (see tests/test_doctor_runs.py; the
    finetuning ones in benchmarks/SPEEDRUN.md, "Finetuning: measurements")."""

    explode_ratio: float = 3.0
    """Divergence: loss above this multiple of the best loss so far. Measured on a 2-layer, 64-wide GPT (BPE 300,
    AdamW, clip 1.0, 150 steps, 16 runs): runs at LR 1e-4..1e-1 that recover peak at 2.2x, LR 1 reaches 3.4-3.9x,
    LR 10 reaches 46-65x."""
    explode_margin: float = 2.0
    """Divergence: and at least this many nats above the best loss so far (so a tiny late loss may still wobble)."""
    sustained_ratio: float = 1.7
    """Divergence: median of the last `sustained_window` logged losses above this multiple of the best before them.
    Same 36 runs: LR 1e-4..1e-1 stay within 1.23x, LR 0.3 (still learning) 1.24-1.41x, LR 1 2.0-3.3x, LR 10 27-33x."""
    sustained_window: int = 5
    """Divergence: how many logged losses the sustained rule takes the median of."""
    grad_ratio: float = 1000.0
    """Divergence: grad norm above this multiple of the median of the previous `grad_window` grad norms. Healthy
    runs above spike to 320x and recover, LR 10 only reaches 33-310x before its loss explodes: a spike alone is
    weak evidence, so this fires only far beyond anything measured in a healthy run."""
    healthy_ratio: float = 1.15
    """Healthy (a checkpoint safe to roll back to): each of the last `sustained_window` logged losses at most this
    multiple of the best loss before them, and the live check clean at each of them. A loss on its way up to a
    divergence passes 1.15x before the live check fires at 1.7x-3x (LR 30 on the tiny preset: 5.05 -> 6.13, 1.21x,
    then 12.4); a healthy run's step-to-step noise stays under it."""
    grad_window: int = 10
    """Divergence: how many previous records the grad-norm median looks at (needs at least half of them)."""
    plateau_min_records: int = 10
    """Not decreasing: how many train records are needed before judging."""
    plateau_rel_drop: float = 0.02
    """Not decreasing: median loss of the last fifth fell by less than this fraction of the first fifth's. Measured
    over 40 steps of the same tiny GPT (2 seeds): LR 1e-7..1e-5 drop 0.0-0.5%, LR 1e-4 5%, LR 1e-3 22%."""
    low_lr: float = 1e-4
    """Not decreasing: a flat run whose peak LR is below this is blamed on a too-low LR (LR 1e-4 already learns)."""
    repeat_4gram: float = 0.35
    """Repetition: share of repeated word 4-grams above this (real Shakespeare, 2,000 chunks of 200-800 characters:
    median 0, 99th percentile 0.08, max 0.31)."""
    distinct_words: float = 0.25
    """Repetition: or distinct-word ratio below this (same chunks: min 0.30, median 0.44-0.78)."""
    repeat_min_words: int = 20
    """Repetition: samples with fewer words are judged by characters instead."""
    repeat_8chars: float = 0.6
    """Repetition: share of repeated character 8-grams above this (real Shakespeare chunks: 99th percentile 0.17,
    max 0.50; greedy loops of tiny models such as "HELHELHEL..." or "....": 0.95-0.99)."""
    repeat_min_chars: int = 40
    """Repetition: shorter samples are not judged at all."""
    small_n_embd: int = 256
    """Repetition: models this wide or narrower are 'small' and get the widen-the-model advice."""
    overfit_gap: float = 0.15
    """Overfitting: val - train loss gap (nats) at the last eval above this... Measured on the same tiny GPT, 300
    steps of 512 tokens: 200 KB of text keeps the gap within +-0.03; 40 KB (~10 epochs) ends at 0.23; 3 KB
    grows it to 3.8."""
    overfit_growth: float = 0.1
    """Overfitting: ...and grown by at least this much since its smallest value."""
    overfit_rise: float = 0.02
    """Overfitting: ...and the last val loss above the run's best by at least this (nats). While val still falls,
    a wide gap is the distance between train and held-out text (make demo's held-out plays: gap 0.47, val at its
    best), not memorisation."""
    step_goal_ratio: float = 50.0
    """Too slow: a step goal needing more than this multiple of the time budget is a placeholder, not a goal (the
    quickstart sets max_steps 1,000,000 and lets the clock end the run); between 1.05x and this, it warns."""
    slow_mfu: float = 0.05
    """Too slow: model FLOPs utilisation below this (nanoGPT's CPU baby GPT reaches ~0.4 of fp32 peak)."""
    end_rate: float = 0.9
    """Never ends (finetune): share of held-out answers closed by <|end|> below this. A finetune that learned the
    template ends nearly all of its short answers and one that did not ends almost none, so 0.9 only leaves room
    for a few rambling ones."""
    leak_rate: float = 0.0
    """Template leakage (finetune): share of held-out answers cut short by a turn token the model wrote itself
    above this. Trained answers close only with <|end|>, so a single leak is learned from the data, not noise."""
    truncated_share: float = 0.05
    """Truncated answers (finetune): share of training conversations dropped (the answer alone exceeds the
    context) or cut (the front of the question lost) above this. A cut question is unanswerable in training, so
    the share comes straight off the accuracy a finetune can reach: more than 5 points is worth fixing."""
    forget_rise: float = 0.05
    """Forgetting (finetune): the finetuned model's bits/byte on the base corpus's held-out text above the base
    model's by more than this fraction. Light finetunes stay within about 1% and damaging ones rise by tens of
    percent, so 5% separates them with room on both sides."""

DEFAULT = Thresholds()


def no_target(record: dict) -> bool:
    """A step whose batch had no trained target (a finetune batch of masked conversations): GPT's loss is then
    exactly 0 and so is every gradient, while a real target always costs some loss (a saturated one can round to
    0, its gradient still does not)."""
    return record.get("loss") == 0 and record.get("grad_norm") == 0
