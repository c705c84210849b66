"""Speedrun: the report of a few-second run, the split nanoGPT uses, and bits/byte measured the same way for our
model and for the plain-PyTorch nanoGPT baseline it is judged against (benchmarks/nanogpt_baseline.py)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from scratchllm.cli import main
from scratchllm.config import InputError
from scratchllm.model import GPT, GPTConfig
from scratchllm.speedrun import (
    PREFIX_BYTES,
    READ_TRAIN_KEYS,
    SpeedrunConfig,
    SpeedrunTrain,
    evaluate_bpb,
    load_speedrun_config,
    load_speedrun_preset,
    lr_at,
    speedrun,
    split_corpus,
    token_byte_lengths,
)
from scratchllm.tokenizer import train_bpe
from scratchllm.train import load_config

BASELINE_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "nanogpt_baseline.py"


def _baseline():
    spec = importlib.util.spec_from_file_location("nanogpt_baseline", BASELINE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_config(vocab: int = 300) -> SpeedrunConfig:
    model = GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, n_embd=32, norm_type="rmsnorm",
                      activation="relu2", positions="rope", tie_weights=False)
    return SpeedrunConfig(vocab_size=vocab, model=model, train=SpeedrunTrain(batch_size=8, warmup_steps=5))


def test_split_matches_nanogpt_shakespeare_char(shakespeare_text):
    # nanoGPT's data/shakespeare_char/prepare.py prints: train has 1,003,854 tokens, val has 111,540 tokens
    split = split_corpus(shakespeare_text, PREFIX_BYTES)
    assert (len(split["train"]), len(split["val"])) == (1_003_854, 111_540)
    assert split["holdout"] == shakespeare_text[-len(split["holdout"]):]
    assert len(split["holdout"]) == len(shakespeare_text) - int(len(shakespeare_text) * 0.9)


def test_lr_schedule_ends_at_its_floor_when_the_budget_does():
    cfg = SpeedrunTrain(lr=1.0, min_lr_frac=0.1, warmup_steps=10, warmdown_frac=0.5)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)  # warm-up: 1/10 of the peak
    assert lr_at(cfg, 100, 0.4) == pytest.approx(1.0)  # flat before the warm-down
    assert lr_at(cfg, 100, 0.75) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(cfg, 100, 1.0) == pytest.approx(0.1)


def test_evaluators_agree_with_each_other_and_with_the_uniform_identity(tiny_text):
    base = _baseline()
    stoi = base.char_vocab(tiny_text)
    ids = base.char_encode(tiny_text[:5000], stoi)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(stoi), block_size=48, n_layer=2, n_head=2, n_embd=32, tie_weights=False))
    ones = torch.ones(len(stoi), dtype=torch.float64)  # ASCII: one byte per character
    ours = evaluate_bpb(model, ids, ones, batch=7)
    theirs = base.eval_bits_per_byte(model, ids, len(ids) - 1, block_size=48, batch=64)
    assert ours == pytest.approx(theirs, rel=1e-5)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # all logits 0: every id costs log2(vocab) bits
    assert evaluate_bpb(model, ids, ones) == pytest.approx(math.log2(len(stoi)), rel=1e-6)
    assert base.eval_bits_per_byte(model, ids, len(ids) - 1, 48) == pytest.approx(math.log2(len(stoi)), rel=1e-6)


def test_bpe_bits_per_byte_divides_by_the_bytes_the_tokens_stand_for(tiny_text):
    tok = train_bpe(tiny_text, 300, progress=False)
    ids = torch.tensor(tok.encode(tiny_text[:3000]), dtype=torch.long)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                          tie_weights=False))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    predicted_bytes = len(tok.decode_bytes(ids[1:].tolist()))
    expected = math.log2(tok.vocab_size) * (len(ids) - 1) / predicted_bytes
    assert evaluate_bpb(model, ids, token_byte_lengths(tok)) == pytest.approx(expected, rel=1e-6)


def test_few_second_speedrun_reports_and_beats_a_uniform_guess(tiny_corpus_file):
    report = speedrun(3 / 60, _tiny_config(), corpus=str(tiny_corpus_file), prefix_bytes=None, curve_bytes=2000)
    for key in ("bpb", "steps", "tokens_per_s", "mfu", "peak_rss_mb", "tokenizer_seconds", "curve", "config"):
        assert key in report
    assert report["train_seconds"] == pytest.approx(3.0, abs=1.0)
    uniform = math.log2(300) / report["bytes_per_token"]["val"]
    assert 0 < report["bpb"]["val"] < uniform
    assert report["curve"][-1]["val_bpb"] < report["curve"][0]["val_bpb"]


@pytest.mark.slow
def test_compiled_speedrun_pays_its_compilation_from_the_budget(tiny_corpus_file, tmp_path, monkeypatch):
    """torch.compile's first step (seconds of compilation) counts against the clock, and the compiled steps train
    the model the evaluations (which run uncompiled) see. An empty inductor cache, as the benchmark uses."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    cfg = _tiny_config()
    cfg.train.compile = True
    report = speedrun(45 / 60, cfg, corpus=str(tiny_corpus_file), prefix_bytes=None, curve_bytes=2000)
    assert report["train_seconds"] == pytest.approx(45.0, abs=3.0)  # its cold compile ran past 20 s on a 2-core EPYC
    first_step = report["curve"][1]  # the first mark after step 0 falls after the compilation
    later_step_s = (report["train_seconds"] - first_step["elapsed_s"]) / (report["steps"] - 1)
    assert first_step["step"] == 1 and first_step["elapsed_s"] > 20 * later_step_s  # compiling is the costly step
    assert len(report["curve"]) < 12 and report["curve"][-1]["val_bpb"] < report["curve"][0]["val_bpb"]
    assert report["bpb"]["val"] < math.log2(300) / report["bytes_per_token"]["val"]


