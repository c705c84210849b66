"""A training session: everything the loop holds, set up from a config (or a Start) and restored from checkpoints.

Setting a run up is its own concern: pretraining's corpus -> tokenizer -> token windows, or finetuning's `Start`
(a tokenizer, weights and a batch source built elsewhere); the model (with DDP/FSDP2 and compiled regions), the
optimizer, the fixed evaluation batches and the probe; and, when resuming, the trainer state restored from
checkpoints/latest. The loop itself lives in train.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scratchllm import distributed, metrics
from scratchllm.checkpoint import LATEST, TRAINER_JSON, TrainerState, load_trainer_checkpoint, trainer_checkpoint_dir
from scratchllm.config import InputError, RunConfig, TrainConfig, check_resume_config, validate
from scratchllm.data import BatchStream, load_corpus, load_split, prepare, split_corpus
from scratchllm.device import autocast, resolve_device, resolve_dtype
from scratchllm.evaluate import token_byte_lengths
from scratchllm.model import GPT
from scratchllm.optim import make_optimizer
from scratchllm.probe import choose_probe_text, probe_ids
from scratchllm.runfolder import CONFIG, TOKENIZER, RunWriter, ensure_writable, read_json
from scratchllm.tokenizer import Tokenizer, build_tokenizer, load_tokenizer


@dataclass
class Start:
    """What a run starts from when it does not pretrain from scratch on a corpus (finetuning): a tokenizer, the
    weights to load, the batch source, the fixed evaluation batches and the probe. The loop is the same."""

    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]
    """A state dict for a GPT of cfg.model's shape with the tokenizer's vocab_size."""
    batches: object
    """next() -> (x, y) with y = -1 on untrained targets; get_state()/set_state() for exact resume."""
    eval_sets: dict[str, list]
    """"train" and "val": lists of (x, y) batches every evaluation scores."""
    meta: dict
    """{"corpus": name, "splits": {"train"|"val": {"tokens", "bytes"}}} for the summary."""
    probe_text: str


@dataclass
class Session:
    """Everything a running loop holds; `state` is what trainer_state.json saves."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    dtype: torch.dtype
    tokenizer: Tokenizer
    meta: dict
    model: GPT
    """The model itself (sharded in place under FSDP2): saved, evaluated and sampled."""
    step_model: torch.nn.Module
    """What the step calls: the model, or DDP around it; compiled regions inside when train.compile."""
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    batches: object
    """The training batch source (Start.batches): next() -> (x, y); get_state()/set_state() are its position."""
    eval_sets: dict[str, list]
    """Per split, the fixed (x, y) windows every evaluation scores."""
    byte_lengths: torch.Tensor
    writer: RunWriter
    probe_text: str
    probe: list[int]
    peak_flops: float
    state: TrainerState = field(default_factory=TrainerState)
    history: list[dict] = field(default_factory=list)
    """The logged train records the live doctor judges (rolled back with the weights)."""
    ctx: distributed.DistContext = field(default_factory=distributed.DistContext)

    def autocast(self):
        return autocast(self.device, self.dtype)


def build_model(cfg: RunConfig, device: torch.device) -> GPT:
    """A freshly initialised GPT (seeded) on `device`, with activation checkpointing as configured."""
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model).to(device)
    model.grad_checkpointing = cfg.train.grad_checkpointing
    return model


def wrap_model(model: GPT, cfg: RunConfig, ctx: distributed.DistContext) -> torch.nn.Module:
    """What the step calls: DDP around the model (FSDP2 shards it in place instead); with train.compile, its block
    and head are compiled first (GPT.compile_regions). The raw model stays for saving, evaluating and sampling."""
    if cfg.train.compile:
        model.compile_regions()
    return model if distributed.is_fsdp(model) else distributed.wrap_ddp(model, ctx)


def eval_windows(data: np.ndarray, t: TrainConfig, block_size: int, device) -> list:
    """eval_batches fixed random (x, y) batches of `data`: the same windows at every evaluation."""
    stream = BatchStream(data, t.batch_size, block_size, seed=t.seed + 10_000, device=device)
    return [stream.next() for _ in range(t.eval_batches)]


def _prepare_data(cfg: RunConfig, corpus, tokenizer: Tokenizer, run_dir: Path, ctx, progress: bool):
    """Encode the splits once (rank 0; the others then find them cached) and load them."""
    if not ctx.is_main:
        distributed.barrier(ctx)
    meta = prepare(corpus, tokenizer, run_dir / "data", cfg.data.val_fraction, cfg.model.block_size, progress)
    if ctx.is_main:
        distributed.barrier(ctx)
    return meta, {name: load_split(run_dir / "data", name) for name in ("train", "val")}


