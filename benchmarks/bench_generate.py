"""Decode speed: our generate with and without the KV cache at contexts 256 and 1024, and beside transformers'
`generate()` on the same weights (exported with convert.export_hf), greedy, in the same process.

A ~10M-parameter GPT-2-shaped model (5 layers, 384 wide, vocab 4096, block 1024), random weights (speed does not
depend on them). "context C" = a prompt of C - N tokens and N new tokens, so the last token sees C positions.
tokens/s counts new tokens over the whole call, prompt pre-fill included. Median of 3 after a warm-up. The cache
costs memory: n_layer x 2 x heads x block_size x head_dim floats per sequence, reported in MiB.

Run: .venv/bin/python benchmarks/bench_generate.py  -> table on stdout, benchmarks/results/generate.json
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scratchllm.convert import export_hf
from scratchllm.generate import generate
from scratchllm.metrics import hardware_info
from scratchllm.model import GPT, GPTConfig, KVCache

CONFIG = dict(vocab_size=4096, block_size=1024, n_layer=5, n_head=6, n_embd=384)
CACHE_CASES = [(256, 64, 16), (1024, 64, 8)]  # (context, new tokens with cache, new tokens without)
HF_CASES = [(64, 128), (256, 128), (768, 128)]  # (prompt length, new tokens)


def median_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prompt(length: int) -> list[int]:
    return torch.randint(0, CONFIG["vocab_size"], (length,), generator=torch.Generator().manual_seed(1)).tolist()


def bench_cache(model: GPT) -> list[dict]:
    rows = []
    for context, n_cached, n_naive in CACHE_CASES:
        speed = {}
        for use_cache, n in ((True, n_cached), (False, n_naive)):
            ids = prompt(context - n)
            seconds = median_time(lambda: generate(model, ids, n, temperature=0, use_cache=use_cache))  # noqa: B023
            speed[use_cache] = n / seconds
        rows.append({"context": context, "kv_cache_tokens_per_s": speed[True], "naive_tokens_per_s": speed[False],
                     "speedup": speed[True] / speed[False]})
    return rows


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_hf(model: GPT, pairs: int = 5) -> list[dict]:
    """Ours and transformers' generate, timed alternately (so machine load hits both alike); medians of `pairs`."""
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        export_hf(model, tmp)
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp).eval()
    rows = []
    for length, n in HF_CASES:
        ids = prompt(length)
        kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)

        def ours():
            return generate(model, ids, n, temperature=0)  # noqa: B023

        @torch.no_grad()
        def theirs():
            return hf.generate(torch.tensor([ids]), **kw)[0, length:].tolist()  # noqa: B023

        same = ours() == theirs()  # also the warm-up
        times = [(timed(ours), timed(theirs)) for _ in range(pairs)]
        our_s, hf_s = (statistics.median(t) for t in zip(*times, strict=True))
        rows.append({"prompt": length, "new_tokens": n, "ours_tokens_per_s": n / our_s, "hf_tokens_per_s": n / hf_s,
                     "ratio": hf_s / our_s, "same_tokens": same,
                     "hf_attn_implementation": hf.config._attn_implementation,
                     "transformers": transformers.__version__})
    return rows


def main() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**CONFIG)).eval()
    cache_rows, hf_rows = bench_cache(model), bench_hf(model)
    cache_mb = KVCache(model.config, batch_size=1).kv.nbytes / 2**20
    print(f"model: {model.num_params() / 1e6:.1f}M parameters, {CONFIG}; KV cache {cache_mb:.1f} MiB (fp32, batch 1)")
    print(f"{'context':>8} {'KV cache tok/s':>15} {'naive tok/s':>12} {'speed-up':>9}")
    for r in cache_rows:
        print(f"{r['context']:>8} {r['kv_cache_tokens_per_s']:>15.1f} {r['naive_tokens_per_s']:>12.1f} "
              f"{r['speedup']:>8.1f}x")
    print(f"{'prompt':>8} {'new':>5} {'ours tok/s':>11} {'HF tok/s':>9} {'ours/HF':>8} {'same tokens':>12}")
    for r in hf_rows:
        print(f"{r['prompt']:>8} {r['new_tokens']:>5} {r['ours_tokens_per_s']:>11.1f} {r['hf_tokens_per_s']:>9.1f} "
              f"{r['ratio']:>7.2f}x {str(r['same_tokens']):>12}")
    out = Path(__file__).parent / "results" / "generate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": {**CONFIG, "params": model.num_params()}, "kv_cache_mib": cache_mb,
                               "kv_cache": cache_rows,
                               "vs_transformers": hf_rows, "machine": hardware_info()}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
