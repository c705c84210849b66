"""CPU speedrun: scratchllm's preset against nanoGPT's CPU baby GPT, same wall-clock budget, same val bytes.

For each budget (1 and 5 minutes by default) the baseline (benchmarks/nanogpt_baseline.py) and our preset train one
after the other, each in a fresh process (so peak memory is its own), on the first 1,115,394 bytes of the built-in
corpus split 90/10; then both again on the whole 5 MB corpus (1 minute by default). Bits/byte are measured on every
val byte, plus on the last 10% of the whole corpus (never used for any choice). The ratio ours/baseline is what
holds across machines.
Our run compiles (where its preset says so) into an empty inductor cache, so compilation is paid in full.

Run: .venv/bin/python benchmarks/speedrun.py [--budgets 1 5] [--full-minutes 1]  -> benchmarks/results/speedrun.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from scratchllm.metrics import hardware_info

HERE = Path(__file__).resolve().parent
# Issue 21's bars on the val ratio: (minutes, whole corpus?) -> the most it may be. Other races have none.
BARS = {(1.0, False): 0.80, (5.0, False): 0.83, (5.0, True): 0.75}


def run_baseline(minutes: float, prefix_bytes: int | None, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE))
    from nanogpt_baseline import RECIPE, train_baseline

    from scratchllm.data import load_corpus
    from scratchllm.metrics import matmul_peak_flops, peak_rss_mb
    from scratchllm.speedrun import race_split

    corpus = load_corpus("shakespeare")
    text = corpus.text
    split = race_split(corpus, prefix_bytes)
    report = train_baseline(split["train"], {"val": split["val"], "holdout": split["holdout"]}, minutes * 60.0,
                            alphabet=text)
    L, C, T = RECIPE["n_layer"], RECIPE["n_embd"], RECIPE["block_size"]
    flops_per_token = 6.0 * (report["params"] - T * C) + 12.0 * L * C * T  # as nanoGPT's estimate_mfu
    report.update(peak_rss_mb=peak_rss_mb(), flops_per_token=flops_per_token,
                  mfu=flops_per_token * report["tokens_per_s"] / matmul_peak_flops("float32"))
    return report


def run_ours(minutes: float, prefix_bytes: int | None, threads: int, preset: str | None) -> dict:
    import torch

    from scratchllm.speedrun import load_speedrun_config, speedrun

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as cache:  # an empty inductor cache: torch.compile pays its full cost
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        return speedrun(minutes, load_speedrun_config(preset) if preset else None, prefix_chars=prefix_bytes)


def in_fresh_process(fn, *args) -> dict:
    """Run fn in a new interpreter: its own peak memory, no state shared between runs; note the load around it."""
    load_before = os.getloadavg()[0]
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        report = pool.submit(fn, *args).result()
    report["load_avg_1min"] = [load_before, os.getloadavg()[0]]
    return report


def compare(minutes: float, prefix_bytes: int | None, threads: int, preset: str | None) -> dict:
    baseline = in_fresh_process(run_baseline, minutes, prefix_bytes, threads)
    ours = in_fresh_process(run_ours, minutes, prefix_bytes, threads, preset)
    ratios = {k: ours["bpb"][k] / baseline["bpb"][k] for k in ("val", "holdout")}
    return {"minutes": minutes, "corpus_bytes": prefix_bytes or "all", "ratio": ratios,
            "bar": BARS.get((minutes, prefix_bytes is None)), "baseline": baseline, "ours": ours}


def print_row(result: dict) -> None:
    b, o = result["baseline"], result["ours"]
    bar = "" if result["bar"] is None else f" (bar {result['bar']})"
    print(f"{result['minutes']:>5g} min  corpus {str(result['corpus_bytes']):>9}  "
          f"baseline {b['bpb']['val']:.3f} ({b['steps']} steps)  ours {o['bpb']['val']:.3f} ({o['steps']} steps)  "
          f"ratio {result['ratio']['val']:.3f}{bar}  holdout ratio {result['ratio']['holdout']:.3f}  "
          f"load {b['load_avg_1min'][0]:.1f}/{o['load_avg_1min'][1]:.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    import torch

    from scratchllm.config import write_json
    from scratchllm.speedrun import PREFIX_CHARS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[1.0, 5.0], help="minutes per run")
    parser.add_argument("--full-minutes", type=float, default=1.0, help="budget on the whole corpus (0 = skip)")
    parser.add_argument("--preset", default=None, help="speedrun YAML (default: configs/speedrun-*min.yaml)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's own)")
    parser.add_argument("--out", default=str(HERE / "results" / "speedrun.json"))
    args = parser.parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    runs = [(m, PREFIX_CHARS) for m in args.budgets] + ([(args.full_minutes, None)] if args.full_minutes else [])
    results = []
    for minutes, prefix in runs:
        results.append(compare(minutes, prefix, threads, args.preset))
        print_row(results[-1])
        machine = {**hardware_info(), "date": time.strftime("%Y-%m-%d %H:%M"), "threads": threads}
        write_json(args.out, {"machine": machine, "runs": results})


if __name__ == "__main__":
    main()
