"""The GPU path against the CPU-proven references: bf16 autocast steps track fp32, compiled regions equal eager, the
fused SDPA kernels (flash, memory-efficient) equal the explicit attention, FSDP2 on one GPU equals the plain model,
KV-cache decoding equals full recompute, and a whole tiny run trains in bf16 with compile.

Every test is marked `cuda` and skips without a CUDA device, so CI on CPU stays green; benchmarks/gpu_check.sh
runs them (`pytest -m cuda`) whenever a GPU is at hand. Tolerances come from the low-precision format's machine
epsilon (torch.finfo(dtype).eps: 2^-7 for bf16): a bug (a wrong mask, a dropped scale, an unsynced shard) moves
results by orders of magnitude more than rounding does.
"""

from __future__ import annotations

import contextlib
import json
import math
from functools import partial

import pytest
import torch

from scratchllm import distributed as D
from scratchllm.config import TrainConfig, load_config
from scratchllm.device import autocast
from scratchllm.generate import CachedContext, NaiveContext, generate
from scratchllm.model import GPT, GPTConfig, reference_attention, sdpa_attention
from scratchllm.optim import make_optimizer
from scratchllm.train import train, train_step

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")]

CUDA = torch.device("cuda")
BF16_EPS = torch.finfo(torch.bfloat16).eps  # 2^-7: the spacing of bf16 numbers just above 1
SHAPE = {"vocab_size": 512, "block_size": 128, "n_layer": 2, "n_head": 4, "n_embd": 256}  # head_dim 64: flash fits


def build(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**SHAPE, **kw})).to(CUDA)


def batch(B: int = 4, T: int = 128, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, SHAPE["vocab_size"], (B, T + 1), generator=g).to(CUDA)
    return data[:, :-1], data[:, 1:]  # (B, T) each


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float32: one number for a whole tensor, robust to the odd element near zero."""
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def loss_and_grads(model: torch.nn.Module, idx, targets, ctx=contextlib.nullcontext) -> tuple[float, torch.Tensor]:
    """The loss and every gradient, flattened into one vector in parameter order."""
    model.zero_grad(set_to_none=True)
    with ctx():
        _, loss = model(idx, targets)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten().float() for p in model.parameters()])


def trainer_steps(model: torch.nn.Module, dtype: torch.dtype, steps: int = 5) -> tuple[list[float], list[float]]:
    """The trainer's own steps (make_optimizer's fused AdamW, train_step's clip) on one repeated batch."""
    t = TrainConfig(lr=1e-3, warmup_steps=0, grad_clip=1.0)
    optimizer = make_optimizer(model, t, CUDA)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    micro = [batch()]
    losses, norms = [], []
    for _ in range(steps):
        loss, norm = train_step(model, optimizer, micro, t, t.lr, partial(autocast, CUDA, dtype), scaler)
        losses.append(loss)
        norms.append(norm)
    return losses, norms


def test_bf16_autocast_steps_track_fp32_steps():
    fp32, _ = trainer_steps(build(), torch.float32)
    bf16, norms = trainer_steps(build(), torch.bfloat16)
    assert all(math.isfinite(x) for x in bf16 + norms)
    assert bf16[0] == pytest.approx(fp32[0], rel=2 * BF16_EPS)  # same weights: only rounding differs
    assert bf16 == pytest.approx(fp32, rel=4 * BF16_EPS)  # and Adam's steps do not drift apart
    assert bf16[-1] < bf16[0]  # the repeated batch is being learnt


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 4 * BF16_EPS)])
def test_compiled_regions_equal_eager_on_cuda(dtype, tol):
    """What train.compile runs (GPT.compile_regions: the shared block graph and the head) against eager."""
    model = build(positions="rope", norm_type="rmsnorm", activation="relu2")
    idx, targets = batch()
    ctx = partial(autocast, CUDA, dtype)
    eager_loss, eager = loss_and_grads(model, idx, targets, ctx)
    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    model.compile_regions()
    compiled_loss, compiled = loss_and_grads(model, idx, targets, ctx)
    assert compiled_loss == pytest.approx(eager_loss, rel=tol)
    assert rel_err(compiled, eager) < tol
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - before == 2  # it did compile: block and head


