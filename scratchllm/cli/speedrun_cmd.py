"""Subcommand `speedrun`: train the CPU speedrun preset for a wall-clock budget and print its bits per byte.

A thin call of `scratchllm.speedrun.speedrun`. The side-by-side comparison with nanoGPT's CPU recipe lives in
benchmarks/speedrun.py (a source checkout), since the baseline is deliberately no part of the package.
"""

from __future__ import annotations

import sys


def _run_speedrun(args) -> int:
    from scratchllm.config import write_json
    from scratchllm.speedrun import (
        PREFIX_CHARS,
        load_speedrun_config,
        load_speedrun_preset,
        override_keys,
        speedrun,
    )

    config = (load_speedrun_config(args.config, args.overrides) if args.config
              else load_speedrun_preset(args.minutes, args.overrides))
    report = speedrun(args.minutes, config, corpus=args.corpus, prefix_chars=None if args.full else PREFIX_CHARS,
                      out_dir=args.run, progress=True, set_by_hand=override_keys(args.overrides))
    print(f"val {report['bpb']['val']:.3f} bits/byte, holdout (last 10% of the corpus) "
          f"{report['bpb']['holdout']:.3f} bits/byte after {report['steps']} steps in {report['train_seconds']:.0f} s "
          f"({report['tokens_per_s']:,.0f} tokens/s, MFU {report['mfu']:.0%}, peak {report['peak_rss_mb']:.0f} MiB)")
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add the `speedrun` subcommand to the top-level parser."""
    p = sub.add_parser(
        "speedrun", help="train the best model this CPU makes in M minutes; print val bits/byte",
        description="Train the CPU speedrun preset (configs/speedrun-1min.yaml below 3 minutes, else "
        "speedrun-5min.yaml) for a wall-clock budget on the first 1,115,394 bytes of the corpus (90/10 split, as "
        "nanoGPT's Shakespeare), then report bits/byte on every val byte and on the corpus's last 10%. "
        "Example: scratchllm speedrun --minutes 5 --set model.block_size=256 --set train.batch_size=16")
    p.add_argument("--minutes", type=float, default=1.0, help="wall-clock training budget (default 1)")
    p.add_argument("--config", default=None, metavar="FILE", help="a speedrun YAML instead of the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the recipe (any `scratchllm train` key but the corpus and the budget), "
                   "e.g. train.weight_decay=4 (repeatable)")
    p.add_argument("--corpus", default="shakespeare", help="built-in corpus name, file, folder or glob")
    p.add_argument("--full", action="store_true", help="train on 90%% of the whole corpus, not its first 1.1 MB")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--run", default=None, metavar="DIR", help="keep the run folder here (default: a temporary one)")
    p.set_defaults(func=_run_speedrun)
