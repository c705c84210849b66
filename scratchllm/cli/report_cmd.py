"""`scratchllm report RUN_DIR [-o guide.pdf]`: the PDF guide of one run, a thin call of `build_report`.

Figures the run folder lacks are drawn first (as `scratchllm viz` would; those already there are kept). A missing or
non-run folder, or -o naming a folder, is an InputError (one line, exit 2); the PDF is written atomically.
"""

from __future__ import annotations


def register(sub) -> None:
    """Add the `report` subcommand to the top-level parser."""
    p = sub.add_parser(
        "report", help="write the PDF guide of a run (how an LLM is built, with this run's code and numbers)",
        description="Write guide.pdf for a run folder: tokenization, attention, the Transformer block, training, "
        "scaling out, samples and troubleshooting, with this project's source code and the run's own numbers and "
        "figures (drawn into RUN_DIR/figures/ when missing). Parts the run lacks are named in the PDF. "
        "Example: scratchllm report runs/demo -o guide.pdf")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by scratchllm train or quickstart")
    p.add_argument("-o", "--out", metavar="PDF", default=None,
                   help="where to write the PDF (default RUN_DIR/guide.pdf)")
    p.add_argument("--bench-dir", metavar="DIR", default=None,
                   help="benchmark results to quote (default: the repository's benchmarks/results)")
    p.set_defaults(func=run_report)


def run_report(args) -> int:
    from scratchllm.report import build_report

    print(build_report(args.run_dir, args.out, args.bench_dir, progress=True))
    return 0
