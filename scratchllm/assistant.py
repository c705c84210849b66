"""Talking to a chat model: stream a reply to a conversation, and measure a model on a question set.

`stream_reply` renders the conversation plus the `<|assistant|>` opener (chat.render_prompt), samples through
generate.py's KV-cache loop and stops at `<|end|>`; a turn token written by the model itself (template leakage)
also stops it and is recorded. `evaluate_qa` asks every test question of a finetuned model in the chat format and
of a base model through qa.py's few-shot template, and returns the rows of `qa_eval.json`. Rendering lives in
chat.py, questions and scoring in qa.py; this module owns neither, and writes no files.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from scratchllm.chat import Message, render_prompt
from scratchllm.config import InputError
from scratchllm.generate import iter_tokens
from scratchllm.model import GPT
from scratchllm.qa import Question, accuracy_by_kind, few_shot_prompt, first_line, majority_replies
from scratchllm.tokenizer import Tokenizer
from scratchllm.tokenizer.chat_tokens import CHAT_TOKENS, END, has_chat_tokens


@dataclass
class Reply:
    """A finished reply: its text, and how it ended (`ended`: with <|end|>; `leaked`: with another turn token)."""

    text: str = ""
    ended: bool = False
    leaked: bool = False
    tokens: list[int] = field(default_factory=list)


def check_chat_model(model: GPT, tokenizer: Tokenizer | None) -> None:
    """An `InputError` in one line unless the model was finetuned for chat (its tokenizer has the turn tokens)."""
    if tokenizer is None or not has_chat_tokens(tokenizer):
        raise InputError("this model has no chat tokens (<|user|>, <|assistant|>, <|end|>): it is a base model; "
                         "finetune it first (scratchllm finetune --run BASE --data shakespeare-qa --out DIR) "
                         "or continue text with scratchllm generate")
    if model.config.vocab_size < tokenizer.vocab_size:
        raise InputError(f"the model reads {model.config.vocab_size} ids but its tokenizer has "
                         f"{tokenizer.vocab_size}: grow it with chat.grow_vocab before use")


def fit_prompt(tokenizer: Tokenizer, messages: Sequence[Message], budget: int) -> list[int]:
    """render_prompt's ids, dropping the oldest turns after the system turn until at most `budget` ids remain."""
    messages = list(messages)
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(head):]
    ids = render_prompt(tokenizer, head + turns)
    while len(ids) > budget and len(turns) > 1:
        turns = turns[1:]
        ids = render_prompt(tokenizer, head + turns)
    return ids[-budget:]


def stream_reply(model: GPT, tokenizer: Tokenizer, messages: Sequence[Message], reply: Reply | None = None,
                 max_new_tokens: int = 256, **sampling) -> Iterator[str]:
    """Yield the reply's text piece by piece; `reply` (if given) is filled in as it goes.

    sampling: temperature, top_k, top_p, seed as generate.iter_tokens takes them.
    """
    reply = reply if reply is not None else Reply()
    end = tokenizer.special_tokens[END]
    turn_tokens = {tokenizer.special_tokens[t] for t in CHAT_TOKENS} - {end}
    budget = max(1, model.config.block_size - min(max_new_tokens, model.config.block_size // 2))
    ids = fit_prompt(tokenizer, messages, budget)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in iter_tokens(model, ids, max_new_tokens, stop_tokens=(end,), **sampling):
        if token in turn_tokens:
            reply.leaked = True
            break
        reply.tokens.append(token)
        if piece := decoder.decode(tokenizer.decode_bytes([token])):
            reply.text += piece
            yield piece
    else:
        reply.ended = len(reply.tokens) < max_new_tokens
    if tail := decoder.decode(b"", final=True):
        reply.text += tail
        yield tail


def chat_reply(model: GPT, tokenizer: Tokenizer, messages: Sequence[Message], **kwargs) -> Reply:
    """The whole reply at once (kwargs as stream_reply)."""
    reply = Reply()
    for _ in stream_reply(model, tokenizer, messages, reply, **kwargs):
        pass
    return reply


def base_answer(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 48, **sampling) -> str:
    """A base model's answer to a few-shot prompt: its continuation up to the first newline."""
    ids = tokenizer.encode(prompt)[-(model.config.block_size - max_new_tokens):]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = ""
    for token in iter_tokens(model, ids, max_new_tokens, **sampling):
        text += decoder.decode(tokenizer.decode_bytes([token]))
        if "\n" in text.lstrip():
            break
    return first_line(text)


def evaluate_qa(test: Sequence[Question], train: Sequence[Question], finetuned: tuple[GPT, Tokenizer] | None = None,
                base: tuple[GPT, Tokenizer] | None = None, max_new_tokens: int = 48, examples: int = 2) -> dict:
    """The rows of qa_eval.json: accuracy with 95% intervals per model and kind, the majority baseline, the rate of
    replies that end with <|end|>, and the first `examples` questions of each kind with every answer. Greedy decoding.
    """
    replies = {"majority": majority_replies(train, test)}
    report: dict = {"questions": len(test)}
    if finetuned is not None:
        answers = [chat_reply(*finetuned, q.messages()[:1], max_new_tokens=max_new_tokens, temperature=0)
                   for q in test]
        replies["finetuned"] = [a.text for a in answers]
        report["end_rate"] = sum(a.ended for a in answers) / max(1, len(answers))
        report["leak_rate"] = sum(a.leaked for a in answers) / max(1, len(answers))
    if base is not None:
        replies["base"] = [base_answer(*base, few_shot_prompt(q, train), max_new_tokens, temperature=0)
                           for q in test]
    rows = {name: accuracy_by_kind(test, r) for name, r in replies.items()}
    report["accuracy"] = {name: row["all"]["accuracy"] for name, row in rows.items()}
    report["by_type"] = rows
    shown = [i for kind in dict.fromkeys(q.kind for q in test) for i in [k for k, q in enumerate(test)
                                                                         if q.kind == kind][:examples]]
    report["examples"] = [{"kind": test[i].kind, "question": test[i].question, "gold": test[i].answer,
                           **{name: r[i] for name, r in replies.items()}} for i in shown]
    return report
