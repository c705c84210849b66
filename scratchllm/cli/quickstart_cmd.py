"""Subcommand `quickstart`: the main job (`make demo`), a thin call of `scratchllm.quickstart.quickstart`."""

from __future__ import annotations


def _run_quickstart(args) -> int:
    from scratchllm.quickstart import quickstart

    quickstart(corpus=args.corpus, minutes=args.minutes, out_dir=args.out, preset=args.preset,
               recipe="fixed" if args.fixed_recipe else None)
    return 0


def register(sub) -> None:
    """Add the `quickstart` subcommand to the top-level parser."""
    p = sub.add_parser(
        "quickstart",
        help="the whole pipeline: tokenizer -> model -> samples -> figures -> doctor -> PDF guide",
        description="Train a BPE tokenizer and a GPT on a corpus within a wall-clock budget, print samples, draw "
        "the figures, diagnose the run and write the PDF guide into the run folder. "
        "Example: scratchllm quickstart --minutes 8 --out runs/demo",
    )
    p.add_argument("--corpus", default="shakespeare",
                   help="a text file, folder or glob; 'shakespeare' is the built-in corpus (default)")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget for the whole job (default 8)")
    p.add_argument("--out", default="runs/quickstart", help="run folder to write (default runs/quickstart)")
    p.add_argument("--preset", default="speedrun-5min",
                   help="training recipe from configs/ (default speedrun-5min, the CPU speedrun winner)")
    p.add_argument("--fixed-recipe", action="store_true",
                   help="train the preset as it is; by default a short measurement of this machine first sets its "
                   "shape, weight decay and warm-down for the budget")
    p.set_defaults(func=_run_quickstart)
