"""exact_bpb against a hand count: one window at a time, log-softmax of each target, bytes from decode_bytes."""

from __future__ import annotations

import math

import torch

from scratchllm.evaluate import exact_bpb
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import train_bpe

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 3


def _tiny(vocab: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=16))


def test_exact_bpb_equals_a_window_by_window_hand_count():
    tokenizer = train_bpe(TEXT, 280)
    ids = tokenizer.encode(TEXT)  # more than two windows of 16, the last one short
    model = _tiny(tokenizer.vocab_size).eval()
    nats = 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, 16):
            window = torch.tensor(ids[start:start + 17])
            logits, _ = model(window[None, :-1])
            logp = torch.log_softmax(logits[0].double(), dim=-1)
            nats -= sum(logp[i, t].item() for i, t in enumerate(window[1:].tolist()))
    n_bytes = len(tokenizer.decode_bytes(ids[1:]))
    result = exact_bpb(model, ids, tokenizer, 16, "cpu", "float32")
    assert result["tokens"] == len(ids) - 1 and result["bytes"] == n_bytes
    assert math.isclose(result["bpb"], nats / math.log(2) / n_bytes, rel_tol=1e-5)


def test_a_uniform_model_scores_log2_vocab_bits_per_token():
    tokenizer = train_bpe(TEXT, 280)
    ids = tokenizer.encode(TEXT)
    model = _tiny(tokenizer.vocab_size)
    torch.nn.init.zeros_(model.lm_head.weight)  # every logit 0
    result = exact_bpb(model, ids, tokenizer, 16, "cpu", "float32")
    expected = math.log2(tokenizer.vocab_size) * (len(ids) - 1) / len(tokenizer.decode_bytes(ids[1:]))
    assert math.isclose(result["bpb"], expected, rel_tol=1e-6)
