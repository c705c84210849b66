"""Our BPE beside tiktoken, SentencePiece and HF tokenizers: `compare_tokenizers(text, vocab_size) -> dict`.

Every tokenizer trains on the first 90% of the text and is measured on the last 10%: training seconds, vocabulary
size, bytes per token, encode MB/s, share of held-out words that come out unknown, and whether decode(encode(x))
gives x back exactly. `comparison_markdown` and `write_comparison` turn the result into the tables the guide prints.
Peer libraries are imported inside the functions that use them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from scratchllm.config import InputError, atomic_write_text, write_json
from scratchllm.tokenizer.base import GPT4_PATTERN
from scratchllm.tokenizer.trainer import train_bpe
from scratchllm.tokenizer.word import WordTokenizer

EOT = "<|endoftext|>"
COLUMNS = [
    ("name", "tokenizer"), ("train_s", "train s"), ("vocab_size", "vocab"), ("bytes_per_token", "bytes/token"),
    ("encode_mb_s", "encode MB/s"), ("unknown_share", "unknown words"), ("round_trip", "exact round trip"),
]


def _timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _unknown_share(words: Counter, is_unknown: Callable[[str], bool]) -> float:
    """Share of held-out words (whitespace-separated, counted with repeats) that `is_unknown` flags."""
    total = sum(words.values())
    return sum(n for w, n in words.items() if is_unknown(w)) / max(total, 1)


def _row(name: str, train_s: float | None, vocab_size: int, n_tokens: int, encode_s: float, held_out: str,
         decoded: str, unknown_share: float, note: str = "") -> dict:
    n_bytes = len(held_out.encode("utf-8"))
    return {
        "name": name, "train_s": train_s, "vocab_size": vocab_size,
        "bytes_per_token": n_bytes / max(n_tokens, 1), "encode_mb_s": n_bytes / 1e6 / max(encode_s, 1e-9),
        "unknown_share": unknown_share, "round_trip": decoded == held_out, "note": note,
    }


def _ours_rows(train: str, held_out: str, vocab_size: int) -> list[dict]:
    tok, train_s = _timed(train_bpe, train, vocab_size, special_tokens=(EOT,), progress=False)
    rows = []
    for name, encode in [("scratchllm BPE (reference encode)", tok.encode_reference),
                         ("scratchllm BPE (fast encode)", tok.encode)]:
        tok._cache.clear()
        ids, enc_s = _timed(encode, held_out)
        rows.append(_row(name, train_s, tok.vocab_size, len(ids), enc_s, held_out, tok.decode(ids), 0.0,
                         "pure Python, cache per chunk" if "reference" in name else "tiktoken built from our ranks"))
    rows.append(_tiktoken_batch_row(tok, train_s, held_out))
    return rows


def line_pieces(text: str, size: int = 65536) -> list[str]:
    """Cut text into pieces of about `size` characters, each ending at a line break."""
    pieces, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def _tiktoken_batch_row(tok, train_s: float, held_out: str) -> dict:
    import tiktoken

    enc = tiktoken.Encoding("scratchllm-ranks", pat_str=tok.pattern, mergeable_ranks=tok.ranks,
                            special_tokens=tok.special_tokens)
    batches, enc_s = _timed(enc.encode_batch, line_pieces(held_out), num_threads=os.cpu_count() or 1)
    decoded = "".join(enc.decode(ids) for ids in batches)
    return _row("tiktoken from our ranks (encode_batch)", train_s, enc.n_vocab, sum(map(len, batches)), enc_s,
                held_out, decoded, 0.0, "64 KB pieces cut at line breaks, threads")


def hf_bpe(vocab_size: int, split_pattern: str | None = None):
    """An untrained HF byte-level BPE and its trainer; `split_pattern` replaces GPT-2's split (e.g. ours)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_pattern:
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return hf, trainer


def train_hf_bpe(text: str, vocab_size: int, split_pattern: str | None = None):
    """Train HF byte-level BPE on `text` (fed as ~50 KB pieces, so its Rust threads all get work)."""
    hf, trainer = hf_bpe(vocab_size, split_pattern)
    hf.train_from_iterator(line_pieces(text, 50_000), trainer)
    return hf


def _hf_row(train: str, held_out: str, vocab_size: int, split_pattern: str | None = None) -> dict:
    hf, train_s = _timed(train_hf_bpe, train, vocab_size, split_pattern)
    enc, enc_s = _timed(hf.encode, held_out)
    name = "HF tokenizers byte-level BPE" + (" (our GPT-4 split)" if split_pattern else "")
    return _row(name, train_s, hf.get_vocab_size(), len(enc.ids), enc_s, held_out, hf.decode(enc.ids), 0.0,
                "Rust, one encode call" + ("" if split_pattern else ", GPT-2 split"))


