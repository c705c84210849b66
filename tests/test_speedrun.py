"""Speedrun: the report of a few-second run, the split nanoGPT uses, the race schedule, and the recipe train and
speedrun share. The plain-PyTorch baseline it is judged against has its own tests (tests/test_nanogpt_baseline.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scratchllm.cli import main
from scratchllm.config import InputError, RunConfig, load_config
from scratchllm.data import Corpus
from scratchllm.model import GPTConfig
from scratchllm.optim import lr_at
from scratchllm.speedrun import (
    PREFIX_CHARS,
    load_speedrun_config,
    load_speedrun_preset,
    race_split,
    speedrun,
)


def _tiny_config(vocab: int = 300) -> RunConfig:
    model = GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, n_embd=32, norm_type="rmsnorm",
                      activation="relu2", positions="rope", tie_weights=False)
    cfg = load_speedrun_preset(1)
    cfg.model, cfg.tokenizer.vocab_size = model, vocab
    cfg.train.batch_size, cfg.train.warmup_steps, cfg.train.eval_every, cfg.train.eval_batches = 8, 5, 20, 2
    cfg.train.sample_tokens = 8
    return cfg


def test_split_matches_nanogpt_shakespeare_char(shakespeare_text):
    # nanoGPT's data/shakespeare_char/prepare.py prints: train has 1,003,854 tokens, val has 111,540 tokens
    split = race_split(Corpus("shakespeare", [shakespeare_text]), PREFIX_CHARS)
    assert (len(split["train"]), len(split["val"])) == (1_003_854, 111_540)
    assert split["holdout"] == shakespeare_text[-len(split["holdout"]):]
    assert len(split["holdout"]) == len(shakespeare_text) - int(len(shakespeare_text) * 0.9)


def test_the_race_schedule_ends_at_its_floor_when_the_budget_does():
    t = load_speedrun_preset(1).train
    assert t.schedule == "wsd" and t.max_steps == 0 and not t.eval_in_budget
    minutes = 60.0 * t.max_minutes
    assert lr_at(t, 0, 0.0) == pytest.approx(t.lr / t.warmup_steps)  # warm-up: 1/30 of the peak
    assert lr_at(t, 100, 0.4 * minutes) == pytest.approx(t.lr)  # flat before the warm-down
    assert lr_at(t, 100, 0.75 * minutes) == pytest.approx(t.min_lr + 0.5 * (t.lr - t.min_lr))
    assert lr_at(t, 100, minutes) == pytest.approx(t.min_lr)


def test_few_second_speedrun_reports_and_beats_a_uniform_guess(tiny_corpus_file):
    report = speedrun(3 / 60, _tiny_config(), corpus=str(tiny_corpus_file), prefix_chars=None)
    for key in ("bpb", "steps", "tokens_per_s", "mfu", "peak_rss_mb", "curve", "config"):
        assert key in report
    assert report["budget_seconds"] == pytest.approx(3.0, abs=1.0)  # the clock counts training steps only
    assert report["train_seconds"] <= report["budget_seconds"]
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
    report = speedrun(45 / 60, cfg, corpus=str(tiny_corpus_file), prefix_chars=None)
    assert report["budget_seconds"] == pytest.approx(45.0, abs=3.0)  # its cold compile ran past 20 s on a 2-core EPYC
    first_step = report["train_loss"][0]  # step 1, logged after the compilation
    later_step_s = (report["train_seconds"] - first_step["elapsed_s"]) / (report["steps"] - 1)
    assert first_step["step"] == 1 and first_step["elapsed_s"] > 20 * later_step_s  # compiling is the costly step
    assert report["curve"][-1]["val_bpb"] < report["curve"][0]["val_bpb"]
    assert report["bpb"]["val"] < math.log2(300) / report["bytes_per_token"]["val"]


@pytest.mark.parametrize("minutes", [1, 5])
def test_train_and_speedrun_run_the_same_recipe(minutes):
    run = load_config(f"speedrun-{minutes}min")  # what `scratchllm train --preset speedrun-Nmin` trains
    race = load_speedrun_preset(minutes)
    assert run == race and run.train.max_minutes == minutes and run.train.schedule == "wsd"


def test_bad_budget_and_char_tokenizer_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        speedrun(0)
    path = tmp_path / "char.yaml"
    path.write_text("tokenizer: {type: char}\ntrain: {max_steps: 0, max_minutes: 1}\n")
    with pytest.raises(InputError, match="tokenizer.type"):
        load_speedrun_config(path)


def test_cli_speedrun_overrides_reach_the_recipe_and_a_bad_key_exits_2(tiny_corpus_file, tmp_path, capsys):
    small = {"tokenizer.vocab_size": 300, "model.n_layer": 1, "model.n_head": 2, "model.n_embd": 32,
             "model.block_size": 32, "train.batch_size": 4, "train.eval_batches": 1, "train.beta1": 0.8}
    sets = [arg for key, value in small.items() for arg in ("--set", f"{key}={value}")]
    out = tmp_path / "report.json"
    assert main(["speedrun", "--minutes", "0.03", "--corpus", str(tiny_corpus_file), "--full", *sets,
                 "--out", str(out), "--run", str(tmp_path / "run")]) == 0
    config = json.loads(out.read_text())["config"]
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config  # the run folder train() wrote
    assert (config["tokenizer"]["vocab_size"], config["train"]["batch_size"], config["train"]["beta1"]) == (300, 4, 0.8)
    assert {k: config["model"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")} == \
        {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
    capsys.readouterr()
    for key in ("train.no_such_key", "train.max_minutes", "data.corpus"):  # unknown, or set by the race itself
        assert main(["speedrun", "--minutes", "0.03", "--set", f"{key}=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0]
