"""The guide's chapters: one function per chapter, each turning a `RunSummary` into calls on a `Book`.

This module decides what the guide says and which numbers, listings and figures back it; pdf.py decides how it
looks. Every number printed comes from the run folder or the benchmark results; every listing comes from the live
source (collect.py). What a run lacks is said in a note where it would have been shown, never silently skipped.
"""

from __future__ import annotations

import math
import re
import statistics

import numpy as np

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book, Stage

BOOK_TITLE = "Build a Large Language Model from Scratch"
CHAPTER_TITLES = (
    "Your run at a glance", "Tokenization: from text to numbers", "Attention in five lines",
    "The Transformer block", "Training", "Scaling out", "Samples", "Troubleshooting",
)
SAMPLE_WORDS = ("the", " the", "To be, or not to be", " Wherefore", " unsubstantial", " honorificabilitudinitatibus",
                " 2026", " Transformer", " naïve café", " λόγος")
UNSEEN_WORD = " Shakespearification"
NOT_RECORDED = "not recorded"
PIVOTED = {"model", "generate", "tokenizer", "viz", "distributed", "speedrun"}  # benchmarks shown in their own tables


# ----------------------------------------------------------------------------- formatting


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x, digits: int = 3) -> str:
    """A number for print: ints with thousands separators, floats to `digits` significant decimals."""
    if isinstance(x, bool) or x is None:
        return {True: "yes", False: "no", None: "–"}[x]
    if isinstance(x, int):
        return f"{x:,}"
    if _finite(x):
        return f"{x:,.{digits}f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2e}"
    return str(x)


def fmt_params(n: int | None) -> str:
    """2804160 -> "2,804,160 (2.80 M)"."""
    if not isinstance(n, int):
        return NOT_RECORDED
    return f"{n:,} ({n / 1e6:.2f} M)" if n >= 1e5 else f"{n:,}"


def fmt_seconds(s) -> str:
    if not _finite(s):
        return NOT_RECORDED
    if s < 90:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s" if s < 5400 else f"{s / 3600:.1f} h"


def visible(piece: str) -> str:
    """Make whitespace and control characters of a token visible: space ␣, newline ↵, tab →."""
    piece = piece.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u2192")
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in piece)


def clean(text: str, limit: int = 1400) -> str:
    """Model output for print: control characters other than newlines dropped, cut at `limit` characters."""
    text = "".join(ch for ch in str(text) if ch == "\n" or ch.isprintable())
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def spread(items: list, n: int) -> list:
    """At most n items, evenly spaced, first and last kept."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def flatten(obj, prefix: str = "") -> list[tuple[str, object]]:
    """Nested JSON -> [(dotted.path, leaf value)]; lists are indexed."""
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in flatten(v, f"{prefix}{k}.")]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in flatten(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), obj)]


def _listing(book: Book, run: RunSummary, key: str, what: str) -> bool:
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


def _figure(book: Book, run: RunSummary, stem: str, caption: str, width: float = 1.0) -> bool:
    if stem not in run.figures:
        return False
    book.figure(run.figures[stem], caption, width)
    return True


def _missing_figure(book: Book, what: str) -> None:
    book.note(f"No {what} figure in figures/. Draw the figures with `scratchllm viz RUN_DIR` and rebuild the guide "
              "with `scratchllm report RUN_DIR`.")


def _machine(data: dict) -> str:
    m = data.get("machine") or {}
    parts = [m.get("cpu") or m.get("cpu_model"), f"torch {m['torch']}" if m.get("torch") else None,
             f"{m['threads']} threads" if m.get("threads") else None]
    return ", ".join(p for p in parts if p)


def pretty_key(key: str) -> str:
    """A benchmark's dotted key for print: "encoding.fast_encode_mb_s" -> "encoding: fast encode MB/s"."""
    *group, leaf = key.split(".")
    leaf = re.sub(r"_s$", " (s)", re.sub(r"_mb_s", " MB/s", leaf)).replace("_", " ")
    return ": ".join([*group, leaf])


def bench_table(book: Book, run: RunSummary, name: str, keep: str, caption: str, limit: int = 14) -> bool:
    """A table of the numbers in benchmarks/results/`name`.json whose dotted key matches `keep`; False if none."""
    data = run.benchmarks.get(name)
    if not isinstance(data, dict):
        return False
    rows = [[pretty_key(k), fmt(v, 3)] for k, v in flatten({k: v for k, v in data.items() if k != "machine"})
            if re.search(keep, k) and _finite(v)][:limit]
    if not rows:
        return False
    where = _machine(data)
    book.table(["measurement", "value"], rows, f"{caption} (benchmarks/results/{name}.json"
               + (f"; {where}" if where else "") + ").", widths=[136, 30], align=["LEFT", "RIGHT"], size=7.6)
    return True


def dig(record: dict, dotted: str):
    """record["a"]["b"] for "a.b", or None where the path breaks."""
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def _cell(value, decimals: int) -> str:
    return f"{value:,.0f}" if decimals == 0 and _finite(value) else fmt(value, decimals)


def bench_pivot(book: Book, run: RunSummary, name: str, path: str, columns: list[tuple[str, str, int]],
                caption: str, label: str = "model shape") -> bool:
    """A table of the records under `path` in benchmarks/results/`name`.json (a dict of dicts, labelled by key,
    or a list of dicts); columns are (dotted key, header, decimals). False if the file or the records are absent."""
    data = run.benchmarks.get(name) or {}
    found = data.get(path) if isinstance(data, dict) else None
    labelled = isinstance(found, dict)
    records = list(found.items()) if labelled else [("", r) for r in found or [] if isinstance(r, dict)]
    rows = [([label] if labelled else []) + [_cell(dig(r, k), d) for k, _, d in columns]
            for label, r in records if isinstance(r, dict)]
    if not rows:
        return False
    header = ([label] if labelled else []) + [h for _, h, _ in columns]
    first = 166 - 26 * len(columns) if labelled else 0
    where = _machine(data)
    book.table(header, rows, f"{caption} (benchmarks/results/{name}.json" + (f"; {where}" if where else "") + ").",
               widths=([first] if labelled else []) + [26] * len(columns),
               align=(["LEFT"] if labelled else []) + ["RIGHT"] * len(columns), size=7.8,
               width=(first if labelled else 0) + 26 * len(columns))
    return True


