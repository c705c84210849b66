"""What the workbench shows of a run folder: the curves, samples, doctor findings and recorded attention.

Every read of the run folder by the web server is in this module, and each goes through runfolder.py (which owns
the file names and readers); the server never takes a path from a client. Files are read afresh on each call, so
the page follows a run that is still training. This module does not run the model (engine.py does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scratchllm.doctor import diagnose
from scratchllm.runfolder import (
    CONFIG,
    METRICS,
    SAMPLES,
    SUMMARY,
    attention_files,
    is_finite,
    load_attention,
    read_json,
    read_jsonl_lenient,
    read_probe,
)

CURVE_FIELDS = {"train": ("loss", "lr"), "eval": ("train_loss", "val_loss", "val_bpb"), "event": ("event", "message")}


def _curve_record(rec: dict) -> dict | None:
    """A metrics record cut to what the curves need; records without a step or of another kind are dropped."""
    kind = rec.get("kind")
    if kind not in CURVE_FIELDS or not is_finite(rec.get("step")):
        return None
    kept = {k: rec[k] for k in CURVE_FIELDS[kind] if is_finite(rec.get(k)) or isinstance(rec.get(k), str)}
    return {"kind": kind, "step": rec["step"], **kept}


def finding_steps(evidence: str) -> list[int]:
    """The steps a doctor finding's evidence names, where its markers go.
    "loss 9 at step 40 vs best 5 at step 12" -> [40, 12]."""
    return [int(s) for s in re.findall(r"\bsteps?(?:\(s\))? (\d+)", evidence)]


def run_overview(run_dir: Path) -> dict:
    """GET /api/run: the resolved config, summary, curve records, samples, doctor findings and snapshot steps."""
    metrics, _ = read_jsonl_lenient(run_dir / METRICS)
    samples, _ = read_jsonl_lenient(run_dir / SAMPLES)
    config = read_json(run_dir / CONFIG)
    config = config if isinstance(config, dict) else {}
    findings = [{**f.to_dict(), "steps": finding_steps(f.evidence)} for f in diagnose(metrics, samples, config)]
    return {
        "name": run_dir.name,
        "config": config,
        "summary": read_json(run_dir / SUMMARY) or {},
        "metrics": [r for r in map(_curve_record, metrics) if r],
        "samples": [{"step": s.get("step"), "prompt": str(s.get("prompt", "")), "text": str(s.get("text", ""))}
                    for s in samples if is_finite(s.get("step"))],
        "findings": findings,
        "snapshot_steps": [step for step, _ in attention_files(run_dir)],
    }


def attention_history(run_dir: Path, label: Callable[[int], str]) -> dict:
    """GET /api/attention/history: the probe text's tokens and its attention (L, H, T, T) at every recorded step.

    Token labels come from `label` (the run's tokenizer), so a token cutting a character shows its bytes escaped;
    unreadable snapshots are named in `skipped` rather than failing the whole answer."""
    probe = read_probe(run_dir)
    steps, skipped = [], []
    for step, path in attention_files(run_dir):
        try:
            att = load_attention(path)["att"]
        except ValueError as e:
            skipped.append(str(e))
            continue
        steps.append({"step": step, "attention": np.round(att, 5).tolist()})
    try:
        tokens = [label(i) for i in probe["token_ids"]]
    except ValueError:  # ids the tokenizer does not know: fall back to the labels the trainer wrote
        tokens = probe["tokens"]
    return {"probe": {"text": probe["text"], "tokens": tokens}, "steps": steps, "skipped": skipped}
