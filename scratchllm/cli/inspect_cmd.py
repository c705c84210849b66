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
    from scratchllm.viz import render_all

    notes: list[str] = []
    paths = render_all(args.run_dir, notes)
    for path in paths:
        print(path)
    for note in notes:
        print(note, file=sys.stderr)
    print(f"{len(paths)} files written, {len(notes)} figure(s) skipped", file=sys.stderr)
    return 0


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
