"""Finetuning data a user brings: JSON or JSONL files of conversations, in the common shapes, as message lists.

Each record becomes [{"role", "content"}, ...] (the shape chat.render_conversation takes), whichever of these it is:
    {"messages": [{"role": "user", "content": ...}, ...]}                       chat messages (OpenAI, nanochat)
    {"conversations": [{"from": "human", "value": ...}, ...]}                     ShareGPT
    {"instruction": ..., "input": ..., "output": ...}                             Alpaca
    {"prompt": ..., "completion": ...}                                            prompt/completion
A file is a JSON array of records or one record per line (JSONL). Any broken record or line is an `InputError`
whose one line names the file and the line number. The built-in question sets live in qa.py, rendering in chat.py.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from scratchllm.chat import Message, check_messages
from scratchllm.config import InputError

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                  "model": "assistant", "chatgpt": "assistant", "system": "system"}
SHAPES = "messages, conversations (ShareGPT), instruction/output (Alpaca) or prompt/completion"


def _text(record: dict, key: str, required: bool = True) -> str:
    value = record.get(key, None if required else "")
    if not isinstance(value, str):
        raise InputError(f'"{key}" must be a string; got {type(value).__name__}')
    return value


def _from_sharegpt(turns) -> list[Message]:
    if not isinstance(turns, list):
        raise InputError('"conversations" must be a list of {"from", "value"} turns')
    messages = []
    for turn in turns:
        if not isinstance(turn, dict) or str(turn.get("from", "")).lower() not in SHAREGPT_ROLES:
            raise InputError(f'a ShareGPT turn needs "from" in {", ".join(SHAREGPT_ROLES)}; got {turn!r}')
        messages.append({"role": SHAREGPT_ROLES[turn["from"].lower()], "content": _text(turn, "value")})
    return messages


def record_to_messages(record) -> list[Message]:
    """One record in any supported shape -> messages; an unknown shape or a bad field is an `InputError`.

    >>> record_to_messages({"instruction": "Name a play.", "input": "", "output": "Hamlet"})
    [{'role': 'user', 'content': 'Name a play.'}, {'role': 'assistant', 'content': 'Hamlet'}]
    """
    if not isinstance(record, dict):
        raise InputError(f"a record must be a JSON object; got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if isinstance(messages, list):
            messages = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m
                        for m in messages]
    elif "conversations" in record:
        messages = _from_sharegpt(record["conversations"])
    elif "instruction" in record:
        extra = _text(record, "input", required=False)
        user = _text(record, "instruction") + (f"\n\n{extra}" if extra else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": _text(record, "output")}]
    elif "prompt" in record:
        messages = [{"role": "user", "content": _text(record, "prompt")},
                    {"role": "assistant", "content": _text(record, "completion")}]
    else:
        raise InputError(f"unknown record shape (keys {sorted(record)[:6]}); expected {SHAPES}")
    if not isinstance(messages, list):
        raise InputError('"messages" must be a list of {"role", "content"} messages')
    check_messages(messages)
    return messages


class _BadJSON(Exception):
    """A JSON syntax error at a line of the file."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _array_records(text: str) -> Iterator[tuple[int, object]]:
    """(line number, value) for each element of a top-level JSON array, parsed one element at a time."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise _BadJSON(text.count("\n") + 1, "the array is not closed with ]")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise _BadJSON(e.lineno, e.msg) from None
        yield line, value


def _jsonl_records(text: str) -> Iterator[tuple[int, object]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise _BadJSON(number, e.msg) from None


def load_conversations(path: str | os.PathLike) -> list[list[Message]]:
    """Every conversation in a JSON (array) or JSONL file; any problem names the file and the line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"finetuning data not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read as UTF-8 text: {e}") from None
    records = _array_records(text) if text.lstrip().startswith("[") else _jsonl_records(text)
    conversations = []
    try:
        for line, record in records:
            try:
                conversations.append(record_to_messages(record))
            except InputError as e:
                raise InputError(f"{path}:{line}: {e}") from None
    except _BadJSON as e:
        raise InputError(f"{path}:{e.line}: not valid JSON: {e}") from None
    if not conversations:
        raise InputError(f"{path}: no records (expected a JSON array or JSONL of {SHAPES})")
    return conversations


def split_conversations(conversations: Sequence, held_out: float = 0.05, seed: int = 0) -> tuple[list, list]:
    """Shuffle with `seed` and hold out a fraction (at least one record when there are two or more)."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_held = min(len(order) - 1, max(1, round(held_out * len(order)))) if len(order) > 1 else 0
    held = set(order[:n_held])
    return ([c for i, c in enumerate(conversations) if i not in held],
            [c for i, c in enumerate(conversations) if i in held])
