"""The chat format: turn tokens, rendering a conversation to ids plus a loss mask, and SFT training tensors.

A conversation renders as `<|endoftext|>` (when the tokenizer has it) then, per message, the role's token, its
content and `<|end|>`: "<|user|>Who?<|end|><|assistant|>Romeo.<|end|>". The mask is 1 on the assistant's
content and its `<|end|>` (what finetuning trains on), 0 elsewhere; mask="all" trains on every token.
Message text is encoded as plain text, so a user who types "<|end|>" cannot close a turn. This module also grows
a trained model's vocabulary for the new tokens. It owns no data files (sft_data.py), no sampling (assistant.py) and
not the token names (tokenizer/chat_tokens.py, shared with the Hugging Face export).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import torch

from scratchllm.config import InputError
from scratchllm.model import GPT
from scratchllm.tokenizer import Tokenizer
from scratchllm.tokenizer.chat_tokens import ASSISTANT, BOS, CHAT_TOKENS, END, ROLE_TOKENS, has_chat_tokens

IGNORE = -1  # the target id GPT.forward's cross-entropy skips (ignore_index=-1)
MASKS = ("assistant", "all")

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


def add_chat_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of `tokenizer` with the chat tokens appended as special tokens (ids vocab_size, vocab_size + 1 ...).

    Every existing id keeps its meaning, so a trained model only needs `grow_vocab`. Already there: returned as is.
    """
    if has_chat_tokens(tokenizer):
        return tokenizer
    data = tokenizer.to_dict()
    new = [t for t in CHAT_TOKENS if t not in tokenizer.special_tokens]
    specials = {**tokenizer.special_tokens, **{t: tokenizer.vocab_size + k for k, t in enumerate(new)}}
    data.update(special_tokens=specials, vocab_size=tokenizer.vocab_size + len(new))
    return type(tokenizer).from_dict(data)


def _plain_twin(tokenizer: Tokenizer) -> Tokenizer:
    """The same tokenizer without special tokens: it encodes "<|end|>" as ordinary text, with the same ids."""
    data = tokenizer.to_dict()
    data.update(special_tokens={}, vocab_size=tokenizer.vocab_size - len(tokenizer.special_tokens))
    return type(tokenizer).from_dict(data)


def encode_plain(tokenizer: Tokenizer, text: str) -> list[int]:
    """Text -> ids with special-token strings treated as plain text (a message cannot forge a turn token).

    Only text that holds such a string (rare) pays for building the twin tokenizer.
    """
    if not any(s in text for s in tokenizer.special_tokens):
        return tokenizer.encode(text)
    return _plain_twin(tokenizer).encode(text)


@torch.no_grad()
def grow_vocab(model: GPT, vocab_size: int) -> GPT:
    """Resize the token embedding (and an untied head) to `vocab_size` rows in place; new rows = the mean row.

    The mean row predicts nothing in particular and sits where ordinary embeddings live, so the new tokens start
    neutral (HF's resize_token_embeddings(mean_resizing=True) does the same). Shrinking is refused. Call it
    before `compile_regions` and before building the optimizer: both hold the old tables.
    """
    old = model.config.vocab_size
    if vocab_size < old:
        raise InputError(f"cannot shrink the vocabulary from {old} to {vocab_size}")
    if vocab_size == old:
        return model
    model.transformer.wte = _grown(model.transformer.wte, vocab_size)
    if model.config.tie_weights:
        model.lm_head = torch.nn.Linear(model.config.n_embd, vocab_size, bias=False,
                                        device=model.lm_head.weight.device, dtype=model.lm_head.weight.dtype)
        model.lm_head.weight = model.transformer.wte.weight
    else:
        model.lm_head = _grown(model.lm_head, vocab_size)
    model.config.vocab_size = vocab_size
    return model


def _grown(layer: torch.nn.Embedding | torch.nn.Linear, rows: int):
    """A copy of an embedding or bias-free linear layer with `rows` output rows, the extra rows the mean one."""
    weight = layer.weight  # (old_rows, C)
    extra = weight.mean(dim=0, keepdim=True).expand(rows - weight.size(0), -1)
    new = torch.cat([weight, extra], dim=0)  # (rows, C)
    if isinstance(layer, torch.nn.Embedding):
        grown = torch.nn.Embedding(rows, weight.size(1), device=weight.device, dtype=weight.dtype)
    else:
        grown = torch.nn.Linear(weight.size(1), rows, bias=False, device=weight.device, dtype=weight.dtype)
    grown.weight.copy_(new)
    return grown