@pytest.mark.parametrize("backend", ["FLASH_ATTENTION", "EFFICIENT_ATTENTION"])
def test_fused_sdpa_kernels_equal_the_explicit_attention(backend):
    """Each fused kernel forced in turn (an error if it cannot run our shapes), in bf16, against the five-line
    reference in fp32: forward and the gradients of q, k and v."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 256, 64, device=CUDA, generator=g) for _ in range(3))  # (B, H, T, hd)
    ref_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    fast_inputs = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
    y_ref = reference_attention(*ref_inputs)[0]
    with sdpa_kernel(getattr(SDPBackend, backend)):
        y_fast = sdpa_attention(*fast_inputs)
    assert rel_err(y_fast, y_ref) < 2 * BF16_EPS
    dy = torch.randn(y_ref.shape, device=CUDA, generator=g)
    y_ref.backward(dy)
    y_fast.backward(dy.to(torch.bfloat16))
    for fast, ref, name in zip(fast_inputs, ref_inputs, "qkv", strict=True):
        assert rel_err(fast.grad, ref.grad) < 4 * BF16_EPS, name


def test_model_on_sdpa_equals_model_on_explicit_attention_in_bf16():
    """The model's own switch (GPTConfig.attention) under the trainer's bf16 autocast, logits and gradients."""
    fast, ref = build(attention="sdpa"), build(attention="reference")
    idx, targets = batch()
    ctx = partial(autocast, CUDA, torch.bfloat16)
    fast_loss, fast_grads = loss_and_grads(fast, idx, targets, ctx)
    ref_loss, ref_grads = loss_and_grads(ref, idx, targets)  # fp32: the yardstick
    assert fast_loss == pytest.approx(ref_loss, rel=2 * BF16_EPS)
    assert rel_err(fast_grads, ref_grads) < 4 * BF16_EPS
    with torch.no_grad(), ctx():
        assert rel_err(fast(idx)[0], ref(idx)[0]) < 4 * BF16_EPS


@pytest.fixture
def one_gpu_group(monkeypatch):
    """A one-rank NCCL process group in this process, as torchrun --nproc 1 would make, left again afterwards."""
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(D.free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda:0"))
    try:
        yield D.DistContext(rank=0, world_size=1, local_rank=0, device="cuda:0", backend="nccl")
    finally:
        D.teardown()


@pytest.mark.parametrize("mixed_bf16", [False, True])
def test_fsdp2_on_one_gpu_equals_the_plain_model(one_gpu_group, mixed_bf16):
    """wrap_fsdp2 (sharded over a mesh of one, checkpointed blocks) with the trainer's optimizer and step: in fp32
    the same losses and weights as the plain model; in bf16 mixed precision within bf16's rounding of them."""
    plain = build()
    plain_losses, _ = trainer_steps(plain, torch.float32)
    sharded = D.wrap_fsdp2(build(), one_gpu_group, mixed_bf16=mixed_bf16)
    assert D.is_fsdp(sharded)
    losses, norms = trainer_steps(sharded, torch.bfloat16 if mixed_bf16 else torch.float32)
    assert all(math.isfinite(x) for x in losses + norms)
    assert losses == pytest.approx(plain_losses, rel=4 * BF16_EPS if mixed_bf16 else 1e-5)
    state, plain_state = D.full_state_dict(sharded), D.full_state_dict(plain)
    assert "transformer.wte.weight" in state
    for name, tensor in state.items():
        if mixed_bf16:
            assert rel_err(tensor, plain_state[name]) < 4 * BF16_EPS, name
        else:
            torch.testing.assert_close(tensor, plain_state[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kw", [{}, {"positions": "rope", "qk_norm": True}, {"attention": "reference"}])
def test_kv_cache_decode_equals_full_recompute_on_cuda(kw):
    model = build(**kw).eval()
    prompt = [3, 14, 15, 9, 26, 5]
    cached = generate(model, prompt, 60, temperature=0, use_cache=True)
    naive = generate(model, prompt, 60, temperature=0, use_cache=False)
    assert cached == naive and len(cached) == 60
    seq = prompt + cached
    a, b = CachedContext(model), NaiveContext(model)
    with torch.no_grad():
        for t in range(len(prompt), len(seq) + 1):
            torch.testing.assert_close(a.next_logits(seq[:t]), b.next_logits(seq[:t]), atol=1e-4, rtol=1e-4)


def test_kv_cache_decode_in_bf16_weights_equals_full_recompute():
    """A model cast to bf16 (as one served in bf16): the cache holds bf16 keys and values."""
    model = build().to(torch.bfloat16).eval()
    seq = list(range(1, 41))
    a, b = CachedContext(model), NaiveContext(model)
    with torch.no_grad():
        for t in range(6, len(seq) + 1):
            assert rel_err(a.next_logits(seq[:t]), b.next_logits(seq[:t])) < 4 * BF16_EPS, t


def test_tiny_run_trains_on_cuda_in_bf16_with_compile(tmp_path, tiny_corpus_file):
    """The whole trainer on the GPU: bf16 autocast, compiled regions, evaluation, samples, checkpoints."""
    cfg = load_config("tiny", [f"data.corpus={tiny_corpus_file}", "train.device=cuda", "train.dtype=bfloat16",
                               "train.compile=true", "train.max_steps=20", "train.max_minutes=0"])
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert summary["device"].startswith("cuda") and summary["dtype"] == "bfloat16"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert all(math.isfinite(r["val_bpb"]) for r in evals) and evals[-1]["val_bpb"] < evals[0]["val_bpb"]
