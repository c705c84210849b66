"""Pictures of one run, drawn from its folder: loss and LR curves, attention heatmaps and how they evolve, the
attention pipeline of one head, token embeddings (PCA) and how each tokenizer splits a sentence.

Reads only the run folder, through runfolder.py (metrics.jsonl, attention/, checkpoints/latest/, tokenizer.json),
and writes figures/ as PNG + SVG (plus one GIF) through atomic writes; `render_all(..., only_missing=True)` draws
just the figures not there yet (the report's way in). It neither trains nor records: train.py writes the attention
records drawn here. A figure whose inputs are missing is skipped with a note, never a crash. It also owns how a
token is made visible on a label (`visible`), which the report's tables use too.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.animation import PillowWriter
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from scratchllm.config import InputError, atomic_write_bytes
from scratchllm.runfolder import (
    CHECKPOINTS,
    METRICS,
    TOKENIZER,
    attention_files,
    is_finite,
    load_attention,
    read_jsonl_lenient,
    read_probe,
    token_text,
)
from scratchllm.runfolder import FIGURES as FIGURE_DIR

DEFAULT_SENTENCE = "To be, or not to be, that is the question."
MAX_EVOLUTION_STEPS = 6
MAX_GIF_FRAMES = 30
MAX_PANEL_HEADS = 8


class Skip(Exception):
    """A figure cannot be drawn because its inputs are missing; the message says which."""


def _save(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write `fig` as out/name.png and out/name.svg, each atomically."""
    paths = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130, bbox_inches="tight")
        atomic_write_bytes(out / f"{name}.{ext}", buf.getvalue())
        paths.append(out / f"{name}.{ext}")
    return paths


def _records(run: Path) -> list[dict]:
    if not (run / METRICS).is_file():
        raise Skip(f"no {METRICS}")
    return read_jsonl_lenient(run / METRICS)[0]


# ---------------------------------------------------------------- loss curves


def split_rolled_back(train: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept, discarded) train records: a record is discarded when a later one has the same or an earlier step,
    i.e. a rollback re-did its step. Example: steps [1, 2, 3, 2, 3, 4] -> kept [1, 2, 3, 4], discarded [2, 3]."""
    kept, discarded, low = [], [], math.inf
    for rec in reversed(train):
        (kept if rec["step"] < low else discarded).append(rec)
        low = min(low, rec["step"])
    return kept[::-1], discarded[::-1]


def _plot_rollbacks(ax, metrics: list[dict], discarded: list[dict]) -> None:
    steps = [r.get("step") for r in metrics if r.get("kind") == "event" and r.get("event") == "rollback"]
    for i, step in enumerate(steps):
        ax.axvline(step, color="crimson", ls=":", lw=1.2, label="rollback (diverged)" if i == 0 else None)
    if discarded:
        ax.plot([r["step"] for r in discarded], [r["loss"] for r in discarded], "x", color="crimson", ms=4,
                alpha=0.6, label="loss rolled back")


def _clip_spikes(ax, losses: list[float]) -> None:
    """Keep a divergence spike from flattening the rest of the curve."""
    top = 1.3 * losses[0]
    if max(losses) > top:
        ax.set_ylim(min(losses) * 0.95, top)
        ax.text(0.01, 0.02, f"losses up to {max(losses):.3g} are above the chart", transform=ax.transAxes,
                fontsize=8, color="crimson")


def _plot_lr(ax, kept: list[dict]) -> None:
    lr = [(r["step"], r["lr"]) for r in kept if is_finite(r.get("lr"))]
    handles = ax.get_legend_handles_labels()[0]
    if lr:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lr, strict=True), color="gray", lw=1, label="learning rate")
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        handles += ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)


def plot_loss(run: Path, out: Path) -> list[Path]:
    """Train loss per step, train/val loss at each eval, rollbacks, and the LR schedule on a twin axis."""
    metrics = _records(run)
    train = [r for r in metrics if r.get("kind") == "train" and is_finite(r.get("loss"))]
    evals = [r for r in metrics if r.get("kind") == "eval" and is_finite(r.get("val_loss"))]
    if not train:
        raise Skip("no finite train losses in metrics.jsonl")
    kept, discarded = split_rolled_back(train)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.plot([r["step"] for r in kept], [r["loss"] for r in kept], lw=1, alpha=0.7, label="train loss (batch)")
    if evals:
        kept_evals = split_rolled_back(evals)[0]
        steps = [r["step"] for r in kept_evals]
        ax.plot(steps, [r["val_loss"] for r in kept_evals], "o-", label="val loss")
        ax.plot(steps, [r.get("train_loss") for r in kept_evals], "s--", ms=4, label="train loss (eval)")
    _plot_rollbacks(ax, metrics, discarded)
    _clip_spikes(ax, [r["loss"] for r in train])
    ax.set(xlabel="training step", ylabel="cross-entropy loss (nats per token)",
           title="Loss curves and learning-rate schedule")
    _plot_lr(ax, kept)
    return _save(fig, out, "loss")


# ---------------------------------------------------------------- attention records


def visible(piece: str, width: int | None = None) -> str:
    """A token made visible on a label: spaces, newlines and tabs get symbols, other control characters an escape
    (they are not valid in SVG or a PDF table); cut to `width` characters if given. Example: " the\n" -> "␣the↵"."""
    shown = piece.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5")
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
    return shown if width is None or len(shown) <= width else shown[: width - 1] + "\u2026"


def _attention_files(run: Path) -> list[tuple[int, Path]]:
    files = attention_files(run)
    if not files:
        raise Skip("no attention records (attention/step_*.npz)")
    return files


def _att(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_attention(path)
    except ValueError as e:
        raise Skip(str(e)) from None


def probe_tokens(run: Path, length: int) -> list[str]:
    """Tick labels of the probe text's tokens (positions if attention/probe.json is missing)."""
    tokens = [visible(t, 8) for t in read_probe(run)["tokens"]][:length]
    return tokens + [str(i) for i in range(len(tokens), length)]


