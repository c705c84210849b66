"""Syntax colouring and wrapping of code listings for the guide: Python source -> lines of (text, colour kind) runs.

Pure Python (the standard tokenize module): pdf.py draws what this returns; this module knows nothing of pages.
"""

from __future__ import annotations

import io
import keyword
import tokenize


def _colour_runs(line: str, marks: list[str]) -> list[tuple[str, str]]:
    """Group a line's characters into (text, colour kind) runs."""
    runs: list[tuple[str, str]] = []
    for ch, kind in zip(line, marks, strict=True):
        if runs and runs[-1][1] == kind:
            runs[-1] = (runs[-1][0] + ch, kind)
        else:
            runs.append((ch, kind))
    return runs


def highlight(source: str) -> list[list[tuple[str, str]]]:
    """Python source -> per line, runs of (text, kind), kind one of keyword, comment, string, text; untokenizable
    text stays plain. Example: "x = 1  # one" -> [[("x = 1  ", "text"), ("# one", "comment")]]."""
    lines = source.splitlines()
    marks = [["text"] * len(line) for line in lines]
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            kind = {tokenize.COMMENT: "comment", tokenize.STRING: "string"}.get(tok.type)
            if tok.type == tokenize.NAME and keyword.iskeyword(tok.string):
                kind = "keyword"
            for row in range(tok.start[0], tok.end[0] + 1) if kind else ():
                start = tok.start[1] if row == tok.start[0] else 0
                end = tok.end[1] if row == tok.end[0] else len(lines[row - 1])
                marks[row - 1][start:end] = [kind] * (end - start)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        marks = [["text"] * len(line) for line in lines]
    return [_colour_runs(line, m) for line, m in zip(lines, marks, strict=True)]


def plain(source: str) -> list[list[tuple[str, str]]]:
    """Source that is not Python (a shell command): one plain run per line."""
    return [_colour_runs(line, ["text"] * len(line)) for line in source.splitlines()]


def wrap_runs(runs: list[tuple[str, str]], per_line: int) -> list[list[tuple[str, str]]]:
    """Cut a line's runs into pieces of at most `per_line` characters (a long line wraps, marked with ↪)."""
    out, current, used = [], [], 0
    for text, kind in runs:
        while used + len(text) > per_line:
            take = per_line - used
            current.append((text[:take], kind))
            out.append(current)
            current, used, text = [("\u21aa ", "comment")], 2, text[take:]
        if text:
            current.append((text, kind))
            used += len(text)
    out.append(current)
    return out
