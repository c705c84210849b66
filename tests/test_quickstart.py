"""The main job end to end on a tiny corpus: every artefact the run folder promises is there and readable."""

from __future__ import annotations

import json

import pytest
from pypdf import PdfReader

from scratchllm.config import InputError
from scratchllm.quickstart import quickstart, quickstart_config


def test_quickstart_leaves_a_complete_run_folder(tiny_corpus_file, tmp_path):
    run = tmp_path / "run"
    pdf = quickstart(corpus=str(tiny_corpus_file), minutes=1.35, out_dir=run, preset="tiny")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] > 0 and summary["final_val_bpb"] > 0
    for name in ("config.json", "tokenizer.json", "metrics.jsonl", "samples.jsonl", "doctor.json",
                 "tokenizer_comparison.json", "tokenizer_comparison.md", "checkpoints/latest/model.safetensors"):
        assert (run / name).is_file(), name
    assert list((run / "attention").glob("step_*.npz"))
    assert list((run / "figures").glob("*.png")) and list((run / "figures").glob("*.svg"))
    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert f"{summary['final_val_bpb']:.4f}" in text  # the guide prints bits per byte to 4 places
    qa = json.loads((run / "chat" / "qa_eval.json").read_text())  # the finetuning stage, on questions from the corpus
    assert qa["questions"] > 0 and set(qa["accuracy"]) == {"finetuned", "base", "majority"}
    assert (run / "chat" / "doctor.json").is_file()  # the finetune is diagnosed too
    assert "Teaching it to answer" in text  # the guide is built after the finetune, so it tells it


def test_an_unknown_recipe_is_one_input_error_before_anything_runs(tmp_path):
    with pytest.raises(InputError, match="recipe must be one of auto, fixed; got 'Fixed'"):
        quickstart_config(str(tmp_path / "corpus.txt"), recipe="Fixed")
    assert quickstart_config(recipe="fixed").recipe.mode == "fixed"