def setup(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, start: Start | None = None) -> Session:
    """Check inputs, build tokenizer, data, model and optimizer (or take them from `start`); restore
    checkpoints/latest when resuming."""
    validate(cfg)
    ensure_writable(run_dir)
    ctx = distributed.setup(str(resolve_device(cfg.train.device)))  # cuda -> cuda:LOCAL_RANK under torchrun
    device, progress = torch.device(ctx.device), progress and ctx.is_main
    dtype = resolve_dtype(cfg.train.dtype, device)
    start = start or _pretraining_start(cfg, run_dir, resume, ctx, device, progress)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=start.tokenizer.vocab_size),
                              tokenizer=dataclasses.replace(cfg.tokenizer, vocab_size=start.tokenizer.vocab_size))
    if resume:
        check_resume(run_dir, cfg, ctx.world_size)
    model = build_model(cfg, device)
    if start.weights:
        model.load_state_dict(start.weights)
    if ctx.is_distributed and cfg.train.parallel == "fsdp":  # shards the model in place, before the optimizer
        model = distributed.wrap_fsdp2(model, ctx, mixed_bf16=dtype == torch.bfloat16,
                                       checkpointing=cfg.train.grad_checkpointing)
    tok, t = start.tokenizer, cfg.train
    s = Session(cfg, run_dir, device, dtype, tok, start.meta, model, wrap_model(model, cfg, ctx),
                make_optimizer(model, t, device), torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
                start.batches, start.eval_sets, token_byte_lengths(tok),
                RunWriter(run_dir, enabled=ctx.is_main, fresh=not resume), start.probe_text,
                probe_ids(tok, start.probe_text, cfg.model.block_size), metrics.matmul_peak_flops(dtype, device),
                ctx=ctx)
    if resume:
        s.state = restore_checkpoint(s, LATEST)
    return s


def _pretraining_start(cfg: RunConfig, run_dir: Path, resume: bool, ctx, device, progress: bool) -> Start:
    """Pretraining's Start: the corpus split, its tokenizer (trained, or the run's own when resuming), token
    windows in epochs, fixed random evaluation windows and a probe from the validation text."""
    corpus = load_corpus(cfg.data.corpus).head(cfg.data.prefix_chars)
    texts = split_corpus(corpus, cfg.data.val_fraction)
    tokenizer = (load_tokenizer(run_dir / TOKENIZER) if resume
                 else build_tokenizer(cfg.tokenizer, "\n\n".join(texts["train"]), progress))
    meta, data = _prepare_data(cfg, corpus, tokenizer, run_dir, ctx, progress)
    T, t = cfg.model.block_size, cfg.train
    return Start(tokenizer, {}, BatchStream(data["train"], t.batch_size, T, seed=t.seed + 1, device=device),
                 {name: eval_windows(split, t, T, device) for name, split in data.items()}, meta,
                 t.probe_text or choose_probe_text("\n".join(texts["val"]), tokenizer, T))


def check_resume(run_dir: Path, cfg: RunConfig, world_size: int) -> None:
    """The saved config.json must match cfg (config.check_resume_config), the world size as saved with
    checkpoints/latest (1 for checkpoints that predate the field)."""
    saved = read_json(run_dir / CONFIG)
    if not isinstance(saved, dict):
        raise InputError(f"cannot resume: {run_dir / CONFIG} is missing or unreadable")
    where = trainer_checkpoint_dir(run_dir, LATEST)
    state = read_json(where / TRAINER_JSON) if where else None
    saved_world = state.get("world_size", 1) if isinstance(state, dict) else 1
    try:
        check_resume_config(saved, cfg, saved_world, world_size)
    except InputError as e:
        raise InputError(f"{run_dir}: {e}") from None


def main_copy(s: Session) -> GPT | None:
    """The model as one process holds it, on rank 0 (None on the others) for sampling, attention and checkpoints:
    the model itself, or under FSDP2 a whole copy gathered from the shards (so every rank must call this)."""
    if not distributed.is_fsdp(s.model):
        return s.model if s.ctx.is_main else None
    state = distributed.full_state_dict(s.model)
    if not s.ctx.is_main:
        return None
    copy = GPT(s.cfg.model)
    distributed.load_full_state_dict(copy, state)
    return copy.to(s.device)


def restore_checkpoint(s: Session, name: str) -> TrainerState:
    """Load checkpoints/NAME into the plain, DDP or FSDP2 model, its optimizer, the RNGs and the batch position
    (each rank reads the files); returns the saved trainer state."""
    ckpt = load_trainer_checkpoint(s.run_dir, name)
    distributed.load_full_state_dict(s.model, ckpt.model.state_dict())
    distributed.load_full_optimizer_state(s.model, s.optimizer, ckpt.optimizer)
    torch.set_rng_state(ckpt.rng["torch"])
    if "cuda" in ckpt.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(ckpt.rng["cuda"])
    s.batches.set_state(ckpt.rng["batches"])
    return ckpt.state
