"""What recording attention costs during training: one `GPT.inspect` of a probe sequence plus saving it compressed
(float16 .npz, as the run folder holds it), against one training step of the same model, side by side.
"every 100" is the training-time overhead when one record is taken per 100 steps.

Run: .venv/bin/python benchmarks/bench_viz.py  -> table on stdout, benchmarks/results/viz.json
"""

from __future__ import annotations

import io
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from scratchllm.model import GPT, GPTConfig

SHAPES = {  # name: (GPTConfig kwargs, batch, context)
    "tiny (2L, 64 wide)": (dict(n_layer=2, n_head=2, n_embd=64), 8, 64),
    "baby GPT (4L, 128 wide)": (dict(n_layer=4, n_head=4, n_embd=128), 12, 64),
    "demo (6L, 192 wide, T=256)": (dict(n_layer=6, n_head=6, n_embd=192), 16, 256),
}
PROBE_LEN = 64


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _record(model: GPT, probe: torch.Tensor) -> int:
    """What train.py does at a recording step; returns the compressed size in bytes."""
    with torch.no_grad():
        layers = model.inspect(probe)
    arrays = {name: torch.stack([layer[name][0] for layer in layers]).numpy().astype(np.float16)
              for name in ("att", "q", "k", "v")}
    buf = io.BytesIO()
    np.savez_compressed(buf, step=np.array(0), **arrays)
    return buf.getbuffer().nbytes


def bench(kwargs: dict, batch: int, context: int, repeats: int = 10) -> dict:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, block_size=context, **kwargs))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 512, (batch, context))
    probe = torch.randint(0, 512, (1, min(PROBE_LEN, context)))

    def step():
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_step, t_record = _median_time(step, repeats), _median_time(lambda: _record(model, probe), repeats)
    return {"step_ms": 1e3 * t_step, "record_ms": 1e3 * t_record, "record_over_step": t_record / t_step,
            "record_kb": _record(model, probe) / 1024, "params": model.num_params()}


def main() -> None:
    rows = {name: bench(*shape) for name, shape in SHAPES.items()}
    print(f"{'model':<28} {'step ms':>8} {'record ms':>10} {'record/step':>12} {'every 100':>10} {'npz KB':>8}")
    for name, r in rows.items():
        print(f"{name:<28} {r['step_ms']:8.1f} {r['record_ms']:10.1f} {r['record_over_step']:12.2f} "
              f"{r['record_over_step'] / 100:10.2%} {r['record_kb']:8.1f}")
    machine = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()
               or platform.machine(), "python": platform.python_version()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        machine["cpu"] = names[0] if names else machine["cpu"]
    out = Path(__file__).parent / "results" / "viz.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"probe_tokens": PROBE_LEN, "machine": machine, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
