"""Instruction finetuning: a base run's model taught to answer questions, through the one training loop.

What is finetuning's own is the start and the scoring, not the loop: the base run's weights with the chat tokens
added (chat.py grows the embedding), conversations rendered with a loss mask as the batch source, held-out
conversations as the evaluation, and afterwards qa_eval.json: exact-match accuracy of the finetuned model against
the base model (few-shot prompted) and the majority answer, and the first training conversation's ids and mask
(mask_example, which the guide shows). `train()` does the rest, so a finetune resumes, rolls back and writes its
run folder like any run. Data: the built-in `shakespeare-qa`, or a user's JSON/JSONL file.
"""

from __future__ import annotations

import dataclasses
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch

from scratchllm.assistant import evaluate_qa
from scratchllm.chat import add_chat_tokens, grow_vocab, make_batch, render_for_training, show_mask
from scratchllm.checkpoint import load_model
from scratchllm.config import DataConfig, InputError, RecipeConfig, RunConfig, apply_overrides, from_dict, write_json
from scratchllm.data import load_corpus, load_split
from scratchllm.device import resolve_device
from scratchllm.evaluate import exact_bpb
from scratchllm.model import GPT
from scratchllm.qa import Question, corpus_qa, shakespeare_qa
from scratchllm.runfolder import CONFIG, QA_EVAL, read_json
from scratchllm.session import Start
from scratchllm.sft_data import load_conversations, split_conversations
from scratchllm.tokenizer import Tokenizer
from scratchllm.tokenizer.chat_tokens import has_chat_tokens
from scratchllm.train import train

BUILTIN = "shakespeare-qa"
FROM_CORPUS = "corpus-qa:"  # corpus-qa:PATH: next-line and fill-the-gap questions made from any corpus
FORGET_TOKENS = 32_768  # held-out base-corpus tokens scored before and after finetuning: seconds on 2 cores
LR_SCALE = 0.5  # the finetune's peak (and floor) LR against the base run's: SPEEDRUN.md, "Finetuning: measurements"


class ConversationStream:
    """Rendered (ids, mask) conversations visited in epochs, batch_size at a time, each batch padded to its
    longest: (x, y) with y = -1 on untrained targets and padding. The order comes from (seed, epoch), so the state
    is (seed, epoch, position) and resumes exactly, as data.BatchStream's.

    With `replay` (the base run's training ids) and `replay_rows` > 0, that many rows of each batch are instead
    random windows of the base text, as long as the batch's longest conversation and trained on every token: a
    finetune on conversations alone soon forgets the corpus (bits/byte on it can double in two minutes). The
    windows are drawn from (seed, epoch, position) too, so resuming stays exact."""

    def __init__(self, rendered: list, batch_size: int, seed: int, device="cpu", replay: np.ndarray | None = None,
                 replay_rows: int = 0):
        if not rendered:
            raise InputError("no conversation fits the model's context: nothing to finetune on")
        self.rendered, self.batch_size, self.seed, self.device = rendered, batch_size, seed, device
        self.replay = replay
        self.replay_rows = min(replay_rows, batch_size - 1) if replay is not None and len(replay) > 1 else 0
        self._begin(0, 0)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        key = (self.seed, self.epoch, self.position)  # where this batch starts: its replay windows' seed
        wanted = self.batch_size - self.replay_rows
        picked: list[int] = []
        while len(picked) < wanted:
            if self.position == len(self.order):
                self._begin(self.epoch + 1, 0)
            take = self.order[self.position:self.position + wanted - len(picked)].tolist()
            picked += take
            self.position += len(take)
        rows = [self.rendered[i] for i in picked]
        return make_batch(rows + self._replay_windows(key, max(len(ids) for ids, _ in rows)), device=self.device)

    def _replay_windows(self, key: tuple[int, int, int], length: int) -> list[tuple[list[int], list[int]]]:
        if not self.replay_rows:
            return []
        length = min(length, len(self.replay))
        starts = np.random.default_rng((*key, 1)).integers(0, len(self.replay) - length + 1, size=self.replay_rows)
        return [(self.replay[s:s + length].tolist(), [1] * length) for s in starts]

    def get_state(self) -> torch.Tensor:
        return torch.tensor([self.seed, self.epoch, self.position])

    def set_state(self, state: torch.Tensor) -> None:
        seed, epoch, position = (int(v) for v in state)
        self.seed = seed
        self._begin(epoch, position)

    def _begin(self, epoch: int, position: int) -> None:
        self.epoch, self.position = epoch, position
        self.order = np.random.default_rng((self.seed, epoch)).permutation(len(self.rendered))


