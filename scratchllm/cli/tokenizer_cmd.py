"""`scratchllm tokenizer train|encode|decode|compare`: thin calls of scratchllm.tokenizer.

Bad input (missing or binary corpus, vocab size out of range, corrupt tokenizer file, bad ids) is an
`InputError`, which the CLI prints as one line with exit code 2; files are written atomically, so a failed
command leaves nothing half-written.
"""

from __future__ import annotations

import sys

EOT = "<|endoftext|>"


def register(sub) -> None:
    """Add `tokenizer` and its actions to the top-level parser."""
    group = sub.add_parser(
        "tokenizer", help="train, use and compare tokenizers",
        description="Train a byte-level BPE (or char/word) tokenizer, encode and decode with it, or compare it "
                    "with SentencePiece, HF tokenizers and tiktoken. Example: scratchllm tokenizer train "
                    "--input shakespeare --vocab-size 4096 --out tok.json",
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    _add_train(actions)
    _add_encode(actions)
    _add_decode(actions)
    _add_compare(actions)


def _add_train(actions) -> None:
    p = actions.add_parser(
        "train", help="train a tokenizer on a corpus and save it as JSON",
        description="Train on files, folders, globs or the built-in corpus ('shakespeare'). "
                    "Example: scratchllm tokenizer train --input shakespeare --vocab-size 4096 --out tok.json",
    )
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="corpus file(s), folder, glob or name")
    p.add_argument("--vocab-size", type=int, required=True, metavar="N",
                   help="ids in all, special tokens included (ignored by --type char)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the tokenizer JSON")
    p.add_argument("--special", action="append", metavar="TOK", help=f"special token (repeatable; default {EOT})")
    p.add_argument("--type", choices=["bpe", "char", "word"], default="bpe", help="tokenizer kind (default bpe)")
    p.add_argument("--hf-out", metavar="FILE", help="also write a Hugging Face tokenizer.json (bpe only)")
    p.set_defaults(func=_train)


def _add_encode(actions) -> None:
    p = actions.add_parser(
        "encode", help="print the ids of a text",
        description="Encode TEXT (or the file given by --input) and print the ids separated by spaces. "
                    "Example: scratchllm tokenizer encode --tokenizer tok.json 'To be, or not to be'",
    )
    p.add_argument("--tokenizer", required=True, metavar="FILE", help="a tokenizer JSON file")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the text to encode")
    p.add_argument("--input", metavar="PATH", help="encode this file instead of TEXT")
    p.set_defaults(func=_encode)


def _add_decode(actions) -> None:
    p = actions.add_parser(
        "decode", help="print the text of some ids",
        description="Decode ids (separated by spaces or commas) back to text. "
                    "Example: scratchllm tokenizer decode --tokenizer tok.json 1532 11 393",
    )
    p.add_argument("--tokenizer", required=True, metavar="FILE", help="a tokenizer JSON file")
    p.add_argument("ids", nargs="+", metavar="IDS", help="token ids")
    p.set_defaults(func=_decode)


def _add_compare(actions) -> None:
    p = actions.add_parser(
        "compare", help="compare our BPE with SentencePiece, HF tokenizers, tiktoken and word-level",
        description="Train every tokenizer on the first 90%% of the corpus, measure on the last 10%%, print a "
                    "Markdown table. Example: scratchllm tokenizer compare --input shakespeare --vocab-size 4096",
    )
    p.add_argument("--input", nargs="+", required=True, metavar="PATH", help="corpus file(s), folder, glob or name")
    p.add_argument("--vocab-size", type=int, required=True, metavar="N", help="vocabulary size for every tokenizer")
    p.add_argument("--out", metavar="DIR", help="also write tokenizer_comparison.json and .md here")
    p.set_defaults(func=_compare)


def _train(args) -> int:
    import time

    from scratchllm.config import InputError
    from scratchllm.data import load_corpus
    from scratchllm.tokenizer import CharTokenizer, WordTokenizer, train_bpe
    from scratchllm.tokenizer.hf_export import export_hf

    text = load_corpus(*args.input).text
    specials = tuple(args.special) if args.special else (EOT,)
    if args.hf_out and args.type != "bpe":
        raise InputError("--hf-out needs --type bpe")
    start = time.perf_counter()
    if args.type == "bpe":
        tok = train_bpe(text, args.vocab_size, special_tokens=specials, progress=sys.stderr.isatty())
    elif args.type == "word":
        tok = WordTokenizer.train(text, args.vocab_size, special_tokens=specials)
    else:
        tok = CharTokenizer.train(text, special_tokens=specials)
    seconds = time.perf_counter() - start
    tok.save(args.out)
    if args.hf_out:
        export_hf(tok, args.hf_out)
    print(f"wrote {args.out}: {args.type}, vocab {tok.vocab_size}, trained on {len(text.encode()):,} bytes "
          f"in {seconds:.2f} s")
    return 0


def _encode(args) -> int:
    from pathlib import Path

    from scratchllm.config import InputError
    from scratchllm.tokenizer import load_tokenizer

    if (args.text is None) == (args.input is None):
        raise InputError("give either TEXT or --input PATH")
    tok = load_tokenizer(args.tokenizer)
    if args.input is not None:
        try:
            text = Path(args.input).read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            raise InputError(f"cannot read {args.input}: {e.strerror}") from None
    else:
        text = args.text
    print(" ".join(map(str, tok.encode(text))))
    return 0


def parse_ids(items: list[str]) -> list[int]:
    """["1 2", "3,4"] -> [1, 2, 3, 4]; anything else is an `InputError` naming it."""
    from scratchllm.config import InputError

    words = [w for item in items for w in item.replace(",", " ").split()]
    try:
        return [int(w) for w in words]
    except ValueError:
        bad = next(w for w in words if not w.lstrip("-").isdigit())
        raise InputError(f"not a token id: {bad!r}") from None


def _decode(args) -> int:
    from scratchllm.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    data = tok.decode_bytes(parse_ids(args.ids))  # the exact bytes, whatever the terminal's encoding
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()
    return 0


def _compare(args) -> int:
    from scratchllm.data import load_corpus
    from scratchllm.tokenizer.compare import compare_tokenizers, comparison_markdown, write_comparison

    text = load_corpus(*args.input).text
    result = compare_tokenizers(text, args.vocab_size, progress=sys.stderr.isatty())
    if args.out:
        write_comparison(result, args.out)
    print(comparison_markdown(result), end="")
    return 0