# ----------------------------------------------------------------------------- cover and chapter 1


def _model_line(run: RunSummary) -> str:
    m = run.model_config
    if not m:
        return NOT_RECORDED
    return (f"{m.get('n_layer')} layers × {m.get('n_head')} heads × {m.get('n_embd')} wide, context "
            f"{m.get('block_size')}; {fmt_params(run.n_params)} parameters")


def _corpus_line(run: RunSummary) -> str:
    corpus = run.summary.get("corpus") or {}
    name = corpus.get("name") or (run.config.get("data") or {}).get("corpus")
    size = corpus.get("bytes")
    if not name and not size:
        return NOT_RECORDED
    return f"{name or 'corpus'}" + (f", {size:,} bytes ({size / 1e6:.2f} MB)" if isinstance(size, int) else "")


def _tokenizer_line(run: RunSummary) -> str:
    info = run.summary.get("tokenizer") or {}
    kind = info.get("type") or run.tokenizer_file.get("type")
    vocab = info.get("vocab_size") or (run.tokenizer.vocab_size if run.tokenizer else None)
    names = {"bpe": "byte-level BPE", "char": "character-level", "word": "word-level"}
    return f"{names.get(kind, kind)}, {vocab:,} tokens" if kind and vocab else NOT_RECORDED


def _training_line(run: RunSummary) -> str:
    s = run.summary
    steps = s.get("steps") or (run.train[-1]["step"] if run.train else None)
    tokens = s.get("tokens") or (run.train[-1].get("tokens") if run.train else None)
    parts = [f"{steps:,} steps" if isinstance(steps, int) else None,
             f"{tokens:,} tokens" if isinstance(tokens, int) else None,
             fmt_seconds(s.get("elapsed_s") or (run.train[-1].get("elapsed_s") if run.train else None))]
    return ", ".join(p for p in parts if p and p != NOT_RECORDED) or NOT_RECORDED


def _result_line(run: RunSummary) -> str:
    if run.final_bpb is None:
        return NOT_RECORDED
    best = run.summary.get("best_val_bpb")
    return f"{run.final_bpb:.4f} bits per byte on held-out text" + (
        f" (best {best:.4f})" if _finite(best) and abs(best - run.final_bpb) > 5e-5 else "")


def _hardware_line(run: RunSummary) -> str:
    s = run.summary
    parts = [s.get("hardware"), s.get("device"), s.get("dtype")]
    return ", ".join(str(p) for p in parts if p) or NOT_RECORDED


def facts(run: RunSummary) -> list[tuple[str, str]]:
    """The key facts of the run, as (label, value) lines for the cover and chapter 1."""
    return [("Corpus", _corpus_line(run)), ("Tokenizer", _tokenizer_line(run)), ("Model", _model_line(run)),
            ("Training", _training_line(run)), ("Final bits per byte", _result_line(run)),
            ("Hardware", _hardware_line(run))]


def _loss_curve(run: RunSummary, n: int = 300) -> list[tuple[float, float]]:
    """(step, loss) of the finite train records, at most n of them; spikes clipped at 1.5 x the first loss."""
    points = [(r["step"], r["loss"]) for r in run.train if _finite(r.get("loss")) and _finite(r.get("step"))]
    cap = 1.5 * points[0][1] if points else 0
    return spread([(x, min(y, cap)) for x, y in points], n)


def cover(book: Book, run: RunSummary, built: str) -> None:
    book.cover(BOOK_TITLE, "A guide written from your own training run: the code that ran, the numbers it "
               "produced and the pictures it drew.", facts(run),
               f"Built by `scratchllm report` from {run.run_dir.resolve()} on {built}. Every listing in this guide "
               "is quoted from the installed source code when the PDF was built; every number and picture comes "
               "from the run folder or the project's benchmark results.".replace("`", ""),
               _loss_curve(run), "training loss (nats per token), step by step")
    book.contents()


def chapter_summary(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[0])
    book.para("A language model is a function that reads a sequence of tokens and gives, for the next position, a "
              "probability for every token of its vocabulary. Training nudges its weights so the token that really "
              "came next gets a higher probability; sampling from those probabilities, one token at a time, writes "
              "text. This guide walks that path in the order the code runs it: text becomes tokens (chapter 2), "
              "tokens look at each other through attention (chapter 3) inside Transformer blocks (chapter 4), the "
              "weights are trained (chapters 5 and 6), the model writes (chapter 7), and when something goes "
              "wrong, chapter 8 says what to look at.")
    book.table(["", "this run"], [list(f) for f in facts(run)], "The run in six lines.", widths=[30, 106])
    status = run.summary.get("status")
    if status and status != "completed":
        book.note(f"This run ended as “{status}”. " + str(run.summary.get("advice") or "See chapter 8 for what "
                  "the doctor found."), "The run did not complete")
    _bits_per_byte(book, run)
    _about(book)
    if run.missing:
        book.section("What this run does not have")
        book.need(min(14 + 6 * len(run.missing), 80))  # keep the list with its introduction
        book.para("Parts of the guide need files that this run folder lacks. Each chapter says so where the "
                  "missing piece would have been shown:")
        book.bullets([f"`{m.split(':', 1)[0]}`:{m.split(':', 1)[1]}" if ":" in m else m for m in run.missing])


