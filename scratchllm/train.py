"""The trainer: a RunConfig in, a run folder out (config, tokenizer, metrics, samples, attention, checkpoints, summary).

Small functions in the order a step needs them: config and presets -> device and precision -> model, optimizer, LR
schedule -> micro-batch accumulation and the optimizer step -> evaluation (val loss, perplexity, bits per byte) ->
checkpoints (exact resume, rollback on divergence) -> the loop. It owns no model code (model.py), no data format
(data.py) and no diagnosis (doctor.py decides divergence; this module only acts on it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from tqdm import tqdm

from scratchllm import distributed, metrics
from scratchllm.checkpoint import CheckpointError, load_model, save_model
from scratchllm.config import InputError, apply_overrides, from_dict, load_yaml, to_dict
from scratchllm.data import BatchStream, load_corpus, load_split, prepare, split_corpus
from scratchllm.doctor import check_step
from scratchllm.generate import generate_text
from scratchllm.model import GPT, GPTConfig
from scratchllm.runfolder import ATTENTION_ARRAYS, RunWriter
from scratchllm.tokenizer import CharTokenizer, Tokenizer, load_tokenizer, train_bpe

PRESETS = Path(__file__).resolve().parent / "configs"  # shipped in the package; ./configs links here
MAX_ROLLBACKS = 3
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ----------------------------------------------------------------------------- configuration


@dataclass
class DataConfig:
    corpus: str = "shakespeare"
    """Built-in corpus name ("shakespeare"), or a text file, folder or glob."""
    val_fraction: float = 0.1
    """Share of the corpus held out for validation (whole documents from the end, else the last part of the text)."""


@dataclass
class TokenizerConfig:
    type: str = "bpe"
    """"bpe" (byte-level BPE trained on the train split) or "char" (one id per character of the train split)."""
    vocab_size: int = 1024
    """BPE vocabulary size including <|endoftext|> (ignored for "char", whose size is the character count)."""
    path: str | None = None
    """Use this saved tokenizer.json instead of training one."""


@dataclass
class TrainConfig:
    max_steps: int = 2000
    """Stop after this many optimizer steps (0 = no step limit; then max_minutes must be set)."""
    max_minutes: float = 10.0
    """Stop after this much wall-clock time (0 = no limit). The LR schedule follows whichever limit ends first."""
    batch_size: int = 12
    """Sequences per micro-batch."""
    grad_accum: int = 1
    """Micro-batches whose gradients are summed into one optimizer step (effective batch = batch_size x this)."""
    lr: float = 1e-3
    """Peak AdamW learning rate, reached after warm-up."""
    min_lr: float = 1e-4
    """Floor the cosine decay ends at."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr over this many steps."""
    weight_decay: float = 0.1
    """AdamW weight decay, on matrices and embeddings only (not on norms or biases)."""
    beta1: float = 0.9
    """AdamW first-moment decay."""
    beta2: float = 0.99
    """AdamW second-moment decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off; the norm is logged either way)."""
    dtype: str = "auto"
    """"float32", "bfloat16" (autocast), "float16" (autocast + grad scaler, CUDA only) or "auto"."""
    device: str = "auto"
    """"auto" (CUDA, then Apple MPS, then CPU), or a torch device string such as "cpu" or "cuda:0"."""
    compile: bool = False
    """torch.compile the block and the head of training steps (GPT.compile_regions): on 2 CPU cores it pays for its
    ~25 s of compilation after a few hundred steps of the speedrun model."""
    parallel: str = "ddp"
    """Under torchrun: "ddp" (every rank holds the whole model) or "fsdp" (FSDP2 shards parameters, gradients and
    optimizer state across ranks, for models one device cannot hold; bfloat16 dtype = bf16 mixed precision)."""
    grad_checkpointing: bool = False
    """Recompute each block's activations in backward: less memory, about a third more compute."""
    eval_every: int = 250
    """Evaluate (val loss, perplexity, bits per byte) every this many steps, and at the end."""
    eval_batches: int = 20
    """Micro-batches per split in each evaluation (the same batches every time)."""
    log_every: int = 10
    """Write a train record to metrics.jsonl every this many steps."""
    sample_every: int = 0
    """Write a sample to samples.jsonl every this many steps (0 = at each evaluation); always at the end."""
    sample_tokens: int = 200
    """Tokens generated per sample."""
    sample_prompt: str = "\n"
    """Prompt the samples continue."""
    checkpoint_every: int = 500
    """Save checkpoints/latest every this many steps (also at the end and on Ctrl-C)."""
    seed: int = 1337
    """Seed of initialisation, batch sampling, dropout and samples."""
    record_attention_every: int = 0
    """Record the attention of the probe text every this many steps (0 = only at the start and the end)."""
    probe_text: str = "ROMEO:\nBut soft, what light through yonder window breaks?"
    """Text whose attention maps are recorded (cut to block_size tokens)."""


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved as the run folder's config.json."""

    model: GPTConfig = field(default_factory=GPTConfig)
    """Model shape (vocab_size follows the tokenizer)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which text to train on and how to split it."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Which tokenizer to train or load."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimizer, schedule, precision, evaluation and checkpointing."""