def _ticks(ax, xlabels: list[str] | None, ylabels: list[str] | None) -> None:
    for labels, set_ticks, rot in ((xlabels, ax.set_xticks, 90), (ylabels, ax.set_yticks, 0)):
        if labels is None:
            set_ticks([])
            continue
        every = max(1, math.ceil(len(labels) / 32))
        size = 7 if len(labels) <= 16 else 5
        set_ticks(range(0, len(labels), every), [labels[i] for i in range(0, len(labels), every)],
                  rotation=rot, fontsize=size)


def _heads_grid(n: int, per_row: int = 4) -> tuple[int, int]:
    cols = min(n, per_row)
    return math.ceil(n / cols), cols


def plot_attention_layers(run: Path, out: Path) -> list[Path]:
    """One figure per layer at the last recorded step: a heatmap per head, probe tokens on both axes."""
    step, path = _attention_files(run)[-1]
    att = _att(path)["att"]  # (L, H, T, T)
    tokens = probe_tokens(run, att.shape[-1])
    paths = []
    for layer in range(att.shape[0]):
        rows, cols = _heads_grid(att.shape[1])
        fig = Figure(figsize=(3.6 * cols, 3.6 * rows + 0.6), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for head, ax in enumerate(axes):
            if head >= att.shape[1]:
                ax.set_axis_off()
                continue
            im = ax.imshow(att[layer, head], cmap="viridis", vmin=0, vmax=1)
            _ticks(ax, tokens, tokens if head % cols == 0 else None)
            ax.set(title=f"head {head}", xlabel="key (attended-to token)")
            if head % cols == 0:
                ax.set_ylabel("query (attending token)")
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="attention weight")
        fig.suptitle(f"Attention of layer {layer} at step {step}: each row is where one token looks")
        paths += _save(fig, out, f"attention_layer{layer}")
    return paths


def _pick(items: list, n: int) -> list:
    """At most n items spread evenly, always keeping the first and the last."""
    if len(items) <= n:
        return items
    if n < 2:
        return items[:n]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def plot_attention_evolution(run: Path, out: Path) -> list[Path]:
    """Grid of heatmaps of the last layer: rows are training steps, columns are heads."""
    records = [(step, _att(path)["att"]) for step, path in _pick(_attention_files(run), MAX_EVOLUTION_STEPS)]
    layer = records[0][1].shape[0] - 1
    atts = [(step, att[layer]) for step, att in records]  # (H, T, T) each
    heads = min(atts[0][1].shape[0], MAX_PANEL_HEADS)
    tokens = probe_tokens(run, atts[0][1].shape[-1])
    fig = Figure(figsize=(2.4 * heads + 1, 2.4 * len(atts) + 0.8), layout="constrained")
    axes = fig.subplots(len(atts), heads, squeeze=False)
    for r, (step, att) in enumerate(atts):
        for h in range(heads):
            ax = axes[r, h]
            im = ax.imshow(att[h], cmap="viridis", vmin=0, vmax=1)
            _ticks(ax, tokens if r == len(atts) - 1 else None, tokens if h == 0 else None)
            if r == 0:
                ax.set_title(f"head {h}", fontsize=10)
            if h == 0:
                ax.set_ylabel(f"step {step}\nquery", fontsize=9)
            if r == len(atts) - 1:
                ax.set_xlabel("key", fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="attention weight")
    fig.suptitle(f"How attention evolves during training (layer {layer}; rows: steps, columns: heads)")
    return _save(fig, out, "attention_evolution")


