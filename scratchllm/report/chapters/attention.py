"""The chapter "Attention in five lines": the reference attention from the source, then this run's own queries,
keys, scores and weights on the probe text, what each token looks at, and how attention changed during training.
"""

from __future__ import annotations

import math
import re

import numpy as np

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import bench_pivot, figure, figure_or_note, fmt, listing, spread
from scratchllm.viz import visible

TITLE = "Attention in five lines"


def _matrix_table(book: Book, tokens: list[str], mat: np.ndarray, caption: str, digits: int = 2) -> None:
    n = len(tokens)
    rows = [[visible(tokens[i])] + [f"{mat[i, j] + 0.0:.{digits}f}".replace("-0.00", "0.00") if j <= i else "·"
                                    for j in range(n)] for i in range(n)]
    book.table(["query \\ key"] + [visible(t) for t in tokens], rows, caption, "matrix")


def _qkv_numbers(book: Book, run: RunSummary) -> None:
    att = run.attention
    q, k = att.last["q"].astype(np.float64), att.last["k"].astype(np.float64)
    n = min(7, q.shape[2])
    tokens = att.tokens[:n]
    hd = q.shape[-1]
    scores = q[0, 0, :n] @ k[0, 0, :n].T / math.sqrt(hd)  # (n, n), layer 0, head 0
    masked = np.where(np.tril(np.ones((n, n), bool)), scores, -np.inf)
    weights = np.exp(masked - masked.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    vec = ", ".join(f"{x:+.2f}" for x in q[0, 0, min(1, n - 1), :6])
    book.para(f"In layer 0, head 0 of this model at step {att.steps[-1]:,} (counting from zero, as the code does), "
              f"each query and key has {hd} numbers. "
              f"The query of the token “{visible(tokens[min(1, n - 1)])}” begins [{vec}, …]. Its dot product "
              f"with each key, divided by √{hd}, is a score; the mask hides the keys of later positions (·), and "
              "the softmax turns each row into weights that sum to one:", markup=False)
    _matrix_table(book, tokens, scores, "Scores q·k/√d of the first tokens of the probe (layer 0, head 0).")
    _matrix_table(book, tokens, weights, "The same rows after the causal mask and the softmax: attention weights.")


def _looks_at(book: Book, run: RunSummary) -> None:
    att = run.attention
    first, last = att.first["att"].astype(np.float64), att.last["att"].astype(np.float64)
    layer = last.shape[0] - 1
    n = min(12, last.shape[-1])
    rows = []
    for i in range(n):
        row = []
        for record in (first, last):
            mean = record[layer, :, i, : i + 1].mean(0)  # averaged over heads
            j = int(mean.argmax())
            row += [visible(att.tokens[j]), f"{mean[j]:.2f}"]
        rows.append([visible(att.tokens[i]), *row])
    book.table(["query token", f"step {att.steps[0]:,}: looks at", "weight", f"step {att.steps[-1]:,}: looks at",
                "weight"], rows, f"Which earlier token each probe token attends to most in the last layer (mean "
               f"over {last.shape[1]} heads), before and after training.")


def _evolution(book: Book, run: RunSummary) -> None:
    att = run.attention
    rows = [[fmt(s["step"]), f"{s['entropy_bits']:.2f}", f"{s['uniform_bits']:.2f}", f"{100 * s['previous']:.1f}%",
             f"{100 * s['first']:.1f}%"] for s in spread(att.stats, 10)]
    book.table(["step", "entropy (bits)", "uniform (bits)", "on previous token", "on first token"], rows,
               "How the attention of the probe changed over training (mean over layers, heads and positions).")
    a, b = att.stats[0], att.stats[-1]
    change = b["entropy_bits"] - a["entropy_bits"]
    if change < -0.05:
        verdict = ("the heads sharpened, each learning to look at a few positions that help predict the next token, "
                   "such as the token just before or the start of the text (a common resting place for heads with "
                   "nothing better to do).")
    elif change > 0.05:
        verdict = "the heads spread their attention more widely, averaging over more of the context."
    else:
        verdict = ("the heads have hardly changed: this run was too short for them to specialise, and they still "
                   "spread their attention almost evenly over what they can see.")
    book.para(f"An attention row spread evenly over every visible position would have the entropy of the uniform "
              f"column. From step {att.steps[0]:,} to step {att.steps[-1]:,} the mean entropy went from "
              f"{a['entropy_bits']:.2f} to {b['entropy_bits']:.2f} bits: {verdict}")


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    book.para("Attention is how a token gathers information from the tokens before it. Each position emits three "
              "vectors, all computed from its current representation by learned matrices: a **query** (what am I "
              "looking for?), a **key** (what do I contain?) and a **value** (what do I pass on if chosen?). The "
              "query of a position is compared with the key of every earlier position; the better the match, the "
              "more of that position's value flows in. Here is all of it, as this project computes it:")
    book.section("The five lines")
    if listing(book, run, "reference_attention", "the explicit attention the model's SDPA path is tested against"):
        book.bullets([
            "`q @ k.transpose(-2, -1)`: every query against every key, one score each, scaled by √d so the "
            "scores do not grow with the head size.",
            "`causal_mask`: position i may look at positions 0 … i only; later ones would be cheating, since "
            "the model is trained to predict them.",
            "`softmax`: each row of scores becomes weights that are positive and sum to one.",
            "`att @ v`: each position's output is the weighted average of the values it attends to.",
            ("In training this model called PyTorch's fused `scaled_dot_product_attention`, which gives the same "
             "result without storing the T×T matrix; a test proves the two equal."
             if run.model_config.get("attention", "sdpa") == "sdpa" else
             "This run trained through these five lines themselves (model.attention = reference); PyTorch's fused "
             "`scaled_dot_product_attention` gives the same result faster, and a test proves the two equal.")])
        bench_pivot(book, run, "model", "shapes", [("sdpa_tokens_per_s", "SDPA tokens/s", 0),
                                                   ("reference_tokens_per_s", "five lines, tokens/s", 0),
                                                   ("sdpa_over_reference", "SDPA speed-up", 2)],
                    "Training speed (forward and backward) through the fused kernel and through the five lines")
    if run.attention is None:
        book.note("This run has no attention records (attention/step_*.npz and probe.json), so this chapter "
                  "cannot show its matrices. Runs made by `scratchllm train` record them at every evaluation.")
        return
    book.section("Queries, keys and values in this model")
    _qkv_numbers(book, run)
    figure_or_note(book, run, "attention_pipeline", "attention pipeline", "The pipeline of one head on the probe "
                   "text: queries, keys, scores, mask, softmax, and the weighted values.")
    book.section("What each token looks at")
    _looks_at(book, run)
    layer_figs = sorted((s for s in run.figures if re.fullmatch(r"attention_layer\d+", s)), key=lambda s: int(s[15:]))
    for stem in layer_figs[-1:]:
        figure(book, run, stem, f"Every head of layer {stem[15:]}, the last, at the last recorded step: row = "
                "query, column = key.")
    book.section("How attention changed during training")
    _evolution(book, run)
    figure(book, run, "attention_evolution", "The heads of one layer (columns) at recorded training steps (rows); "
            "figures/attention_evolution.gif animates them.")
    figure(book, run, "attention_cube", "The same weights stacked by training step: the 3-D cube.")
