"""The chapter "Training": one optimisation step and the LR schedule from the source, this run's loss curves,
evaluations, events, speed and recipe, the memory-saving techniques with what the benchmarks measured of them, and
the CPU speedrun against nanoGPT.
"""

from __future__ import annotations

import math
import re
import statistics

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import (
    bench_pivot,
    dig,
    figure_or_note,
    fmt,
    fmt_seconds,
    listing,
    machine_line,
    source,
    spread,
)
from scratchllm.runfolder import is_finite
from scratchllm.viz import visible

TITLE = "Training"
TECHNIQUES = (  # (name, the train.* setting that turns it on, pattern of its variant in train.json memory.rows)
    ("gradient accumulation", "grad_accum_steps", r"accum"),
    ("activation checkpointing", "grad_checkpointing", r"checkpoint"),
    ("bfloat16", "dtype", r"bf16|bfloat"),
)
NOT_MEASURED = "not measured"


def _loss_section(book: Book, run: RunSummary) -> None:
    figure_or_note(book, run, "loss", "loss", "Training loss per step, train and validation loss at each evaluation, "
                   "and the learning-rate schedule (grey, right axis).")
    if run.evals:
        rows = [[fmt(e.get("step")), fmt(e.get("train_loss")), fmt(e.get("val_loss")), fmt(e.get("val_ppl"), 2),
                 fmt(e.get("val_bpb"), 4)] for e in spread(run.evals, 12)]
        book.table(["step", "train loss", "val loss", "val perplexity", "val bits / byte"], rows,
                   "Evaluations during training (losses in nats per token).")
    else:
        book.note("metrics.jsonl holds no evaluation records, so no validation numbers can be shown.")
    if run.events:
        rows = [[fmt(e.get("step")), str(e.get("event", "")), str(e.get("message", ""))] for e in run.events[:15]]
        book.table(["step", "event", "message"], rows, "Events logged by the trainer.", "prose")


def _schedule(book: Book, run: RunSummary) -> None:
    lrs = [(r["step"], r["lr"]) for r in run.train if is_finite(r.get("lr")) and "step" in r]
    if not lrs:
        return
    peak = max(lr for _, lr in lrs)
    warm = next(s for s, lr in lrs if lr >= 0.99 * peak)
    book.para(f"The learning rate rose to its peak of {peak:.3g} by step {warm:,} (warm-up: large early updates "
              f"on random weights would do harm) and ended at {lrs[-1][1]:.3g}: decaying it lets the weights "
              "settle into a minimum instead of bouncing around it.")


def _speed(book: Book, run: RunSummary) -> None:
    steady = run.train[1:] or run.train
    med = lambda key: statistics.median(v for r in steady if is_finite(v := r.get(key))) if any(  # noqa: E731
        is_finite(r.get(key)) for r in steady) else None
    mem = max((r["mem_mb"] for r in run.train if is_finite(r.get("mem_mb"))), default=run.summary.get("peak_mem_mb"))
    rows = [["tokens per second (median)", fmt(med("tokens_per_s"), 0)],
            ["model FLOPs utilisation, MFU (median)", f"{100 * med('mfu'):.2f}%" if med("mfu") is not None else "–"],
            ["peak memory", f"{mem:,.0f} MB" if is_finite(mem) else "–"],
            ["training FLOPs per token", fmt(run.flops_per_token, 0) if run.flops_per_token else "–"],
            ["wall-clock time", fmt_seconds(run.summary.get("elapsed_s") or (run.train[-1].get("elapsed_s")
                                                                            if run.train else None))]]
    book.table(["measure", "this run"], rows, "Speed and memory of this run.")
    book.para("**MFU** compares the arithmetic the model needs with what the hardware could do: tokens per second "
              "× training FLOPs per token (6 per weight for the forward and backward matrix products, plus the "
              "attention scores), divided by the peak FLOP/s of the device." + _benchmark_mfu(run))


def _benchmark_mfu(run: RunSummary) -> str:
    """A sentence quoting the training benchmark's MFU and the matmul peak it is measured against, or ""."""
    data = run.benchmarks.get("train")
    mfu, peak = dig(data, "speed_shakespeare_char.mfu.ours"), dig(data, "matmul_peak_fp32_flops")
    if not (is_finite(mfu) and is_finite(peak)):
        return ""
    return (f" The training benchmark's character-level baby GPT reaches {100 * mfu:.0f}% of a measured float32 "
            f"matrix-product peak of {peak / 1e9:,.0f} GFLOP/s (benchmarks/results/train.json; "
            f"{machine_line(data)}).")


def _setting(key: str, value) -> str:
    """How this run set a technique, in words: grad_accum_steps 4 -> "4 micro-batches a step"."""
    if value is None:
        return "–"
    if key == "grad_accum_steps":
        return "off" if value == 1 else f"{value} micro-batches"
    if key == "grad_checkpointing":
        return "on" if value else "off"
    return str(value)


def _train_mb(row: dict | None) -> float | None:
    """Memory a measured variant took for training: its peak resident memory above what it held before (MB)."""
    peak, before = (row or {}).get("peak_rss_mb"), (row or {}).get("rss_before_mb")
    return peak - before if is_finite(peak) and is_finite(before) else None


def _effect(value, base, unit: str, relative: str) -> str:
    """A measurement beside the plain step's: "84 MB (−60%)" or "26,974 tok/s (1.05×)"."""
    if not is_finite(value):
        return NOT_MEASURED
    text = f"{value:,.0f} {unit}"
    if is_finite(base) and base > 0:
        change = f"{100 * (value / base - 1):+.0f}%".replace("-", "−") if relative == "%" else f"{value / base:.2f}×"
        text += f" ({change})"
    return text


