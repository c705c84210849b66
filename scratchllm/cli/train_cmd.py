"""Subcommands `prepare` and `train`: thin calls of scratchllm.data.prepare and scratchllm.train.train."""

from __future__ import annotations

import json
import os
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
    add_launch_arguments(t)
    t.set_defaults(func=run_train)


def add_launch_arguments(parser) -> None:
    """Data-parallel flags: with --nproc > 1 (or --nnodes > 1) `train` starts torchrun, which runs it N times."""
    g = parser.add_argument_group("data parallel (starts torchrun; gloo on CPU, nccl on CUDA)")
    g.add_argument("--nproc", type=int, default=1, help="processes on this machine: GPUs, or CPU workers")
    g.add_argument("--nnodes", type=int, default=1, help="machines taking part (default 1)")
    g.add_argument("--node-rank", type=int, default=0, help="this machine's index; 0 hosts the rendezvous")
    g.add_argument("--master-addr", default="127.0.0.1", help="address of the machine with node rank 0")
    g.add_argument("--master-port", type=int, default=29500, help="rendezvous port there (default 29500)")
    g.add_argument("--parallel", choices=("ddp", "fsdp"), help="shortcut for --set train.parallel=P: ddp (default) "
                   "or fsdp (FSDP2 shards the model, its gradients and optimizer state across processes)")


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
             "train.grad_checkpointing": args.grad_checkpointing or None, "train.parallel": args.parallel}
    return list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]


def rank_argv(args) -> list[str]:
    """What each process torchrun starts runs: this same `train`, the shortcuts folded into --set, no --nproc."""
    argv = ["train", "--out", args.out, *(f"--set={kv}" for kv in _overrides(args))]
    for flag, value in (("--preset", args.preset), ("--config", args.config)):
        argv += [flag, value] if value else []
    return argv + ["--resume"] * args.resume + ["--quiet"] * args.quiet


def run_train(args) -> int:
    from scratchllm import distributed
    from scratchllm.config import load_config
    from scratchllm.train import train

    if distributed.wants_launch(args):  # --nproc N: torchrun starts N copies of this command without it
        return distributed.launch(rank_argv(args), args.nproc, args.nnodes, args.node_rank, args.master_addr,
                                  args.master_port)
    cfg = load_config(args.preset or args.config, _overrides(args))
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun rank 0 reports
    if result["status"] == "diverged":
        sys.stderr.write(f"scratchllm train: training diverged; {result['advice']}\n")
        return 1
    print(f"{result['steps']} steps, val bits/byte {result['final_val_bpb']:.3f}, "
          f"{result['tokens_per_s']:,.0f} tokens/s -> {args.out}")
    return 0
