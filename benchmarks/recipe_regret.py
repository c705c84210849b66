"""Regret of the budget-aware recipe (scratchllm/recipe.py): its choice against the best of a small sweep around it.

A point is a budget in minutes, a number of torch threads (1 simulates a slower machine than 2) and the data
("split": nanoGPT's first 1,115,394 characters; "full": the whole corpus). At each point the rule measures the
machine and chooses, in a fresh process with that many threads; then every config of the sweep trains the speedrun
for the budget in its own fresh process (empty inductor cache: compilation paid in full) and is scored on every val
byte. The sweep varies one thing around the rule's choice and includes the choice itself:
  wd        the rule's weight decay x 0.5, 1, 2
  shape     each candidate shape and each of compared_shapes(), with the weight decay the rule gives its own predicted
            passes
  warmdown  warm-down fractions 0.3, 0.5, 0.7
Regret = the rule's val bits/byte - the sweep's best. Points accumulate in the results file: a cell of the table
(budget, threads, data, sweep) run again gains a repeat beside its earlier runs, so the grid can be filled a subset
at a time and a cell's spread read. Each point stores the rule's constants; points of another rule are stale and
left out of the table printed at the end.
On a machine shared with other work, --clock steps trains each config for the steps the rule predicted for its
shape instead of the wall clock, so what the others take from the CPU does not change what is compared (the
measurement that made the prediction still sees them).

Run: .venv/bin/python benchmarks/recipe_regret.py --budgets 1 --threads 2 --data split --sweep wd
     -> benchmarks/results/recipe_regret.json (defaults: budgets 1 2 5 10, threads 1 2, data split full, sweep wd)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from scratchllm.metrics import hardware_info

HERE = Path(__file__).resolve().parent
WD_FACTORS = (0.5, 1.0, 2.0)
WARMDOWNS = (0.3, 0.5, 0.7)


def prefix_of(data: str) -> int | None:
    from scratchllm.speedrun import PREFIX_CHARS

    return PREFIX_CHARS if data == "split" else None


def compared_shapes() -> tuple:
    """Shapes that are no candidate, trained in the shape sweep beside the candidates: speedrun-1min's 4x192 at
    context 256 x 16, its shape until the shape sweep of 2026-12-05 (1 min, 2 threads, EPYC) found it losing to
    3x256 (2.234 against 2.167)."""
    from scratchllm.recipe import Shape

    return (Shape("4x192", 4, 4, 192, 256, 16, 3e-3, 1.5e-4, False),)


def rule_choice(minutes: float, threads: int, data: str) -> dict:
    """The recipe's measurements and choice at this point (recipe.why), and under "compared" what the budget
    would buy compared_shapes() (measured the same way)."""
    import dataclasses

    import torch

    from scratchllm.recipe import apply_recipe, measure, predict
    from scratchllm.speedrun import load_speedrun_preset, race_config

    torch.set_num_threads(threads)
    cfg = race_config(load_speedrun_preset(minutes), minutes, "shakespeare", prefix_of(data))
    why = apply_recipe(cfg).recipe.why
    measured = measure(cfg, compared_shapes())
    why["compared"] = {s.name: dataclasses.asdict(predict(measured[s.name].tokens_per_s, why["seconds"],
                                                          s.batch_size * s.block_size, why["data_tokens"],
                                                          why["compiled"])) for s in compared_shapes()}
    return why


def train_one(minutes: float, threads: int, data: str, overrides: dict, steps: int = 0) -> dict:
    """One speedrun of the fixed recipe with `overrides` on the speedrun preset, for `minutes` of training time or,
    when steps > 0, for that many steps on the race's split: its scores and pace."""
    import torch

    from scratchllm.recipe import with_overrides
    from scratchllm.speedrun import load_speedrun_preset, speedrun

    torch.set_num_threads(threads)
    cfg = with_overrides(load_speedrun_preset(minutes, ["recipe.mode=fixed"]), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        if steps:
            return train_steps(cfg, steps, data, Path(tmp) / "run")
        report = speedrun(minutes, cfg, prefix_chars=prefix_of(data))
    return {key: report[key] for key in ("bpb", "steps", "tokens_per_s", "train_seconds", "params")}


def train_steps(cfg, steps: int, data: str, run_dir: Path) -> dict:
    """The speedrun's race for a number of steps instead of minutes (its schedule then follows the steps)."""
    import dataclasses

    from scratchllm.data import load_corpus
    from scratchllm.speedrun import race_config, race_split, score_run
    from scratchllm.train import train

    cfg = race_config(cfg, 0.0, "shakespeare", prefix_of(data))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps))
    summary = train(cfg, run_dir, progress=False)
    split = race_split(load_corpus("shakespeare"), prefix_of(data))
    scores = score_run(run_dir, cfg, {name: split[name] for name in ("val", "holdout")})
    return {"bpb": {name: s["bpb"] for name, s in scores.items()}, "steps": summary["steps"],
            "tokens_per_s": summary["tokens_per_s"], "train_seconds": summary["train_s"], "params": summary["params"]}


def in_fresh_process(fn, *args):
    """fn in a new interpreter (no compiled code, threads or memory shared between runs), with the load around it."""
    load_before = os.getloadavg()[0]
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        result = pool.submit(fn, *args).result()
    return result, [load_before, os.getloadavg()[0]]