def validate(cfg: RunConfig) -> RunConfig:
    """Refuse settings that cannot run, with one line naming the key; returns cfg."""
    t = cfg.train
    if t.max_steps <= 0 and t.max_minutes <= 0:
        raise InputError("train.max_steps or train.max_minutes must be set (> 0) so that the run ends")
    for name in ("batch_size", "grad_accum", "eval_every", "eval_batches", "log_every", "checkpoint_every"):
        if getattr(t, name) < 1:
            raise InputError(f"train.{name} must be >= 1; got {getattr(t, name)}")
    if t.dtype not in (*DTYPES, "auto"):
        raise InputError(f"train.dtype must be one of auto, {', '.join(DTYPES)}; got {t.dtype!r}")
    if t.parallel not in ("ddp", "fsdp"):
        raise InputError(f"train.parallel must be ddp or fsdp; got {t.parallel!r}")
    if cfg.tokenizer.type not in ("bpe", "char"):
        raise InputError(f"tokenizer.type must be bpe or char; got {cfg.tokenizer.type!r}")
    if not 0 < cfg.data.val_fraction < 1:
        raise InputError(f"data.val_fraction must be in (0, 1); got {cfg.data.val_fraction}")
    if t.lr <= 0 or t.min_lr < 0:
        raise InputError("train.lr must be > 0 and train.min_lr >= 0")
    return cfg


def load_config(path_or_preset: str | None = None, overrides: list[str] = ()) -> RunConfig:
    """A preset name (configs/NAME.yaml) or a YAML path, then `key=value` overrides; validated."""
    cfg = RunConfig()
    if path_or_preset:
        path = Path(path_or_preset)
        if not path.suffix:
            path = PRESETS / f"{path_or_preset}.yaml"
            if not path.is_file():
                names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
                raise InputError(f"unknown preset {path_or_preset!r}; choose one of {names}")
        cfg = from_dict(RunConfig, load_yaml(path))
    return validate(apply_overrides(cfg, list(overrides)))


def load_preset(name: str) -> RunConfig:
    """The RunConfig of configs/NAME.yaml (tiny, shakespeare-char, shakespeare-bpe, gpt2-124m)."""
    return load_config(name)


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ. Example: {"a": {"b": 1}} vs {"a": {"b": 2}} -> ["a.b"]."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