def _bits_per_byte(book: Book, run: RunSummary) -> None:
    book.section("Reading the score: bits per byte")
    book.para("The loss the model minimises is the cross-entropy of the next token in nats. Its size depends on "
              "the tokenizer: a model that predicts a whole word at a time pays more per token than one that "
              "predicts single letters. Dividing the total loss of a held-out text by its number of UTF-8 bytes "
              "and converting nats to bits gives **bits per byte**, a score that compares any two models on the "
              "same text whatever their tokenizers. Guessing uniformly among 256 byte values costs 8 bits per "
              "byte; nanoGPT's character-level “baby GPT” reaches 2.77 after 52 seconds of CPU training and "
              "2.34 after five minutes on this project's reference machine.")
    if run.final_bpb is not None:
        book.para(f"This run ends at **{run.final_bpb:.4f} bits per byte** on held-out text: each byte costs the "
                  f"model as much as a fair choice among {2 ** run.final_bpb:.1f} possibilities.")


def _about(book: Book) -> None:
    book.section("About this guide")
    book.para("The PDF is laid out with **fpdf2**: a small pure-Python library (no system libraries, no browser), "
              "which embeds TrueType fonts as subsets, writes bookmarks and a table of contents, and has tables "
              "and mixed-font paragraphs built in. The fonts are DejaVu Serif, Sans and Sans Mono, the files "
              "matplotlib ships, embedded so that every character, including the code, is selectable text.")


# ----------------------------------------------------------------------------- chapter 2: tokenization


def _worked_example(book: Book) -> None:
    try:
        from scratchllm.tokenizer.basic import train_naive
    except ImportError:
        return
    merges = train_naive("aaabdaaabac", 3)
    names = {i: chr(i) for i in range(256)}
    steps = []
    for k, (a, b) in enumerate(merges):
        names[256 + k] = names[a] + names[b]
        steps.append(f"merge {k + 1}: ({a}, {b}) = “{names[a]}” + “{names[b]}” becomes token {256 + k}, "
                     f"“{names[256 + k]}”")
    book.para("Run on the string “aaabdaaabac”, the loop below learns, just now while this guide was built:")
    book.bullets(steps)


def _first_merges(book: Book, run: RunSummary, n: int = 30) -> None:
    merges = run.tokenizer_file.get("merges") or []
    if not merges or run.tokenizer is None:
        kind = run.tokenizer_file.get("type")
        book.note(f"This run's tokenizer ({kind or 'none found'}) has no merges to show: only a byte-level BPE "
                  "tokenizer learns them.", "No merges")
        return
    tok = run.tokenizer
    label = [f"{visible(tok.token_bytes(a).decode('utf-8', 'replace'))} + "
             f"{visible(tok.token_bytes(b).decode('utf-8', 'replace'))} → "
             f"{visible(tok.token_bytes(256 + k).decode('utf-8', 'replace'))}" for k, (a, b) in enumerate(merges[:n])]
    rows_n = math.ceil(len(label) / 3)
    rows = [[c for j in range(3) for c in ((str(i + j * rows_n + 1), label[i + j * rows_n])
                                           if i + j * rows_n < len(label) else ("", ""))] for i in range(rows_n)]
    book.table(["#", "merge", "#", "merge", "#", "merge"], rows,
               f"The first {len(label)} of the {len(merges):,} merges learned on this corpus (␣ is a space, ↵ a "
               "newline).", widths=[7, 48, 7, 48, 7, 48], align=["RIGHT", "LEFT"] * 3, size=7.8)


def _pieces(tok, text: str) -> tuple[str, str]:
    """How `tok` splits `text`: the pieces joined by bars and their number (or why it cannot)."""
    from scratchllm.config import InputError

    try:
        ids = tok.encode(text)
    except InputError as e:
        return f"cannot encode: {e}", "–"
    return " | ".join(visible(tok.token_bytes(i).decode("utf-8", "replace")) for i in ids), str(len(ids))


def _word_splits(book: Book, run: RunSummary) -> None:
    if run.tokenizer is None:
        book.note("No tokenizer.json in the run folder, so no words can be split here.")
        return
    rows = [[visible(w), *_pieces(run.tokenizer, w)] for w in SAMPLE_WORDS]
    book.table(["text", "tokens of this run's tokenizer", "n"], rows,
               "How this run's tokenizer cuts some words (pieces separated by |; ␣ is a space).",
               widths=[54, 100, 12], align=["LEFT", "LEFT", "RIGHT"], size=8)
    if not _figure(book, run, "tokenization", "One sentence cut by a character-level tokenizer, this run's "
                   "tokenizer and a word-level tokenizer."):
        _missing_figure(book, "tokenization")


def _comparison(book: Book, run: RunSummary) -> None:
    result = run.comparison
    if not result or not result.get("rows"):
        book.note("No tokenizer_comparison.json in the run folder. `scratchllm tokenizer compare --input CORPUS "
                  "--vocab-size N --out RUN_DIR` writes it (quickstart does so for you).")
        return
    pct = lambda v: f"{100 * v:.2f}%" if _finite(v) else "–"  # noqa: E731
    rows = [[r.get("name", "?"), f"{r['train_s']:.3f}" if _finite(r.get("train_s")) else "–", fmt(r.get("vocab_size")),
             fmt(r.get("bytes_per_token"), 3), fmt(r.get("encode_mb_s"), 1), pct(r.get("unknown_share")),
             fmt(r.get("round_trip"))] for r in result["rows"]]
    book.table(["tokenizer", "train s", "vocab", "bytes / token", "encode MB/s", "unknown words", "exact round trip"],
               rows, f"Tokenizers trained on the first {fmt(result.get('train_bytes'))} bytes of the corpus and "
               f"measured on the last {fmt(result.get('held_out_bytes'))} (vocabulary {fmt(result.get('vocab_size'))}"
               ").", widths=[56, 15, 15, 18, 20, 20, 22], align=["LEFT"] + ["RIGHT"] * 6, size=7.4)
    ratio = result.get("ours_vs_hf_bytes_per_token")
    if _finite(ratio):
        book.para(f"At the same split pattern our tokenizer packs {ratio:.3f} times as many bytes into a token as "
                  "Hugging Face's: the same algorithm gives the same compression, which is the check that matters. "
                  "More bytes per token means shorter sequences, so the model sees more text per step.")