def load_questions(data: str) -> tuple[list[Question], list[Question]]:
    """(train, held-out) questions: the built-in set split by passage, questions made from a corpus
    (corpus-qa:PATH, split by paragraph), or a user's conversations split 95/5: each is trained whole, and scored
    on its first exchange (the first user turn asked, the first reply as the answer)."""
    if data == BUILTIN:
        qa = shakespeare_qa()
        return qa.train, qa.test
    if data.startswith(FROM_CORPUS):
        qa = corpus_qa(load_corpus(data.removeprefix(FROM_CORPUS)).text)
        return qa.train, qa.test
    conversations = load_conversations(data)
    for number, messages in enumerate(conversations, start=1):
        missing = [turn for role, turn in (("user", "user turn"), ("assistant", "assistant reply"))
                   if all(m["role"] != role for m in messages)]
        if missing:
            raise InputError(f"{data}: record {number} has no {' and no '.join(missing)}: finetuning needs both")
    train, held = split_conversations(conversations)

    def as_question(messages) -> Question:
        user = next(m["content"] for m in messages if m["role"] == "user")
        reply = next(m["content"] for m in messages if m["role"] == "assistant")
        return Question("held-out", user, reply, group="", conversation=tuple(messages))

    return [as_question(m) for m in train], [as_question(m) for m in held]


def spread_over_kinds(questions: list[Question], count: int) -> list[Question]:
    """`count` questions taken in turn from each kind, in their order, so every kind is scored even when the list
    is grouped by kind. Example: kinds [a, a, a, b, c], count 3 -> [a, b, c]."""
    by_kind: dict[str, list[Question]] = {}
    for q in questions:
        by_kind.setdefault(q.kind, []).append(q)
    rounds = zip_longest(*by_kind.values())
    return [q for row in rounds for q in row if q is not None][:count]


def finetune_config(base: dict, data: str, minutes: float, mask: str, overrides: list[str]) -> RunConfig:
    """The base run's config with a finetuning budget: `minutes` of training, LR_SCALE of the base's LR, flat then
    falling over the last half, no weight decay, no compilation (batches change shape), frequent evaluation of the
    held-out answers, the default share of replayed base text (not what the base run's config recorded); then
    overrides. The base recipe's decay is sized for many passes over the corpus; here it pulls the learned weights
    toward zero instead. The lower LR and the replay keep the base corpus's bits/byte within the doctor's
    forgetting threshold (benchmarks/SPEEDRUN.md has the measurements)."""
    cfg = from_dict(RunConfig, base)
    t = dataclasses.replace(cfg.train, max_minutes=minutes, max_steps=0, schedule="wsd", warmdown_frac=0.5,
                            lr=cfg.train.lr * LR_SCALE, min_lr=cfg.train.min_lr * LR_SCALE,
                            weight_decay=0.0, warmup_steps=20, compile=False, eval_every=50, eval_batches=4,
                            checkpoint_every=100, record_attention_every=0, probe_text="")
    data_cfg = dataclasses.replace(cfg.data, corpus=data, mask=mask, replay=DataConfig.replay)
    cfg = dataclasses.replace(cfg, data=data_cfg, train=t,
                              recipe=RecipeConfig(mode="fixed"))  # these settings, not the base run's recipe.why
    return apply_overrides(cfg, overrides)


def _batches(rendered: list, batch_size: int, count: int, device) -> list:
    return [make_batch(rendered[i:i + batch_size], device=device)
            for i in range(0, min(len(rendered), batch_size * count), batch_size)]


def _base_text(base_run: Path) -> np.ndarray | None:
    """The base run's encoded training split, or None when it kept none (then the finetune replays nothing)."""
    try:
        return load_split(base_run / "data", "train")
    except (OSError, ValueError):
        return None


