"""Data-parallel scaling on CPU: training tokens/s of 1 process against 2 DDP processes (gloo), same per-rank batch.

Run: `.venv/bin/python benchmarks/bench_distributed.py` -> table + benchmarks/results/distributed.json.
Each setting is a fresh `torchrun` of this file in --worker mode; efficiency = tokens/s(N) / (N x tokens/s(1)).
On GPUs: `python benchmarks/bench_distributed.py --device cuda --nproc 1 8` (nccl; DDP and FSDP2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratchllm.metrics import hardware_info

RESULTS = Path(__file__).parent / "results" / "distributed.json"
MODEL = dict(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128)


def worker(a) -> None:
    """One rank: warm up, then time `steps` optimizer steps on random tokens; rank 0 writes tokens/s."""
    import torch

    from scratchllm import distributed as D
    from scratchllm.model import GPT, GPTConfig
    ctx = D.setup(a.device)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**MODEL)).to(ctx.device)
    model = D.wrap_fsdp2(model, ctx, mixed_bf16=a.device == "cuda") if a.mode == "fsdp2" else D.wrap_ddp(model, ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(D.rank_seed(0, ctx))
    data = torch.randint(0, MODEL["vocab_size"], (a.batch, MODEL["block_size"] + 1), generator=g).to(ctx.device)

    def step():
        _, loss = model(data[:, :-1], data[:, 1:].contiguous())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = D.all_mean(time.perf_counter() - start, ctx)
    if ctx.is_main:
        tokens = a.steps * a.batch * MODEL["block_size"] * ctx.world_size
        Path(a.out).write_text(json.dumps({"tokens_per_s": tokens / elapsed, "elapsed_s": elapsed}))
    D.teardown()


def run_setting(nproc: int, mode: str, args) -> dict:
    from scratchllm.distributed import free_port
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", __file__, "--worker", "--out", str(out), "--mode", mode,
               "--device", args.device, "--steps", str(args.steps), "--batch", str(args.batch)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(f"{nproc} x {mode} failed:\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mode", nargs="+", default=["ddp", "fsdp2"], choices=["ddp", "fsdp2"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8, help="rows per rank per step (weak scaling)")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    args = p.parse_args()
    if args.worker:
        args.mode = args.mode[0]
        return worker(args)
    rows = []
    for mode in args.mode:
        base = None
        for n in args.nproc:
            r = run_setting(n, mode, args)
            base = base or r["tokens_per_s"] / n
            rows.append({"mode": mode, "nproc": n, **r, "efficiency": r["tokens_per_s"] / (n * base)})
            print(f"{mode:6s} nproc={n}  {r['tokens_per_s']:9.0f} tok/s  efficiency {rows[-1]['efficiency']:.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {**hardware_info(), "threads_per_process": args.threads},
                                   "device": args.device, "model": MODEL, "batch_per_rank": args.batch,
                                   "steps": args.steps, "rows": rows,
                                   "notes": "weak scaling: each rank runs batch_per_rank rows; efficiency = tok/s(N) / "
                                            "(N x tok/s(1)) within a mode; fsdp2 rows recompute activations "
                                            "(checkpointing on), so compare them with each other, not with ddp"},
                                  indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
