"""`scratchllm serve RUN_DIR [--host 127.0.0.1] [--port 8000]`: the web workbench, a thin call of `serve.serve`."""

from __future__ import annotations


def register(sub) -> None:
    """Add the `serve` subcommand to the top-level parser."""
    p = sub.add_parser(
        "serve", help="the web workbench: chat with a run's model, explore its attention, replay its training",
        description="Serve a page (and a JSON API) for one run folder: generate with streamed tokens and their "
        "probabilities, the attention of any text head by head, the training curves with the attention snapshots "
        "step by step, and tokenizers side by side. Listens on 127.0.0.1 only unless --host says otherwise. "
        "Example: scratchllm serve runs/demo --port 8000")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by scratchllm train or quickstart")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 = any free port)")
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    from scratchllm.serve import serve

    serve(args.run_dir, args.host, args.port)
    return 0
