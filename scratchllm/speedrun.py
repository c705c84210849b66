"""The CPU speedrun: the best Shakespeare model this machine trains in a fixed wall-clock budget, scored as nanoGPT's.

What is its own here is the race, not the training: the split (the first 1,115,394 characters of the corpus, 90/10,
as nanoGPT's Shakespeare), the holdout (the corpus's last 10%, never used for a choice), and the score (exact bits
per byte over every held-out byte). The training is `train()`'s, with a preset from configs/ (speedrun-1min.yaml,
speedrun-5min.yaml: a "wsd" schedule that ends at its floor when the clock does, evaluations left out of the
budget), so `scratchllm train --preset speedrun-5min` and `scratchllm speedrun --minutes 5` run the same thing
with `--set recipe.mode=fixed`; the speedrun presets set recipe.mode auto, so the speedrun first lets the
budget-aware recipe (recipe.py) measure this machine and choose the shape, weight decay and warm-down the budget suits.
It does not own the baseline it is judged against (benchmarks/nanogpt_baseline.py).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Collection
from pathlib import Path

from scratchllm.checkpoint import load_model
from scratchllm.config import PRESETS, InputError, RunConfig, load_config
from scratchllm.data import DOC_SEPARATOR, Corpus, load_corpus, split_corpus
from scratchllm.evaluate import exact_bpb
from scratchllm.metrics import peak_rss_mb
from scratchllm.recipe import AUTO_KEYS, apply_recipe
from scratchllm.runfolder import CONFIG, METRICS, read_json, read_jsonl
from scratchllm.train import train

PREFIX_CHARS = 1_115_394  # the size of nanoGPT's tiny Shakespeare, the split its published numbers use
VAL_FRACTION = 0.1  # of the prefix, as nanoGPT's prepare.py
HOLDOUT_FRACTION = 0.1  # of the whole corpus, at its end
SET_BY_THE_RACE = ("data.corpus", "data.prefix_chars", "train.max_minutes", "train.max_steps")


def load_speedrun_preset(minutes: float, overrides: list[str] = ()) -> RunConfig:
    """The preset tuned for the nearest budget: configs/speedrun-1min.yaml below 3 minutes, else speedrun-5min.yaml;
    then `key=value` overrides (e.g. "train.weight_decay=4")."""
    return load_speedrun_config(PRESETS / ("speedrun-1min.yaml" if minutes < 3 else "speedrun-5min.yaml"), overrides)


def override_keys(overrides: list[str]) -> list[str]:
    """The dotted keys of `key=value` overrides. Example: ["model.n_embd=320", "train.lr=1e-3"] -> ["model.n_embd",
    "train.lr"]."""
    return [item.split("=", 1)[0].strip() for item in overrides]


def load_speedrun_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """A speedrun recipe: any train() YAML, then overrides. The corpus, its prefix and the budget come from the
    race's own arguments, so overriding them is an InputError rather than a setting silently replaced; so is
    overriding what the auto recipe chooses (recipe.AUTO_KEYS), unless recipe.mode=fixed is set too. A shape
    override is kept by the auto recipe when speedrun() is given its key (`set_by_hand=override_keys(overrides)`)."""
    keys = override_keys(overrides)
    for key in keys:
        if key in SET_BY_THE_RACE:
            raise InputError(f"the speedrun sets {key} itself (from --minutes, --corpus and --full); drop --set {key}")
    cfg = load_config(str(path), overrides)
    for key in keys:
        if cfg.recipe.mode == "auto" and key in AUTO_KEYS:
            raise InputError(f"the auto recipe chooses {key} from this machine's speed; add --set recipe.mode=fixed "
                             f"to set it yourself")
    if cfg.tokenizer.type != "bpe":
        raise InputError(f"the speedrun trains a BPE tokenizer; got tokenizer.type {cfg.tokenizer.type!r}")
    return cfg


def race_config(cfg: RunConfig, minutes: float, corpus: str, prefix_chars: int | None) -> RunConfig:
    """cfg bounded by `minutes` of training time on the race's split of `corpus`."""
    data = dataclasses.replace(cfg.data, corpus=corpus, prefix_chars=prefix_chars, val_fraction=VAL_FRACTION)
    budget = dataclasses.replace(cfg.train, max_minutes=minutes, max_steps=0, eval_in_budget=False)
    return dataclasses.replace(cfg, data=data, train=budget)


