"""The budget-aware recipe: the rule's properties on fake measurements, and one real measurement of a tiny model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchllm.config import InputError, load_config, validate
from scratchllm.recipe import (
    COMPILE_S,
    COMPILE_SPEEDUP,
    MIN_STEPS,
    SHAPES,
    WD_RANGE,
    apply_recipe,
    candidates,
    choose,
    weight_decay_for,
    with_overrides,
)
from scratchllm.speedrun import load_speedrun_preset, race_config

NAMES = [s.name for s in SHAPES]
rates = st.fixed_dictionaries({name: st.floats(100, 1e6) for name in NAMES})
seconds = st.floats(1, 3600)
data_tokens = st.floats(1e3, 1e8)
factors = st.floats(1, 10)


def _size(recipe) -> int:
    return NAMES.index(recipe.why["chosen"]["shape"])


def test_weight_decay_is_a_fifth_of_the_passes_within_its_clamp():
    assert weight_decay_for(10) == 2.0 and weight_decay_for(20) == 4.0  # the EPYC's and the Xeon's optima
    assert weight_decay_for(0) == WD_RANGE[0] and weight_decay_for(1000) == WD_RANGE[1]


@given(st.floats(0, 1000), st.floats(0, 1000))
def test_weight_decay_grows_with_passes(a, b):
    low, high = sorted((a, b))
    assert WD_RANGE[0] <= weight_decay_for(low) <= weight_decay_for(high) <= WD_RANGE[1]


@given(rates, seconds, data_tokens, factors)
def test_a_faster_machine_never_picks_a_smaller_model_or_less_decay_for_the_same_one(tps, secs, tokens, k):
    slow, fast = choose(tps, secs, tokens), choose({n: k * v for n, v in tps.items()}, secs, tokens)
    assert _size(fast) >= _size(slow)
    if _size(fast) == _size(slow):
        assert fast.overrides["train.weight_decay"] >= slow.overrides["train.weight_decay"]


@given(rates, seconds, data_tokens, factors, st.booleans())
def test_a_longer_budget_never_picks_a_smaller_model_or_less_decay_for_the_same_one(tps, secs, tokens, k, compiled):
    short, long = choose(tps, secs, tokens, compiled=compiled), choose(tps, k * secs, tokens, compiled=compiled)
    assert _size(long) >= _size(short)
    if _size(long) == _size(short):
        assert long.overrides["train.weight_decay"] >= short.overrides["train.weight_decay"]


@given(rates, seconds, data_tokens, st.booleans())
def test_predicted_passes_are_tokens_per_second_times_seconds_over_the_split(tps, secs, tokens, compiled):
    recipe = choose(tps, secs, tokens, compiled=compiled)
    run = recipe.why["chosen"]
    train_s = max(0.0, secs - COMPILE_S) if compiled else secs
    rate = run["tokens_per_s"] * (COMPILE_SPEEDUP if compiled else 1.0)
    assert run["tokens_per_s"] == tps[run["shape"]]
    assert run["passes"] == pytest.approx(rate * train_s / tokens)
    assert run["steps"] == int(rate * train_s // 4096)  # every candidate steps 4,096 tokens
    assert recipe.overrides["train.weight_decay"] == weight_decay_for(run["passes"])


@given(rates, seconds, data_tokens)
def test_the_largest_shape_that_makes_its_steps_is_chosen(tps, secs, tokens):
    recipe = choose(tps, secs, tokens)
    steps = {name: run["steps"] for name, run in recipe.why["shapes"].items()}
    fits = [name for name in NAMES if steps[name] >= MIN_STEPS]
    assert recipe.why["chosen"]["shape"] == (fits[-1] if fits else NAMES[0])
    assert set(recipe.why["because"]) == {"shape", "train.weight_decay", "train.warmdown_frac"}


@pytest.mark.parametrize("minutes", [1, 5])
@given(rates, seconds, data_tokens)
def test_every_choice_validates_on_the_speedrun_presets(minutes, tps, secs, tokens):
    cfg = with_overrides(load_speedrun_preset(minutes), choose(tps, secs, tokens).overrides)
    assert validate(cfg) is cfg and cfg.train.weight_decay >= WD_RANGE[0]


def test_the_speedrun_shapes_are_candidates_and_any_other_shape_is_kept_alone():
    assert candidates(load_speedrun_preset(1)) == SHAPES and candidates(load_speedrun_preset(5)) == SHAPES
    assert [s.name for s in candidates(load_config("tiny"))] == ["as configured"]
    assert len(candidates(load_speedrun_preset(5, ["model.n_layer=4"]))) == 1


def test_fixed_recipe_is_the_preset_unchanged():
    cfg = load_speedrun_preset(5, ["recipe.mode=fixed"])
    assert apply_recipe(cfg) is cfg and cfg.recipe.why is None


def test_auto_recipe_measures_a_tiny_model_and_records_why(tiny_corpus_file, one_thread):
    cfg = race_config(load_config("tiny"), 0.5, str(tiny_corpus_file), None)
    chosen = apply_recipe(cfg, steps=2)
    why = chosen.recipe.why
    assert why["chosen"]["shape"] == "as configured" and why["measured"]["as configured"]["tokens_per_s"] > 0
    assert why["chosen"]["passes"] == pytest.approx(why["chosen"]["tokens"] / why["data_tokens"])
    assert chosen.model == cfg.model and chosen.train.weight_decay == weight_decay_for(why["chosen"]["passes"])


def test_speedrun_refuses_to_set_what_the_auto_recipe_chooses():
    with pytest.raises(InputError, match="recipe.mode=fixed"):
        load_speedrun_preset(5, ["train.weight_decay=4"])
    assert load_speedrun_preset(5, ["recipe.mode=fixed", "train.weight_decay=4"]).train.weight_decay == 4
    assert load_speedrun_preset(5, ["model.n_layer=4"]).model.n_layer == 4  # a shape set by hand is kept