# ----------------------------------------------------------------------------- device and precision


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if present, else mps, else cpu; anything else as torch parses it."""
    if name != "auto":
        try:
            return torch.device(name)
        except RuntimeError:
            raise InputError(f"train.device: not a device: {name!r}") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bf16 on CUDA that has it (else fp16), float32 elsewhere (bf16 is slower for small CPU models)."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "float16" and device.type != "cuda":
        raise InputError(f"train.dtype=float16 needs CUDA (its grad scaler is CUDA-only); on {device.type} use "
                         "bfloat16 or float32")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for the forward pass; a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------- model, optimizer, schedule


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


def make_optimizer(model: torch.nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on >= 2-D parameters only; the fused kernel where this build has one."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), foreach=device.type != "cpu")


def progress_of(t: TrainConfig, step: int, elapsed_s: float) -> float:
    """How far the run is, 0..1: the larger of steps done / max_steps and time spent / max_minutes."""
    by_steps = step / t.max_steps if t.max_steps > 0 else 0.0
    by_time = elapsed_s / (60.0 * t.max_minutes) if t.max_minutes > 0 else 0.0
    return min(1.0, max(by_steps, by_time))


def lr_at(t: TrainConfig, step: int, elapsed_s: float = 0.0) -> float:
    """Linear warm-up over warmup_steps, then cosine from lr down to min_lr as progress goes 0 -> 1.
    Example (lr 1, min_lr 0.1, warmup 10, max_steps 100): step 0 -> 0.1, step 10 -> ~1, step 100 -> 0.1."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    start = progress_of(t, t.warmup_steps, 0.0)
    p = min(1.0, max(0.0, (progress_of(t, step, elapsed_s) - start) / max(1.0 - start, 1e-9)))
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * p)) * (t.lr - t.min_lr)


# ----------------------------------------------------------------------------- one optimizer step


def accumulate_grads(model: torch.nn.Module, micro_batches: list, ctx_factory, scaler) -> float:
    """Forward + backward over each (x, y) micro-batch, each loss divided by their count, so the summed gradients
    equal one batch of them all. Returns the mean loss. (Distributed training syncs gradients on the last one.)"""
    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        with distributed.maybe_no_sync(model, is_last_micro=i == len(micro_batches) - 1):
            with ctx_factory():
                _, loss = model(x, y)
            loss = loss / len(micro_batches)
            scaler.scale(loss).backward()
        total += loss.detach()
    return float(total)


def train_step(model: torch.nn.Module, optimizer, micro_batches: list, t: TrainConfig, lr: float, ctx_factory,
               scaler) -> tuple[float, float]:
    """One optimizer step at learning rate `lr`: accumulate, unscale, clip, step. Returns (loss, grad norm)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = accumulate_grads(model, micro_batches, ctx_factory, scaler)
    scaler.unscale_(optimizer)
    clip = t.grad_clip if t.grad_clip > 0 else math.inf
    norm = distributed.as_float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    scaler.step(optimizer)
    scaler.update()
    return loss, norm


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def mean_loss(model: torch.nn.Module, data: np.ndarray, t: TrainConfig, block_size: int, ctx_factory,
              device: torch.device) -> float:
    """Mean cross-entropy (nats per token) over eval_batches fixed random windows of `data`."""
    stream = BatchStream(data, t.batch_size, block_size, seed=t.seed + 10_000, device=device)
    was_training = model.training
    model.eval()
    losses = []
    for _ in range(t.eval_batches):
        x, y = stream.next()
        with ctx_factory():
            losses.append(model(x, y)[1].float().item())
    model.train(was_training)
    return sum(losses) / len(losses)


def evaluate(model, splits: dict, meta: dict, t: TrainConfig, block_size: int, ctx_factory, device, step: int) -> dict:
    """The eval record: train and val loss, val perplexity, bits per byte of both splits."""
    loss = {name: mean_loss(model, data, t, block_size, ctx_factory, device) for name, data in splits.items()}
    bpb = {name: metrics.bits_per_byte(loss[name], meta["splits"][name]["tokens"], meta["splits"][name]["bytes"])
           for name in splits}
    return {"kind": "eval", "step": step, "train_loss": loss["train"], "val_loss": loss["val"],
            "val_ppl": metrics.perplexity(loss["val"]), "val_bpb": bpb["val"], "train_bpb": bpb["train"]}


# ----------------------------------------------------------------------------- checkpoints


def _rng_tensors(streams: dict) -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state(), "rng.batches": streams["train"].get_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors


def optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An AdamW state dict split into tensors ("state.<param>.<name>") and its JSON-able param groups."""
    tensors = {f"state.{i}.{k}": v.detach().cpu().contiguous() for i, s in state["state"].items()
               for k, v in s.items()}
    return tensors, state["param_groups"]


def optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    """The inverse of optimizer_tensors: the state dict optimizer.load_state_dict takes."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, model: GPT, tokenizer: Tokenizer, optim_state: dict, streams: dict, state: dict,
                    world_size: int = 1) -> None:
    """Write checkpoints/latest whole or not at all: staged in a sibling folder, then swapped in by renames.
    model and optim_state are single-process ones (for FSDP2 gathered first), so any world size can resume."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    tensors, groups = optimizer_tensors(optim_state)
    (stage / "trainer_state.safetensors").write_bytes(save_safetensors({**tensors, **_rng_tensors(streams)}))
    record = {**state, "world_size": world_size, "param_groups": groups}
    (stage / "trainer_state.json").write_text(json.dumps(record, indent=2) + "\n")
    save_model(stage, model, tokenizer, extra={"step": state["step"]})
    latest, old = root / "latest", root / ".previous"
    shutil.rmtree(old, ignore_errors=True)
    if latest.exists():
        latest.rename(old)
    stage.rename(latest)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path:
    latest = run_dir / "checkpoints" / "latest"
    if not latest.is_dir() and (run_dir / "checkpoints" / ".previous").is_dir():
        latest = run_dir / "checkpoints" / ".previous"  # a swap cut off between its two renames
    return latest


def read_trainer_state(latest: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """trainer_state.json and trainer_state.safetensors of a checkpoint folder."""
    try:
        state = json.loads((latest / "trainer_state.json").read_text())
        tensors = load_safetensors((latest / "trainer_state.safetensors").read_bytes())
    except (OSError, ValueError, Exception) as e:
        raise CheckpointError(f"{latest}: unreadable trainer state: {str(e).splitlines()[0]}") from None
    return state, tensors


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer, streams: dict) -> dict:
    """Restore weights, optimizer, RNGs and the batch position from checkpoints/latest into a plain, DDP or FSDP2
    model (each rank reads the files); returns trainer state."""
    latest = latest_checkpoint(run_dir)
    saved, _, _ = load_model(latest, device="cpu")
    state, tensors = read_trainer_state(latest)
    state.pop("world_size", None)
    distributed.load_full_state_dict(model, saved.state_dict())
    distributed.load_full_optimizer_state(model, optimizer, optimizer_state(tensors, state.pop("param_groups")))
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    streams["train"].set_state(tensors["rng.batches"])
    return state


# ----------------------------------------------------------------------------- the run folder (rank 0 writes)


def probe_ids(tokenizer: Tokenizer, text: str, block_size: int) -> list[int]:
    """The probe text's ids cut to block_size; characters a char tokenizer lacks are dropped."""
    if isinstance(tokenizer, CharTokenizer):
        text = "".join(ch for ch in text if ch in tokenizer.stoi)
    try:
        return tokenizer.encode(text)[:block_size]
    except InputError:
        return []


def write_probe(writer: RunWriter, tokenizer: Tokenizer, ids: list[int], text: str) -> None:
    writer.probe(text, ids, [tokenizer.token_bytes(i).decode("utf-8", errors="replace") for i in ids])


def record_attention(writer: RunWriter, model: GPT | None, ids: list[int], step: int, device: torch.device) -> None:
    """attention/step_XXXXXX.npz: att (L, H, T, T), q, k, v (L, H, T, hd) as float16, from model.inspect."""
    if not ids or model is None or not writer.enabled:
        return
    layers = model.inspect(torch.tensor([ids], device=device))
    writer.attention(step, {name: torch.stack([layer[name][0] for layer in layers]).float().cpu().numpy()
                            for name in ATTENTION_ARRAYS})


# ----------------------------------------------------------------------------- setting a run up