def technique_rows(run: RunSummary) -> list[list[str]]:
    """One row per memory technique: [technique, this run's setting, training memory, speed, machine measured on],
    after a row for the plain step they are measured against; [] when neither config nor benchmarks say anything."""
    data = run.benchmarks.get("train")
    measured = [r for r in (dig(data, "memory.rows") or []) if isinstance(r, dict)]
    plain = next((r for r in measured if str(r.get("variant")).lower() == "plain"), None)
    config = run.config.get("train") or {}
    if not measured and not any(key in config for _, key, _ in TECHNIQUES):
        return []
    where = machine_line(data, torch=False) or "–"
    rows = []
    if plain:
        rows.append(["plain step (baseline)", "–", _effect(_train_mb(plain), None, "MB", "%"),
                     _effect(plain.get("tokens_per_s"), None, "tok/s", "×"), where])
    for name, key, pattern in TECHNIQUES:
        row = next((r for r in measured if re.search(pattern, str(r.get("variant")), re.I)), None)
        rows.append([name, _setting(key, config.get(key)),
                     _effect(_train_mb(row), _train_mb(plain), "MB", "%"),
                     _effect((row or {}).get("tokens_per_s"), (plain or {}).get("tokens_per_s"), "tok/s", "×"),
                     where if row else "–"])
    return rows


def _techniques(book: Book, run: RunSummary) -> bool:
    """Table: each memory technique, how this run set it, and its measured memory and speed; False if no rows."""
    rows = technique_rows(run)
    if not rows:
        return False
    data = run.benchmarks.get("train")
    shape = [dig(data, f"memory.{k}") for k in ("batch", "block_size", "steps")]
    how = (f", measured on a batch of {shape[0]} × {shape[1]} tokens over {shape[2]} steps"
           if all(isinstance(v, int) for v in shape) else "")
    book.table(["technique", "this run", "training memory", "speed", "measured on"], rows,
               "What this run used and what the benchmarks measured: memory is the peak resident memory above what "
               "the process held before training, speed in tokens per second; brackets compare with the plain step"
               + how + (source("train", data) if data else "."), "prose")
    return True


def _memory(book: Book, run: RunSummary) -> None:
    book.bullets([
        "**Gradient accumulation** runs several small micro-batches and adds their gradients before one optimiser "
        "step: the same update as one big batch, with the activation memory of a small one.",
        "**Activation checkpointing** keeps only each block's input during the forward pass and recomputes the "
        "rest during the backward pass: memory for activations drops to about one block's worth, for roughly "
        "one extra forward pass of compute.",
        "**bfloat16** stores activations (and does matrix products) in 16 bits with float32's exponent range: "
        "half the memory and, on hardware with bf16 units, several times the speed; weights and optimiser "
        "state stay in float32."])
    measured = bench_pivot(book, run, "model", "shapes", [("sdpa_tokens_per_s", "tokens/s", 0), (
        "grad_checkpointing_tokens_per_s", "checkpointed", 0), ("grad_checkpointing_slowdown", "slow-down", 2)],
        "The price of activation checkpointing in training speed")
    if not _techniques(book, run) and not measured:
        book.note("Neither this run's config nor benchmarks/results/ holds measurements of these techniques. "
                  "`make bench` produces them.")


def _speedrun(book: Book, run: RunSummary) -> None:
    if "speedrun" not in run.benchmarks:
        return
    book.section("The CPU speedrun: against nanoGPT at equal time")
    book.para("`scratchllm speedrun --minutes M` trains the best model this machine can in M minutes and scores it "
              "in bits per byte on held-out Shakespeare, beside nanoGPT's character-level baby GPT trained for the "
              "same wall-clock time on the same text. A ratio below 1 means our recipe wins.")
    bench_pivot(book, run, "speedrun", "runs", [("minutes", "minutes", 1), ("baseline.bpb.val", "nanoGPT bits/byte", 3),
                ("ours.bpb.val", "ours bits/byte", 3), ("ratio.val", "ours / nanoGPT", 3),
                ("ours.tokens_per_s", "our tokens/s", 0)], "Validation bits per byte after equal training time")


def _recipe(book: Book, run: RunSummary) -> None:
    """The run's resolved settings (config.json), two per row."""
    items = [(f"{group}.{k}", visible(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else
              str(v) if isinstance(v, int) and not isinstance(v, bool) else fmt(v))
             for group in ("data", "tokenizer", "train") for k, v in (run.config.get(group) or {}).items()
             if not isinstance(v, (dict, list))]
    if not items:
        return
    half = math.ceil(len(items) / 2)
    rows = [[*items[i], *(items[i + half] if i + half < len(items) else ("", ""))] for i in range(half)]
    book.table(["setting", "value", "setting", "value"], rows, "The recipe of this run, as config.json records it.")


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    book.para("Training repeats one step many times: take a batch of token sequences from the corpus, run the "
              "model to get next-token logits at every position, measure the cross-entropy against the tokens "
              "that really follow, backpropagate to get a gradient for every weight, and let the AdamW optimiser "
              "move the weights a little downhill. The size of that move is the **learning rate**, which follows "
              "a schedule: a short warm-up, then a slow decay.")
    _recipe(book, run)
    listing(book, run, "train_step", "one optimisation step")
    listing(book, run, "lr_at", "the learning-rate schedule")
    book.section("Loss curves and the learning rate")
    if not run.train:
        book.note("metrics.jsonl is missing or holds no training records: there are no curves to show.")
    _loss_section(book, run)
    _schedule(book, run)
    book.section("Tokens per second and MFU")
    if run.train:
        _speed(book, run)
    book.section("Saving memory: accumulation, checkpointing, bfloat16")
    _memory(book, run)
    _speedrun(book, run)
