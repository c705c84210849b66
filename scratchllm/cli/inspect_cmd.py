"""Subcommands that look inside a run: `viz RUN_DIR`, `doctor RUN_DIR`, `lr-find`; thin calls of library functions."""

from __future__ import annotations

import argparse
import sys
import textwrap


def _doctor_table(findings) -> str:
    """Findings as a plain-text table: one header row per finding, then its evidence, cause and fix indented."""
    if not findings:
        return "No problems found."
    lines = [f"{'SEVERITY':<9} {'RULE':<15} SYMPTOM"]
    for f in findings:
        lines.append(f"{f.severity:<9} {f.rule:<15} {f.symptom}")
        for label, text in (("evidence", f.evidence), ("cause", f.cause), ("fix", f.fix)):
            wrapped = textwrap.wrap(text, 100, initial_indent=f"  {label + ':':<10}", subsequent_indent=" " * 12)
            lines.extend(wrapped)
    return "\n".join(lines)


def _run_doctor(args) -> int:
    from scratchllm.doctor import diagnose_run

    findings = diagnose_run(args.run_dir)
    print(_doctor_table(findings))
    print(f"\nwrote {args.run_dir}/doctor.json")
    return 0


def _run_viz(args) -> int:
    from scratchllm.runfolder import require_run
    from scratchllm.viz import render_all

    notes: list[str] = []
    paths = render_all(require_run(args.run_dir, "viz"), notes)
    for path in paths:
        print(path)
    for note in notes:
        print(note, file=sys.stderr)
    print(f"{len(paths)} files written, {len(notes)} figure(s) skipped", file=sys.stderr)
    return 0


def _run_lr_find(args) -> int:
    from scratchllm.config import load_config
    from scratchllm.lr_find import lr_find_run

    cfg = load_config(args.config or args.preset, args.set)
    result, paths = lr_find_run(cfg, args.out, args.steps, args.lr_min, args.lr_max)
    for path in paths:
        print(path)
    print(f"lowest smoothed loss at LR {result.lr_min_loss:.3g}, steepest descent at LR {result.lr_steepest:.3g}")
    print(f"suggested LR: {result.suggested:.3g}  (train with --set train.lr={result.suggested:.3g})")
    return 0


def _add_lr_find(sub) -> None:
    p = sub.add_parser(
        "lr-find", help="LR range test: sweep the LR exponentially on a fresh model and suggest one",
        description="Train a fresh model for --steps steps while the LR grows from --lr-min to --lr-max, stop when "
        "the smoothed loss passes 4x its best, plot loss vs LR (lr_find.png/.svg) and suggest an LR. "
        "Example: scratchllm lr-find --preset tiny --out runs/lr-find")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a preset name from configs/ (e.g. tiny)")
    source.add_argument("--config", help="a YAML config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", default="runs/lr-find", help="folder for lr_find.png/.svg/.json (default runs/lr-find)")
    p.add_argument("--steps", type=int, default=100, help="LRs tried, one step each (default 100)")
    p.add_argument("--lr-min", type=float, default=1e-7, help="first LR (default 1e-7)")
    p.add_argument("--lr-max", type=float, default=10.0, help="last LR (default 10)")
    p.set_defaults(func=_run_lr_find)


def register(sub) -> None:
    """Add this group's subcommands to the top-level parser."""
    doctor = sub.add_parser(
        "doctor", help="diagnose a run: divergence, flat loss, repetition, overfitting, speed",
        description="Read a run folder (metrics.jsonl, samples.jsonl, config.json) and name its problems with "
        "evidence, likely cause and fix; writes RUN_DIR/doctor.json. Example: scratchllm doctor runs/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    doctor.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `scratchllm train`")
    doctor.set_defaults(func=_run_doctor)
    viz = sub.add_parser(
        "viz", help="draw a run's figures: loss, attention heatmaps and evolution, Q/K/V pipeline, embeddings",
        description="Draw every figure of a run into RUN_DIR/figures/ (PNG + SVG, and an animated GIF of "
        "attention); figures whose inputs are missing are skipped with a note. Example: scratchllm viz runs/demo")
    viz.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `scratchllm train`")
    viz.set_defaults(func=_run_viz)
    _add_lr_find(sub)
