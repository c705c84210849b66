"""The cover and the first chapter, "Your run at a glance": the run in six lines, how to read bits per byte, and
what the run folder lacks. The facts shown here (corpus, tokenizer, model, training, score, hardware) are the
cover's too.
"""

from __future__ import annotations

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import NOT_RECORDED, dig, fmt_params, fmt_seconds, machine_line, spread
from scratchllm.runfolder import is_finite

TITLE = "Your run at a glance"
BOOK_TITLE = "Build a Large Language Model from Scratch"


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
        f" (best {best:.4f})" if is_finite(best) and abs(best - run.final_bpb) > 5e-5 else "")


def hardware_line(run: RunSummary) -> str:
    s = run.summary
    parts = [s.get("hardware"), s.get("device"), s.get("dtype")]
    return ", ".join(str(p) for p in parts if p) or NOT_RECORDED


def facts(run: RunSummary) -> list[tuple[str, str]]:
    """The key facts of the run, as (label, value) lines for the cover and this chapter."""
    return [("Corpus", _corpus_line(run)), ("Tokenizer", _tokenizer_line(run)), ("Model", _model_line(run)),
            ("Training", _training_line(run)), ("Final bits per byte", _result_line(run)),
            ("Hardware", hardware_line(run))]


def _loss_curve(run: RunSummary, n: int = 300) -> list[tuple[float, float]]:
    """(step, loss) of the finite train records, at most n of them; spikes clipped at 1.5 x the first loss."""
    points = [(r["step"], r["loss"]) for r in run.train if is_finite(r.get("loss")) and is_finite(r.get("step"))]
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


def chapter_numbers() -> dict[str, int]:
    """Each chapter's number in the guide by its module's name (glance -> 1): its place in chapters.CHAPTERS."""
    from scratchllm.report.chapters import CHAPTERS  # imported here: that package imports this module first

    return {chapter.__name__.rsplit(".", 1)[-1]: number for number, chapter in enumerate(CHAPTERS, start=1)}


def write(book: Book, run: RunSummary) -> None:
    n = chapter_numbers()
    book.chapter(TITLE)
    book.para("A language model is a function that reads a sequence of tokens and gives, for the next position, a "
              "probability for every token of its vocabulary. Training nudges its weights so the token that really "
              "came next gets a higher probability; sampling from those probabilities, one token at a time, writes "
              "text. This guide walks that path in the order the code runs it: text becomes tokens (chapter "
              f"{n['tokenization']}), tokens look at each other through attention (chapter {n['attention']}) inside "
              f"Transformer blocks (chapter {n['block']}), the weights are trained (chapters {n['training']} and "
              f"{n['scaling']}), the model writes (chapter {n['samples']}) and learns to answer questions (chapter "
              f"{n['finetuning']}), and when something goes wrong, chapter {n['troubleshooting']} says what to look "
              "at.")
    book.table(["", "this run"], [list(f) for f in facts(run)], "The run in six lines.", "facts")
    status = run.summary.get("status")
    if status and status != "completed":
        book.note(f"This run ended as “{status}”. " + str(run.summary.get("advice") or f"See chapter "
                  f"{n['troubleshooting']} for what the doctor found."), "The run did not complete")
    _bits_per_byte(book, run)
    _about(book)
    if run.missing:
        book.section("What this run does not have")
        book.bullets([f"`{m.split(':', 1)[0]}`:{m.split(':', 1)[1]}" if ":" in m else m for m in run.missing],
                     intro="Parts of the guide need files that this run folder lacks. Each chapter says so where "
                     "the missing piece would have been shown:")


def _bits_per_byte(book: Book, run: RunSummary) -> None:
    book.section("Reading the score: bits per byte")
    book.para("The loss the model minimises is the cross-entropy of the next token in nats. Its size depends on "
              "the tokenizer: a model that predicts a whole word at a time pays more per token than one that "
              "predicts single letters. Dividing the total loss of a held-out text by its number of UTF-8 bytes "
              "and converting nats to bits gives **bits per byte**, a score that compares any two models on the "
              "same text whatever their tokenizers. Guessing uniformly among 256 byte values costs 8 bits per "
              "byte" + _baby_gpt(run) + ".")
    if run.final_bpb is not None:
        book.para(f"This run ends at **{run.final_bpb:.4f} bits per byte** on held-out text: each byte costs the "
                  f"model as much as a fair choice among {2 ** run.final_bpb:.1f} possibilities.")


def _baby_gpt(run: RunSummary) -> str:
    """The speedrun benchmark's nanoGPT baseline as a clause: "; nanoGPT's ... reaches 2.96 after 1 minute ..."."""
    data = run.benchmarks.get("speedrun")
    runs = [r for r in (dig(data, "runs") or []) if isinstance(r, dict) and dig(r, "ours.corpus") == "shakespeare"]
    points = {}  # minutes -> bits per byte, the first run of each budget
    for r in runs:
        if is_finite(r.get("minutes")) and is_finite(bpb := dig(r, "baseline.bpb.val")):
            points.setdefault(r["minutes"], bpb)
    if not points:
        return ""
    said = " and ".join(f"{bpb:.2f} after {m:g} minute{'s' if m != 1 else ''}" for m, bpb in points.items())
    where = machine_line(data)
    return (f"; nanoGPT's character-level “baby GPT” reaches {said} of CPU training on Shakespeare (benchmarks/results/"
            f"speedrun.json{'; ' + where if where else ''})")


def _about(book: Book) -> None:
    book.section("About this guide")
    book.para("The PDF is laid out with **fpdf2**: a small pure-Python library (no system libraries, no browser), "
              "which embeds TrueType fonts as subsets, writes bookmarks and a table of contents, and has tables "
              "and mixed-font paragraphs built in. The fonts are DejaVu Serif, Sans and Sans Mono, the files "
              "matplotlib ships, embedded so that every character, including the code, is selectable text.")
