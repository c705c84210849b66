"""Data parallelism on PyTorch's own engine: torchrun's environment -> a DistContext, DDP and FSDP2 wrappers.

Owns process-group setup/teardown (gloo on CPU, nccl on CUDA, with a timeout so a dead rank is an error, not a
hang), the no_sync switch for gradient accumulation, per-rank batch slicing, gathering a sharded model into one
full state dict (so FSDP2 checkpoints load in a single process), and `launch`, which starts torchrun for
`scratchllm train --nproc N`. It does not own the training loop (train.py) or the checkpoint format (checkpoint.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from scratchllm.config import InputError

DEFAULT_PORT = 29500
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    """This process's index among all processes (0 .. world_size - 1)."""
    world_size: int = 1
    """Number of processes taking part (nproc_per_node x nnodes)."""
    local_rank: int = 0
    """Index on this machine: picks the GPU (cuda:local_rank)."""
    device: str = "cpu"
    """The torch device this rank computes on."""
    backend: str | None = None
    """"gloo" (CPU) or "nccl" (CUDA); None when running as one plain process."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None else int(value)


def setup(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK and join the process group; a single plain process otherwise.

    device "cuda" becomes cuda:LOCAL_RANK with nccl; anything else runs on gloo. A collective that waits longer
    than timeout_s (a rank died or never came) raises instead of hanging.
    """
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world == 1:
        return DistContext(device=str(device))
    cuda = str(device).startswith("cuda")
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        extra = {"device_id": torch.device(device)} if cuda else {}
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **extra)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=str(device), backend=backend)


def teardown() -> None:
    """Leave the process group (safe to call when none was joined); drop your wrapped models first.

    Garbage-collect first: a DDP/FSDP2 model still alive at exit (hooks make reference cycles) keeps the gloo group
    alive and the process aborts ("terminate called without an active exception"). Then all ranks leave together.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def rank_seed(seed: int, ctx: DistContext) -> int:
    """A seed of this rank's own (dropout, sampling): seed + rank, so rank 0 matches a single process."""
    return seed + ctx.rank


def under_torchrun() -> bool:
    """True inside a process that torchrun started (it sets LOCAL_RANK and WORLD_SIZE)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (after rank 0 writes a file the others read); nothing when running alone."""
    if ctx.is_distributed:
        dist.barrier()


def own_share(items: list, ctx: DistContext) -> list:
    """Items k with k % world_size == rank: micro-batches drawn in the same order on every rank, dealt out.
    Example: 4 micro-batches, 2 ranks -> rank 0 keeps 0 and 2, rank 1 keeps 1 and 3; together, all four."""
    return items[ctx.rank::ctx.world_size]


