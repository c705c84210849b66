"""The main job behind `make demo`: corpus -> tokenizer -> model -> finetune -> answers -> figures -> diagnosis -> PDF.

This module only orchestrates: every step is a public function of a lower layer (train, viz, doctor, report),
so a reader can follow the pipeline here in one screen. Training never calls the later steps; they read the
run folder it leaves behind.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scratchllm.config import RECIPE_MODES, InputError, RunConfig, load_preset
from scratchllm.data import load_corpus
from scratchllm.doctor import diagnose_run
from scratchllm.finetune import BUILTIN, FROM_CORPUS, finetune
from scratchllm.recipe import apply_recipe
from scratchllm.report import build_report
from scratchllm.runfolder import CHAT, SAMPLES, read_jsonl_lenient
from scratchllm.tokenizer.compare import compare_tokenizers, write_comparison
from scratchllm.train import train
from scratchllm.viz import render_all

DEFAULT_PRESET = "speedrun-5min"
# Seconds kept back from the budget for what follows training: comparison, figures, diagnosis, PDF.
AFTER_TRAINING_S = 75.0
# The share of the training budget spent teaching the model to answer (run_dir/chat), and the questions scored.
FINETUNE_SHARE = 0.2
FINETUNE_QUESTIONS = 60
# The tokenizer comparison trains five tokenizers; a 1 MB sample keeps it to seconds on any corpus.
COMPARISON_BYTES = 1_000_000


def _say(message: str) -> None:
    print(f"[quickstart] {message}", file=sys.stderr, flush=True)


def quickstart_config(corpus: str = "shakespeare", minutes: float = 8.0, preset: str = DEFAULT_PRESET,
                      recipe: str | None = None) -> RunConfig:
    """The preset's recipe, pointed at `corpus`, with training fitted to `minutes` of wall clock in all; `recipe`
    ("auto" or "fixed") replaces the preset's recipe.mode. The auto recipe is applied by `quickstart`, since it
    measures the machine."""
    if recipe is not None and recipe not in RECIPE_MODES:
        raise InputError(f"recipe must be one of {', '.join(RECIPE_MODES)}; got {recipe!r}")
    cfg = load_preset(preset)
    cfg.recipe.mode = recipe or cfg.recipe.mode
    cfg.data.corpus = corpus
    cfg.train.max_minutes = max(0.1, (minutes - AFTER_TRAINING_S / 60) * (1 - FINETUNE_SHARE))
    cfg.train.max_steps = 0  # no step limit: the wall-clock budget ends the run
    return cfg


def _compare(text: str, vocab_size: int, run_dir: Path) -> None:
    sample = text[:COMPARISON_BYTES]
    write_comparison(compare_tokenizers(sample, vocab_size, progress=True), run_dir)


def _final_samples(run_dir: Path) -> list[dict]:
    rows = [r for r in read_jsonl_lenient(run_dir / SAMPLES)[0] if isinstance(r.get("step"), int)]
    last = max((r["step"] for r in rows), default=None)
    return [r for r in rows if r["step"] == last]


def _answer(run_dir: Path, corpus: str, minutes: float) -> None:
    """The finetuning stage: the model taught to answer questions about its corpus, then a few of its answers."""
    data = BUILTIN if corpus == "shakespeare" else f"{FROM_CORPUS}{corpus}"
    _say(f"finetuning on {data} for {minutes:.1f} min -> {run_dir / CHAT}")
    report = finetune(run_dir, data, run_dir / CHAT, minutes, eval_questions=FINETUNE_QUESTIONS)["qa_eval"]
    acc = report["accuracy"]
    _say(f"held-out answers: finetuned {acc['finetuned']:.0%}, base {acc['base']:.0%}, majority "
         f"{acc['majority']:.0%} of {report['questions']} questions")
    for example in report["examples"][:6]:
        print(f"Q: {example['question']}\nA: {example['finetuned']}   (expected: {example['gold']})\n")


def quickstart(corpus: str = "shakespeare", minutes: float = 8.0, out_dir: str | Path = "runs/quickstart",
               preset: str = DEFAULT_PRESET, recipe: str | None = None) -> Path:
    """Run the whole pipeline into `out_dir` and return the path of the PDF guide. By default the budget-aware
    recipe first measures this machine and sets the preset's shape, weight decay and warm-down for the budget
    (recipe="fixed" trains the preset as it is)."""
    started = time.monotonic()
    run_dir = Path(out_dir)
    text = load_corpus(corpus).text  # a missing corpus fails here, before anything is written
    cfg = quickstart_config(corpus, minutes, preset, recipe)
    if cfg.recipe.mode == "auto":
        _say("measuring this machine's training speed to choose the recipe")
        cfg = apply_recipe(cfg)
        chosen = cfg.recipe.why["chosen"]
        _say(f"recipe: {chosen['shape']}, weight decay {cfg.train.weight_decay:g} ({chosen['steps']} steps, "
             f"{chosen['passes']:.1f} passes predicted)")
    _say(f"training {preset} on {corpus} for up to {cfg.train.max_minutes:.1f} min -> {run_dir}")
    summary = train(cfg, run_dir)
    _say(f"val {summary['final_val_bpb']:.3f} bits/byte after {summary['steps']} steps")
    for sample in _final_samples(run_dir):
        print(f"--- sample (prompt {sample['prompt']!r}) ---\n{sample['prompt']}{sample['text']}\n")
    _answer(run_dir, corpus, (minutes - AFTER_TRAINING_S / 60) * FINETUNE_SHARE)
    _say("comparing tokenizers on a sample of the corpus")
    _compare(text, cfg.tokenizer.vocab_size, run_dir)
    notes: list[str] = []
    figures = render_all(run_dir, notes)
    _say(f"{len(figures)} figure files in {run_dir / 'figures'}" + "".join(f"\n  skipped: {n}" for n in notes))
    for folder in (run_dir, run_dir / CHAT):
        findings = diagnose_run(folder)
        _say(f"doctor ({folder}): {len(findings)} finding(s)"
             + "".join(f"\n  {f.severity}: {f.symptom}" for f in findings))
    pdf = build_report(run_dir)
    _say(f"guide written to {pdf} ({time.monotonic() - started:.0f} s in all)")
    return pdf