def _unknown_words(book: Book, run: RunSummary) -> None:
    share = next((r.get("unknown_share") for r in (run.comparison or {}).get("rows", [])
                  if str(r.get("name", "")).startswith("word")), None)
    measured = (f" In the comparison above, {100 * share:.2f}% of the held-out words were unknown to the word-level "
                "tokenizer and came out as <unk>.") if _finite(share) else ""
    book.para("A word-level tokenizer keeps the most frequent words of its training text and maps every other "
              "word to a single <unk> token: the model can neither read nor write a word it has not seen, and "
              "names, spelling variants and new coinages are exactly such words." + measured + " Byte-level BPE "
              "starts from the 256 byte values, so any text at all, in any language or none, can be written as "
              "tokens; a rare word simply takes more of them.")
    if run.tokenizer is not None:
        pieces, n = _pieces(run.tokenizer, UNSEEN_WORD)
        word = UNSEEN_WORD.strip()
        if n == "–":
            book.para(f"This run's tokenizer cannot even encode a word no corpus contains, “{word}”: {pieces}",
                      markup=False)
            return
        exact = run.tokenizer.decode(run.tokenizer.encode(UNSEEN_WORD)) == UNSEEN_WORD
        book.para(f"For example, a word no corpus contains, “{word}”, becomes {n} tokens here: {pieces}. Decoding "
                  f"them gives {'the word back exactly' if exact else 'a different text'}.", markup=False)


def chapter_tokenization(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[1])
    book.para("A neural network computes with numbers, so text must first become a sequence of integers, the "
              "**token ids**. Single characters make sequences long and every prediction small; whole words make "
              "sequences short but leave the model helpless before a word it has never seen. **Byte-pair "
              "encoding** (BPE) sits between: it starts from the 256 possible bytes of UTF-8 text and repeatedly "
              "glues together the pair of adjacent tokens that occurs most often, giving each new pair its own id, "
              "until the vocabulary has the size asked for.")
    book.section("The merge loop, from the source")
    _worked_example(book)
    _listing(book, run, "get_stats", "count adjacent pairs")
    _listing(book, run, "merge", "replace one pair by its new id")
    _listing(book, run, "train_naive", "the teaching version of training: recount, pick, merge, repeat")
    book.para("That version recounts every pair of the whole text after each merge: clear, and far too slow for "
              "megabytes. The trainer that built this run's tokenizer picks the same pairs in the same order (a "
              "test proves the merge lists equal) but counts each distinct chunk once and, after a merge, updates "
              "only the counts of the chunks that contained the pair:")
    _listing(book, run, "train_merges", "the incremental trainer used for real runs")
    book.section("The first merges learned on this corpus")
    _first_merges(book, run)
    book.section("How words are split")
    _word_splits(book, run)
    book.section("BPE beside other tokenizers")
    _comparison(book, run)
    bench_table(book, run, "tokenizer", r"encoding\.|ratio|best_s", "Tokenizer training time and encoding speed on "
                "the whole built-in corpus, ours beside HF tokenizers and tiktoken")
    book.section("Why BPE never meets an unknown word")
    _unknown_words(book, run)


# ----------------------------------------------------------------------------- chapter 3: attention


def _matrix_table(book: Book, tokens: list[str], mat: np.ndarray, caption: str, digits: int = 2) -> None:
    n = len(tokens)
    rows = [[visible(tokens[i])] + [f"{mat[i, j] + 0.0:.{digits}f}".replace("-0.00", "0.00") if j <= i else "·"
                                    for j in range(n)] for i in range(n)]
    book.table(["query \\ key"] + [visible(t) for t in tokens], rows, caption,
               widths=[26] + [min(17, 140 / n)] * n, align=["LEFT"] + ["RIGHT"] * n, size=7.5,
               width=26 + min(17, 140 / n) * n)


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
               f"over {last.shape[1]} heads), before and after training.", widths=[34, 40, 18, 40, 18],
               align=["LEFT", "LEFT", "RIGHT", "LEFT", "RIGHT"], size=8, width=150)


def _evolution(book: Book, run: RunSummary) -> None:
    att = run.attention
    rows = [[fmt(s["step"]), f"{s['entropy_bits']:.2f}", f"{s['uniform_bits']:.2f}", f"{100 * s['previous']:.1f}%",
             f"{100 * s['first']:.1f}%"] for s in spread(att.stats, 10)]
    book.table(["step", "entropy (bits)", "uniform (bits)", "on previous token", "on first token"], rows,
               "How the attention of the probe changed over training (mean over layers, heads and positions).",
               widths=[24, 30, 30, 34, 34], align=["RIGHT"] * 5, size=8, width=152)
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


