"""The budget-aware recipe: the rule on worked examples and its properties on fake measurements, and one real
measurement of a tiny model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchllm import speedrun as speedrun_module
from scratchllm.config import InputError, load_config
from scratchllm.data import load_corpus, split_corpus
from scratchllm.quickstart import quickstart_config
from scratchllm.recipe import (
    COMPILE_S,
    COMPILE_SPEEDUP,
    MIN_STEPS,
    SHAPE_KEYS,
    SHAPES,
    WD_RANGE,
    Prediction,
    apply_recipe,
    candidates,
    choose,
    kept_because,
    predict,
    shape_of,
    spread_sample,
    training_tokens,
    weight_decay_for,
    with_overrides,
)
from scratchllm.speedrun import PREFIX_CHARS, load_speedrun_preset, override_keys, race_config, speedrun
from scratchllm.tokenizer import build_tokenizer

NAMES = [s.name for s in SHAPES]
rates = st.fixed_dictionaries({name: st.floats(100, 1e6) for name in NAMES})
seconds = st.floats(1, 3600)
data_tokens = st.floats(1e3, 1e8)
factors = st.floats(1, 10)


def _size(recipe) -> int:
    return NAMES.index(recipe.shape)


def test_weight_decay_is_a_fifth_of_the_passes_within_its_clamp():
    assert weight_decay_for(10) == 2.0 and weight_decay_for(20) == 4.0  # the best measured at ~10 and ~20 passes
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


def test_predict_worked_examples():
    # 10,000 tokens/s for 100 s at 4,096 tokens a step, 500,000 tokens in the split: 1e6 tokens, 244 steps, 2 passes
    assert predict(10_000, 100, 4096, 500_000, compiled=False) == Prediction(10_000, 1e6, 244, 2.0)
    # compiled: 1.35 x 10,000 tokens/s for the 76 s left after 24 s of compiling: 1,026,000 tokens, 250 steps
    assert (COMPILE_SPEEDUP, COMPILE_S) == (1.35, 24.0)
    assert predict(10_000, 100, 4096, 500_000, compiled=True) == Prediction(10_000, 1_026_000, 250, 2.052)
    assert predict(10_000, 20, 4096, 500_000, compiled=True).steps == 0  # the budget ends while compiling


def test_choose_on_each_side_of_min_steps():
    assert MIN_STEPS == 2000 and NAMES == ["3x256", "3x320"]  # both shapes step 32 x 128 = 4,096 tokens
    # 3x320 at 82,000 tokens/s for 100 s: 8.2M tokens, 2,001 steps >= 2,000: the larger shape, 16.4 passes, wd 3.28
    big = choose({"3x256": 120_000, "3x320": 82_000}, 100, 500_000)
    assert (big.shape, big.chosen.steps, big.overrides["train.weight_decay"]) == ("3x320", 2001, 3.28)
    assert big.overrides["model.n_embd"] == 320 and big.because["shape"].startswith("3x320: the largest")
    # at 81,000 tokens/s it makes 1,977 steps: the smaller shape, which makes 2,929 (24 passes, wd 4.8)
    small = choose({"3x256": 120_000, "3x320": 81_000}, 100, 500_000)
    assert (small.shape, small.chosen.steps, small.overrides["train.weight_decay"]) == ("3x256", 2929, 4.8)
    # neither makes 2,000 (244 and 195 steps): the smallest, and the record says why
    slow = choose({"3x256": 10_000, "3x320": 8_000}, 100, 500_000)
    assert (slow.shape, slow.chosen.steps) == ("3x256", 244)
    assert slow.because["shape"] == "3x256: no shape makes 2000 steps, so the smallest"


def test_grad_accum_multiplies_the_tokens_a_step():
    recipe = choose({"3x256": 10_000, "3x320": 8_000}, 100, 500_000, grad_accum=2)
    assert recipe.chosen.steps == 122  # 1e6 tokens / (2 x 4,096)


@pytest.mark.parametrize("minutes", [1, 5])
@given(rates, seconds, data_tokens)
def test_every_choice_applies_to_the_speedrun_presets(minutes, tps, secs, tokens):
    recipe = choose(tps, secs, tokens)
    cfg = with_overrides(load_speedrun_preset(minutes), recipe.overrides)
    for key, value in recipe.overrides.items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value, key
    assert WD_RANGE[0] <= cfg.train.weight_decay <= WD_RANGE[1]


def test_the_speedrun_shapes_are_candidates_and_any_other_shape_is_kept_alone():
    assert candidates(load_speedrun_preset(1)) == SHAPES and candidates(load_speedrun_preset(5)) == SHAPES
    assert [s.name for s in candidates(load_config("tiny"))] == ["as configured"]
    assert len(candidates(load_speedrun_preset(5, ["model.n_layer=4"]))) == 1


@pytest.mark.parametrize("key", SHAPE_KEYS)
def test_a_shape_set_by_hand_is_kept_even_when_it_is_a_candidate(key):
    cfg = load_speedrun_preset(5, ["model.n_embd=320"])  # 3x320, the other candidate
    assert candidates(cfg) == SHAPES  # without the keys the recipe could not tell
    assert [s.name for s in candidates(cfg, ["model.n_embd"])] == ["3x320"]
    assert kept_because(load_speedrun_preset(5), [key, "train.beta1"]) == f"set by hand ({key})"
    assert kept_because(load_speedrun_preset(5), ["train.beta1"]) is None  # not a shape key


def test_a_kept_shape_is_recorded_as_kept_and_set_unchanged():
    own = candidates(load_speedrun_preset(5, ["model.n_embd=320"]), ["model.n_embd"])
    recipe = choose({"3x320": 50_000}, 100, 500_000, own, kept="set by hand (model.n_embd)")
    assert recipe.shape == "3x320" and recipe.overrides["model.n_embd"] == 320
    assert recipe.because["shape"] == "3x320: the config's own shape, kept: set by hand (model.n_embd)"


def test_speedrun_passes_the_keys_set_by_hand_to_the_recipe(monkeypatch):
    seen = {}

    def stop(cfg, set_by_hand=()):
        seen.update(shape=shape_of(cfg).name, keys=list(set_by_hand))
        raise InterruptedError

    monkeypatch.setattr(speedrun_module, "apply_recipe", stop)
    overrides = ["model.n_embd=320", "train.beta1=0.8"]
    with pytest.raises(InterruptedError):
        speedrun(5, load_speedrun_preset(5, overrides), set_by_hand=override_keys(overrides))
    assert seen == {"shape": "3x320", "keys": ["model.n_embd", "train.beta1"]}


def test_spread_sample_takes_even_slices():
    assert spread_sample("abcdefgh", pieces=2, chars=2) == "abef"
    assert spread_sample("abc", pieces=2, chars=2) == "abc"  # no longer than the sample: the whole text


def test_a_split_no_longer_than_the_sample_is_counted_exactly(tiny_corpus_file):
    cfg = race_config(load_config("tiny"), 0.5, str(tiny_corpus_file), None)
    text = "\n\n".join(split_corpus(load_corpus(str(tiny_corpus_file)), cfg.data.val_fraction)["train"])
    estimate = training_tokens(cfg)
    assert estimate.bytes == estimate.sample_bytes == len(text.encode())
    assert estimate.tokens == len(build_tokenizer(cfg.tokenizer, text).encode(text))  # what train() will count


def test_the_speedrun_splits_token_estimate_is_within_2_percent():
    cfg = race_config(load_speedrun_preset(5), 5, "shakespeare", PREFIX_CHARS)
    text = "\n\n".join(split_corpus(load_corpus("shakespeare").head(PREFIX_CHARS), cfg.data.val_fraction)["train"])
    exact = len(build_tokenizer(cfg.tokenizer, text).encode(text))
    estimate = training_tokens(cfg)
    assert exact == 389_804 and estimate.sample_bytes == 200_000
    assert estimate.tokens == pytest.approx(exact, rel=0.02)  # 384,421: -1.4%


def test_fixed_recipe_is_the_preset_unchanged():
    cfg = load_speedrun_preset(5, ["recipe.mode=fixed"])
    assert apply_recipe(cfg) is cfg and cfg.recipe.why is None


def test_the_auto_recipe_is_the_speedrun_presets_choice_and_no_other_presets(tiny_corpus_file):
    assert load_speedrun_preset(1).recipe.mode == load_speedrun_preset(5).recipe.mode == "auto"
    assert quickstart_config().recipe.mode == "auto"  # quickstart's default preset is speedrun-5min
    for name in ("tiny", "shakespeare-bpe", "gpt2-124m"):  # the rule was measured on the speedrun shapes only
        cfg = race_config(load_config(name), 0.5, str(tiny_corpus_file), None)
        assert cfg.recipe.mode == quickstart_config(preset=name).recipe.mode == "fixed" and apply_recipe(cfg) is cfg


def test_auto_recipe_measures_a_tiny_model_and_records_why(tiny_corpus_file, one_thread):
    cfg = race_config(load_config("tiny", ["recipe.mode=auto"]), 0.5, str(tiny_corpus_file), None)
    chosen = apply_recipe(cfg, steps=2)
    why = chosen.recipe.why
    assert why["chosen"]["shape"] == "as configured" and why["measured"]["as configured"]["tokens_per_s"] > 0
    assert why["chosen"]["passes"] == pytest.approx(why["chosen"]["tokens"] / why["data_tokens"])
    assert why["data_tokens"] == why["data_estimate"]["sample_tokens"]  # the tiny split is its own sample
    assert chosen.model == cfg.model and chosen.train.weight_decay == weight_decay_for(why["chosen"]["passes"])


def test_speedrun_refuses_to_set_what_the_auto_recipe_chooses():
    with pytest.raises(InputError, match="recipe.mode=fixed"):
        load_speedrun_preset(5, ["train.weight_decay=4"])
    assert load_speedrun_preset(5, ["recipe.mode=fixed", "train.weight_decay=4"]).train.weight_decay == 4
    assert load_speedrun_preset(5, ["model.n_layer=4"]).model.n_layer == 4  # a shape may be set by hand
