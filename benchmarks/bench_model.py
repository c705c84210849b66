"""Training-step speed of the model's two attention paths: forward + backward tokens/s with PyTorch's fused
`scaled_dot_product_attention` against the explicit reference (softmax(QKᵀ/√d)V with a materialised (T, T) matrix),
same weights, same batch, side by side; plus the cost of activation (gradient) checkpointing on the fast path.

Run: .venv/bin/python benchmarks/bench_model.py  -> table on stdout, benchmarks/results/model.json
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from scratchllm.metrics import hardware_info
from scratchllm.model import GPT, GPTConfig

SHAPES = {  # name: (GPTConfig kwargs, batch, context)
    "baby GPT (4L, 128 wide, T=64)": (dict(n_layer=4, n_head=4, n_embd=128), 12, 64),
    "demo (6L, 192 wide, T=256)": (dict(n_layer=6, n_head=6, n_embd=192), 8, 256),
    "long context (4L, 128 wide, T=1024)": (dict(n_layer=4, n_head=4, n_embd=128), 2, 1024),
}


def step_time(model: GPT, x: torch.Tensor, repeats: int) -> float:
    def step():
        model.zero_grad(set_to_none=True)
        _, loss = model(x, x)
        loss.backward()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(kwargs: dict, batch: int, context: int, repeats: int = 7) -> dict:
    config = GPTConfig(vocab_size=512, block_size=context, **kwargs)
    torch.manual_seed(0)
    fast = GPT(config)
    ref = GPT(dataclasses.replace(config, attention="reference"))
    ref.load_state_dict(fast.state_dict())
    x = torch.randint(0, 512, (batch, context))
    tokens = batch * context
    t_fast, t_ref = step_time(fast, x, repeats), step_time(ref, x, repeats)
    fast.grad_checkpointing = True
    t_ckpt = step_time(fast, x, repeats)
    return {"params": fast.num_params(), "batch": batch, "context": context,
            "sdpa_tokens_per_s": tokens / t_fast, "reference_tokens_per_s": tokens / t_ref,
            "sdpa_over_reference": t_ref / t_fast, "grad_checkpointing_tokens_per_s": tokens / t_ckpt,
            "grad_checkpointing_slowdown": t_ckpt / t_fast}


def main() -> None:
    rows = {name: bench(*shape) for name, shape in SHAPES.items()}
    print(f"{'shape':<38} {'SDPA tok/s':>11} {'reference tok/s':>16} {'SDPA/ref':>9} {'ckpt tok/s':>11}")
    for name, r in rows.items():
        print(f"{name:<38} {r['sdpa_tokens_per_s']:>11.0f} {r['reference_tokens_per_s']:>16.0f} "
              f"{r['sdpa_over_reference']:>8.2f}x {r['grad_checkpointing_tokens_per_s']:>11.0f}")
    out = Path(__file__).parent / "results" / "model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"shapes": rows, "machine": hardware_info()}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
