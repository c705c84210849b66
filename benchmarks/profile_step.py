"""Where a training step goes: torch.profiler over the trainer's own step, tokens/s and MFU, and variants side by side.

The model, optimizer, autocast and compiled regions are built by recipe.step_runner with the package's own functions
(session.build_model, session.wrap_model, optim.make_optimizer, device.*) and each step is train.train_step, so what
is profiled is what `scratchllm train --preset speedrun-5min` runs (and what the budget-aware recipe times). Batches
are random token windows of the tokenizer's vocab size: the step's cost does not depend on which tokens they are.
Shares are of the profiled steps' wall time: each op's own (self) time goes to a category by its name; views,
reshapes and wrappers count as overhead, with Python and dispatch (wall time minus op time). MFU uses
GPT.flops_per_token (6N + attention, as the trainer logs it) against a bf16 matmul peak measured here at the model's
shapes.

Run (15-40 s each on an idle 2-core EPYC once inductor's cache holds the compiled graphs; a first compile adds ~15 s):
  nice -n 5 .venv/bin/python benchmarks/profile_step.py                      # eager + compiled profile
  nice -n 5 .venv/bin/python benchmarks/profile_step.py --compare sdpa foreach --rounds 8 --steps 3
Variants race the preset as configured, or eager for threads1 (compiled kernels keep the thread count they were built
with), each timed in turn in one process; tokens/s comes from the 25th-percentile step time, since on a shared
machine the undisturbed steps are the fast ones.
Writes benchmarks/results/profile_step.json (or profile_compare_VARIANTS.json), with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from scratchllm import metrics
from scratchllm.config import load_config, write_json
from scratchllm.device import resolve_dtype
from scratchllm.recipe import StepRunner, step_runner

RESULTS = Path(__file__).resolve().parent / "results"
PEAK_SHAPES = [(4096, 256, 768), (4096, 256, 1024), (4096, 1024, 256)]
"""(M, K, N) of the step's matmuls at batch 32 x 128: q/k/v, MLP up and head (vocab 1024), MLP down."""
CATEGORIES = ("attention matmuls", "softmax", "other matmuls", "elementwise/norm/activation", "optimizer step",
              "loss", "rest (Python, dispatch, views)")
OVERHEAD_OPS = {"view", "_unsafe_view", "reshape", "transpose", "t", "expand", "permute", "split", "split_with_sizes",
                "chunk", "slice", "select", "as_strided", "unsqueeze", "squeeze", "detach", "detach_", "alias",
                "empty", "empty_like", "empty_strided", "linear", "matmul", "to", "lift_fresh", "resolve_conj",
                "resolve_neg", "contiguous", "result_type", "set_", "zeros", "ones", "new_empty_strided",
                "new_empty", "expand_as", "view_as", "is_nonzero", "item", "_local_scalar_dense"}
LOSS_WORDS = ("log_softmax", "nll_loss", "cross_entropy")
VARIANTS = {
    "sdpa": "model.attention=sdpa: PyTorch's fused attention kernel instead of the explicit one",
    "batch64": "train.batch_size=64: twice the tokens per step (tokens/s compares equal tokens)",
    "foreach": "AdamW(foreach=True) instead of make_optimizer's fused=True",
    "max-autotune": "torch.compile(mode='max-autotune-no-cudagraphs') for both compiled regions",
    "threads1": "torch.set_num_threads(1) for the eager step (compiled kernels keep the count they were built with)",
}