def race_split(corpus: Corpus, prefix_chars: int | None = PREFIX_CHARS) -> dict[str, str]:
    """train / val: the first `prefix_chars` characters split 90/10 as train() splits them (None = the whole
    corpus); holdout: the last 10% of the whole text. Example: 100 chars, prefix 50 -> train 45, val 5, holdout 10."""
    split = split_corpus(corpus.head(prefix_chars), VAL_FRACTION)
    text = corpus.text
    return {"train": DOC_SEPARATOR.join(split["train"]), "val": DOC_SEPARATOR.join(split["val"]),
            "holdout": text[int(len(text) * (1 - HOLDOUT_FRACTION)):]}


def score_run(run_dir: Path, cfg: RunConfig, texts: dict[str, str]) -> dict:
    """Exact bits per byte of the run's final model over every byte of each text."""
    model, tokenizer, _ = load_model(run_dir)
    return {name: exact_bpb(model, tokenizer.encode(text), tokenizer, cfg.model.block_size, cfg.train.device,
                            cfg.train.dtype) for name, text in texts.items()}


def speedrun(minutes: float, config: RunConfig | None = None, corpus: str = "shakespeare",
             prefix_chars: int | None = PREFIX_CHARS, out_dir: str | Path | None = None,
             progress: bool = False, set_by_hand: Collection[str] = ()) -> dict:
    """Train the speedrun recipe for `minutes` of training time on the race's split of `corpus` (into `out_dir`,
    a temporary folder when None); return the report: val and holdout bits/byte, tokens/s, MFU, steps, params,
    peak memory, the val curve and the recipe (with recipe.why when the auto recipe chose it, which measures this
    machine before the clock starts). `set_by_hand`: the keys of config's --set overrides (`override_keys`), so
    the auto recipe keeps a shape set by hand."""
    if minutes <= 0:
        raise InputError(f"speedrun needs a positive number of minutes; got {minutes}")
    race = race_config(config or load_speedrun_preset(minutes), minutes, corpus, prefix_chars)
    cfg = apply_recipe(race, set_by_hand=set_by_hand)
    with tempfile.TemporaryDirectory(prefix="speedrun-") as tmp:
        run_dir = Path(out_dir or tmp)
        summary = train(cfg, run_dir, progress=progress)
        split = race_split(load_corpus(corpus), prefix_chars)
        texts = {name: split[name] for name in ("val", "holdout")}
        scores = score_run(run_dir, cfg, texts)
        records, resolved = read_jsonl(run_dir / METRICS), read_json(run_dir / CONFIG)
    return report(resolved, minutes, summary, scores, texts, records)


def report(config: dict, minutes: float, summary: dict, scores: dict, texts: dict, records: list[dict]) -> dict:
    """The race's report, as benchmarks/speedrun.py records it; config is the run's resolved config.json."""
    return {
        "recipe": "scratchllm speedrun", "minutes": minutes, "corpus": config["data"]["corpus"],
        "bpb": {name: s["bpb"] for name, s in scores.items()},
        "bytes": {name: len(text.encode()) for name, text in texts.items()},
        "bytes_per_token": {name: s["bytes"] / max(s["tokens"], 1) for name, s in scores.items()},
        "steps": summary["steps"], "train_seconds": summary["train_s"], "budget_seconds": summary["elapsed_s"],
        "tokens_per_s": summary["tokens_per_s"], "params": summary["params"], "mfu": summary["mfu"],
        "peak_rss_mb": peak_rss_mb(), "config": config,
        "curve": [{"step": r["step"], "elapsed_s": r.get("elapsed_s", 0.0), "val_bpb": r["val_bpb"]}
                  for r in records if r.get("kind") == "eval"],
        "train_loss": [{"step": r["step"], "elapsed_s": r["elapsed_s"], "loss": r["loss"]}
                       for r in records if r.get("kind") == "train"],
    }
