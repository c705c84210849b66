"""Each data shape a user may bring loads to the same messages, and a broken record is named by file and line."""

from __future__ import annotations

import json

import pytest

from scratchllm.config import InputError
from scratchllm.sft_data import load_conversations, record_to_messages, split_conversations

QA = [{"role": "user", "content": "Who is Hamlet?"}, {"role": "assistant", "content": "The Prince of Denmark."}]
SHAPES = {
    "messages": {"messages": QA},
    "sharegpt": {"conversations": [{"from": "human", "value": QA[0]["content"]},
                                   {"from": "gpt", "value": QA[1]["content"]}]},
    "alpaca": {"instruction": QA[0]["content"], "input": "", "output": QA[1]["content"]},
    "prompt_completion": {"prompt": QA[0]["content"], "completion": QA[1]["content"]},
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_each_shape_loads_to_the_same_messages(tmp_path, shape, layout):
    records = [SHAPES[shape]] * 3
    path = tmp_path / f"data.{layout}"
    if layout == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    else:
        path.write_text(json.dumps(records, indent=2))
    assert load_conversations(path) == [QA] * 3


def test_alpaca_input_joins_the_instruction():
    messages = record_to_messages({"instruction": "Translate.", "input": "Bonjour", "output": "Hello"})
    assert messages[0] == {"role": "user", "content": "Translate.\n\nBonjour"}


def test_sharegpt_system_turn_is_kept():
    record = {"conversations": [{"from": "system", "value": "Be brief."}, *SHAPES["sharegpt"]["conversations"]]}
    assert record_to_messages(record) == [{"role": "system", "content": "Be brief."}, *QA]


@pytest.mark.parametrize("bad_line, expected", [
    ("{not json", "not valid JSON"),
    ('{"instruction": "x"}', '"output" must be a string'),
    ('{"question": "x", "answer": "y"}', "unknown record shape"),
    ('{"messages": [{"role": "wizard", "content": "x"}]}', "message 0"),
    ("[1, 2]", "must be a JSON object"),
])
@pytest.mark.parametrize("where", [1, 3])
def test_a_broken_jsonl_line_is_named_by_file_and_line_number(tmp_path, bad_line, expected, where):
    lines = [json.dumps(SHAPES["alpaca"])] * 3
    lines[where - 1] = bad_line
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        load_conversations(path)
    message = str(e.value)
    assert message.startswith(f"{path}:{where}: ") and expected in message and "\n" not in message


def test_a_broken_record_in_a_json_array_is_named_by_its_line(tmp_path):
    records = [SHAPES["alpaca"], SHAPES["alpaca"], {"instruction": "x", "output": 3}]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records, indent=2))
    line = max(i for i, text in enumerate(path.read_text().splitlines()) if text == "  {") + 1  # the third record
    with pytest.raises(InputError, match=rf"{path}:{line}: "):
        load_conversations(path)
    path.write_text(path.read_text()[:-3])
    with pytest.raises(InputError, match=rf"{path}:\d+: not valid JSON"):
        load_conversations(path)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_or_missing_file_is_one_line(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match="no records"):
        load_conversations(path)
    with pytest.raises(InputError, match="not found"):
        load_conversations(tmp_path / "nope.jsonl")


def test_split_holds_out_a_disjoint_seeded_fraction():
    items = [[{"role": "user", "content": str(i)}] for i in range(100)]
    train, held = split_conversations(items, 0.1, seed=3)
    assert len(held) == 10 and len(train) == 90
    assert sorted(train + held, key=lambda c: int(c[0]["content"])) == items
    assert split_conversations(items, 0.1, seed=3) == (train, held)
