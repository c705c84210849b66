"""Generation: KV cache == naive recompute (tokens and logits), sampling distributions against their definitions,
seeds, stop tokens, streaming == one-shot decode, prompt cropping."""

from __future__ import annotations

import pytest
import torch

from scratchllm.config import InputError
from scratchllm.generate import (
    CachedContext,
    NaiveContext,
    generate,
    generate_text,
    sample_next_token,
    stream_text,
)
from scratchllm.model import GPT, GPTConfig
from scratchllm.tokenizer import CharTokenizer, train_bpe


def tiny_model(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    base = {"vocab_size": 61, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
    return GPT(GPTConfig(**{**base, **kw}))


PROMPT = [3, 14, 15, 9, 26, 5]


@pytest.mark.parametrize("kw", [{}, {"positions": "rope", "qk_norm": True}, {"attention": "reference"}])
def test_greedy_with_kv_cache_equals_naive_tokens_and_logits(kw):
    model = tiny_model(**kw)
    cached = generate(model, PROMPT, 26, temperature=0, use_cache=True)
    naive = generate(model, PROMPT, 26, temperature=0, use_cache=False)
    assert cached == naive and len(cached) == 26
    seq = PROMPT + cached
    a, b = CachedContext(model.eval()), NaiveContext(model)
    with torch.no_grad():
        for t in range(len(PROMPT), len(seq) + 1):
            torch.testing.assert_close(a.next_logits(seq[:t]), b.next_logits(seq[:t]), atol=1e-5, rtol=1e-5)


def test_cache_rebuild_past_block_size_matches_a_fresh_read_of_the_window():
    model = tiny_model(block_size=16).eval()
    ids = list(range(1, 17))  # fills the context exactly
    ctx = CachedContext(model)
    with torch.no_grad():
        ctx.next_logits(ids)
        ids.append(40)
        after = ctx.next_logits(ids)  # overflow: rebuilt from the last 8 ids
        torch.testing.assert_close(after, NaiveContext(model).next_logits(ids[-8:]), atol=1e-5, rtol=1e-5)
    tokens = generate(model, [1, 2, 3], 50, temperature=0)
    assert len(tokens) == 50
    assert tokens[:13] == generate(model, [1, 2, 3], 13, temperature=0, use_cache=False)


def test_same_seed_same_tokens_different_seed_different_tokens():
    model = tiny_model()
    a = generate(model, PROMPT, 20, temperature=1.0, seed=7)
    assert a == generate(model, PROMPT, 20, temperature=1.0, seed=7)
    assert a == generate(model, PROMPT, 20, temperature=1.0, seed=7, use_cache=False)
    assert a != generate(model, PROMPT, 20, temperature=1.0, seed=8)


def test_seeded_sampling_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    generate(tiny_model(), PROMPT, 5, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())


def test_top_k_one_equals_greedy():
    model = tiny_model()
    greedy = generate(model, PROMPT, 20, temperature=0)
    assert generate(model, PROMPT, 20, temperature=1.5, top_k=1, seed=3) == greedy


def draw(logits, n=4000, **kw) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(logits.numel())
    for _ in range(n):
        counts[sample_next_token(logits, generator=g, **kw)] += 1
    return counts / n


def test_temperature_sampling_follows_softmax_of_scaled_logits():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    for temperature in (0.5, 1.0, 2.0):
        freq = draw(logits, temperature=temperature)
        expected = torch.exp(logits / temperature) / torch.exp(logits / temperature).sum()
        assert (freq - expected).abs().max() < 0.03, temperature


@pytest.mark.parametrize("top_p, nucleus", [
    (0.5, {0}), (0.7, {0, 1}), (0.79, {0, 1}), (0.81, {0, 1, 2}), (1.0, {0, 1, 2, 3}),
])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, nucleus):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    freq = draw(probs.log(), top_p=top_p)
    assert set(torch.nonzero(freq).flatten().tolist()) == nucleus
    renormalised = probs[list(nucleus)] / probs[list(nucleus)].sum()
    assert (freq[list(nucleus)] - renormalised).abs().max() < 0.03


def test_top_k_keeps_the_k_likeliest():
    logits = torch.tensor([0.1, 3.0, -2.0, 2.5, 1.0])
    freq = draw(logits, n=2000, top_k=2)
    assert set(torch.nonzero(freq).flatten().tolist()) == {1, 3}


def test_stop_token_ends_generation_and_is_not_returned():
    model = tiny_model()
    greedy = generate(model, PROMPT, 20, temperature=0)
    stop = greedy[4]
    cut = greedy.index(stop)
    assert generate(model, PROMPT, 20, temperature=0, stop_tokens=(stop,)) == greedy[:cut]


def test_long_prompt_is_cut_from_the_left_with_a_warning():
    model = tiny_model(block_size=16)
    prompt = list(range(40))
    with pytest.warns(UserWarning, match="longer than the context"):
        out = generate(model, prompt, 5, temperature=0)
    assert out == generate(model, prompt[-16:], 5, temperature=0)


@pytest.mark.parametrize("kw, needle", [
    ({"temperature": -1}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"max_new_tokens": -2}, "max_new_tokens"),
])
def test_bad_sampling_arguments_raise_input_error(kw, needle):
    kw = {"max_new_tokens": 3, **kw}
    with pytest.raises(InputError, match=needle):
        generate(tiny_model(), PROMPT, **kw)


def test_empty_prompt_is_an_input_error():
    with pytest.raises(InputError, match="empty"):
        generate(tiny_model(), [], 3)


def test_streamed_text_equals_one_shot_decode_with_byte_level_bpe(tiny_text):
    tok = train_bpe(tiny_text[:4000] + " café naïve — ünïcödé ✓ ", 300, progress=False)
    model = tiny_model(vocab_size=tok.vocab_size)
    kw = {"temperature": 1.0, "seed": 11}
    pieces = list(stream_text(model, tok, "To be", 40, **kw))
    ids = generate(model, tok.encode("To be"), 40, **kw)
    assert "".join(pieces) == tok.decode(ids) == generate_text(model, tok, "To be", 40, **kw)
    assert len(pieces) > 1


def test_empty_prompt_starts_from_endoftext_when_the_tokenizer_has_it(tiny_text):
    tok = train_bpe(tiny_text[:2000], 280, progress=False)
    model = tiny_model(vocab_size=tok.vocab_size)
    eot = tok.special_tokens["<|endoftext|>"]
    assert generate_text(model, tok, "", 8, temperature=0) == tok.decode(generate(model, [eot], 8, temperature=0))
    with pytest.raises(InputError, match="empty"):
        generate_text(tiny_model(), CharTokenizer.train("abc"), "", 3)
