"""benchmarks/recipe_regret.py's results file: runs accumulate by cell instead of replacing each other, and points of
another rule are stale and left out of the table. The sweeps themselves take minutes each and are the benchmark's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.fixture(scope="module")
def regret(load_benchmark):
    return load_benchmark("recipe_regret")


def _point(minutes, sweep, regret, constants, best="rule"):
    return {"minutes": minutes, "threads": 2, "data": "split", "sweep": sweep, "clock": "steps", "regret": regret,
            "best": best, "rule_constants": constants}


def test_a_cell_run_again_gains_a_repeat_and_other_cells_stay(regret):
    now = regret.rule_constants()
    saved = {"points": []}
    for point in (_point(5, "wd", 0.01, now), _point(1, "wd", 0.0, now), _point(1, "wd", 0.002, now, "wd x0.5")):
        saved = regret.merge(saved, point)
    assert [(p["minutes"], p["regret"]) for p in saved["points"]] == [(1, 0.0), (1, 0.002), (5, 0.01)]
    assert regret.table(saved["points"], now) == [
        "1 min, 2 thread(s), split, wd: 2 run(s), regret 0.0000 (rule, clock steps), 0.0020 (wd x0.5, clock steps)",
        "5 min, 2 thread(s), split, wd: 1 run(s), regret 0.0100 (rule, clock steps)"]


def test_points_of_another_rule_are_stale(regret):
    now = regret.rule_constants()
    old = _point(1, "wd", 0.005, {**now, "shapes": ["4x192", "3x256", "3x320"]})
    marked = {**_point(1, "shape", 0.0, now), "stale": "by hand"}
    assert regret.is_stale(old, now) and regret.is_stale(marked, now)
    assert regret.table([old, marked], now) == []


def test_the_committed_results_mark_the_old_rules_point_stale(regret):
    saved = json.loads((RESULTS / "recipe_regret.json").read_text())
    old = [p for p in saved["points"] if p["rule"]["chosen"]["shape"] not in regret.rule_constants()["shapes"]]
    assert old and all(regret.is_stale(p, regret.rule_constants()) for p in old)
