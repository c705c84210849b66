"""The doctor's finetuning rules on REAL finetune run folders: a tiny base run (the `tiny` preset, 20 steps on 20 KB
of Shakespeare, context 64), then `finetune()` on 40 number-word answers for a fixed number of steps. Each rule is
checked on a run that shows its condition and on one that does not. Runs whose condition no correct renderer can
produce (a leaking template, untrained conversations) go through the same finetune, with its rendered batch source
altered the way a broken renderer or data file would."""

from __future__ import annotations

import json

import pytest

import scratchllm.finetune as ft
from scratchllm.doctor import diagnose_run
from scratchllm.tokenizer.chat_tokens import END, USER

pytestmark = pytest.mark.usefixtures("one_thread")


def _finetune(base, data, out, steps: int, *overrides: str):
    ft.finetune(base, str(data), out, minutes=5, overrides=["train.batch_size=4", f"train.max_steps={steps}",
                                                            "train.device=cpu", *overrides],
                eval_questions=4, progress=False)
    return {f.rule for f in diagnose_run(out)}


@pytest.fixture(scope="module")
def learned(finetune_base, tmp_path_factory):
    """100 steps on the number words alone (no replay of the base text): the template is learned (every answer
    ends), and the number words pushed Shakespeare out."""
    return _finetune(*finetune_base, tmp_path_factory.mktemp("learned") / "run", 100, "data.replay=0")


@pytest.fixture(scope="module")
def barely(finetune_base, tmp_path_factory):
    """2 steps: nothing learned yet, nothing forgotten either."""
    return _finetune(*finetune_base, tmp_path_factory.mktemp("barely") / "run", 2)


def _altered(monkeypatch, change):
    """Have finetune's start pass every rendered (ids, mask) conversation through `change` (index, ids, mask)."""
    make_start = ft.make_start

    def altered(*args):
        start = make_start(*args)
        stream = start.batches
        stream.rendered = [change(i, ids, mask) for i, (ids, mask) in enumerate(stream.rendered)]
        return start
    monkeypatch.setattr(ft, "make_start", altered)


def test_answers_that_never_end_are_found_and_learned_ones_are_not(learned, barely):
    assert "never_ends" in barely
    assert "never_ends" not in learned


def test_template_leakage_is_found(finetune_base, tmp_path, monkeypatch, learned):
    """A renderer that closes each answer with <|user|> instead of <|end|> teaches the model to write it."""
    _, tokenizer, _ = ft.load_model(finetune_base[0])
    tokenizer = ft.add_chat_tokens(tokenizer)
    end, user = tokenizer.special_tokens[END], tokenizer.special_tokens[USER]
    _altered(monkeypatch, lambda i, ids, mask: (ids[:-1] + [user] if ids[-1] == end else ids, mask))
    found = _finetune(*finetune_base, tmp_path / "run", 100)
    assert {"template_leak", "never_ends"} <= found
    assert "template_leak" not in learned


def test_all_masked_batches_are_found(finetune_base, tmp_path, monkeypatch, learned):
    """Half the conversations with nothing trained, one per batch: those steps have no target at all."""
    _altered(monkeypatch, lambda i, ids, mask: (ids, [0] * len(mask) if i % 2 else mask))
    found = _finetune(*finetune_base, tmp_path / "run", 12, "train.batch_size=1")
    assert "all_masked" in found
    assert "all_masked" not in learned


def test_truncated_conversations_are_found(finetune_base, tmp_path, learned):
    """Questions padded past the 64-token context lose their front: every training conversation is cut."""
    base, data = finetune_base
    preamble = "Listen well, for this is a long preamble before the question. " * 3
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({**r, "instruction": preamble + r["instruction"]}) + "\n" for r in rows),
                    encoding="utf-8")
    assert "truncated" in _finetune(base, long, tmp_path / "run", 2)
    assert "truncated" not in learned


def test_forgetting_is_found_and_a_light_touch_is_not(learned, barely):
    assert "forgetting" in learned
    assert "forgetting" not in barely


def test_replaying_the_base_text_keeps_the_same_finetune_from_forgetting(finetune_base, tmp_path, learned):
    """The same 100 steps with a quarter of each batch drawn from the base run's text (the default)."""
    replayed = _finetune(*finetune_base, tmp_path / "run", 100)
    assert "forgetting" in learned and "forgetting" not in replayed
    assert "never_ends" not in replayed  # and the template is still learned


def _hand_written_run(folder, qa_eval) -> None:
    """A run folder of 30 logged steps and the given qa_eval.json, as a user might have edited it."""
    steps = [{"kind": "train", "step": i + 1, "loss": 5.0 - 0.1 * i, "lr": 1e-3} for i in range(30)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    (folder / "qa_eval.json").write_text(json.dumps(qa_eval))


@pytest.mark.parametrize("qa_eval", [
    {"records": [1, 2], "base_corpus_bpb": [2.0, 3.0]},
    {"records": {"conversations": "many", "dropped": None, "untrained": "3"}, "base_corpus_bpb": {"base": "x"}},
    {"end_rate": "half", "leak_rate": [0.5], "records": "none"},
    [{"records": {}}],
])
def test_doctor_reads_a_malformed_qa_eval_without_a_traceback(tmp_path, capsys, qa_eval):
    from scratchllm.cli import main

    _hand_written_run(tmp_path, qa_eval)
    assert main(["doctor", str(tmp_path)]) == 0
    findings = json.loads((tmp_path / "doctor.json").read_text())
    assert not {f["rule"] for f in findings} & {"never_ends", "template_leak", "all_masked", "truncated", "forgetting"}


def test_doctor_reads_a_hand_written_qa_eval(tmp_path):
    _hand_written_run(tmp_path, {"records": {"conversations": 10, "dropped": 4, "cut": 4, "untrained": 0},
                                 "base_corpus_bpb": {"base": 2.0, "finetuned": 4.0}, "end_rate": 1.0})
    assert {"truncated", "forgetting"} <= {f.rule for f in diagnose_run(tmp_path)}