def make_start(base_run: Path, cfg: RunConfig, train_q: list[Question], held_q: list[Question]) -> Start:
    """The base model and tokenizer with the chat tokens, and the rendered conversations as batches."""
    model, tokenizer, _ = load_model(base_run)
    if not has_chat_tokens(tokenizer):
        tokenizer = add_chat_tokens(tokenizer)
        grow_vocab(model, tokenizer.vocab_size)
    T, t, device = cfg.model.block_size, cfg.train, resolve_device(cfg.train.device)
    rendered, dropped, cut = render_for_training(tokenizer, [q.messages() for q in train_q], T + 1, cfg.data.mask)
    held, *_ = render_for_training(tokenizer, [q.messages() for q in held_q], T + 1, "assistant")
    evals = {"train": _batches(rendered, t.batch_size, t.eval_batches, device),
             "val": _batches(held or rendered, t.batch_size, t.eval_batches, device)}
    splits = {name: {"tokens": sum(len(ids) for ids, _ in r), "bytes": sum(len(tokenizer.decode_bytes(ids))
                                                                          for ids, _ in r)}
              for name, r in (("train", rendered), ("val", held))}
    records = {"conversations": len(train_q), "dropped": dropped, "cut": cut,
               "untrained": sum(not any(m) for _, m in rendered)}
    replay = _base_text(base_run) if cfg.data.replay > 0 else None
    stream = ConversationStream(rendered, t.batch_size, t.seed + 1, device, replay,
                                replay_rows=round(cfg.data.replay * t.batch_size))
    return Start(tokenizer, model.state_dict(), stream, evals,
                 {"corpus": cfg.data.corpus, "splits": splits, "records": records},
                 held_q[0].question if held_q else train_q[0].question)


def mask_preview(base_run: str | Path, data: str, mask: str = "assistant", count: int = 3, color: bool = True) -> str:
    """The first `count` training conversations with the trained tokens marked (chat.show_mask)."""
    model, tokenizer, _ = load_model(base_run)
    tokenizer = tokenizer if has_chat_tokens(tokenizer) else add_chat_tokens(tokenizer)
    train_q, _ = load_questions(data)
    rendered, *_ = render_for_training(tokenizer, [q.messages() for q in train_q[:count]], model.config.block_size + 1,
                                      mask)
    return "\n\n".join(show_mask(tokenizer, ids, trained, color) for ids, trained in rendered)


def base_corpus_bpb(base_run: Path, models: dict[str, GPT], tokenizer: Tokenizer, cfg: RunConfig,
                    tokens: int = FORGET_TOKENS) -> dict:
    """Bits per byte of each model on the first `tokens` of the base run's held-out text (encoded by the base run's
    `tokenizer`): what finetuning cost the model at its first job (the doctor flags a rise). {} when the base run
    kept no encoded val split."""
    try:
        val = load_split(base_run / "data", "val")[:tokens + 1]
    except (OSError, ValueError):
        return {}
    ids = torch.from_numpy(val.astype(np.int64))
    return {name: exact_bpb(model, ids, tokenizer, cfg.model.block_size, cfg.train.device, cfg.train.dtype)["bpb"]
            for name, model in models.items()}


def finetune(base_run: str | Path, data: str, out_dir: str | Path, minutes: float = 2.0, mask: str = "assistant",
             overrides: list[str] = (), resume: bool = False, eval_questions: int = 200, progress: bool = True) -> dict:
    """Finetune the model of `base_run` on `data` for `minutes` into the run folder `out_dir`; write qa_eval.json
    there and return {"summary": train()'s summary, "qa_eval": the evaluation}."""
    base_run, out_dir = Path(base_run), Path(out_dir)
    base = read_json(base_run / CONFIG)
    if not isinstance(base, dict):
        raise InputError(f"{base_run} is not a run folder with a config.json: finetune starts from a trained run")
    if minutes <= 0:
        raise InputError(f"finetune needs a positive number of minutes; got {minutes}")
    train_q, held_q = load_questions(data)
    cfg = finetune_config(base, data, minutes, mask, list(overrides))
    start = make_start(base_run, cfg, train_q, held_q)
    summary = train(cfg, out_dir, resume=resume, progress=progress, start=start)
    tuned, base_model = load_model(out_dir), load_model(base_run)
    report = evaluate_qa(spread_over_kinds(held_q, eval_questions), train_q, finetuned=tuned[:2], base=base_model[:2],
                         max_new_tokens=32)
    report["mask"], report["base_run"], report["records"] = mask, str(base_run), start.meta["records"]
    report["replay"] = cfg.data.replay if start.batches.replay_rows else 0.0
    ids, trained = start.batches.rendered[0]  # the first training conversation as trained: the guide shows its mask
    report["mask_example"] = {"ids": [int(i) for i in ids], "mask": [int(m) for m in trained]}
    report["base_corpus_bpb"] = base_corpus_bpb(base_run, {"base": base_model[0], "finetuned": tuned[0]},
                                                base_model[1], cfg)
    write_json(out_dir / QA_EVAL, report)
    return {"summary": summary, "qa_eval": report}