def all_max(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise max over ranks, so every rank decides alike (elapsed time, "Ctrl-C was pressed" as 0/1)."""
    if not ctx.is_distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def rank_rows(batch_size: int, ctx: DistContext) -> slice:
    """This rank's rows of a global batch drawn identically on every rank: 8 rows, 2 ranks, rank 1 -> rows 4..7."""
    if batch_size % ctx.world_size:
        raise InputError(f"batch size {batch_size} must be divisible by the number of processes {ctx.world_size}")
    per = batch_size // ctx.world_size
    return slice(ctx.rank * per, (ctx.rank + 1) * per)


def shard_batch(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Rows of x (B, ...) that belong to this rank: (B / world_size, ...)."""
    return x[rank_rows(x.size(0), ctx)]


def all_mean(value: float, ctx: DistContext) -> float:
    """Mean of a Python number over all ranks (a logged loss that covers the whole global batch)."""
    if not ctx.is_distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item() / ctx.world_size


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around model (already on ctx.device); the model itself when running alone."""
    if not ctx.is_distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def wrap_fsdp2(model: nn.Module, ctx: DistContext, mixed_bf16: bool = False, reshard: bool = True,
               checkpointing: bool = True) -> nn.Module:
    """Shard parameters, gradients and optimizer state across ranks with FSDP2: each block, then the root.

    mixed_bf16 computes in bfloat16 and reduces gradients in float32; reshard frees gathered weights after
    forward (less memory, one more all-gather in backward); checkpointing recomputes block activations.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mesh = init_device_mesh(torch.device(ctx.device).type, (ctx.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_bf16 else None
    kwargs = {"mesh": mesh, "reshard_after_forward": reshard}
    if policy is not None:
        kwargs["mp_policy"] = policy
    model.grad_checkpointing = checkpointing
    for block in model.transformer.h:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)  # the root holds the embeddings, final norm and (tied) head
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The GPT inside a DDP wrapper (FSDP2 shards in place, so its model is the GPT itself)."""
    return getattr(model, "module", model)


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def maybe_no_sync(model: nn.Module, is_last_micro: bool):
    """Context for one micro-batch's backward: skip the gradient all-reduce on all but the last micro-batch.

    DDP: model.no_sync(); FSDP2: set_requires_gradient_sync; a plain model: nothing to skip.
    """
    if is_fsdp(model):
        model.set_requires_gradient_sync(is_last_micro)
        return contextlib.nullcontext()
    if hasattr(model, "no_sync") and not is_last_micro:
        return model.no_sync()
    return contextlib.nullcontext()


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain, unsharded CPU tensors under the GPT's own names; call on every rank (FSDP2 gathers collectively).

    For FSDP2 only rank 0 receives the tensors (the others get {}), so a single process can load what it writes.
    """
    if not is_fsdp(model):
        return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load full (single-process) tensors into a plain, DDP or FSDP2 model; FSDP2 reads them from rank 0 only.

    A tied head stored once (as checkpoint.py writes it, under transformer.wte.weight) is filled in.
    """
    if "lm_head.weight" not in state and "transformer.wte.weight" in state and unwrap(model).config.tie_weights:
        state = {**state, "lm_head.weight": state["transformer.wte.weight"]}
    if not is_fsdp(model):
        unwrap(model).load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state, options=options)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() as one process holds it (whole CPU tensors); call on every rank.

    Under FSDP2 each rank's state holds DTensor shards; they are gathered one by one (a collective per tensor),
    so the file a sharded run writes is the file a single process writes.
    """
    state = optimizer.state_dict()
    if not is_fsdp(model):
        return state
    from torch.distributed.tensor import DTensor

    def whole(v):
        return v.full_tensor().cpu() if isinstance(v, DTensor) else v
    tensors = state["state"]  # sorted: every rank gathers in the same order, whatever order its dict holds
    return {"state": {i: {k: whole(tensors[i][k]) for k in sorted(tensors[i])} for i in sorted(tensors)},
            "param_groups": state["param_groups"]}


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a single-process optimizer.state_dict() into the optimizer of a plain, DDP or FSDP2 model (FSDP2: every
    rank passes the whole state and keeps the shard its parameter has)."""
    if is_fsdp(model):
        from torch.distributed.tensor import distribute_tensor
        params = [p for group in optimizer.param_groups for p in group["params"]]

        def shard(v, p):
            if not v.dim():
                return v  # Adam's step count
            return distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)  # local cut
        state = {"state": {i: {k: shard(v, params[i]) for k, v in s.items()} for i, s in state["state"].items()},
                 "param_groups": state["param_groups"]}
    optimizer.load_state_dict(state)


def as_float(value) -> float:
    """A scalar tensor as a Python float; FSDP2's gradient norm is a DTensor, gathered first."""
    return float(value.full_tensor() if hasattr(value, "full_tensor") else value)


def wants_launch(args) -> bool:
    """True when the user asked for several processes and this process is not already one of them."""
    return (args.nproc > 1 or args.nnodes > 1) and not under_torchrun()


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise InputError when another process already listens on the rendezvous port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise InputError(f"port {port} on {host} is in use ({e.strerror}); pass --master-port with a free "
                             "port or stop the other run") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def torchrun_command(args: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str = "127.0.0.1", master_port: int = DEFAULT_PORT,
                     module: str = "scratchllm") -> list[str]:
    """The torchrun command line: python -m torch.distributed.run ... -m <module> <args>."""
    if nproc < 1 or nnodes < 1 or not 0 <= node_rank < nnodes:
        raise InputError(f"need nproc >= 1, nnodes >= 1 and 0 <= node_rank < nnodes; got {nproc}, {nnodes}, "
                         f"{node_rank}")
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
            f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={master_port}",
            "-m", module, *args]


def launch(args: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0, master_addr: str = "127.0.0.1",
           master_port: int = DEFAULT_PORT, module: str = "scratchllm") -> int:
    """Run `torchrun ... -m scratchllm <args>` (e.g. args = ["train", "--preset", "tiny"]) and return its exit code.

    The node that hosts the rendezvous (node_rank 0) first checks that master_port is free.
    """
    cmd = torchrun_command(args, nproc, nnodes, node_rank, master_addr, master_port, module)
    if node_rank == 0:
        check_port_free(master_port, "0.0.0.0" if nnodes > 1 else master_addr)
    return subprocess.run(cmd).returncode