def check_writable(run_dir: Path) -> None:
    """Fail before any work when the run folder cannot be created or written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise InputError(f"run folder not writable: {run_dir} ({e.strerror or e})") from None


def make_tokenizer(cfg: RunConfig, train_text: str, progress: bool) -> Tokenizer:
    """The configured tokenizer: loaded from tokenizer.path, else trained on the train split."""
    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path)
    if cfg.tokenizer.type == "char":
        return CharTokenizer.train(train_text)
    return train_bpe(train_text, cfg.tokenizer.vocab_size, progress=progress)


def resolve(cfg: RunConfig, tokenizer: Tokenizer) -> RunConfig:
    """cfg with model.vocab_size and tokenizer.vocab_size set from the tokenizer actually used."""
    model = dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size)
    tok = dataclasses.replace(cfg.tokenizer, vocab_size=tokenizer.vocab_size)
    return dataclasses.replace(cfg, model=model, tokenizer=tok)


def check_resume_config(run_dir: Path, cfg: RunConfig, world_size: int = 1) -> None:
    """Resuming must use the saved config: otherwise an InputError listing the keys that differ.

    Only how the work is spread may change: train.parallel, and the number of processes as long as
    grad_accum x processes (so the global batch) stays: 2 ranks x grad_accum 2 resume as 1 process x grad_accum 4.
    """
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"cannot resume: {run_dir / 'config.json'} is missing or unreadable") from None
    try:
        saved_world = json.loads((latest_checkpoint(run_dir) / "trainer_state.json").read_text())["world_size"]
    except (OSError, ValueError, KeyError):
        saved_world = 1  # no checkpoint (load_checkpoint will say so) or one written before world_size was saved
    differ = [k for k in config_diff(saved, to_dict(cfg)) if k not in ("train.parallel", "train.grad_accum")]
    saved_accum = saved.get("train", {}).get("grad_accum", 1)
    if saved_accum * saved_world != cfg.train.grad_accum * world_size:
        differ.append(f"train.grad_accum x processes (was {saved_accum} x {saved_world}, now "
                      f"{cfg.train.grad_accum} x {world_size})")
    if differ:
        raise InputError(f"cannot resume {run_dir} with a different config; keys that differ: {', '.join(differ)}")


def batch_streams(data: dict, cfg: RunConfig, device: torch.device) -> dict[str, BatchStream]:
    """The training batch stream; under torchrun every rank draws the same one and keeps its share (run_step),
    so N ranks x grad_accum micro-batches see exactly what one process sees with N x grad_accum."""
    t, T = cfg.train, cfg.model.block_size
    return {"train": BatchStream(data["train"], t.batch_size, T, seed=t.seed + 1, device=device)}


@dataclass
class Session:
    """Everything a running training loop holds; `state` is what trainer_state.json saves."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    dtype: torch.dtype
    tokenizer: Tokenizer
    meta: dict
    data: dict
    model: GPT
    step_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    streams: dict
    writer: RunWriter
    probe: list[int]
    peak_flops: float
    state: dict = field(default_factory=lambda: {"step": 0, "elapsed_s": 0.0, "tokens": 0, "lr_scale": 1.0,
                                                  "rollbacks": 0, "best_val_bpb": None, "last_val_bpb": None,
                                                  "last_eval_step": None, "train_s": 0.0})
    history: list = field(default_factory=list)
    ctx: distributed.DistContext = field(default_factory=distributed.DistContext)
    """This process's place under torchrun (rank 0 of 1 when alone)."""

    def autocast(self):
        return autocast(self.device, self.dtype)


def _load_run_tokenizer(run_dir: Path, cfg: RunConfig, texts: dict, resume: bool, progress: bool) -> Tokenizer:
    if resume:
        if not (run_dir / "tokenizer.json").is_file():
            raise InputError(f"cannot resume: {run_dir} has no tokenizer.json (was it written by scratchllm train?)")
        return load_tokenizer(run_dir / "tokenizer.json")
    return make_tokenizer(cfg, "\n\n".join(texts["train"]), progress)