@pytest.mark.parametrize("minutes", [1, 5])
def test_presets_are_train_configs_that_map_onto_the_speedrun(minutes):
    run = load_config(f"speedrun-{minutes}min")  # `scratchllm train --preset speedrun-Nmin` accepts it as is
    recipe = load_speedrun_preset(minutes)
    assert run.train.max_minutes == minutes and run.train.max_steps == 0
    assert recipe.model == run.model and recipe.vocab_size == run.tokenizer.vocab_size
    assert recipe.train.compile == run.train.compile and recipe.train.bf16 == (run.train.dtype == "bfloat16")
    assert lr_at(recipe.train, 10**6, 1.0) == pytest.approx(run.train.min_lr)  # both end at the same floor


def test_bad_budget_and_char_tokenizer_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        speedrun(0)
    path = tmp_path / "char.yaml"
    path.write_text("tokenizer: {type: char}\ntrain: {max_steps: 0, max_minutes: 1}\n")
    with pytest.raises(InputError, match="tokenizer.type"):
        load_speedrun_config(path)


def test_cli_speedrun_overrides_reach_the_recipe_and_a_bad_key_exits_2(tiny_corpus_file, tmp_path, capsys):
    small = {"tokenizer.vocab_size": 300, "model.n_layer": 1, "model.n_head": 2, "model.n_embd": 32,
             "model.block_size": 32, "train.batch_size": 4}
    sets = [arg for key, value in small.items() for arg in ("--set", f"{key}={value}")]
    out = tmp_path / "report.json"
    assert main(["speedrun", "--minutes", "0.03", "--corpus", str(tiny_corpus_file), "--full", *sets,
                 "--out", str(out)]) == 0
    config = json.loads(out.read_text())["config"]
    assert (config["vocab_size"], config["train"]["batch_size"]) == (300, 4)
    assert {k: config["model"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")} == \
        {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
    capsys.readouterr()
    for key in ("train.no_such_key", "train.beta1", "train.max_minutes", "data.corpus"):  # unknown, or not read
        assert main(["speedrun", "--minutes", "0.03", "--set", f"{key}=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0]


OTHER_VALUES = {"batch_size": 7, "lr": 0.0123, "min_lr": 0.0007, "warmup_steps": 3, "weight_decay": 0.37,
                "beta2": 0.9, "grad_clip": 0.5, "dtype": "float32", "compile": True, "seed": 7}


@pytest.mark.parametrize("key", READ_TRAIN_KEYS)
def test_every_train_key_the_speedrun_accepts_changes_its_recipe(key):
    assert load_speedrun_preset(1, [f"train.{key}={OTHER_VALUES[key]}"]).train != load_speedrun_preset(1).train