def plot_attention_cube(run: Path, out: Path) -> list[Path]:
    """3D cube of one head (last layer, head 0): step x query x key; brighter, more opaque = more attention."""
    files = _pick(_attention_files(run), MAX_EVOLUTION_STEPS * 2)
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(projection="3d")
    cmap = colormaps["viridis"]
    for z, (_, path) in enumerate(files):
        att = _att(path)["att"][-1, 0]  # (T, T)
        query, key = np.nonzero(att > 0.02)
        weight = att[query, key]
        colors = cmap(weight)
        colors[:, 3] = 0.15 + 0.85 * weight
        ax.scatter(key, query, np.full(len(key), z), c=colors, s=8 + 40 * weight, depthshade=False)
    tokens = probe_tokens(run, att.shape[-1])
    _ticks(ax, tokens, tokens)
    ax.set_zticks(range(len(files)), [str(step) for step, _ in files], fontsize=7)
    ax.set(xlabel="key", ylabel="query", zlabel="training step")
    ax.invert_yaxis()
    fig.colorbar(ScalarMappable(cmap=cmap), ax=ax, shrink=0.6, pad=0.1, label="attention weight")
    ax.set_title("Attention cube: one head (last layer, head 0) across training", fontsize=11)
    return _save(fig, out, "attention_cube")


def animate_attention(run: Path, out: Path) -> list[Path]:
    """Animated GIF: the heads of the last layer, one frame per recorded step."""
    files = _pick(_attention_files(run), MAX_GIF_FRAMES)
    first = _att(files[0][1])["att"][-1]
    heads = min(first.shape[0], MAX_PANEL_HEADS)
    fig = Figure(figsize=(2.6 * heads, 3.0), layout="constrained")
    axes = fig.subplots(1, heads, squeeze=False)[0]
    images = [ax.imshow(first[h], cmap="viridis", vmin=0, vmax=1) for h, ax in enumerate(axes)]
    for h, ax in enumerate(axes):
        ax.set(title=f"head {h}", xlabel="key", ylabel="query" if h == 0 else None, xticks=[], yticks=[])
    path = out / "attention_evolution.gif"
    tmp = out / ".attention_evolution.tmp.gif"
    writer = PillowWriter(fps=2)
    with writer.saving(fig, str(tmp), dpi=80):
        for step, file in files:
            att = _att(file)["att"][-1]
            for h, image in enumerate(images):
                image.set_data(att[h])
            fig.suptitle(f"Last layer attention at step {step}")
            writer.grab_frame()
    os.replace(tmp, path)
    return [path]


# ---------------------------------------------------------------- one head, step by step


