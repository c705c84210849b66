"""The PDF guide: `build_report(run_dir)` reads one run folder and writes guide.pdf, a book chapter on how an LLM
is built, told with this project's live source code and the run's own numbers and pictures.

Before reading the run, it draws the figures the run folder (and its chat/ finetune stage) lacks (viz.render_all
with only_missing), so a run that was only trained gets a complete guide. collect.py reads the run (RunSummary),
chapters/ writes one module per chapter with tables.py for what they share, pdf.py lays out the pages (fpdf2).
Training code never calls this; quickstart and `scratchllm report` do.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from scratchllm.config import InputError, atomic_write_bytes
from scratchllm.report.chapters import BOOK_TITLE, CHAPTER_TITLES, CHAPTERS
from scratchllm.report.chapters.glance import cover
from scratchllm.report.collect import REPO, RunSummary, collect, finetune_dir
from scratchllm.runfolder import require_run
from scratchllm.viz import render_all

__all__ = ["CHAPTER_TITLES", "RunSummary", "build_report", "collect"]


def build_report(run_dir, out_pdf=None, bench_dir=None, progress: bool = False) -> Path:
    """Write the guide for the run in `run_dir` to `out_pdf` (default RUN/guide.pdf), atomically; returns its path.

    Figures missing from RUN/figures/ are drawn first; those already drawn are left as they are. `bench_dir` holds
    benchmark JSON (default: the repository's benchmarks/results, if there). A run folder that lacks parts
    (attention records, comparison, doctor) still gives a PDF that says what is missing. `progress` shows a bar
    (stderr) over the chapters.
    """
    from tqdm import tqdm

    from scratchllm.report.pdf import Book

    if out_pdf is not None and Path(out_pdf).is_dir():
        raise InputError(f"-o {out_pdf} is a folder; give a file name such as {Path(out_pdf) / 'guide.pdf'}")
    path = require_run(run_dir, "report")
    for folder in dict.fromkeys(filter(None, (path, finetune_dir(path)))):  # skipped figures: collect names them
        render_all(folder, [], only_missing=True)
    run = collect(run_dir, REPO / "benchmarks" / "results" if bench_dir is None else bench_dir)
    book = Book(BOOK_TITLE)
    cover(book, run, datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    for chapter in tqdm(CHAPTERS, desc="guide", unit="chapter", disable=not progress, file=sys.stderr, leave=False):
        chapter.write(book, run)
    out = Path(out_pdf) if out_pdf is not None else run.run_dir / "guide.pdf"
    atomic_write_bytes(out, book.output())
    return out