def chapter_attention(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[2])
    book.para("Attention is how a token gathers information from the tokens before it. Each position emits three "
              "vectors, all computed from its current representation by learned matrices: a **query** (what am I "
              "looking for?), a **key** (what do I contain?) and a **value** (what do I pass on if chosen?). The "
              "query of a position is compared with the key of every earlier position; the better the match, the "
              "more of that position's value flows in. Here is all of it, as this project computes it:")
    book.section("The five lines")
    if _listing(book, run, "reference_attention", "the explicit attention the model's SDPA path is tested against"):
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
    if not _figure(book, run, "attention_pipeline", "The pipeline of one head on the probe text: queries, keys, "
                   "scores, mask, softmax, and the weighted values."):
        _missing_figure(book, "attention pipeline")
    book.section("What each token looks at")
    _looks_at(book, run)
    layer_figs = sorted((s for s in run.figures if re.fullmatch(r"attention_layer\d+", s)), key=lambda s: int(s[15:]))
    for stem in layer_figs[-1:]:
        _figure(book, run, stem, f"Every head of layer {stem[15:]}, the last, at the last recorded step: row = "
                "query, column = key.")
    book.section("How attention changed during training")
    _evolution(book, run)
    _figure(book, run, "attention_evolution", "The heads of one layer (columns) at recorded training steps (rows); "
            "figures/attention_evolution.gif animates them.")
    _figure(book, run, "attention_cube", "The same weights stacked by training step: the 3-D cube.", 0.8)


# ----------------------------------------------------------------------------- chapter 4: the block


def _stages(m: dict) -> tuple[list[Stage], tuple[int, int, str], list[tuple[int, int]]]:
    C, H, L, V = m.get("n_embd"), m.get("n_head"), m.get("n_layer"), m.get("vocab_size")
    norm = "RMSNorm" if m.get("norm_type") == "rmsnorm" else "LayerNorm"
    act = m.get("activation", "gelu")
    hidden = "8C/3 (gated)" if act == "swiglu" else f"{4 * C}" if isinstance(C, int) else "4C"
    pos = " + position embedding" if m.get("positions", "learned") == "learned" else " (rotary positions in q, k)"
    head = "linear head" + (", tied to the embedding" if m.get("tie_weights", True) else "")
    top = [Stage("token ids", f"up to {m.get('block_size')} positions"), Stage("token embedding" + pos,
                                                                                 f"{V} × {C}", "embed")]
    attn = Stage("causal self-attention", f"{H} heads × {C // H if C and H else '?'} dims, then c_proj", "attn")
    mlp = Stage("MLP", f"{C} → {hidden} → {C}, {act}", "mlp")
    add = Stage("add", "residual", "add")
    tail = [Stage(head, f"{C} → {V} logits", "head"), Stage("softmax", "next-token probabilities")]
    if m.get("norm", "pre") == "pre":
        body = [Stage(norm, "ln_1", "norm"), attn, add, Stage(norm, "ln_2", "norm"), mlp, add]
        return top + body + [Stage(norm, "ln_f (final)", "norm")] + tail, (2, 7, f"× {L}\nblocks"), [(2, 4), (5, 7)]
    body = [attn, add, Stage(norm, "ln_1", "norm"), mlp, add, Stage(norm, "ln_2", "norm")]
    return top + body + tail, (2, 7, f"× {L}\nblocks"), [(2, 3), (5, 6)]


def _param_table(book: Book, run: RunSummary) -> None:
    L = run.model_config.get("n_layer", 1)
    total = run.params_total or 1
    rows = []
    for p in run.params:
        n_all = p.count * L if p.per_block else p.count
        per_block = f"{p.count:,}" if p.per_block else ""
        rows.append([p.name, p.shape, per_block, f"{n_all:,}", f"{100 * n_all / total:.1f}%"])
    rows.append(["total", "", "", f"{run.params_total:,}", "100%"])
    book.table(["part", "tensor shapes", "per block", "in the model", "share"], rows,
               f"Parameters of this model, part by part ({L} blocks).", widths=[58, 38, 22, 26, 16],
               align=["LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT"], size=8)
    if run.model_config.get("tie_weights", True):
        book.para("The output head shares its matrix with the token embedding (weight tying, as in GPT-2), so it "
                  "adds no parameters: the same vector that represents a token on the way in scores it on the way "
                  "out.")


def chapter_block(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[3])
    m = run.model_config
    book.para("A GPT is a stack of identical **Transformer blocks** between an embedding table and an output head. "
              "Each position carries a vector of width C, the **residual stream**. A block reads the stream, "
              "computes something, and adds the result back: first **multi-head attention**, where each of H "
              "heads attends with its own C/H-dimensional queries, keys and values and the heads' outputs are "
              "concatenated and projected; then a **feed-forward network** (MLP) that widens each position to 4C, "
              "applies a non-linearity and narrows it again, position by position. A **normalisation** "
              + ("after each residual addition (post-norm, as in the 2017 Transformer)" if m.get("norm") == "post"
                 else "before each branch (pre-norm, as in GPT-2)")
              + " keeps the scale of the numbers steady; the **residual additions** let gradients flow straight "
              "through a deep stack.")
    if not m:
        book.note("No model configuration in config.json or checkpoints/latest/config.json: the diagram and the "
                  "parameter counts of this model cannot be drawn.")
        _listing(book, run, "block", "one Transformer block")
        return
    book.section("The block, drawn")
    stages, repeat, skips = _stages(m)
    book.stack_diagram(stages, repeat, skips, f"This model: {m.get('norm', 'pre')}-norm blocks, "
                       f"{m.get('n_layer')} of them; blue lines are the residual connections.")
    _figure(book, run, "embeddings_pca", "The token embedding table of this model seen from its two main directions "
            "(PCA): tokens the model treats alike sit close together.", 0.85)
    book.section("Parameters, part by part")
    if run.params:
        _param_table(book, run)
    book.section("The block, from the source")
    _listing(book, run, "block", "one Transformer block")


# ----------------------------------------------------------------------------- chapter 5: training