@dataclasses.dataclass
class Runner:
    """One variant: the model, optimizer and random batches of recipe.step_runner, and the threads it steps with."""

    name: str
    run: StepRunner
    threads: int = 0
    """torch threads while this variant steps (0 = leave as is)."""

    def step(self) -> None:
        self.run.step()

    @contextlib.contextmanager
    def own_threads(self):
        """torch's thread count set to this variant's while it steps, then put back."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads or previous)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def timed(self, steps: int) -> list[float]:
        """Seconds of each of `steps` steps."""
        times = []
        with self.own_threads():
            for _ in range(steps):
                start = time.perf_counter()
                self.step()
                times.append(time.perf_counter() - start)
        return times

    def tokens_per_s(self, step_s: float) -> float:
        return self.run.tokens_per_step / step_s


def quick_step(times: list[float]) -> float:
    """The 25th percentile of step times: on a shared machine the undisturbed steps are the fast ones."""
    return float(np.percentile(times, 25))


def build_runner(name: str, preset: str, overrides: list[str], optimizer: str = "fused",
                 compile_mode: str | None = None, threads: int = 0) -> Runner:
    """recipe.step_runner's model and optimizer (as session.setup builds them), then the variant's changes."""
    run = step_runner(load_config(preset, overrides))
    if compile_mode:
        run.gpt.compiled = ([torch.compile(b, mode=compile_mode) for b in run.gpt.transformer.h],
                            torch.compile(run.gpt._head, mode=compile_mode))
    if optimizer == "foreach":
        run.optimizer = torch.optim.AdamW([{**g, "fused": None, "foreach": True} for g in run.optimizer.param_groups])
    return Runner(name, run, threads)


def variant_runner(name: str, preset: str, overrides: list[str]) -> Runner:
    extra = {"sdpa": (["model.attention=sdpa"], {}), "batch64": (["train.batch_size=64"], {}),
             "foreach": ([], {"optimizer": "foreach"}),
             "max-autotune": ([], {"compile_mode": "max-autotune-no-cudagraphs"}),
             "threads1": (["train.compile=false"], {"threads": 1}), "eager": (["train.compile=false"], {}),
             "base": ([], {})}
    more, kwargs = extra[name]
    return build_runner(name, preset, [*overrides, *more], **kwargs)


# ----------------------------------------------------------------------------- the matmul roof


def matmul_peaks(dtype: torch.dtype, repeats: int = 50) -> dict[str, float]:
    """Best FLOP/s of torch.matmul at each of PEAK_SHAPES (metrics.matmul_flops, best of `repeats`)."""
    return {f"{m}x{k} @ {k}x{n}": metrics.matmul_flops(dtype, (m, k, n), repeats=repeats) for m, k, n in PEAK_SHAPES}


# ----------------------------------------------------------------------------- the profile


def category(event) -> str | None:
    """The category an event's self time belongs to, or None for overhead (wrappers, annotations, views)."""
    parent = event
    while parent is not None:
        if parent.name.startswith(("Optimizer.step", "Optimizer.zero_grad")):
            return "optimizer step"
        parent = parent.cpu_parent
    name = event.name
    if name.startswith("aten::"):
        op = name.removeprefix("aten::")
        if op in OVERHEAD_OPS:
            return None
        if op.startswith("_foreach") or op == "linalg_vector_norm":  # clip_grad_norm_
            return "optimizer step"
    elif "cpp_fused" not in name and not name.startswith("mkldnn::"):
        return None
    if any(word in name for word in LOSS_WORDS):
        return "loss"
    if "softmax" in name:
        return "softmax"
    if name.endswith(("::bmm", "::baddbmm")) or "scaled_dot_product" in name:  # SDPA: matmuls and softmax in one
        return "attention matmuls"
    if name.endswith(("::mm", "::addmm")) or name.startswith("mkldnn::"):
        return "other matmuls"
    return "elementwise/norm/activation"


def matmul_shape(event) -> str | None:
    """"MxK @ KxN" (mm) or "BxMxK @ BxKxN" (bmm) of a matmul event recorded with its shapes, else None."""
    shapes = [s for s in event.input_shapes if s]
    if not event.name.endswith(("::mm", "::bmm")) or len(shapes) < 2:
        return None
    return " @ ".join("x".join(map(str, s)) for s in shapes[:2])