def setup(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> Session:
    """Check inputs, build tokenizer, data, model and optimizer; restore a checkpoint when resuming."""
    validate(cfg)
    check_writable(run_dir)
    ctx = distributed.setup(str(resolve_device(cfg.train.device)))  # cuda -> cuda:LOCAL_RANK under torchrun
    device = torch.device(ctx.device)
    progress = progress and ctx.is_main
    dtype = resolve_dtype(cfg.train.dtype, device)
    corpus = load_corpus(cfg.data.corpus)
    tokenizer = _load_run_tokenizer(run_dir, cfg, split_corpus(corpus, cfg.data.val_fraction), resume, progress)
    cfg = resolve(cfg, tokenizer)
    if resume:
        check_resume_config(run_dir, cfg, ctx.world_size)
    if not ctx.is_main:
        distributed.barrier(ctx)  # rank 0 encodes the corpus once; the others then find it cached
    meta = prepare(corpus, tokenizer, run_dir / "data", cfg.data.val_fraction, cfg.model.block_size, progress)
    if ctx.is_main:
        distributed.barrier(ctx)
    data = {name: load_split(run_dir / "data", name) for name in ("train", "val")}
    model = build_model(cfg, device)
    if ctx.is_distributed and cfg.train.parallel == "fsdp":  # shards the model in place, before the optimizer
        model = distributed.wrap_fsdp2(model, ctx, mixed_bf16=dtype == torch.bfloat16,
                                       checkpointing=cfg.train.grad_checkpointing)
    optimizer = make_optimizer(model, cfg.train, device)
    writer = RunWriter(run_dir, enabled=ctx.is_main, fresh=not resume)
    step_model = wrap_model(model, cfg, ctx)
    session = Session(cfg, run_dir, device, dtype, tokenizer, meta, data, model, step_model, optimizer,
                      torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
                      batch_streams(data, cfg, device), writer, probe_ids(tokenizer, cfg.train.probe_text,
                                                                          cfg.model.block_size),
                      metrics.matmul_peak_flops(dtype if dtype != torch.float32 else torch.float32, device),
                      ctx=ctx)
    if resume:
        session.state.update(load_checkpoint(run_dir, model, optimizer, session.streams))
    return session


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


def write_run_files(s: Session) -> None:
    s.writer.write_json("config.json", to_dict(s.cfg))
    if s.writer.enabled:
        s.tokenizer.save(s.run_dir / "tokenizer.json")
    write_probe(s.writer, s.tokenizer, s.probe, s.cfg.train.probe_text)


# ----------------------------------------------------------------------------- the loop


def sample(s: Session, model: GPT | None, step: int) -> None:
    """Continue the sample prompt (or, when the tokenizer cannot encode it, the first training token) to samples;
    model is main_copy's (None off rank 0)."""
    if model is None:
        return
    t = s.cfg.train
    prompt = t.sample_prompt
    try:
        s.tokenizer.encode(prompt)
    except InputError:
        prompt = s.tokenizer.decode([int(s.data["train"][0])])
    text = generate_text(model, s.tokenizer, prompt, t.sample_tokens, temperature=0.8, top_k=200, seed=t.seed)
    s.writer.append("samples.jsonl", {"step": step, "prompt": prompt, "text": text})


def run_eval(s: Session) -> dict:
    record = evaluate(s.model, s.data, s.meta, s.cfg.train, s.cfg.model.block_size, s.autocast, s.device,
                      s.state["step"])
    s.writer.metric(record)
    s.state["last_val_bpb"], s.state["last_eval_step"] = record["val_bpb"], record["step"]
    best = s.state["best_val_bpb"]
    s.state["best_val_bpb"] = record["val_bpb"] if best is None else min(best, record["val_bpb"])
    return record


def checkpoint(s: Session, model: GPT | None) -> None:
    """Save checkpoints/latest from rank 0; model is main_copy's, the optimizer state is gathered here likewise."""
    optim_state = distributed.full_optimizer_state(s.model, s.optimizer)
    if s.writer.enabled:
        save_checkpoint(s.run_dir, model, s.tokenizer, optim_state, s.streams, s.state, s.ctx.world_size)
    distributed.barrier(s.ctx)


def run_step(s: Session) -> dict:
    """One optimizer step on the next micro-batches; returns the train record (throughput filled in by log_step)."""
    t, st = s.cfg.train, s.state
    lr = lr_at(t, st["step"], st["elapsed_s"]) * st["lr_scale"]
    world = s.ctx.world_size
    micro = distributed.own_share([s.streams["train"].next() for _ in range(t.grad_accum * world)], s.ctx)
    loss, norm = train_step(s.step_model, s.optimizer, micro, t, lr, s.autocast, s.scaler)
    loss = distributed.all_mean(loss, s.ctx)
    st["step"] += 1
    st["tokens"] += t.batch_size * t.grad_accum * world * s.cfg.model.block_size
    return {"kind": "train", "step": st["step"], "loss": loss, "lr": lr, "grad_norm": norm}


def log_step(s: Session, record: dict, window: dict) -> None:
    """Fill in tokens/s, MFU, memory and time over the steps since the last log; append to metrics.jsonl."""
    st = s.state
    seconds = max(st["train_s"] - window["train_s"], 1e-9)
    tokens_per_s = (st["tokens"] - window["tokens"]) / seconds
    record.update(tokens_per_s=tokens_per_s, mem_mb=metrics.peak_memory_mb(s.device), elapsed_s=st["elapsed_s"],
                  tokens=st["tokens"], mfu=metrics.mfu(s.model.flops_per_token(), tokens_per_s, s.peak_flops))
    window.update(train_s=st["train_s"], tokens=st["tokens"])
    s.writer.metric(record)


def rollback(s: Session, finding) -> bool:
    """Divergence: reload the last good checkpoint and halve the LR; False once MAX_ROLLBACKS are spent."""
    st = s.state
    if st["rollbacks"] >= MAX_ROLLBACKS:
        s.writer.event(st["step"], "stop", f"diverged after {MAX_ROLLBACKS} rollbacks: {finding.evidence}. "
                                           f"Fix: {finding.fix}")
        st["status"], st["advice"] = "diverged", finding.fix
        return False
    keep = {k: st[k] for k in ("elapsed_s", "train_s")}
    scale, retries, bad_step = st["lr_scale"] / 2, st["rollbacks"] + 1, st["step"]
    st.update(load_checkpoint(s.run_dir, s.model, s.optimizer, s.streams))
    st.update(keep, lr_scale=scale, rollbacks=retries)
    s.history = [r for r in s.history if r["step"] <= st["step"]]
    s.writer.event(bad_step, "rollback", f"{finding.symptom} ({finding.evidence}); back to step {st['step']}, "
                                         f"LR x{scale:g}")
    return True


def due(t: TrainConfig, step: int) -> tuple[bool, bool, bool, bool]:
    """Which of evaluation, sample, attention record and checkpoint fall due after `step`."""
    evaluated = step % t.eval_every == 0
    sampled = bool(t.sample_every and step % t.sample_every == 0) or (not t.sample_every and evaluated)
    attended = bool(t.record_attention_every and step % t.record_attention_every == 0)
    return evaluated, sampled, attended, step % t.checkpoint_every == 0


def periodic(s: Session, step: int) -> None:
    """Evaluation, samples, attention records and checkpoints due after `step`."""
    evaluated, sampled, attended, saved = due(s.cfg.train, step)
    if evaluated:
        run_eval(s)
    model = main_copy(s) if sampled or attended or saved else None
    if sampled:
        sample(s, model, step)
    if attended:
        record_attention(s.writer, model, s.probe, step, s.device)
    if saved:
        checkpoint(s, model)


def finished(s: Session) -> bool:
    t, st = s.cfg.train, s.state
    return (t.max_steps > 0 and st["step"] >= t.max_steps) or (t.max_minutes > 0 and
                                                               st["elapsed_s"] >= 60 * t.max_minutes)


@contextlib.contextmanager
def sigint_flag():
    """Ctrl-C sets a flag the loop checks between steps (a second Ctrl-C interrupts at once)."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


def _bar(s: Session, progress: bool) -> tqdm:
    return tqdm(total=1000, desc="train", disable=not progress, file=sys.stderr, leave=True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")


def loop(s: Session, progress: bool, on_step=None) -> None:
    """Step until a limit is reached, divergence is beyond repair, or Ctrl-C (checkpoint saved, then re-raised)."""
    t, st = s.cfg.train, s.state
    window = {"train_s": st["train_s"], "tokens": st["tokens"]}
    start, base = time.perf_counter(), st["elapsed_s"]
    with _bar(s, progress) as bar, sigint_flag() as flag:
        while not finished(s):
            tick = time.perf_counter()
            record = run_step(s)
            st["train_s"] += time.perf_counter() - tick
            st["elapsed_s"], hit = distributed.all_max([base + time.perf_counter() - start, flag["hit"]], s.ctx)
            flag["hit"] = bool(hit)
            step = st["step"]
            if step % t.log_every == 0 or step == 1 or not math.isfinite(record["loss"]) or finished(s):
                log_step(s, record, window)
                s.history.append(record)
                finding = check_step(s.history)
                if finding is not None and finding.rule == "divergence":
                    if not rollback(s, finding):
                        return
                    continue
            periodic(s, step)
            bar.update(round(1000 * progress_of(t, step, st["elapsed_s"])) - bar.n)
            bar.set_postfix_str(f" step {step} loss {record['loss']:.3f} val bpb {st['last_val_bpb'] or 0:.3f}")
            if on_step is not None:
                on_step(s)
            if flag["hit"]:
                raise KeyboardInterrupt


def summary(s: Session) -> dict:
    st = s.state
    tokens_per_s = st["tokens"] / st["train_s"] if st["train_s"] else 0.0
    corpus_bytes = sum(v["bytes"] for v in s.meta["splits"].values())
    return {"params": s.model.num_params(), "final_val_bpb": st["last_val_bpb"], "best_val_bpb": st["best_val_bpb"],
            "steps": st["step"], "elapsed_s": st["elapsed_s"], "tokens": st["tokens"], "tokens_per_s": tokens_per_s,
            "mfu": metrics.mfu(s.model.flops_per_token(), tokens_per_s, s.peak_flops), "device": str(s.device),
            "dtype": str(s.dtype).removeprefix("torch."), "hardware": metrics.hardware_name(s.device),
            "peak_mem_mb": metrics.peak_memory_mb(s.device), "status": st.get("status", "completed"),
            "advice": st.get("advice"), "rollbacks": st["rollbacks"],
            "corpus": {"name": s.meta["corpus"], "bytes": corpus_bytes},
            "tokenizer": {"type": s.tokenizer.type_name, "vocab_size": s.tokenizer.vocab_size}}


def finish(s: Session) -> dict:
    """Final evaluation, sample, attention record and checkpoint (unless diverged, or the last step already made
    them); summary.json."""
    step = s.state["step"]
    if s.state.get("status") != "diverged":
        if s.state["last_eval_step"] != step:
            run_eval(s)
        _, sampled, attended, saved = due(s.cfg.train, step) if step else (False, False, False, False)
        model = main_copy(s)
        if not sampled:
            sample(s, model, step)
        if not attended:
            record_attention(s.writer, model, s.probe, step, s.device)
        if not saved:
            checkpoint(s, model)
    result = summary(s)
    s.writer.write_json("summary.json", result)
    return result


def train(cfg: RunConfig, out_dir, resume: bool = False, progress: bool = True, on_step=None) -> dict:
    """Train a model as `cfg` says into the run folder `out_dir`; returns the summary (also summary.json).

    Under torchrun every rank calls this (data parallel: rank 0 writes the run folder) and leaves the process
    group at the end. resume, Ctrl-C and on_step as in _train below.
    """
    try:
        return _train(cfg, out_dir, resume, progress, on_step)
    finally:
        distributed.teardown()


def _train(cfg: RunConfig, out_dir, resume: bool = False, progress: bool = True, on_step=None) -> dict:
    """Train a model as `cfg` says into the run folder `out_dir`; returns the summary (also summary.json).

    resume=True continues from out_dir/checkpoints/latest exactly (same config required). Ctrl-C saves a checkpoint
    and re-raises KeyboardInterrupt. `on_step(session)` is called after every step (tests use it to interrupt).
    """
    s = setup(cfg, Path(out_dir), resume, progress)
    progress = progress and s.ctx.is_main
    if resume:
        s.writer.write_json("config.json", to_dict(s.cfg))  # may differ in how work is spread (world size, parallel)
        s.writer.event(s.state["step"], "resume", f"resumed at step {s.state['step']}")
    else:
        write_run_files(s)
        model = main_copy(s)
        record_attention(s.writer, model, s.probe, 0, s.device)
        run_eval(s)
        checkpoint(s, model)
    try:
        loop(s, progress, on_step)
    except KeyboardInterrupt:
        checkpoint(s, main_copy(s))
        s.writer.event(s.state["step"], "interrupt", f"interrupted at step {s.state['step']}; checkpoint saved, "
                                                     "continue with --resume")
        s.state["status"] = "interrupted"
        s.writer.write_json("summary.json", summary(s))
        raise
    return finish(s)