def attention_pipeline(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """The causal attention of one head, stage by stage. q, k, v: (T, hd).

    scores = q kᵀ / √hd (T, T); masked = scores with the future (key > query) set to -inf;
    att = softmax(masked) row by row; out = att v (T, hd).
    """
    scores = q @ k.T / math.sqrt(q.shape[-1])  # (T, T)
    future = np.triu(np.ones_like(scores, dtype=bool), k=1)
    masked = np.where(future, -np.inf, scores)
    exp = np.exp(masked - masked.max(axis=-1, keepdims=True))
    att = exp / exp.sum(axis=-1, keepdims=True)
    return {"scores": scores, "masked": masked, "att": att, "out": att @ v}


def _panel(fig, spec, mat, title, xlabel, ylabel, xt, yt, cmap="viridis", **kw):
    ax = fig.add_subplot(spec)
    shown = np.ma.masked_invalid(mat)
    cm = colormaps[cmap].with_extremes(bad="lightgray")
    im = ax.imshow(shown, cmap=cm, aspect="auto", **kw)
    _ticks(ax, xt, yt)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return ax


def plot_attention_pipeline(run: Path, out: Path, layer: int = -1, head: int = 0) -> list[Path]:
    """Q, K, V heatmaps -> QKᵀ/√d -> causal mask -> softmax -> ·V for one head at the last recorded step."""
    step, path = _attention_files(run)[-1]
    rec = _att(path)
    if not {"q", "k", "v"} <= set(rec):
        raise Skip(f"attention record {path.name} has no q, k, v arrays")
    layer = layer % rec["q"].shape[0]
    q, k, v = (rec[name][layer, head] for name in ("q", "k", "v"))  # (T, hd) each
    stages = attention_pipeline(q, k, v)
    tokens = probe_tokens(run, q.shape[0])
    dims = [str(i) for i in range(q.shape[1])]
    fig = Figure(figsize=(19, 9), layout="constrained")
    grid = fig.add_gridspec(2, 4)
    for col, (name, mat) in enumerate((("Q (queries)", q), ("K (keys)", k), ("V (values)", v))):
        _panel(fig, grid[0, col], mat, name, "head dimension", "token", dims, tokens, cmap="RdBu_r")
    tok_axes = ("key", "query", tokens, tokens)
    _panel(fig, grid[1, 0], stages["scores"], "scores = Q Kᵀ / √d", *tok_axes, cmap="magma")
    _panel(fig, grid[1, 1], stages["masked"], "causal mask (future = gray)", *tok_axes, cmap="magma")
    _panel(fig, grid[1, 2], stages["att"], "softmax (each row sums to 1)", *tok_axes, vmin=0, vmax=1)
    _panel(fig, grid[1, 3], stages["out"], "output = softmax · V", "head dimension", "token", dims, tokens,
           cmap="RdBu_r")
    gap = float(np.abs(stages["att"] - rec["att"][layer, head]).max())
    note = fig.add_subplot(grid[0, 3])
    note.set_axis_off()
    note.text(0, 0.5, f"one attention head, step by step\nlayer {layer}, head {head}, step {step}\n\n"
              f"softmax recomputed here from Q and K\nmatches the recorded attention\nto within {gap:.1e}",
              fontsize=12, va="center")
    fig.suptitle("The attention pipeline of one head: Q, K, V → QKᵀ/√d → mask → softmax → ·V")
    return _save(fig, out, "attention_pipeline")


# ---------------------------------------------------------------- embeddings and tokenization


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of x (N, C) onto their top two principal components: (coords (N, 2), explained share (2,))."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, s[:2] ** 2 / max(float((s**2).sum()), 1e-12)


def _embedding_matrix(model) -> np.ndarray:
    """The token embedding table (vocab_size, n_embd) of a GPT."""
    vocab = model.config.vocab_size
    for name, tensor in model.state_dict().items():
        if name.endswith("wte.weight") or (tensor.ndim == 2 and tensor.shape[0] == vocab and "emb" in name):
            return tensor.detach().float().cpu().numpy()
    raise Skip("no token embedding table found in the model")


def _annotated_ids(run: Path, tok, vocab: int, limit: int = 70) -> list[int]:
    """Which tokens get a label: the probe's tokens first, then tokens holding a letter, spread over the ids."""
    ids = read_probe(run)["token_ids"]
    chosen = list(dict.fromkeys(i for i in ids if 0 <= i < vocab))[:limit]
    wordy = [i for i in range(vocab) if i not in set(chosen) and any(c.isalpha() for c in token_text(tok, i))]
    return chosen + _pick(wordy, limit - len(chosen)) if limit > len(chosen) else chosen


def _load_checkpoint(run: Path):
    ckpt = run / CHECKPOINTS / "latest"
    if not (ckpt / "model.safetensors").is_file():
        raise Skip("no checkpoint at checkpoints/latest")
    from scratchllm.checkpoint import load_model

    try:
        return load_model(ckpt)
    except InputError as e:
        raise Skip(f"checkpoint unreadable: {e}") from None


def plot_embeddings(run: Path, out: Path) -> list[Path]:
    """Token embeddings of the final checkpoint projected to 2D by PCA, some points labelled with their token."""
    model, tok, _ = _load_checkpoint(run)
    coords, share = pca_2d(_embedding_matrix(model))
    fig = Figure(figsize=(9, 7.5))
    ax = fig.add_subplot()
    ax.scatter(coords[:, 0], coords[:, 1], s=8, alpha=0.35, color="tab:blue", label="token")
    for i in _annotated_ids(run, tok, len(coords)):
        ax.annotate(visible(token_text(tok, i), 10), coords[i], fontsize=7, alpha=0.9)
    ax.set(xlabel=f"principal component 1 ({share[0]:.0%} of variance)",
           ylabel=f"principal component 2 ({share[1]:.0%} of variance)",
           title=f"Token embeddings (vocab {len(coords)}, width {model.config.n_embd}) projected by PCA")
    return _save(fig, out, "embeddings_pca")


def _sentence(run: Path) -> str:
    text = read_probe(run)["text"]
    line = next((s.strip() for s in text.splitlines() if len(s.strip()) > 10), "")
    return line[:80] or DEFAULT_SENTENCE


def segmentations(sentence: str, run_tokenizer) -> list[tuple[str, list[str]]]:
    """How the sentence splits into tokens: by characters, by the run's tokenizer, by words (each row's pieces
    join back to the sentence; a piece cutting a multi-byte character shows U+FFFD)."""
    from scratchllm.tokenizer import CharTokenizer, WordTokenizer

    kind = getattr(run_tokenizer, "type_name", type(run_tokenizer).__name__)
    rows = [("characters", CharTokenizer.train(sentence)),
            (f"this run's {kind} tokenizer (vocab {run_tokenizer.vocab_size})", run_tokenizer),
            ("words (GPT-4 split pattern)", WordTokenizer.train(sentence, vocab_size=len(sentence) + 2))]
    return [(title, [token_text(tok, i) for i in tok.encode(sentence)]) for title, tok in rows]


def _draw_boxes(ax, y: float, pieces: list[str], width: float) -> float:
    """Draw pieces as coloured boxes from the left at height y, wrapping at `width`; returns the next free y."""
    x, colors = 0.0, colormaps["tab20"]
    for i, piece in enumerate(pieces):
        w = max(len(visible(piece, 40)), 1) * 0.62 + 0.4
        if x + w > width:
            x, y = 0.0, y - 1.3
        ax.add_patch(FancyBboxPatch((x, y), w - 0.15, 1.0, boxstyle="round,pad=0.02", color=colors(i % 20)))
        ax.text(x + (w - 0.15) / 2, y + 0.5, visible(piece, 40), ha="center", va="center", family="monospace",
                fontsize=9)
        x += w
    return y - 2.2


def plot_tokenization(run: Path, out: Path) -> list[Path]:
    """One sentence segmented by each tokenizer, each token a coloured box."""
    if not (run / TOKENIZER).is_file():
        raise Skip(f"no {TOKENIZER}")
    from scratchllm.tokenizer import load_tokenizer

    try:
        rows = segmentations(_sentence(run), load_tokenizer(run / TOKENIZER))
    except InputError as e:
        raise Skip(f"tokenizer unusable: {e}") from None
    width, y = 60.0, 0.0
    fig = Figure()
    ax = fig.add_subplot()
    for title, pieces in rows:
        ax.text(0, y + 1.2, f"{title}: {len(pieces)} tokens", fontsize=10, weight="bold")
        y = _draw_boxes(ax, y, pieces, width)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(y + 1.5, 2.2)
    fig.set_size_inches(12, 0.3 * (2.2 - y - 1.5) + 0.6)  # same scale on both axes: 0.2 in per x unit
    ax.set_axis_off()
    ax.set_title("How one sentence is cut into tokens by each tokenizer (\u2423 = space)")
    return _save(fig, out, "tokenization")


DRAWINGS = (  # (file that shows the figure is there, the function that draws it)
    ("loss.png", plot_loss), ("attention_layer*.png", plot_attention_layers),
    ("attention_evolution.png", plot_attention_evolution), ("attention_cube.png", plot_attention_cube),
    ("attention_evolution.gif", animate_attention), ("attention_pipeline.png", plot_attention_pipeline),
    ("embeddings_pca.png", plot_embeddings), ("tokenization.png", plot_tokenization),
)


def _drawn(out: Path, pattern: str, since: float) -> bool:
    """Whether a figure matching `pattern` is in `out` and no older than `since` (the metrics' last change)."""
    return any(p.stat().st_mtime >= since for p in out.glob(pattern))


def render_all(run_dir, notes: list[str] | None = None, only_missing: bool = False) -> list[Path]:
    """Draw every figure of a run into RUN/figures/; returns the files written.

    With `only_missing`, a figure already drawn since metrics.jsonl last changed is left as it is. A figure whose
    inputs are missing is skipped: its reason is appended to `notes` (or warned, without a list).
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder not found: {run}")
    out = run / FIGURE_DIR
    out.mkdir(exist_ok=True)
    since = (run / METRICS).stat().st_mtime if (run / METRICS).is_file() else 0.0
    written = []
    for pattern, figure in DRAWINGS:
        if only_missing and _drawn(out, pattern, since):
            continue
        try:
            written += figure(run, out)
        except Skip as e:
            note = f"{figure.__name__}: skipped ({e})"
            notes.append(note) if notes is not None else warnings.warn(note, stacklevel=2)
    return written