def matmul_flops(shape: str) -> float:
    """2 x M x K x N (x B) of a matmul_shape string."""
    a, b = ([int(d) for d in side.split("x")] for side in shape.split(" @ "))
    return 2.0 * float(np.prod(a)) * b[-1]


def profile_steps(runner: Runner, steps: int) -> dict:
    """Self time per category over `steps` profiled steps, as shares of their wall time, the top ops, and each
    matmul shape's time and achieved FLOP/s."""
    with runner.own_threads(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            runner.step()
        wall_us = (time.perf_counter() - start) * 1e6
    times = dict.fromkeys(CATEGORIES[:-1], 0.0)
    ops: dict[str, float] = {}
    shapes: dict[str, list[float]] = {}  # "mm MxK @ KxN" -> [self us, calls]
    for event in prof.events():
        kind = category(event)
        if kind is not None:
            times[kind] += event.self_cpu_time_total
            ops[event.name] = ops.get(event.name, 0.0) + event.self_cpu_time_total
        shape = matmul_shape(event) if kind in ("attention matmuls", "other matmuls") else None
        if shape is not None:
            key = f"{event.name.removeprefix('aten::')} {shape}"
            shapes.setdefault(key, [0.0, 0])
            shapes[key][0] += event.self_cpu_time_total
            shapes[key][1] += 1
    times[CATEGORIES[-1]] = wall_us - sum(times.values())
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:15]
    return {"profiled_step_ms": wall_us / steps / 1e3,
            "ms_per_step": {k: v / steps / 1e3 for k, v in times.items()},
            "share": {k: v / wall_us for k, v in times.items()},
            "top_ops_ms_per_step": {k: v / steps / 1e3 for k, v in top},
            "matmuls": {k: {"ms_per_step": us / steps / 1e3, "calls_per_step": calls / steps,
                            "gflop_per_s": matmul_flops(k.split(" ", 1)[1]) * calls / us / 1e3}
                        for k, (us, calls) in sorted(shapes.items(), key=lambda kv: -kv[1][0])}}


def measure(runner: Runner, warmup: int, steps: int, profiled: int, peak: float,
            tokens_per_s: float | None = None) -> dict:
    """Warm-up (compilation included, timed), unprofiled tokens/s (or the given one) and MFU, then the profile."""
    start = time.perf_counter()
    for _ in range(warmup):
        runner.step()
    warm_s = time.perf_counter() - start
    tps = tokens_per_s or runner.tokens_per_s(quick_step(runner.timed(steps)))
    flops = runner.run.gpt.flops_per_token()
    return {"warmup_steps": warmup, "warmup_s": warm_s, "tokens_per_s": tps,
            "step_ms": runner.run.tokens_per_step / tps * 1e3,
            "flops_per_token": flops, "mfu": metrics.mfu(flops, tps, peak), "profile": profile_steps(runner, profiled)}


# ----------------------------------------------------------------------------- side by side


def compare(runners: list[Runner], rounds: int, steps: int, warmup: int) -> dict:
    """Each runner's steps in turn (A B C A B C ...), `rounds` times; tokens/s of each from its 25th-percentile step
    time over all rounds, and per round, as ratios to the first runner."""
    for r in runners:
        for _ in range(warmup):
            r.step()
    times: dict[str, list[list[float]]] = {r.name: [] for r in runners}
    for _ in range(rounds):
        for r in runners:
            times[r.name].append(r.timed(steps))
    tps = {r.name: r.tokens_per_s(quick_step(sum(times[r.name], []))) for r in runners}
    base = runners[0]
    per_round = {r.name: [r.tokens_per_s(quick_step(a)) / base.tokens_per_s(quick_step(b))
                          for a, b in zip(times[r.name], times[base.name], strict=True)] for r in runners[1:]}
    return {"step_s": times, "tokens_per_s": tps, "ratio": {n: v / tps[base.name] for n, v in tps.items()},
            "ratio_per_round": per_round}