def _loss_section(book: Book, run: RunSummary) -> None:
    if not _figure(book, run, "loss", "Training loss per step, train and validation loss at each evaluation, "
                   "and the learning-rate schedule (grey, right axis)."):
        _missing_figure(book, "loss")
    if run.evals:
        rows = [[fmt(e.get("step")), fmt(e.get("train_loss")), fmt(e.get("val_loss")), fmt(e.get("val_ppl"), 2),
                 fmt(e.get("val_bpb"), 4)] for e in spread(run.evals, 12)]
        book.table(["step", "train loss", "val loss", "val perplexity", "val bits / byte"], rows,
                   "Evaluations during training (losses in nats per token).", widths=[24, 30, 30, 32, 32],
                   align=["RIGHT"] * 5, size=8, width=148)
    else:
        book.note("metrics.jsonl holds no evaluation records, so no validation numbers can be shown.")
    if run.events:
        rows = [[fmt(e.get("step")), str(e.get("event", "")), str(e.get("message", ""))] for e in run.events[:15]]
        book.table(["step", "event", "message"], rows, "Events logged by the trainer.", widths=[18, 26, 122],
                   align=["RIGHT", "LEFT", "LEFT"], size=8)


def _schedule(book: Book, run: RunSummary) -> None:
    lrs = [(r["step"], r["lr"]) for r in run.train if _finite(r.get("lr")) and "step" in r]
    if not lrs:
        return
    peak = max(lr for _, lr in lrs)
    warm = next(s for s, lr in lrs if lr >= 0.99 * peak)
    book.para(f"The learning rate rose to its peak of {peak:.3g} by step {warm:,} (warm-up: large early updates "
              f"on random weights would do harm) and ended at {lrs[-1][1]:.3g}: decaying it lets the weights "
              "settle into a minimum instead of bouncing around it.")


def _speed(book: Book, run: RunSummary) -> None:
    steady = run.train[1:] or run.train
    med = lambda key: statistics.median(v for r in steady if _finite(v := r.get(key))) if any(  # noqa: E731
        _finite(r.get(key)) for r in steady) else None
    mem = max((r["mem_mb"] for r in run.train if _finite(r.get("mem_mb"))), default=run.summary.get("peak_mem_mb"))
    rows = [["tokens per second (median)", fmt(med("tokens_per_s"), 0)],
            ["model FLOPs utilisation, MFU (median)", f"{100 * med('mfu'):.2f}%" if med("mfu") is not None else "–"],
            ["peak memory", f"{mem:,.0f} MB" if _finite(mem) else "–"],
            ["training FLOPs per token", fmt(run.flops_per_token, 0) if run.flops_per_token else "–"],
            ["wall-clock time", fmt_seconds(run.summary.get("elapsed_s") or (run.train[-1].get("elapsed_s")
                                                                            if run.train else None))]]
    book.table(["measure", "this run"], rows, "Speed and memory of this run.", widths=[80, 50], width=130,
               align=["LEFT", "RIGHT"], size=8.5)
    book.para("**MFU** compares the arithmetic the model needs with what the hardware could do: tokens per second "
              "× training FLOPs per token (6 per weight for the forward and backward matrix products, plus the "
              "attention scores), divided by the peak FLOP/s of the device. Small models on a CPU rarely pass "
              "30-40%: their matrices are too small to keep the arithmetic units busy.")


def _memory_rows(run: RunSummary) -> list[list[str]]:
    """(source, setting or measurement, value) rows about memory techniques: the run's config, then benchmarks."""
    pattern = re.compile(r"accum|checkpointing|bf16|bfloat|dtype|autocast|peak|mem|rss", re.I)
    rows = [["this run's config", f"train.{k}", fmt(v)] for k, v in (run.config.get("train") or {}).items()
            if pattern.search(k) and not isinstance(v, (dict, list))]
    if _finite(run.summary.get("peak_mem_mb")):
        rows.append(["this run's summary", "peak memory (MB)", fmt(run.summary["peak_mem_mb"], 0)])
    for name, data in sorted(run.benchmarks.items()):
        if name in PIVOTED:
            continue
        hits = [(k, v) for k, v in flatten(data) if pattern.search(k.rsplit(".", 1)[-1]) and _finite(v)]
        rows += [[f"benchmarks: {name}.json", k.replace("shapes.", "").replace("_", " "), fmt(v)] for k, v in hits[:8]]
    return rows[:24]


def _memory(book: Book, run: RunSummary) -> None:
    book.bullets([
        "**Gradient accumulation** runs several small micro-batches and adds their gradients before one optimiser "
        "step: the same update as one big batch, with the activation memory of a small one.",
        "**Activation checkpointing** keeps only each block's input during the forward pass and recomputes the "
        "rest during the backward pass: memory for activations drops to about one block's worth, for roughly "
        "one extra forward pass of compute.",
        "**bfloat16** stores activations (and does matrix products) in 16 bits with float32's exponent range: "
        "half the memory and, on hardware with bf16 units, several times the speed; weights and optimiser "
        "state stay in float32."])
    measured = bench_pivot(book, run, "model", "shapes", [("sdpa_tokens_per_s", "tokens/s", 0), (
        "grad_checkpointing_tokens_per_s", "checkpointed", 0), ("grad_checkpointing_slowdown", "slow-down", 2)],
        "The price of activation checkpointing in training speed")
    rows = _memory_rows(run)
    if rows:
        book.table(["source", "setting or measurement", "value"], rows, "What this run used and what the project's "
                   "benchmarks measured about these techniques.", widths=[42, 100, 24], align=["LEFT", "LEFT", "RIGHT"],
                   size=7.6)
    elif not measured:
        book.note("Neither this run's config nor benchmarks/results/ holds measurements of these techniques. "
                  "`make bench` produces them.")


def _speedrun(book: Book, run: RunSummary) -> None:
    if "speedrun" not in run.benchmarks:
        return
    book.section("The CPU speedrun: against nanoGPT at equal time")
    book.para("`scratchllm speedrun --minutes M` trains the best model this machine can in M minutes and scores it "
              "in bits per byte on held-out Shakespeare, beside nanoGPT's character-level baby GPT trained for the "
              "same wall-clock time on the same text. A ratio below 1 means our recipe wins.")
    bench_pivot(book, run, "speedrun", "runs", [("minutes", "minutes", 1), ("baseline.bpb.val", "nanoGPT bits/byte", 3),
                ("ours.bpb.val", "ours bits/byte", 3), ("ratio.val", "ours / nanoGPT", 3),
                ("ours.tokens_per_s", "our tokens/s", 0)], "Validation bits per byte after equal training time")


