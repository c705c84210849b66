"""Finetuning's inputs, checked before anything is trained or written: a user's conversation without a user turn or
an assistant reply is one line naming its record (exit 2), and the finetune's config trains its own settings, not
the base run's budget-aware recipe."""

from __future__ import annotations

import json

import pytest

from scratchllm.cli import main
from scratchllm.config import InputError, RecipeConfig, load_config, to_dict
from scratchllm.finetune import finetune_config, load_questions

GOOD = {"messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Romeo."}]}


@pytest.fixture
def fake_base(tmp_path):
    """A base run folder as far as finetune reads before its data: a config.json."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(to_dict(load_config("tiny"))), encoding="utf-8")
    return base


@pytest.mark.parametrize(("broken", "missing"), [
    ([{"role": "user", "content": "Who?"}], "no assistant reply"),
    ([{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Romeo."}], "no user turn"),
    ([{"role": "system", "content": "Be brief."}], "no user turn and no assistant reply"),
])
def test_a_conversation_without_a_question_or_an_answer_is_an_input_error_naming_its_record(
        broken, missing, fake_base, tmp_path, capsys):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (GOOD, {"messages": broken}, GOOD)), encoding="utf-8")
    with pytest.raises(InputError, match=f"record 2 has {missing}:"):
        load_questions(str(data))
    out = tmp_path / "chat"
    assert main(["finetune", "--run", str(fake_base), "--data", str(data), "--minutes", "0.05",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"record 2 has {missing}" in err and "StopIteration" not in err
    assert not out.exists()


def test_finetune_config_trains_its_own_settings_not_the_base_recipe():
    base = to_dict(load_config("tiny"))
    base["recipe"] = {"mode": "auto", "why": {"chosen": {"shape": "3x256", "steps": 400}}}
    cfg = finetune_config(base, "shakespeare-qa", 1.0, "assistant", [])
    assert cfg.recipe == RecipeConfig(mode="fixed") and cfg.recipe.why is None
    assert to_dict(cfg)["recipe"] == {"mode": "fixed", "why": None}  # what the finetune's config.json records


def test_a_users_conversations_are_trained_whole_and_scored_on_their_first_exchange(tmp_path):
    conversations = [{"messages": [{"role": "system", "content": f"Answer in {n} words."},
                                   {"role": "user", "content": f"Who is {n}?"},
                                   {"role": "assistant", "content": f"Person {n}."},
                                   {"role": "user", "content": "And then?"},
                                   {"role": "assistant", "content": f"Later {n}."}]} for n in range(60)]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in conversations), encoding="utf-8")
    train, held = load_questions(str(path))
    assert len(train) + len(held) == len(conversations) and held
    whole = {json.dumps(c["messages"]) for c in conversations}
    for question in train + held:
        assert json.dumps(question.messages()) in whole  # system turn and second exchange kept for training
        n = question.question.removeprefix("Who is ").removesuffix("?")
        assert question.answer == f"Person {n}."  # scored on the first reply
