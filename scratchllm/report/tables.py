"""What every chapter prints the same way: numbers formatted for print, tables of benchmark results, listings
quoted from the live source and figures from figures/, each with a note in its place when it is missing.

Chapters say *what* to show; the Book (pdf.py) decides widths, sizes and alignment. Every number in these
helpers comes from the run (a RunSummary) or a benchmarks/results/*.json file, never from the text.
"""

from __future__ import annotations

import re

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.runfolder import is_finite

NOT_RECORDED = "not recorded"


# ----------------------------------------------------------------------------- numbers


def fmt(x, digits: int = 3) -> str:
    """A number for print: ints with thousands separators, floats to `digits` decimals. Example: 1234 -> "1,234",
    0.5 -> "0.500", 0.0001 -> "1.00e-04", True -> "yes", None -> "–"."""
    if isinstance(x, bool) or x is None:
        return {True: "yes", False: "no", None: "–"}[x]
    if isinstance(x, int):
        return f"{x:,}"
    if is_finite(x):
        return f"{x:,.{digits}f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2e}"
    return str(x)


def fmt_params(n: int | None) -> str:
    """2804160 -> "2,804,160 (2.80 M)"."""
    if not isinstance(n, int):
        return NOT_RECORDED
    return f"{n:,} ({n / 1e6:.2f} M)" if n >= 1e5 else f"{n:,}"


def fmt_seconds(s) -> str:
    """52.3 -> "52.3 s", 330 -> "5 min 30 s", 7200 -> "2.0 h"."""
    if not is_finite(s):
        return NOT_RECORDED
    if s < 90:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s" if s < 5400 else f"{s / 3600:.1f} h"


def fmt_cell(value, decimals: int) -> str:
    """A table cell: whole numbers when `decimals` is 0, else `fmt`."""
    return f"{value:,.0f}" if decimals == 0 and is_finite(value) else fmt(value, decimals)


def clean(text: str, limit: int = 1400) -> str:
    """Model output for print: control characters other than newlines dropped, cut at `limit` characters."""
    text = "".join(ch for ch in str(text) if ch == "\n" or ch.isprintable())
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def spread(items: list, n: int) -> list:
    """At most n items, evenly spaced, first and last kept. Example: spread([1, 2, 3, 4, 5], 3) -> [1, 3, 5]."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def flatten(obj, prefix: str = "") -> list[tuple[str, object]]:
    """Nested JSON -> [(dotted.path, leaf value)]; lists are indexed. Example: {"a": [{"b": 1}]} -> [("a.0.b", 1)]."""
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in flatten(v, f"{prefix}{k}.")]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in flatten(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), obj)]


def dig(record, dotted: str):
    """record["a"]["b"] for "a.b", or None where the path breaks."""
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def pretty_key(key: str) -> str:
    """A benchmark's dotted key for print: "encoding.fast_encode_mb_s" -> "encoding: fast encode MB/s"."""
    *group, leaf = key.split(".")
    leaf = re.sub(r"_s$", " (s)", re.sub(r"_mb_s", " MB/s", leaf)).replace("_", " ")
    return ": ".join([*group, leaf])


# ----------------------------------------------------------------------------- benchmark tables


def machine_line(data, torch: bool = True) -> str:
    """The machine a benchmarks/results file was measured on, e.g. "AMD EPYC, torch 2.13.0+cpu, 2 threads"
    ("AMD EPYC, 2 threads" without `torch`)."""
    m = data.get("machine") if isinstance(data, dict) else None
    m = m if isinstance(m, dict) else {}
    parts = [m.get("cpu") or m.get("cpu_model"), f"torch {m['torch']}" if torch and m.get("torch") else None,
             f"{m['threads']} threads" if m.get("threads") else None]
    return ", ".join(str(p) for p in parts if p)


def source(name: str, data) -> str:
    """The caption's tail naming a results file and its machine: " (benchmarks/results/NAME.json; MACHINE)."."""
    where = machine_line(data)
    return f" (benchmarks/results/{name}.json" + (f"; {where}" if where else "") + ")."


def bench_table(book: Book, run: RunSummary, name: str, keep: str, caption: str, limit: int = 14) -> bool:
    """A table of the numbers in benchmarks/results/`name`.json whose dotted key matches `keep`; False if none."""
    data = run.benchmarks.get(name)
    if not isinstance(data, dict):
        return False
    rows = [[pretty_key(k), fmt(v, 3)] for k, v in flatten({k: v for k, v in data.items() if k != "machine"})
            if re.search(keep, k) and is_finite(v)][:limit]
    if rows:
        book.table(["measurement", "value"], rows, caption + source(name, data))
    return bool(rows)


def bench_pivot(book: Book, run: RunSummary, name: str, path: str, columns: list[tuple[str, str, int]],
                caption: str, label: str = "model shape") -> bool:
    """A table of the records under `path` in benchmarks/results/`name`.json (a dict of dicts, labelled by key,
    or a list of dicts); columns are (dotted key, header, decimals). False if the file or the records are absent."""
    data = run.benchmarks.get(name) or {}
    found = data.get(path) if isinstance(data, dict) else None
    labelled = isinstance(found, dict)
    records = list(found.items()) if labelled else [("", r) for r in found or [] if isinstance(r, dict)]
    rows = [([key] if labelled else []) + [fmt_cell(dig(r, k), d) for k, _, d in columns]
            for key, r in records if isinstance(r, dict)]
    if rows:
        book.table(([label] if labelled else []) + [h for _, h, _ in columns], rows, caption + source(name, data))
    return bool(rows)


# ----------------------------------------------------------------------------- listings and figures


def listing(book: Book, run: RunSummary, key: str, what: str) -> bool:
    """Print the live source of excerpt `key`, or a note saying why it is unavailable."""
    ex = run.excerpts.get(key)
    if ex is None or ex.missing:
        name = ex.name if ex else key
        book.note(f"The listing of {name} is unavailable in this build: {ex.missing if ex else 'not collected'}.",
                  "Listing unavailable")
        return False
    last = ex.first_line + ex.source.rstrip("\n").count("\n")
    book.code(ex.source, f"{ex.file}, lines {ex.first_line}–{last}: {what}")
    return True


def figure(book: Book, run: RunSummary, stem: str, caption: str) -> bool:
    """Place figures/`stem`.png with its caption; False when the run has no such figure."""
    if stem not in run.figures:
        return False
    book.figure(run.figures[stem], caption)
    return True


def figure_or_note(book: Book, run: RunSummary, stem: str, what: str, caption: str) -> None:
    """The figure, or a note that the run folder lacks what it is drawn from."""
    if not figure(book, run, stem, caption):
        book.note(f"No {what} figure: the report draws every figure it lacks, and this run folder does not hold "
                  "what this one is drawn from (see “What this run does not have” in chapter 1).")