def _recipe(book: Book, run: RunSummary) -> None:
    """The run's resolved settings (config.json), two per row."""
    items = [(f"{group}.{k}", visible(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else
              str(v) if isinstance(v, int) and not isinstance(v, bool) else fmt(v))
             for group in ("data", "tokenizer", "train") for k, v in (run.config.get(group) or {}).items()
             if not isinstance(v, (dict, list))]
    if not items:
        return
    half = math.ceil(len(items) / 2)
    rows = [[*items[i], *(items[i + half] if i + half < len(items) else ("", ""))] for i in range(half)]
    book.table(["setting", "value", "setting", "value"], rows, "The recipe of this run, as config.json records it.",
               widths=[48, 35, 48, 35], align=["LEFT", "RIGHT", "LEFT", "RIGHT"], size=7.6)


def chapter_training(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[4])
    book.para("Training repeats one step many times: take a batch of token sequences from the corpus, run the "
              "model to get next-token logits at every position, measure the cross-entropy against the tokens "
              "that really follow, backpropagate to get a gradient for every weight, and let the AdamW optimiser "
              "move the weights a little downhill. The size of that move is the **learning rate**, which follows "
              "a schedule: a short warm-up, then a slow decay.")
    _recipe(book, run)
    _listing(book, run, "train_step", "one optimisation step")
    _listing(book, run, "lr_at", "the learning-rate schedule")
    book.section("Loss curves and the learning rate")
    if not run.train:
        book.note("metrics.jsonl is missing or holds no training records: there are no curves to show.")
    _loss_section(book, run)
    _schedule(book, run)
    book.section("Tokens per second and MFU")
    if run.train:
        _speed(book, run)
    book.section("Saving memory: accumulation, checkpointing, bfloat16")
    _memory(book, run)
    _speedrun(book, run)


# ----------------------------------------------------------------------------- chapter 6: scaling out


def _scaling_rows(run: RunSummary) -> list[list[str]]:
    rows = []
    for name, data in sorted(run.benchmarks.items()):
        if re.search(r"dist|ddp|fsdp|scal", name, re.I) and name not in PIVOTED:
            rows += [[f"{name}: {k}", fmt(v)] for k, v in flatten(data) if _finite(v)][:16]
    return rows


def _torchrun(args: list[str], nproc: int) -> str:
    """The command `scratchllm train --nproc N` runs, as distributed.torchrun_command builds it (or a plain one)."""
    try:
        from scratchllm.distributed import torchrun_command
    except ImportError:
        return shell_lines(["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", "scratchllm", *args])
    return shell_lines(["python", *torchrun_command(args, nproc)[1:]])


def shell_lines(words: list[str], width: int = 88) -> str:
    """A command as lines of at most ~width characters joined by shell continuations (\\)."""
    lines = [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) + 3 > width:
            lines.append("   ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    return " \\\n".join(lines)


def chapter_scaling(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[5])
    config = run.run_dir / "config.json"
    book.para("One process on one device sets the speed limit of everything above. To train faster, or a model "
              "too big for one device, the work is spread over several processes, one per GPU (or per group of "
              "CPU cores), started by PyTorch's `torchrun`. The commands below rerun this very run's configuration "
              "on 8 processes.")
    book.section("Data parallel: DistributedDataParallel")
    book.para("Every process holds a full copy of the model and reads a different slice of each batch. After the "
              "backward pass the gradients are averaged across processes (an all-reduce, overlapped with the "
              "backward computation), so every copy takes the same step and the copies stay identical. N "
              "processes see N times the tokens per step; the effective batch grows N-fold.")
    args = ["train", "--config", str(config), "--out", "runs/ddp"]
    book.code(f"scratchllm {' '.join(args[:3])} --nproc 8 --out runs/ddp\n"
              f"# which starts, one process per device:\n{_torchrun(args, 8)}",
              "Data-parallel training on 8 devices.", python=False)
    _listing(book, run, "wrap_ddp", "wrapping the model for data parallelism")
    book.section("Sharded: FSDP2")
    book.para("When the weights, gradients and AdamW state (16 bytes per parameter in float32) no longer fit on one "
              "device, fully sharded data parallelism gives each process only a 1/N slice of every tensor. Before "
              "a block runs, its full weights are gathered from all processes and freed again afterwards; its "
              "gradients are reduced and scattered back to their owners. Memory per device falls nearly N-fold "
              "for the price of more communication. PyTorch's second version, `fully_shard`, shards each block "
              "separately so that gathering the next block overlaps with computing this one.")
    _listing(book, run, "wrap_fsdp2", "sharding each block, then the root, with FSDP2")
    book.section("Measured scaling")
    rows = _scaling_rows(run)
    if bench_pivot(book, run, "distributed", "rows", [("mode", "mode", 0), ("nproc", "processes", 0),
                   ("tokens_per_s", "tokens/s", 0), ("efficiency", "efficiency", 2)],
                   "Training throughput by number of processes; efficiency = tokens/s ÷ (processes × one process)"):
        book.para("Perfect scaling would keep the efficiency at 1.00: every added process would add a whole "
                  "process's worth of tokens per second. The shortfall is the time spent averaging gradients "
                  "(and, for FSDP2, gathering weights) that the computation does not hide.")
    elif rows:
        book.table(["benchmark: measurement", "value"], rows, "Scaling measurements from benchmarks/results/.",
                   widths=[136, 30], align=["LEFT", "RIGHT"], size=7.6)
    else:
        book.note("No scaling measurements in benchmarks/results/ (a distributed benchmark run on a machine with "
                  "several devices writes them). This run used: " + (_hardware_line(run) or NOT_RECORDED) + ".")


# ----------------------------------------------------------------------------- chapter 7: samples


def _sample(book: Book, sample: dict, limit: int) -> None:
    prompt = str(sample.get("prompt", ""))
    book.sample(clean(prompt, 300), clean(sample.get("text", ""), limit), visible(prompt)[:60])


def chapter_samples(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[6])
    book.para("The trained model writes by repeating one move: compute the probabilities of the next token, draw "
              "one (sharpened by a temperature below 1, or restricted to the k likeliest or to the top-p of the "
              "probability mass), append it and go again. Below, the prompt is in bold and the rest is the model's.")
    _listing(book, run, "sample_next_token", "choosing the next token")
    book.para("Generating token by token naively recomputes the keys and values of the whole context for every new "
              "token. A **KV cache** keeps them: each step feeds only the newest token, which attends to the cached "
              "keys and values, so the work per token no longer grows with the length of the text.")
    bench_pivot(book, run, "generate", "kv_cache", [("context", "context", 0), ("naive_tokens_per_s",
                "naive tokens/s", 1), ("kv_cache_tokens_per_s", "cached tokens/s", 1), ("speedup", "speed-up", 1)],
                "Decoding speed with and without the KV cache")
    bench_pivot(book, run, "generate", "vs_transformers", [("prompt", "prompt", 0), ("new_tokens", "new tokens", 0),
                ("ours_tokens_per_s", "ours tokens/s", 1), ("hf_tokens_per_s", "HF tokens/s", 1),
                ("ratio", "ours / HF", 2), ("same_tokens", "same tokens", 0)],
                "Our KV-cache generation beside Hugging Face transformers' generate() on the same weights")
    samples = list({(s.get("step"), str(s.get("prompt", "")), str(s.get("text", ""))): s for s in run.samples}.values())
    steps = sorted({s.get("step") for s in samples if isinstance(s.get("step"), int)})
    if not steps:
        book.note("samples.jsonl is missing or empty: this run wrote no samples.")
        return
    final = [s for s in samples if s.get("step") == steps[-1]][:6]
    book.section(f"At the end of training (step {steps[-1]:,})")
    for s in final:
        _sample(book, s, 1400)
    if len(steps) > 1:
        early = [s for s in samples if s.get("step") == steps[0]][:2]
        book.section(f"Early in training (step {steps[0]:,})")
        book.para("For contrast, what the same model wrote before it had learned much:")
        for s in early:
            _sample(book, s, 700)


# ----------------------------------------------------------------------------- chapter 8: troubleshooting


TROUBLES = [
    ("Loss becomes NaN or jumps up and stays high", "learning rate too high, too short a warm-up, or float16 "
     "overflow", "lower train LR 2-3×, lengthen warm-up, clip gradients at 1.0, use bfloat16 rather than float16 "
     "(the trainer rolls back and halves the LR by itself)"),
    ("Loss barely moves from the start", "learning rate far too low, or inputs and targets misaligned",
     "run scratchllm lr-find and take its suggestion; targets must be the inputs shifted by one token"),
    ("Train loss falls while validation loss rises", "overfitting: the model memorises a corpus too small "
     "for it", "more text, dropout 0.1-0.2, a smaller model, or stop at the best validation loss"),
    ("Samples repeat one phrase", "an undertrained or small model, or greedy decoding",
     "train longer; sample with temperature 0.8-1.0 and top-k 50 or top-p 0.9"),
    ("Samples are gibberish", "too few steps, or the wrong tokenizer for the checkpoint",
     "train longer; generate with the run folder so its own tokenizer.json is used"),
    ("Out of memory", "batch × context too large for the device", "smaller micro-batches with gradient "
     "accumulation, activation checkpointing, bfloat16"),
    ("Few tokens per second", "matrices too small for the hardware, Python overhead, too many or too few threads",
     "larger batches, fused SDPA attention, bfloat16 on CPUs with AMX or on GPUs"),
    ("“exceeds block_size” error", "a sequence longer than the model's context", "shorter prompts; generation "
     "crops the context by itself"),
    ("“cannot encode” with a char tokenizer", "characters absent from the training text", "use byte-level BPE, "
     "which can encode any text"),
    ("A resumed run behaves differently", "the config changed between the runs", "resume with the same config; "
     "--resume restores weights, optimiser state and random generators"),
]


def _findings(book: Book, run: RunSummary) -> None:
    if run.doctor is None:
        why = next((m for m in run.missing if m.startswith("doctor.json")), "doctor.json: not in the run folder")
        book.note(f"{why}. `scratchllm doctor RUN_DIR` examines the run and writes it.")
        return
    if not run.doctor:
        book.para("The doctor examined this run's metrics and samples and found nothing wrong.")
        return
    for f in run.doctor:
        book.need(30)
        book.para(f"**{str(f.get('severity', 'note')).capitalize()}: {f.get('symptom', '')}**")
        book.bullets([f"**Evidence.** {f.get('evidence', '')}", f"**Likely cause.** {f.get('cause', '')}",
                      f"**Fix.** {f.get('fix', '')}"])


def chapter_troubleshooting(book: Book, run: RunSummary) -> None:
    book.chapter(CHAPTER_TITLES[7])
    book.section("Symptom, likely cause, solution")
    book.table(["symptom", "likely cause", "solution"], [list(r) for r in TROUBLES], "Common problems in training "
               "a small language model.", widths=[44, 52, 70], size=7.8)
    book.section("What the doctor found in this run")
    _findings(book, run)


CHAPTERS = (chapter_summary, chapter_tokenization, chapter_attention, chapter_block, chapter_training,
            chapter_scaling, chapter_samples, chapter_troubleshooting)