def write_result(name: str, result: dict) -> Path:
    """JSON under benchmarks/results (config.write_json: a temporary file renamed into place)."""
    write_json(RESULTS / name, result)
    return RESULTS / name


def print_profile(name: str, m: dict) -> None:
    p = m["profile"]
    print(f"{name}: {m['tokens_per_s']:,.0f} tokens/s, {m['step_ms']:.0f} ms/step, MFU {m['mfu']:.1%} "
          f"(profiled step {p['profiled_step_ms']:.0f} ms; warm-up {m['warmup_s']:.0f} s)")
    for k in CATEGORIES:
        print(f"  {k:32s} {p['ms_per_step'][k]:7.1f} ms  {p['share'][k]:6.1%}")
    for k, v in list(p["top_ops_ms_per_step"].items())[:6]:
        print(f"    {v:7.1f} ms  {k[:90]}")
    for k, v in p["matmuls"].items():
        print(f"    {v['ms_per_step']:7.1f} ms  {v['calls_per_step']:3.0f} calls  {v['gflop_per_s']:5.0f} GFLOP/s  {k}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="speedrun-5min")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup", type=int, default=5, help="steps before timing (the first compiles)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement (per round in --compare)")
    ap.add_argument("--profiled", type=int, default=10, help="steps under the profiler")
    ap.add_argument("--compare", nargs="*", choices=sorted(VARIANTS), help="variants to race against the preset")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds in --compare")
    args = ap.parse_args()
    torch._inductor.config.cpp.enable_kernel_profile = True  # fused kernels show up by name in the profile
    torch._dynamo.config.automatic_dynamic_shapes = False  # each variant keeps its own static-shape graph
    torch._dynamo.config.recompile_limit = 64
    started = time.perf_counter()
    dtype = resolve_dtype(load_config(args.preset, args.overrides).train.dtype, torch.device("cpu"))
    peaks = matmul_peaks(dtype)
    peak = max(peaks.values())
    result = {"machine": metrics.hardware_info(), "preset": args.preset, "overrides": args.overrides,
              "dtype": str(dtype).removeprefix("torch."), "matmul_peak_flops_at_model_shapes": peaks,
              "peak_flops": peak, "matmul_peak_flops_1024": metrics.matmul_peak_flops(dtype)}
    print(f"{result['machine']['cpu_model']}, {torch.get_num_threads()} threads; bf16 matmul peak at model shapes: "
          + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()) + " GFLOP/s")
    if args.compare:
        names = ["base", *args.compare]
        if "threads1" in names:
            names = ["eager", *[n for n in names if n != "base"]]
        runners = [variant_runner(n, args.preset, args.overrides) for n in names]
        result["variants"] = {n: VARIANTS.get(n, "the preset as configured") for n in names}
        result["compare"] = compare(runners, args.rounds, args.steps, args.warmup)
        tps = result["compare"]["tokens_per_s"]
        result["profiles"] = {r.name: measure(r, 0, 0, args.profiled, peak, tps[r.name]) for r in runners}
        for r in runners:
            print_profile(r.name, result["profiles"][r.name])
        for n, rounds in result["compare"]["ratio_per_round"].items():
            print(f"{n} / {names[0]} tokens/s: {result['compare']['ratio'][n]:.3f} "
                  f"(per round: {', '.join(f'{x:.2f}' for x in rounds)})")
        out = f"profile_compare_{'_'.join(args.compare)}.json"
    else:
        result["profiles"] = {}
        for name in ("eager", "base"):
            m = measure(variant_runner(name, args.preset, args.overrides), args.warmup, args.steps, args.profiled,
                        peak)
            result["profiles"]["compiled" if name == "base" else name] = m
            print_profile("compiled" if name == "base" else name, m)
        out = "profile_step.json"
    result["seconds"] = time.perf_counter() - started
    print(f"wrote {write_result(out, result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
