"""Subcommands `prepare` and `train`: thin calls of scratchllm.data.prepare and scratchllm.train.train."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    """Add `prepare` and `train` to the top-level parser."""
    p = sub.add_parser("prepare", help="tokenize a corpus into train.bin / val.bin memmaps + meta.json",
                       description="Encode a corpus once (cached by a hash of corpus + tokenizer). "
                                   "Example: scratchllm prepare --corpus shakespeare --tokenizer char --out data/")
    p.add_argument("--corpus", default="shakespeare", help="file, folder, glob, or 'shakespeare' (default)")
    p.add_argument("--tokenizer", required=True, help="a tokenizer.json, or 'char' to build one from the corpus")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share held out for validation (default 0.1)")
    p.set_defaults(func=run_prepare)
    t = sub.add_parser("train", help="train a GPT into a run folder (metrics, samples, checkpoints)",
                       description="Train from a preset or YAML config with overrides. "
                                   "Example: scratchllm train --preset shakespeare-char --set train.max_minutes=5 "
                                   "--out runs/char")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--preset", help="configs/NAME.yaml: tiny, shakespeare-char, shakespeare-bpe, gpt2-124m")
    src.add_argument("--config", help="a YAML config file")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. train.lr=3e-4 (repeatable)")
    t.add_argument("--out", default="runs/latest", help="run folder (default runs/latest)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--max-steps", type=int, help="shortcut for --set train.max_steps=N")
    t.add_argument("--minutes", type=float, help="shortcut for --set train.max_minutes=M")
    t.add_argument("--device", help="shortcut for --set train.device=D (auto, cpu, cuda, mps)")
    t.add_argument("--dtype", help="shortcut for --set train.dtype=D (auto, float32, bfloat16, float16)")
    t.add_argument("--compile", action="store_true", help="shortcut for --set train.compile=true")
    t.add_argument("--grad-checkpointing", action="store_true", help="per-block activation checkpointing")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train)


def run_prepare(args) -> int:
    from scratchllm.data import load_corpus, prepare
    from scratchllm.tokenizer import CharTokenizer, load_tokenizer

    corpus = load_corpus(args.corpus)
    tok = CharTokenizer.train(corpus.text) if args.tokenizer == "char" else load_tokenizer(args.tokenizer)
    meta = prepare(corpus, tok, args.out, val_fraction=args.val_fraction)
    if args.tokenizer == "char":
        tok.save(f"{args.out}/tokenizer.json")
    print(json.dumps(meta["splits"]))
    return 0


def _overrides(args) -> list[str]:
    flags = {"train.max_steps": args.max_steps, "train.max_minutes": args.minutes, "train.device": args.device,
             "train.dtype": args.dtype, "train.compile": args.compile or None,
             "train.grad_checkpointing": args.grad_checkpointing or None}
    return list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]


def run_train(args) -> int:
    from scratchllm.train import load_config, train

    cfg = load_config(args.preset or args.config, _overrides(args))
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result["status"] == "diverged":
        sys.stderr.write(f"scratchllm train: training diverged; {result['advice']}\n")
        return 1
    print(f"{result['steps']} steps, val bits/byte {result['final_val_bpb']:.3f}, "
          f"{result['tokens_per_s']:,.0f} tokens/s -> {args.out}")
    return 0
