"""Training throughput and memory of scratchllm's trainer.

1. Speed: `train()` on the shakespeare-char preset (nanoGPT's CPU baby GPT: 4 layers, 128 wide, T 64, batch 12)
   beside a minimal plain-PyTorch loop of the identical model and batch (random windows, AdamW, clip, step), each in
   a fresh process, alternated; tokens/s and MFU against an fp32 matmul peak measured here.
2. Memory: peak RSS and tokens/s of our train_step for plain / gradient accumulation / activation checkpointing /
   bf16, each in its own process (RSS is a per-process high-water mark), at a batch large enough to show activations.

Run: .venv/bin/python benchmarks/bench_train.py  -> table on stdout, benchmarks/results/train.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratchllm import metrics

ROOT = Path(__file__).resolve().parent
STEPS = 80
MEM_STEPS = 5
MEM_BATCH = 64

PLAIN = """
import json, time, torch
from scratchllm.data import load_corpus
from scratchllm.model import GPT, GPTConfig
text = load_corpus("shakespeare").text
chars = sorted(set(text)); stoi = {{c: i for i, c in enumerate(chars)}}
data = torch.tensor([stoi[c] for c in text[:int(len(text) * 0.9)]], dtype=torch.long)
torch.manual_seed(1337)
model = GPT(GPTConfig(vocab_size=len(chars), block_size=64, n_layer=4, n_head=4, n_embd=128))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
start = time.perf_counter()
for step in range({steps}):
    ix = torch.randint(len(data) - 65, (12,))
    x = torch.stack([data[i:i + 64] for i in ix]); y = torch.stack([data[i + 1:i + 65] for i in ix])
    _, loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
print(json.dumps({{"tokens_per_s": {steps} * 12 * 64 / (time.perf_counter() - start)}}))
"""

OURS = """
import json, sys
from scratchllm.config import load_config
from scratchllm.train import train
cfg = load_config("shakespeare-char", ["train.max_steps={steps}", "train.max_minutes=0", "train.eval_every=100000",
                  "train.eval_batches=1", "train.sample_tokens=1", "train.checkpoint_every=100000"])
print(json.dumps(train(cfg, sys.argv[1], progress=False)))
"""

MEMORY = """
import json, torch
from scratchllm import metrics
from scratchllm.data import BatchStream, load_corpus
from scratchllm.model import GPT, GPTConfig
from scratchllm.config import TrainConfig
from scratchllm.device import autocast
from scratchllm.optim import make_optimizer
from scratchllm.train import train_step
import time
variant = {variant!r}
text = load_corpus("shakespeare").text[:1_000_000]
chars = sorted(set(text)); stoi = {{c: i for i, c in enumerate(chars)}}
import numpy as np
data = np.array([stoi[c] for c in text], dtype=np.uint16)
torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=len(chars), block_size=64, n_layer=4, n_head=4, n_embd=128))
model.grad_checkpointing = variant == "activation checkpointing"
accum = 4 if variant == "grad accumulation (4 x 1/4)" else 1
t = TrainConfig(batch_size={batch} // accum, grad_accum=accum)
dtype = torch.bfloat16 if variant == "bf16 autocast" else torch.float32
opt = make_optimizer(model, t, torch.device("cpu"))
stream = BatchStream(data, t.batch_size, 64, seed=1)
scaler = torch.amp.GradScaler("cpu", enabled=False)
ctx = lambda: autocast(torch.device("cpu"), dtype)
before = metrics.peak_rss_mb()
train_step(model, opt, [stream.next() for _ in range(accum)], t, 1e-3, ctx, scaler)
start = time.perf_counter()
for _ in range({steps}):
    train_step(model, opt, [stream.next() for _ in range(accum)], t, 1e-3, ctx, scaler)
tps = {steps} * {batch} * 64 / (time.perf_counter() - start)
print(json.dumps({{"variant": variant, "rss_before_mb": before, "peak_rss_mb": metrics.peak_rss_mb(),
                  "tokens_per_s": tps}}))
"""


def run_python(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(peak: float, flops_per_token: float) -> dict:
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):  # alternate, keep the best of each: the machine is shared and noisy
            plain.append(run_python(PLAIN.format(steps=STEPS))["tokens_per_s"])
            ours.append(run_python(OURS.format(steps=STEPS), f"{tmp}/run")["tokens_per_s"])  # data cached 2nd time
    best = {"ours": max(ours), "plain": max(plain)}
    return {"steps": STEPS, "tokens_per_s": best, "all_runs": {"ours": ours, "plain": plain},
            "ratio_ours_over_plain": best["ours"] / best["plain"],
            "mfu": {k: metrics.mfu(flops_per_token, v, peak) for k, v in best.items()}}


def memory() -> list[dict]:
    variants = ["plain", "grad accumulation (4 x 1/4)", "activation checkpointing", "bf16 autocast"]
    return [run_python(MEMORY.format(variant=v, steps=MEM_STEPS, batch=MEM_BATCH)) for v in variants]


def main() -> None:
    from scratchllm.model import GPT, GPTConfig

    started = time.perf_counter()
    peak = metrics.matmul_peak_flops("float32", "cpu")
    flops = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)).flops_per_token()
    result = {"machine": metrics.hardware_info(), "matmul_peak_fp32_flops": peak, "flops_per_token": flops,
              "speed_shakespeare_char": speed(peak, flops),
              "memory": {"batch": MEM_BATCH, "block_size": 64, "steps": MEM_STEPS, "rows": memory()}}
    result["seconds"] = time.perf_counter() - started
    s = result["speed_shakespeare_char"]
    print(f"shakespeare-char, {STEPS} steps, batch 12 x 64 (fp32 matmul peak {peak / 1e9:.1f} GFLOP/s)")
    for name in ("ours", "plain"):
        print(f"  {name:6s} {s['tokens_per_s'][name]:9,.0f} tokens/s  MFU {s['mfu'][name]:.1%}")
    print(f"  ratio ours / plain: {s['ratio_ours_over_plain']:.2f}x")
    print(f"memory, batch {MEM_BATCH} x 64, {MEM_STEPS} steps of train_step, one process each")
    print(f"  {'variant':32s} {'peak RSS MB':>11s} {'step growth MB':>14s} {'tokens/s':>9s}")
    for row in result["memory"]["rows"]:
        growth = row["peak_rss_mb"] - row["rss_before_mb"]
        print(f"  {row['variant']:32s} {row['peak_rss_mb']:11.0f} {growth:14.0f} {row['tokens_per_s']:9,.0f}")
    out = ROOT / "results" / "train.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
