"""Subcommand `finetune`: a thin call of scratchllm.finetune.finetune (or mask_preview with --show-mask)."""

from __future__ import annotations

import sys


def _run_finetune(args) -> int:
    from scratchllm.finetune import finetune, mask_preview

    if args.show_mask:
        print(mask_preview(args.run, args.data, args.mask, color=sys.stdout.isatty()))
        return 0
    if not args.out:
        from scratchllm.config import InputError

        raise InputError("--out DIR is required (where the finetuned run folder goes)")
    result = finetune(args.run, args.data, args.out, args.minutes, args.mask, args.overrides, args.resume,
                      args.eval_questions)
    acc, summary = result["qa_eval"]["accuracy"], result["summary"]
    print(f"{summary['steps']} steps; held-out answers: finetuned {acc.get('finetuned', 0):.1%}, base "
          f"{acc.get('base', 0):.1%}, majority {acc.get('majority', 0):.1%} of {result['qa_eval']['questions']} "
          f"questions; wrote {args.out}/qa_eval.json")
    return 0


def register(sub) -> None:
    """Add the `finetune` subcommand to the top-level parser."""
    p = sub.add_parser(
        "finetune", help="teach a trained model to answer questions (chat tokens, a loss mask, the same trainer)",
        description="Start from the model of BASE_RUN, add the chat tokens, and train it on conversations for "
        "M minutes through the same loop as `train`, training only the replies (--mask assistant) or everything "
        "(--mask all). Writes a run folder plus qa_eval.json (finetuned vs base vs majority answer). "
        "Example: scratchllm finetune --run runs/demo --data shakespeare-qa --minutes 2 --out runs/demo-chat")
    p.add_argument("--run", required=True, metavar="BASE_RUN", help="the trained run folder to start from")
    p.add_argument("--data", default="shakespeare-qa",
                   help="shakespeare-qa (built in), corpus-qa:PATH (questions made from any corpus), or a JSON/JSONL "
                   "file: Alpaca, chat messages, ShareGPT, prompt/completion")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget (default 2)")
    p.add_argument("--mask", choices=("assistant", "all"), default="assistant",
                   help="train on the replies only (default) or on the prompts too")
    p.add_argument("--out", default=None, metavar="DIR", help="the finetuned run folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training setting, e.g. train.lr=1e-3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted finetune in --out")
    p.add_argument("--eval-questions", type=int, default=200, help="held-out questions scored (default 200)")
    p.add_argument("--show-mask", action="store_true", help="print the first conversations with the trained "
                   "tokens marked, then exit")
    p.set_defaults(func=_run_finetune)
