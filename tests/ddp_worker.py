"""Worker script for tests/test_distributed.py, started by torchrun (not collected by pytest: no test_ prefix).

Trains a tiny GPT a few steps under DDP and FSDP2 on gloo with a fixed global batch, and writes the losses and
final weights from rank 0, so the test can compare them with one plain process (the same functions, world 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from scratchllm import distributed as D
from scratchllm.model import GPT, GPTConfig

CONFIG = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
GLOBAL_BATCH = 8


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same (x, y) of GLOBAL_BATCH rows on every rank, fixed by the step number."""
    g = torch.Generator().manual_seed(1000 + step)
    data = torch.randint(0, CONFIG["vocab_size"], (GLOBAL_BATCH, CONFIG["block_size"] + 1), generator=g)
    return data[:, :-1].contiguous(), data[:, 1:].contiguous()  # (B, T) each


def train_steps(model, ctx: D.DistContext, accum: int, steps: int) -> list[float]:
    """AdamW steps on this rank's rows, split into `accum` micro-batches; returns the global mean loss per step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    losses = []
    for step in range(steps):
        x, y = (D.shard_batch(t, ctx) for t in global_batch(step))  # (B / world, T)
        total = 0.0
        for xm, ym, i in zip(x.chunk(accum), y.chunk(accum), range(accum), strict=True):
            with D.maybe_no_sync(model, is_last_micro=i == accum - 1):
                _, loss = model(xm, ym)
                (loss / accum).backward()
            total += loss.item() / accum
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(D.all_mean(total, ctx))
    return losses


def fresh_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**CONFIG))


def run(ctx: D.DistContext, mode: str, accum: int, steps: int) -> tuple[list[float], dict]:
    """Train under mode "plain" | "ddp" | "fsdp2"; returns the losses and the full final state dict."""
    model = fresh_model()
    if mode == "ddp":
        model = D.wrap_ddp(model, ctx)
    elif mode == "fsdp2":
        model = D.wrap_fsdp2(model, ctx, checkpointing=True)
    losses = train_steps(model, ctx, accum, steps)
    return losses, D.full_state_dict(model)


def fixed_batch_loss(model) -> float:
    x, y = global_batch(99)
    with torch.no_grad():
        return model(x, y)[1].item()


def load_into_fsdp(ctx: D.DistContext, path: Path) -> float:
    """The other way round: single-process weights loaded into an FSDP2 model; its loss on a fixed batch."""
    model = D.wrap_fsdp2(fresh_model(seed=7), ctx)
    D.load_full_state_dict(model, load_file(path) if ctx.is_main else {})
    return fixed_batch_loss(model)


def tiny_run_config(corpus: Path, accum: int, steps: int = 6, parallel: str = "ddp"):
    """A char-level run small enough for a test: 2-row micro-batches, eval and checkpoint every 3 steps."""
    from scratchllm.config import load_config
    return load_config(None, [f"train.parallel={parallel}", f"data.corpus={corpus}", "tokenizer.type=char",
                              "model.n_layer=2", "model.n_head=2",
                              "model.n_embd=32", "model.block_size=16", f"train.max_steps={steps}",
                              "train.max_minutes=0", "train.batch_size=2", f"train.grad_accum={accum}",
                              "train.warmup_steps=2", "train.lr=1e-2", "train.eval_every=3", "train.eval_batches=2",
                              "train.log_every=1", "train.checkpoint_every=3", "train.sample_tokens=4",
                              "train.device=cpu", "train.dtype=float32", "train.seed=3"])


def train_run(a) -> int:
    """torchrun this with --train CORPUS: scratchllm's own train() on every rank; --stop-at K interrupts at step K."""
    from scratchllm.train import train

    def stop(session):
        if session.state.step == a.stop_at:
            raise KeyboardInterrupt

    try:
        cfg = tiny_run_config(a.train, a.accum, parallel=a.parallel)
        train(cfg, a.out, resume=a.resume, progress=False, on_step=stop)
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--modes", default="ddp:1,ddp:2,fsdp2:2")
    p.add_argument("--load", type=Path, help="single-process weights to load into FSDP2")
    p.add_argument("--die-rank", type=int, default=-1, help="this rank exits with an error at once")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--train", type=Path, help="run scratchllm's train() on this corpus file instead")
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--stop-at", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--parallel", default="ddp", help="train.parallel of the --train run: ddp or fsdp")
    a = p.parse_args(argv)
    if a.train is not None:
        return train_run(a)
    ctx = D.setup("cpu", timeout_s=a.timeout)
    if ctx.rank == a.die_rank:
        raise SystemExit(f"rank {ctx.rank} dies on purpose")
    results = {}
    for spec in filter(None, a.modes.split(",")):
        mode, accum = spec.split(":")
        losses, state = run(ctx, mode, int(accum), a.steps)
        results[spec] = losses
        if ctx.is_main:
            save_file({k: v.contiguous() for k, v in state.items() if k != "lm_head.weight"},
                      a.out / f"{mode}_{accum}.safetensors")
    if a.load is not None:
        results["loaded_loss"] = load_into_fsdp(ctx, a.load)
    if ctx.is_main:
        (a.out / "results.json").write_text(json.dumps({"world_size": ctx.world_size, **results}))
    D.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
