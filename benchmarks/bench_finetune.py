"""The loss-mask A/B of finetuning (issue 18): train on the replies only (--mask assistant) or on every token
(--mask all)? The peers disagree (LLMs-from-scratch exercise 7.2 found the mask slightly worse, nanochat PR #582 found
it better), so this measures it for our model: one base run, then one finetune per mask on shakespeare-qa at equal
wall clock, scored on the same held-out questions (exact match with 95% Wilson intervals, per question type, and the
share of answers closed by <|end|>). The winner is the higher overall accuracy; `separated` says whether the two
intervals are disjoint, i.e. whether the result is strong enough to choose the default by.

Run (about 3 + 2 x 2 minutes of training plus scoring, best on an idle machine):
  nice -n 5 .venv/bin/python benchmarks/bench_finetune.py [--base-minutes 3 | --base RUN] [--minutes 2]
Writes benchmarks/results/finetune.json, with the machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from scratchllm.config import load_config, write_json
from scratchllm.finetune import BUILTIN, finetune
from scratchllm.metrics import hardware_info
from scratchllm.runfolder import SUMMARY, read_json
from scratchllm.train import train

RESULTS = Path(__file__).resolve().parent / "results" / "finetune.json"
BASE_PRESET = "speedrun-5min"
MASKS = ("assistant", "all")


def base_run(minutes: float, runs: Path) -> tuple[Path, dict]:
    """A base model of the speedrun-5min recipe trained for `minutes` (the issue's ~3 CPU-minute base)."""
    cfg = load_config(BASE_PRESET, [f"train.max_minutes={minutes}", "train.max_steps=0"])
    return runs / "base", train(cfg, runs / "base", progress=False)


def masked_finetune(base: Path, mask: str, minutes: float, questions: int, runs: Path) -> dict:
    """One finetune of `base` with `mask`: its steps and time, and its qa_eval rows."""
    started = time.perf_counter()
    result = finetune(base, BUILTIN, runs / f"mask-{mask}", minutes, mask=mask, eval_questions=questions,
                      progress=False)
    summary, qa = result["summary"], result["qa_eval"]
    return {"steps": summary["steps"], "tokens": summary["tokens"], "train_s": summary["train_s"],
            "wall_s": time.perf_counter() - started, "questions": qa["questions"], "accuracy": qa["accuracy"],
            "by_type": qa["by_type"], "end_rate": qa.get("end_rate"), "leak_rate": qa.get("leak_rate"),
            "examples": qa["examples"]}


def verdict(rows: dict) -> dict:
    """Which mask scored higher on all held-out questions, and whether their 95% intervals are disjoint."""
    overall = {mask: row["by_type"]["finetuned"]["all"] for mask, row in rows.items()}
    (win, best), (_, other) = sorted(overall.items(), key=lambda kv: -kv[1]["accuracy"])
    if best["accuracy"] == other["accuracy"]:
        return {"winner": "tie", "separated": False, "margin": 0.0}
    return {"winner": win, "separated": best["interval"][0] > other["interval"][1],
            "margin": best["accuracy"] - other["accuracy"]}


def run(args: argparse.Namespace, runs: Path) -> dict:
    """Base run (trained or given), both finetunes, and the result: the machine's load average is kept, since a
    shared machine cuts both budgets' steps."""
    machine = {**hardware_info(), "cores": os.cpu_count(), "load_avg_1min_at_start": os.getloadavg()[0]}
    if args.base:
        base, summary = Path(args.base), read_json(Path(args.base) / SUMMARY) or {}
    else:
        base, summary = base_run(args.base_minutes, runs)
    rows = {}
    for mask in MASKS:
        print(f"finetuning {base} with --mask {mask} for {args.minutes} min", flush=True)
        rows[mask] = masked_finetune(base, mask, args.minutes, args.questions, runs)
        acc = rows[mask]["accuracy"]
        print(f"  {rows[mask]['steps']} steps; held-out accuracy {acc['finetuned']:.1%} (base {acc['base']:.1%}, "
              f"majority {acc['majority']:.1%}); end rate {rows[mask]['end_rate']:.0%}", flush=True)
    return {"machine": machine, "data": BUILTIN, "finetune_minutes": args.minutes,
            "base": {"run": str(base), "preset": None if args.base else BASE_PRESET,
                     "minutes": None if args.base else args.base_minutes, "steps": summary.get("steps"),
                     "final_val_bpb": summary.get("final_val_bpb")},
            "masks": rows, **verdict(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="an existing base run folder (default: train one with the speedrun-5min "
                                       "recipe for --base-minutes)")
    parser.add_argument("--base-minutes", type=float, default=3.0, help="training minutes of the base run (3)")
    parser.add_argument("--minutes", type=float, default=2.0, help="training minutes of each finetune (2)")
    parser.add_argument("--questions", type=int, default=200, help="held-out questions scored per finetune (200)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (all cores)")
    parser.add_argument("--runs", help="keep the run folders here (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file ({RESULTS.name})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.runs:
        result = run(args, Path(args.runs))
    else:
        with tempfile.TemporaryDirectory(prefix="bench_finetune_") as runs:
            result = run(args, Path(runs))
    write_json(args.out, result)  # temp file + rename: a killed run leaves no half file
    print(f"winner: {result['winner']} by {result['margin']:.1%} of accuracy "
          f"({'intervals disjoint' if result['separated'] else 'intervals overlap'}) -> {args.out}")


if __name__ == "__main__":
    main()
