"""Finetuning through the one trainer: a tiny base run, then conversations with a loss mask as the batch source."""

from __future__ import annotations

import io
import json
import math
import re
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchllm.checkpoint import load_model
from scratchllm.cli import main
from scratchllm.finetune import ConversationStream, load_questions, spread_over_kinds
from scratchllm.qa import Question
from scratchllm.runfolder import read_jsonl
from scratchllm.tokenizer.chat_tokens import has_chat_tokens

pytestmark = pytest.mark.usefixtures("one_thread")


def test_finetune_writes_a_run_folder_and_qa_eval_through_the_trainer(finetune_base, tmp_path, capsys, monkeypatch):
    base, data = finetune_base
    out = tmp_path / "chat"
    assert main(["finetune", "--run", str(base), "--data", str(data), "--minutes", "0.05", "--out", str(out),
                 "--set", "train.batch_size=4", "--eval-questions", "3"]) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    losses = [r["loss"] for r in metrics if r.get("kind") == "train"]
    assert losses and all(math.isfinite(x) for x in losses)
    assert [r for r in metrics if r.get("kind") == "eval"]
    _, tok, _ = load_model(out)
    assert has_chat_tokens(tok)
    report = json.loads((out / "qa_eval.json").read_text())
    assert report["questions"] == 2 and set(report["accuracy"]) == {"finetuned", "base", "majority"}
    trained_on = len(load_questions(str(data))[0])  # the file's records less the held-out ones
    assert report["records"] == {"conversations": trained_on, "dropped": 0, "cut": 0, "untrained": 0}
    forgetting = report["base_corpus_bpb"]
    assert set(forgetting) == {"base", "finetuned"} and all(0 < v < math.log2(tok.vocab_size) * 4
                                                            for v in forgetting.values())
    assert json.loads((out / "config.json").read_text())["data"]["mask"] == "assistant"
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("Say the number 3 in words.\nSay the number 5 in words.\n"))
    assert main(["chat", "--run", str(out), "--temperature", "0"]) == 0  # piped: one answer per line
    assert capsys.readouterr().out.count("\n") >= 2


def test_finetune_show_mask_marks_only_the_replies(finetune_base, capsys):
    base, data = finetune_base
    assert main(["finetune", "--run", str(base), "--data", str(data), "--show-mask"]) == 0
    shown = capsys.readouterr().out
    marked = re.findall(r"«(.*?)»", shown)  # the trained tokens: each reply and its end token, nothing else
    assert len(marked) == 3 and all(re.fullmatch(r"[a-z]+<\|end\|>", m) for m in marked)


def test_conversation_stream_resumes_exactly():
    rendered = [([1, 2, 3, i], [0, 0, 1, 1]) for i in range(7)]
    a, b = ConversationStream(rendered, 3, seed=5), ConversationStream(rendered, 3, seed=5)
    for _ in range(4):
        a.next()
    b.set_state(a.get_state())
    for _ in range(5):
        xa, ya = a.next()
        xb, yb = b.next()
        assert xa.equal(xb) and ya.equal(yb)


@given(st.lists(st.sampled_from("abcd"), max_size=40), st.integers(0, 50))
def test_spread_over_kinds_takes_every_kind_in_turn(kinds, count):
    questions = [Question(kind, f"q{i}", "a", group="") for i, kind in enumerate(kinds)]
    picked = spread_over_kinds(questions, count)
    assert len(picked) == min(count, len(questions)) and len(set(picked)) == len(picked)
    taken = Counter(q.kind for q in picked)  # no kind gets two more than another that still had questions left
    left = Counter(kinds) - taken
    assert all(taken[a] <= taken[b] + 1 for a in taken for b in taken if left[b])