def _sentencepiece_row(train: str, held_out: str, vocab_size: int, model_type: str, words: Counter) -> dict:
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "train.txt").write_text(train, encoding="utf-8")
        args = dict(input=str(Path(tmp, "train.txt")), model_prefix=str(Path(tmp, "sp")), vocab_size=vocab_size,
                    model_type=model_type, num_threads=os.cpu_count() or 1, minloglevel=2)  # quiet
        try:
            _, train_s = _timed(spm.SentencePieceTrainer.train, **args)
        except RuntimeError as e:
            reason = str(e).splitlines()[0]
            raise InputError(f"SentencePiece {model_type} cannot train a vocab of {vocab_size}: {reason}") from None
        sp = spm.SentencePieceProcessor(model_file=str(Path(tmp, "sp.model")))
    lines = held_out.split("\n")
    ids, enc_s = _timed(sp.encode, lines)
    unk = sp.unk_id()
    share = _unknown_share(words, lambda w: unk in sp.encode(w))
    return _row(f"SentencePiece {model_type}", train_s, sp.get_piece_size(), sum(map(len, ids)), enc_s,
                held_out, "\n".join(sp.decode(ids)), share, "encodes line by line")


def _word_row(train: str, held_out: str, vocab_size: int, words: Counter) -> dict:
    tok, train_s = _timed(WordTokenizer.train, train, vocab_size, special_tokens=(EOT,))
    ids, enc_s = _timed(tok.encode, held_out)
    share = _unknown_share(words, lambda w: 0 in tok.encode(w))
    return _row("word-level with <unk>", train_s, tok.vocab_size, len(ids), enc_s, held_out, tok.decode(ids), share,
                "GPT-4 split chunks as words")


def _pretrained_tiktoken_rows(held_out: str) -> list[dict]:
    """Rows for tiktoken's own GPT-2 / cl100k files, only where they are already cached (no download here)."""
    import hashlib

    import tiktoken
    from tiktoken_ext import openai_public

    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    cache = Path(cache_dir or Path(tempfile.gettempdir(), "data-gym-cache"))
    blob = "https://openaipublic.blob.core.windows.net"
    urls = {"gpt2": [f"{blob}/gpt-2/encodings/main/vocab.bpe", f"{blob}/gpt-2/encodings/main/encoder.json"],
            "cl100k_base": [f"{blob}/encodings/cl100k_base.tiktoken"]}
    rows = []
    for name, files in urls.items():
        cached = all((cache / hashlib.sha1(url.encode()).hexdigest()).exists() for url in files)
        if not cached or name not in openai_public.ENCODING_CONSTRUCTORS:
            continue
        enc = tiktoken.get_encoding(name)
        ids, enc_s = _timed(enc.encode_ordinary, held_out)
        rows.append(_row(f"tiktoken {name} (pretrained)", None, enc.n_vocab, len(ids), enc_s, held_out,
                         enc.decode(ids), 0.0, "OpenAI's ranks from the local cache"))
    return rows


def compare_tokenizers(text: str, vocab_size: int, progress: bool = False) -> dict:
    """Train each tokenizer on the first 90% of `text` at `vocab_size`; measure on the last 10%."""
    from tqdm import tqdm

    cut = int(len(text) * 0.9)
    train, held_out = text[:cut], text[cut:]
    if not held_out.strip():
        raise InputError("text too short to compare tokenizers: the held-out 10% is empty")
    words = Counter(held_out.split())
    steps = [
        lambda: _ours_rows(train, held_out, vocab_size),
        lambda: [_hf_row(train, held_out, vocab_size), _hf_row(train, held_out, vocab_size, GPT4_PATTERN)],
        lambda: [_sentencepiece_row(train, held_out, vocab_size, "bpe", words)],
        lambda: [_sentencepiece_row(train, held_out, vocab_size, "unigram", words)],
        lambda: [_word_row(train, held_out, vocab_size, words)],
        lambda: _pretrained_tiktoken_rows(held_out),
    ]
    rows = [row for step in tqdm(steps, desc="comparing tokenizers", disable=not progress) for row in step()]
    ours = next(r for r in rows if r["name"].startswith("scratchllm"))
    hf = next(r for r in rows if r["name"].startswith("HF") and "GPT-4" in r["name"])
    return {
        "vocab_size": vocab_size, "train_bytes": len(train.encode("utf-8")),
        "held_out_bytes": len(held_out.encode("utf-8")),
        "ours_vs_hf_bytes_per_token": ours["bytes_per_token"] / hf["bytes_per_token"],  # same split pattern
        "rows": rows,
    }


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "round_trip":
        return "yes" if value else "no"
    if key == "unknown_share":
        return f"{100 * value:.2f}%"
    if isinstance(value, float):
        return f"{value:.3f}" if key == "bytes_per_token" else f"{value:.2f}"
    return str(value)


def comparison_markdown(result: dict) -> str:
    """The comparison as a Markdown table with a one-line summary of how ours compares with HF."""
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(k, row[k]) for k, _ in COLUMNS) + " |" for row in result["rows"]]
    summary = (f"Trained on {result['train_bytes']:,} bytes, measured on the last {result['held_out_bytes']:,}; "
               f"ours / HF bytes per token at the same split = {result['ours_vs_hf_bytes_per_token']:.3f}.")
    return "\n".join([header, rule, *body, "", summary, ""])


def write_comparison(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write tokenizer_comparison.json and tokenizer_comparison.md into `out_dir` (atomically)."""
    out = Path(out_dir)
    write_json(out / "tokenizer_comparison.json", result)
    atomic_write_text(out / "tokenizer_comparison.md", comparison_markdown(result))
    return out / "tokenizer_comparison.json", out / "tokenizer_comparison.md"
