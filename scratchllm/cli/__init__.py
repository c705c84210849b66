"""The `scratchllm` console command: argparse subcommands that are thin calls of library functions.

Each command group registers itself from its own small module (`tokenizer_cmd`, `model_cmd`, `train_cmd`,
`chat_cmd`, `inspect_cmd`, `report_cmd`, `speedrun_cmd`, `serve_cmd`), so no single file grows into a
thousand-line switchboard.
This module owns the shared error policy from ../shared/CLI.md: bad usage or input -> one line on
stderr and exit 2; Ctrl-C -> exit 130.
"""

from __future__ import annotations

import argparse
import sys

from scratchllm.config import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from scratchllm.cli import (
        chat_cmd,
        finetune_cmd,
        inspect_cmd,
        model_cmd,
        quickstart_cmd,
        report_cmd,
        serve_cmd,
        speedrun_cmd,
        tokenizer_cmd,
        train_cmd,
    )

    parser = _Parser(
        prog="scratchllm",
        description="Build a language model from scratch: tokenizer -> model -> samples -> PDF guide.",
        epilog="Start with: scratchllm quickstart --minutes 8",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (quickstart_cmd, train_cmd, finetune_cmd, tokenizer_cmd, model_cmd, chat_cmd, inspect_cmd,
                   report_cmd, speedrun_cmd, serve_cmd):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except InputError as e:
        sys.stderr.write(f"scratchllm {args.command}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("scratchllm: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
