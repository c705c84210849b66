"""The GPT against identities: SDPA == the explicit reference, causality, KV cache == full forward, checkpointing
== plain backward, inspect's softmax rows, GPT-2 init scale, and the parameter count from a closed formula."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.config import InputError
from scratchllm.model import GPT, GPTConfig, KVCache, swiglu_hidden

VARIANTS = {
    "gpt2": {},
    "rope_qknorm": {"positions": "rope", "qk_norm": True},
    "llama_like": {"positions": "rope", "norm_type": "rmsnorm", "activation": "swiglu", "tie_weights": False},
    "post_relu2_bias": {"norm": "post", "activation": "relu2", "bias": True},
    "relu": {"activation": "relu", "bias": True},
}


def tiny(**kw) -> GPTConfig:
    base = {"vocab_size": 61, "block_size": 24, "n_layer": 2, "n_head": 4, "n_embd": 32}
    return GPTConfig(**{**base, **kw})


def build(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny(**kw))


def batch(B=2, T=24, V=61, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def grads(model: GPT, idx, targets) -> dict[str, torch.Tensor]:
    model.zero_grad()
    _, loss = model(idx, targets)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_sdpa_equals_reference_forward_and_gradients(variant):
    fast = build(**VARIANTS[variant], attention="sdpa")
    ref = build(**VARIANTS[variant], attention="reference")
    ref.load_state_dict(fast.state_dict())
    idx, targets = batch()
    torch.testing.assert_close(fast(idx)[0], ref(idx)[0], atol=1e-5, rtol=1e-5)
    g_fast, g_ref = grads(fast, idx, targets), grads(ref, idx, targets)
    for name in g_fast:
        torch.testing.assert_close(g_fast[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "reference"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_changing_future_tokens_leaves_past_logits_unchanged(variant, attention):
    model = build(**VARIANTS[variant], attention=attention).eval()
    idx, _ = batch()
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 7) % 61
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :10], b[:, :10], atol=1e-6, rtol=0)
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-3  # the future did change: the test can fail


MODELS = {(v, a): build(**VARIANTS[v], attention=a).eval() for v in VARIANTS for a in ("sdpa", "reference")}


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(sorted(MODELS)), cut=st.integers(1, 23), seed=st.integers(0, 2**16))
def test_logits_before_any_cut_ignore_everything_after_it(key, cut, seed):
    model = MODELS[key]
    idx, other = batch(seed=seed)
    changed = torch.cat([idx[:, :cut], other[:, cut:]], dim=1)
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :cut], b[:, :cut], atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "reference"])
@pytest.mark.parametrize("variant", ["gpt2", "rope_qknorm", "post_relu2_bias"])
def test_kv_cache_in_chunks_equals_one_full_forward(variant, attention):
    model = build(**VARIANTS[variant], attention=attention).eval()
    idx, _ = batch()
    full = model(idx)[0]
    cache = KVCache(model.config, batch_size=2)
    parts = [model(idx[:, a:b], kv_cache=cache)[0] for a, b in [(0, 7), (7, 8), (8, 15), (15, 24)]]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.pos == 24


def test_inspect_rows_are_softmax_and_causal():
    model = build(positions="rope", qk_norm=True)
    idx, _ = batch(T=12)
    layers = model.inspect(idx)
    assert len(layers) == 2
    for rec in layers:
        q, k, att, scores = rec["q"], rec["k"], rec["att"], rec["scores"]
        assert q.shape == k.shape == rec["v"].shape == (2, 4, 12, 8)
        assert att.shape == scores.shape == (2, 4, 12, 12)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 4, 12))
        assert (att.triu(1) == 0).all()
        torch.testing.assert_close(scores, q @ k.transpose(-2, -1) / math.sqrt(8))
        assert (scores.triu(1) != 0).any()  # scores are reported before the mask
        expected = torch.where(torch.ones(12, 12, dtype=torch.bool).tril(), scores, -math.inf).softmax(-1)
        torch.testing.assert_close(att, expected)
    assert model.training  # inspect restores the mode it found


def test_inspect_first_layer_matches_its_own_attention_output():
    """att @ v, heads joined and projected, is exactly what layer 0 adds to the residual stream."""
    model = build().eval()
    idx, _ = batch(T=10)
    rec = model.inspect(idx)[0]
    y = (rec["att"] @ rec["v"]).transpose(1, 2).reshape(2, 10, 32)
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(10))
    block = model.transformer.h[0]
    torch.testing.assert_close(block.attn.c_proj(y), block.attn(block.ln_1(x)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_grad_checkpointing_gives_identical_gradients(dropout):
    model = build(dropout=dropout, positions="rope")
    idx, targets = batch()
    torch.manual_seed(5)
    plain = grads(model, idx, targets)
    model.grad_checkpointing = True
    torch.manual_seed(5)
    ckpt = grads(model, idx, targets)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], atol=0, rtol=0, msg=name)


def test_compiled_regions_give_the_eager_gradients_and_leave_evaluation_eager():
    model = build(positions="rope", norm_type="rmsnorm", activation="relu2")
    idx, targets = batch()
    eager = grads(model, idx, targets)
    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]  # the counter runs over the whole session
    model.compile_regions()
    compiled = grads(model, idx, targets)
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], atol=1e-5, rtol=1e-4, msg=name)
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert frames - before == 2  # the block's graph (shared by both layers) and the head's
    model.eval()
    short, _ = batch(B=3, T=7)  # another shape: compiled code would have to recompile for it
    logits, _ = model(short)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames
    model.compiled = None
    torch.testing.assert_close(model(short)[0], logits, atol=0, rtol=0)


def test_dropout_only_when_training():
    model = build(dropout=0.5)
    idx, _ = batch()
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0], atol=0, rtol=0)
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_loss_is_cross_entropy_and_ignores_minus_one():
    model = build()
    idx, targets = batch()
    targets[0, :5] = -1
    logits, loss = model(idx, targets)
    keep = targets != -1
    manual = -torch.log_softmax(logits[keep], -1).gather(1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, manual)


BAD_CONFIGS = {
    "n_embd": {"n_embd": 30, "n_head": 4},
    "head size": {"positions": "rope", "n_embd": 12, "n_head": 4},
    "model.norm": {"norm": "sandwich"},
    "model.activation": {"activation": "tanh"},
    "model.positions": {"positions": "alibi"},
    "model.norm_type": {"norm_type": "batchnorm"},
    "model.attention": {"attention": "flash"},
    "model.dropout": {"dropout": 1.5},
    "model.n_layer": {"n_layer": 0},
}


@pytest.mark.parametrize("needle", BAD_CONFIGS)
def test_invalid_configs_raise_input_error_naming_the_option(needle):
    with pytest.raises(InputError, match=needle.replace(".", r"\.")):
        tiny(**BAD_CONFIGS[needle])


def test_longer_than_block_size_is_an_input_error():
    with pytest.raises(InputError, match="block_size"):
        build()(torch.zeros(1, 25, dtype=torch.long))


def expected_param_count(c: GPTConfig) -> int:
    """Closed formula, written from the architecture description rather than from the module tree."""
    C, b = c.n_embd, int(c.bias)
    norm = C * (1 + b) if c.norm_type == "layernorm" else C
    if c.activation == "swiglu":
        h = swiglu_hidden(C)
        mlp = C * 2 * h + b * 2 * h + h * C + b * C
    else:
        mlp = C * 4 * C + b * 4 * C + 4 * C * C + b * C
    attn = 3 * C * C + b * 3 * C + C * C + b * C + (2 * (C // c.n_head) if c.qk_norm else 0)
    total = c.vocab_size * C + c.n_layer * (attn + mlp + 2 * norm)
    total += c.block_size * C if c.positions == "learned" else 0
    total += norm if c.norm == "pre" else 0
    total += 0 if c.tie_weights else c.vocab_size * C
    return total


@pytest.mark.parametrize("variant", VARIANTS)
def test_param_count_equals_formula(variant):
    model = build(**VARIANTS[variant])
    c = model.config
    assert model.num_params() == expected_param_count(c)
    table = c.block_size * c.n_embd if c.positions == "learned" else 0
    table += 0 if c.tie_weights else c.vocab_size * c.n_embd
    assert model.num_params(non_embedding=True) == expected_param_count(c) - table


def test_flops_per_token_is_six_n_plus_attention():
    model = build()
    n = model.num_params(non_embedding=True)
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 24
    assert model.flops_per_token(seq_len=8) < model.flops_per_token()


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(tiny(), n_embd=256, n_layer=8, n_head=4))
    proj = model.transformer.h[3].mlp.c_proj.weight.std().item()
    fc = model.transformer.h[3].mlp.c_fc.weight.std().item()
    assert fc == pytest.approx(0.02, rel=0.05)
    assert proj == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_last_only_logits_equal_the_last_row_of_the_full_logits():
    model = build(positions="rope").eval()
    idx, _ = batch()
    last = model(idx, last_only=True)[0]
    assert last.shape == (2, 1, 61)
    torch.testing.assert_close(last, model(idx)[0][:, -1:], atol=1e-6, rtol=1e-6)