def sweep_configs(why: dict, sweep: str) -> list[dict]:
    """The sweep's configs as {"name", "shape", "overrides"}; the one named "rule" is the rule's own choice."""
    from scratchllm.recipe import SHAPES, WARMDOWN_FRAC, weight_decay_for

    chosen = why["set"]
    if sweep == "wd":
        return [{"name": "rule" if k == 1.0 else f"wd x{k:g}", "shape": why["chosen"]["shape"],
                 "overrides": {**chosen, "train.weight_decay": round(k * chosen["train.weight_decay"], 3)}}
                for k in WD_FACTORS]
    if sweep == "warmdown":
        return [{"name": "rule" if w == chosen["train.warmdown_frac"] else f"warmdown {w:g}",
                 "shape": why["chosen"]["shape"], "overrides": {**chosen, "train.warmdown_frac": w}} for w in WARMDOWNS]
    runs = {**why["shapes"], **why["compared"]}
    return [{"name": "rule" if s.name == why["chosen"]["shape"] else s.name, "shape": s.name,
             "overrides": {**s.overrides(), "train.weight_decay": weight_decay_for(runs[s.name]["passes"]),
                           "train.warmdown_frac": WARMDOWN_FRAC}} for s in SHAPES + compared_shapes()]


def run_point(minutes: float, threads: int, data: str, sweep: str, clock: str) -> dict:
    why, load = in_fresh_process(rule_choice, minutes, threads, data)
    runs = []
    for config in sweep_configs(why, sweep):
        steps = {**why["shapes"], **why["compared"]}[config["shape"]]["steps"] if clock == "steps" else 0
        result, run_load = in_fresh_process(train_one, minutes, threads, data, config["overrides"], steps)
        runs.append({**config, **result, "load_avg_1min": run_load})
        print(f"  {config['name']:>12}: val {result['bpb']['val']:.4f}  holdout {result['bpb']['holdout']:.4f}  "
              f"{result['steps']} steps  load {run_load[0]:.1f}/{run_load[1]:.1f}", flush=True)
    rule = next(r for r in runs if r["name"] == "rule")
    best = min(runs, key=lambda r: r["bpb"]["val"])
    return {"minutes": minutes, "threads": threads, "data": data, "sweep": sweep, "clock": clock, "rule": why,
            "load_avg_1min": load, "runs": runs, "best": best["name"],
            "regret": rule["bpb"]["val"] - best["bpb"]["val"]}


def rule_constants() -> dict:
    """The rule's settings, stored with each point: a point made under other ones is stale (`is_stale`)."""
    from scratchllm import recipe

    return {"shapes": [s.name for s in recipe.SHAPES], "min_steps": recipe.MIN_STEPS,
            "wd_per_pass": recipe.WD_PER_PASS, "wd_range": list(recipe.WD_RANGE),
            "warmdown_frac": recipe.WARMDOWN_FRAC, "compile_speedup": recipe.COMPILE_SPEEDUP}


def point_key(point: dict) -> tuple:
    """(budget in minutes, threads, data, sweep): the cell of the regret table a point fills."""
    return point["minutes"], point["threads"], point["data"], point["sweep"]


def merge(saved: dict, point: dict) -> dict:
    """saved's points with `point` added: every run is kept, so repeats of one cell (point_key) accumulate beside
    the other cells; the list is ordered by cell, then oldest first. Example: points at (1, 2, split, wd) and
    (5, 2, split, wd), then another at (1, 2, split, wd) -> the two (1, ...) runs first, then the (5, ...) one."""
    return {"points": sorted([*saved.get("points", []), point], key=point_key)}  # a stable sort keeps run order


def is_stale(point: dict, constants: dict) -> bool:
    """Whether a point was made by another rule than `constants` (or was marked "stale" by hand)."""
    return "stale" in point or point.get("rule_constants") != constants


def table(points: list[dict], constants: dict) -> list[str]:
    """One line per cell: the current rule's runs there, their regrets and the best configs; stale points left out."""
    cells: dict[tuple, list[dict]] = {}
    for point in points:
        if not is_stale(point, constants):
            cells.setdefault(point_key(point), []).append(point)
    return [f"{m:g} min, {t} thread(s), {d}, {sweep}: {len(ps)} run(s), regret "
            + ", ".join(f"{p['regret']:.4f} ({p['best']}, clock {p.get('clock', 'wall')})" for p in ps)
            for (m, t, d, sweep), ps in cells.items()]


def main(argv: list[str] | None = None) -> None:
    from scratchllm.config import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0], help="minutes per run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads per run")
    parser.add_argument("--data", nargs="+", choices=("split", "full"), default=["split", "full"])
    parser.add_argument("--sweep", nargs="+", choices=("wd", "shape", "warmdown"), default=["wd"])
    parser.add_argument("--clock", choices=("wall", "steps"), default="wall",
                        help="train each config for the budget's minutes, or for the steps the rule predicted")
    parser.add_argument("--out", default=str(HERE / "results" / "recipe_regret.json"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.is_file() else {"points": []}
    constants = rule_constants()
    for minutes, threads, data, sweep in itertools.product(args.budgets, args.threads, args.data, args.sweep):
        print(f"{minutes:g} min, {threads} thread(s), {data}, sweep {sweep}", flush=True)
        point = run_point(minutes, threads, data, sweep, args.clock)
        print(f"  regret {point['regret']:.4f} (best: {point['best']})", flush=True)
        machine = {**hardware_info(), "date": time.strftime("%Y-%m-%d %H:%M")}
        saved = merge(saved, {**point, "rule_constants": constants, "machine": machine})
        write_json(out, saved)
    print("\n".join(table(saved["points"], constants)))


if __name__ == "__main__":
    main()
