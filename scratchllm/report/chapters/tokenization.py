"""The chapter "Tokenization: from text to numbers": the BPE merge loop from the source, the first merges this run
learned, how its tokenizer cuts words, how it compares with other tokenizers, and why BPE never meets an unknown word.
"""

from __future__ import annotations

import math

from scratchllm.config import InputError
from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import bench_table, figure_or_note, fmt, listing
from scratchllm.runfolder import is_finite, token_text
from scratchllm.viz import visible

TITLE = "Tokenization: from text to numbers"
SAMPLE_WORDS = ("the", " the", "To be, or not to be", " Wherefore", " unsubstantial", " honorificabilitudinitatibus",
                " 2026", " Transformer", " naïve café", " λόγος")
UNSEEN_WORD = " Shakespearification"


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
    label = [f"{visible(token_text(tok, a))} + {visible(token_text(tok, b))} → {visible(token_text(tok, 256 + k))}"
             for k, (a, b) in enumerate(merges[:n])]
    rows_n = math.ceil(len(label) / 3)
    rows = [[c for j in range(3) for c in ((str(i + j * rows_n + 1), label[i + j * rows_n])
                                           if i + j * rows_n < len(label) else ("", ""))] for i in range(rows_n)]
    book.table(["#", "merge", "#", "merge", "#", "merge"], rows,
               f"The first {len(label)} of the {len(merges):,} merges learned on this corpus (␣ is a space, ↵ a "
               "newline).")


def _pieces(tok, text: str) -> tuple[str, str]:
    """How `tok` splits `text`: the pieces joined by bars and their number (or why it cannot)."""
    try:
        ids = tok.encode(text)
    except InputError as e:
        return f"cannot encode: {e}", "–"
    return " | ".join(visible(token_text(tok, i)) for i in ids), str(len(ids))


def _word_splits(book: Book, run: RunSummary) -> None:
    if run.tokenizer is None:
        book.note("No tokenizer.json in the run folder, so no words can be split here.")
        return
    rows = [[visible(w), *_pieces(run.tokenizer, w)] for w in SAMPLE_WORDS]
    book.table(["text", "tokens of this run's tokenizer", "n"], rows,
               "How this run's tokenizer cuts some words (pieces separated by |; ␣ is a space).", "prose")
    figure_or_note(book, run, "tokenization", "tokenization", "One sentence cut by a character-level tokenizer, "
                   "this run's tokenizer and a word-level tokenizer.")


def _comparison(book: Book, run: RunSummary) -> None:
    result = run.comparison
    if not result or not result.get("rows"):
        book.note("No tokenizer_comparison.json in the run folder. `scratchllm tokenizer compare --input CORPUS "
                  "--vocab-size N --out RUN_DIR` writes it (quickstart does so for you).")
        return
    pct = lambda v: f"{100 * v:.2f}%" if is_finite(v) else "–"  # noqa: E731
    rows = [[r.get("name", "?"), fmt(r.get("train_s"), 3), fmt(r.get("vocab_size")),
             fmt(r.get("bytes_per_token"), 3), fmt(r.get("encode_mb_s"), 1), pct(r.get("unknown_share")),
             fmt(r.get("round_trip"))] for r in result["rows"]]
    book.table(["tokenizer", "train s", "vocab", "bytes per token", "encode MB/s", "unknown words", "exact round trip"],
               rows, f"Tokenizers trained on the first {fmt(result.get('train_bytes'))} bytes of the corpus and "
               f"measured on the last {fmt(result.get('held_out_bytes'))} (vocabulary {fmt(result.get('vocab_size'))}"
               ").")
    ratio = result.get("ours_vs_hf_bytes_per_token")
    if is_finite(ratio):
        book.para(f"At the same split pattern our tokenizer packs {ratio:.3f} times as many bytes into a token as "
                  "Hugging Face's: the same algorithm gives the same compression, which is the check that matters. "
                  "More bytes per token means shorter sequences, so the model sees more text per step.")


def _unknown_words(book: Book, run: RunSummary) -> None:
    share = next((r.get("unknown_share") for r in (run.comparison or {}).get("rows", [])
                  if str(r.get("name", "")).startswith("word")), None)
    measured = (f" In the comparison above, {100 * share:.2f}% of the held-out words were unknown to the word-level "
                "tokenizer and came out as <unk>.") if is_finite(share) else ""
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


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    book.para("A neural network computes with numbers, so text must first become a sequence of integers, the "
              "**token ids**. Single characters make sequences long and every prediction small; whole words make "
              "sequences short but leave the model helpless before a word it has never seen. **Byte-pair "
              "encoding** (BPE) sits between: it starts from the 256 possible bytes of UTF-8 text and repeatedly "
              "glues together the pair of adjacent tokens that occurs most often, giving each new pair its own id, "
              "until the vocabulary has the size asked for.")
    book.section("The merge loop, from the source")
    _worked_example(book)
    listing(book, run, "get_stats", "count adjacent pairs")
    listing(book, run, "merge", "replace one pair by its new id")
    listing(book, run, "train_naive", "the teaching version of training: recount, pick, merge, repeat")
    book.para("That version recounts every pair of the whole text after each merge: clear, and far too slow for "
              "megabytes. The trainer that built this run's tokenizer picks the same pairs in the same order (a "
              "test proves the merge lists equal) but counts each distinct chunk once and, after a merge, updates "
              "only the counts of the chunks that contained the pair:")
    listing(book, run, "train_merges", "the incremental trainer used for real runs")
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