def check_messages(messages: Sequence[Message]) -> None:
    """Raise an `InputError` unless messages are {"role", "content": str} dicts, a system turn only first."""
    if not messages:
        raise InputError("a conversation needs at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLE_TOKENS or not isinstance(m.get("content"), str):
            raise InputError(f"message {i} must be {{\"role\": system|user|assistant, \"content\": text}}; got {m!r}")
        if m["role"] == "system" and i:
            raise InputError(f"message {i}: a system turn may only come first")


def conversation_text(messages: Sequence[Message], bos: str = BOS) -> str:
    """The rendered conversation as text: what decoding `render_conversation`'s ids gives back."""
    return bos + "".join(f"{ROLE_TOKENS[m['role']]}{m['content']}{END}" for m in messages)


def _special(tokenizer: Tokenizer, token: str) -> int:
    if token not in tokenizer.special_tokens:
        raise InputError(f"the tokenizer has no {token} token: add the chat tokens first (chat.add_chat_tokens)")
    return tokenizer.special_tokens[token]


def _bos(tokenizer: Tokenizer) -> list[int]:
    return [tokenizer.special_tokens[BOS]] if BOS in tokenizer.special_tokens else []


def render_conversation(tokenizer: Tokenizer, messages: Sequence[Message], mask: str = "assistant"
                        ) -> tuple[list[int], list[int]]:
    """Messages -> (ids, mask), equal lengths; mask 1 = a token the loss trains on.

    >>> ids, m = render_conversation(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    >>> list(zip(tokens, m))   # <|endoftext|> 0, <|user|> 0, Hi 0, <|end|> 0, <|assistant|> 0, Yo 1, <|end|> 1
    """
    if mask not in MASKS:
        raise InputError(f"mask must be one of {', '.join(MASKS)}; got {mask!r}")
    check_messages(messages)
    end = _special(tokenizer, END)
    ids = _bos(tokenizer)
    trained = [0] * len(ids)
    for m in messages:
        content = encode_plain(tokenizer, m["content"]) + [end]
        on = int(m["role"] == "assistant")
        ids += [_special(tokenizer, ROLE_TOKENS[m["role"]])] + content
        trained += [0] + [on] * len(content)
    return ids, [1] * len(ids) if mask == "all" else trained


def mask_spans(tokenizer: Tokenizer, ids: Sequence[int], mask: Sequence[int]) -> list[tuple[str, bool]]:
    """The runs of trained and untrained tokens, each decoded: [(text, trained), ...], neighbours alternating.

    "<|user|>Hi<|end|><|assistant|>Yo<|end|>" with its mask -> [("<|user|>Hi<|end|><|assistant|>", False),
    ("Yo<|end|>", True)]. A rendered conversation's runs change at turn tokens, so joined they decode the ids.
    """
    return [(tokenizer.decode([token for token, _ in run]), bool(trained))
            for trained, run in groupby(zip(ids, mask, strict=True), key=lambda pair: bool(pair[1]))]


def show_mask(tokenizer: Tokenizer, ids: Sequence[int], mask: Sequence[int], color: bool = True) -> str:
    """The rendered text with trained tokens marked: green on a terminal (color), else between « and ».

    "<|user|>Hi<|end|><|assistant|>Yo<|end|>" -> "<|user|>Hi<|end|><|assistant|>«Yo<|end|>»" without color.
    """
    on, off = ("\x1b[1;32m", "\x1b[0m") if color else ("«", "»")
    return "".join(f"{on}{text}{off}" if trained else text for text, trained in mask_spans(tokenizer, ids, mask))


def render_prompt(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """The ids to generate a reply from: the conversation (ending with a user turn) plus the `<|assistant|>` opener."""
    if messages and messages[-1].get("role") == "assistant":
        raise InputError("the conversation already ends with an assistant turn: nothing to answer")
    ids, _ = render_conversation(tokenizer, messages)
    return ids + [_special(tokenizer, ASSISTANT)]


def truncate(ids: Sequence[int], mask: Sequence[int], max_len: int) -> tuple[list[int], list[int]] | None:
    """Fit a rendered conversation into `max_len` ids by cutting from the front (the prompt side), or None.

    The last trained token span must survive whole, with at least one token before it to predict it from: a
    record whose final answer alone is longer than that cannot fit, and the caller drops and counts it.
    """
    if len(ids) <= max_len:
        return list(ids), list(mask)
    last = max((i for i, m in enumerate(mask) if m), default=len(ids) - 1)
    first = last
    while first > 0 and mask[first - 1]:
        first -= 1
    start = len(ids) - max_len
    if start > max(first - 1, 0):
        return None
    return list(ids[start:]), list(mask[start:])


def render_for_training(tokenizer: Tokenizer, conversations: Sequence[Sequence[Message]], max_len: int,
                        mask: str = "assistant") -> tuple[list[tuple[list[int], list[int]]], int, int]:
    """Render and truncate every conversation; returns the kept (ids, mask) pairs, how many were dropped, and how
    many of the kept ones lost the front of their prompt to the cut.

    max_len counts ids, so a model of context block_size takes max_len = block_size + 1 (x and y are shifted).
    The cut protects the last answer under either mask (with mask="all", the kept ids are then all trained).
    """
    if mask not in MASKS:
        raise InputError(f"mask must be one of {', '.join(MASKS)}; got {mask!r}")
    kept, dropped, cut = [], 0, 0
    for messages in conversations:
        ids, trained = render_conversation(tokenizer, messages)
        fitted = truncate(ids, trained, max_len)
        if fitted is None:
            dropped += 1
        else:
            cut += len(fitted[0]) < len(ids)
            kept.append((fitted[0], [1] * len(fitted[0]) if mask == "all" else fitted[1]))
    return kept, dropped, cut


def make_batch(rendered: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = 0,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) pairs -> x, y (B, T) int64, T = longest - 1; y is -1 (ignored) on untrained targets and padding.

    Position t predicts ids[t + 1], so y[t] keeps ids[t + 1] only where mask[t + 1] is 1.
    """
    if not rendered:
        raise InputError("an SFT batch needs at least one conversation")
    T = max(len(ids) for ids, _ in rendered) - 1
    if T < 1:
        raise InputError("every conversation in the batch is shorter than two tokens")
    x = torch.full((len(rendered), T), pad_id, dtype=torch.long)
    y = torch.full((len(rendered), T), IGNORE, dtype=torch.long)
    for row, (ids, mask) in enumerate(rendered):
        ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.bool)
        n = len(ids) - 1
        x[row, :n] = ids_t[:-1]
        y[row, :n] = ids_t[1:].masked_fill(~mask_t[1:], IGNORE)
    return x.to(device), y.to(device)
