"""The trainer: one loop that pretraining, the speedrun and finetuning all run, a RunConfig in and a run folder out.

Read it in the order a step needs it: the session (session.py: tokenizer, data, model, optimizer, batches) -> one
optimizer step (micro-batch accumulation, clipping) -> what falls due after it (evaluation, samples, attention records,
checkpoints) -> rollback when the live doctor sees divergence -> the loop and its summary. What differs between
runs is configuration, not code: the schedule's shape (optim.py), the budget (steps or minutes, with or without
evaluation time), the batch source. Settings live in config.py, the LR in optim.py, files in runfolder.py and
checkpoint.py, the diagnosis in doctor.py; this module only acts on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from scratchllm import distributed, metrics
from scratchllm.checkpoint import (
    HEALTHY,
    LATEST,
    TrainerCheckpoint,
    copy_trainer_checkpoint,
    save_trainer_checkpoint,
    trainer_checkpoint_dir,
)
from scratchllm.config import InputError, RunConfig, TrainConfig, to_dict
from scratchllm.doctor import check_step, is_healthy
from scratchllm.evaluate import score
from scratchllm.generate import generate_text
from scratchllm.model import GPT
from scratchllm.optim import lr_at, progress_of
from scratchllm.probe import record_attention, write_probe
from scratchllm.runfolder import CONFIG, SAMPLES, SUMMARY, TOKENIZER
from scratchllm.session import Session, Start, main_copy, restore_checkpoint, setup

MAX_ROLLBACKS = 10
"""Halvings of the LR before a diverging run is stopped: 10 take an LR of 10 down to 0.01."""


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


def run_step(s: Session) -> dict:
    """One optimizer step on the next micro-batches; returns the train record (throughput filled in by log_step)."""
    t, st = s.cfg.train, s.state
    lr = lr_at(t, st.step, st.elapsed_s) * st.lr_scale
    world = s.ctx.world_size
    micro = distributed.own_share([s.batches.next() for _ in range(t.grad_accum * world)], s.ctx)
    loss, norm = train_step(s.step_model, s.optimizer, micro, t, lr, s.autocast, s.scaler)
    st.step += 1
    st.tokens += sum(x.numel() for x, _ in micro) * world  # conversation batches vary in length
    return {"kind": "train", "step": st.step, "loss": distributed.all_mean(loss, s.ctx), "lr": lr, "grad_norm": norm}


def log_step(s: Session, record: dict, window: dict) -> None:
    """Fill in tokens/s, MFU, memory and time over the steps since the last log; append to metrics.jsonl."""
    st = s.state
    tokens_per_s = (st.tokens - window["tokens"]) / max(st.train_s - window["train_s"], 1e-9)
    record.update(tokens_per_s=tokens_per_s, mem_mb=metrics.peak_memory_mb(s.device), elapsed_s=st.elapsed_s,
                  tokens=st.tokens, mfu=metrics.mfu(s.model.flops_per_token(), tokens_per_s, s.peak_flops))
    window.update(train_s=st.train_s, tokens=st.tokens)
    s.writer.metric(record)
    s.history.append(record)


# ----------------------------------------------------------------------------- what falls due after a step


def run_eval(s: Session) -> dict:
    """Loss and exact bits per byte of both splits' fixed windows; appended to metrics.jsonl."""
    scores = {name: score(s.model, windows, s.byte_lengths, s.autocast) for name, windows in s.eval_sets.items()}
    st = s.state
    record = {"kind": "eval", "step": st.step, "elapsed_s": st.elapsed_s, "train_loss": scores["train"]["loss"],
              "val_loss": scores["val"]["loss"], "val_ppl": metrics.perplexity(scores["val"]["loss"]),
              "val_bpb": scores["val"]["bpb"], "train_bpb": scores["train"]["bpb"]}
    s.writer.metric(record)
    st.last_val_bpb, st.last_eval_step = record["val_bpb"], st.step
    st.best_val_bpb = record["val_bpb"] if st.best_val_bpb is None else min(st.best_val_bpb, record["val_bpb"])
    return record


def sample(s: Session, model: GPT | None, step: int) -> None:
    """Continue the sample prompt (or, when the tokenizer cannot encode it, the first token of the training
    evaluation windows) to samples; model is main_copy's (None off rank 0)."""
    if model is None:
        return
    t = s.cfg.train
    prompt = t.sample_prompt
    try:
        s.tokenizer.encode(prompt)
    except InputError:
        prompt = s.tokenizer.decode(s.eval_sets["train"][0][0][0, :1].tolist())
    text = generate_text(model, s.tokenizer, prompt, t.sample_tokens, temperature=0.8, top_k=200, seed=t.seed)
    s.writer.append(SAMPLES, {"step": step, "prompt": prompt, "text": text})


def save_checkpoint(s: Session, model: GPT | None) -> None:
    """Save checkpoints/latest from rank 0 (model is main_copy's; the optimizer state is gathered here likewise),
    and copy it to checkpoints/healthy when the live doctor finds the run healthy now (doctor.is_healthy)."""
    optimizer = distributed.full_optimizer_state(s.model, s.optimizer)
    if s.writer.enabled:
        rng = {"torch": torch.get_rng_state(), "batches": s.batches.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        ckpt = TrainerCheckpoint(model, s.tokenizer, optimizer, rng, dataclasses.replace(s.state), s.ctx.world_size)
        save_trainer_checkpoint(s.run_dir, ckpt, LATEST)
        if is_healthy(s.history):
            copy_trainer_checkpoint(s.run_dir, LATEST, HEALTHY)
    distributed.barrier(s.ctx)

def due(t: TrainConfig, step: int) -> tuple[bool, bool, bool, bool]:
    """Which of evaluation, sample, attention record and checkpoint fall due after `step`."""
    evaluated = step % t.eval_every == 0
    sampled = bool(t.sample_every and step % t.sample_every == 0) or (not t.sample_every and evaluated)
    attended = bool(t.record_attention_every and step % t.record_attention_every == 0)
    return evaluated, sampled, attended, step % t.checkpoint_every == 0


def periodic(s: Session, step: int, final: bool = False) -> None:
    """Evaluation, samples, attention records and checkpoints due after `step`; at the end of a run, whichever
    of them the last step did not already make."""
    evaluated, sampled, attended, saved = due(s.cfg.train, step)
    if final:
        evaluated, sampled, attended, saved = s.state.last_eval_step != step, not sampled, not attended, not saved
    if evaluated:
        run_eval(s)
    model = main_copy(s) if sampled or attended or saved else None
    if sampled:
        sample(s, model, step)
    if attended:
        record_attention(s.writer, model, s.probe, step, s.device)
    if saved:
        save_checkpoint(s, model)


def rollback(s: Session, finding) -> bool:
    """Divergence: go back to the last checkpoint saved while the run was healthy, with half the LR; False once
    MAX_ROLLBACKS are spent. The event in metrics.jsonl says from where to where and what it cost."""
    st = s.state
    if st.rollbacks >= MAX_ROLLBACKS:
        s.writer.event(st.step, "stop", f"diverged after {MAX_ROLLBACKS} rollbacks: {finding.evidence}. "
                                        f"Fix: {finding.fix}")
        st.status, st.advice = "diverged", finding.fix
        return False
    name = HEALTHY if trainer_checkpoint_dir(s.run_dir, HEALTHY) else LATEST
    saved = restore_checkpoint(s, name)
    s.state = dataclasses.replace(saved, elapsed_s=st.elapsed_s, train_s=st.train_s, tokens=st.tokens,
                                  lr_scale=st.lr_scale / 2, rollbacks=st.rollbacks + 1)
    s.history = [r for r in s.history if r["step"] <= saved.step]
    s.writer.event(st.step, "rollback", f"{finding.symptom} ({finding.evidence}); back to step {saved.step} "
                   f"({name} checkpoint), LR x{s.state.lr_scale:g}; {st.step - saved.step} steps redone",
                   from_step=st.step, to_step=saved.step, checkpoint=name, lr_scale=s.state.lr_scale)
    return True


# ----------------------------------------------------------------------------- the loop


def finished(s: Session) -> bool:
    t, st = s.cfg.train, s.state
    return (t.max_steps > 0 and st.step >= t.max_steps) or (t.max_minutes > 0 and st.elapsed_s >= 60 * t.max_minutes)


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


def _bar(progress: bool) -> tqdm:
    return tqdm(total=1000, desc="train", disable=not progress, file=sys.stderr, leave=True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")


def loop(s: Session, progress: bool, on_step=None) -> None:
    """Step until a limit is reached, divergence is beyond repair, or Ctrl-C (re-raised after the step). The
    budget's clock leaves out the time of periodic work when train.eval_in_budget is off."""
    t, st = s.cfg.train, s.state
    window = {"train_s": st.train_s, "tokens": st.tokens}
    start, base, excluded = time.perf_counter(), st.elapsed_s, 0.0
    with _bar(progress) as bar, sigint_flag() as flag:
        while not finished(s):
            tick = time.perf_counter()
            record = run_step(s)
            s.state.train_s += time.perf_counter() - tick
            clock = base + time.perf_counter() - start - excluded
            s.state.elapsed_s, hit = distributed.all_max([clock, flag["hit"]], s.ctx)
            flag["hit"] = bool(hit)
            step = s.state.step
            if step % t.log_every == 0 or step == 1 or not math.isfinite(record["loss"]) or finished(s):
                log_step(s, record, window)
                finding = check_step(s.history)
                if finding is not None and finding.rule == "divergence":
                    if not rollback(s, finding):
                        return
                    continue
            tick = time.perf_counter()
            periodic(s, step)
            excluded += 0.0 if t.eval_in_budget else time.perf_counter() - tick
            bar.update(round(1000 * progress_of(t, step, s.state.elapsed_s)) - bar.n)
            bar.set_postfix_str(f" step {step} loss {record['loss']:.3f} val bpb {s.state.last_val_bpb or 0:.3f}")
            if on_step is not None:
                on_step(s)
            if flag["hit"]:
                raise KeyboardInterrupt


def summary(s: Session) -> dict:
    st = s.state
    tokens_per_s = st.tokens / st.train_s if st.train_s else 0.0
    corpus_bytes = sum(v["bytes"] for v in s.meta["splits"].values())
    return {"params": s.model.num_params(), "final_val_bpb": st.last_val_bpb, "best_val_bpb": st.best_val_bpb,
            "steps": st.step, "elapsed_s": st.elapsed_s, "train_s": st.train_s, "tokens": st.tokens,
            "tokens_per_s": tokens_per_s, "mfu": metrics.mfu(s.model.flops_per_token(), tokens_per_s, s.peak_flops),
            "device": str(s.device), "dtype": str(s.dtype).removeprefix("torch."),
            "hardware": metrics.hardware_name(s.device), "peak_mem_mb": metrics.peak_memory_mb(s.device),
            "status": "completed" if st.status == "running" else st.status, "advice": st.advice,
            "rollbacks": st.rollbacks, "lr_scale": st.lr_scale, "corpus": {"name": s.meta["corpus"],
                                                                           "bytes": corpus_bytes},
            "tokenizer": {"type": s.tokenizer.type_name, "vocab_size": s.tokenizer.vocab_size}}


def train(cfg: RunConfig, out_dir, resume: bool = False, progress: bool = True, on_step=None,
          start: Start | None = None) -> dict:
    """Train a model as `cfg` says into the run folder `out_dir`; returns the summary (also summary.json).

    resume=True continues from out_dir/checkpoints/latest exactly (same config required); a folder with no
    checkpoint to resume starts a fresh run and says so on stderr. Ctrl-C saves a checkpoint and re-raises
    KeyboardInterrupt. `on_step(session)` is called after every step (tests use it to interrupt). Under torchrun
    every rank calls this (data parallel: rank 0 writes the run folder) and leaves the process group at the end.
    `start` replaces pretraining's corpus, tokenizer and fresh weights (finetune.py builds one).
    """
    run_dir = Path(out_dir)
    if resume and trainer_checkpoint_dir(run_dir, LATEST) is None:
        print(f"nothing to resume in {run_dir} (no checkpoint yet): starting a fresh run", file=sys.stderr)
        resume = False
    try:
        s = setup(cfg, run_dir, resume, progress, start)
        return _run(s, resume, progress and s.ctx.is_main, on_step)
    finally:
        distributed.teardown()


def _run(s: Session, resume: bool, progress: bool, on_step) -> dict:
    s.writer.write_json(CONFIG, to_dict(s.cfg))  # on resume it may differ in how work is spread (world size)
    if resume:
        s.writer.event(s.state.step, "resume", f"resumed at step {s.state.step}")
    else:
        if s.writer.enabled:
            s.tokenizer.save(s.run_dir / TOKENIZER)
        write_probe(s.writer, s.tokenizer, s.probe, s.probe_text)
        record_attention(s.writer, main_copy(s), s.probe, 0, s.device)
        run_eval(s)
        save_checkpoint(s, main_copy(s))
    try:
        loop(s, progress, on_step)
    except KeyboardInterrupt:
        save_checkpoint(s, main_copy(s))
        s.writer.event(s.state.step, "interrupt", f"interrupted at step {s.state.step}; checkpoint saved, "
                                                  "continue with --resume")
        s.state.status = "interrupted"
        s.writer.write_json(SUMMARY, summary(s))
        raise
    if s.state.status != "diverged" and s.state.step:
        periodic(s, s.state.step, final=True)
    result = summary(s)
    s.writer.write_json(SUMMARY, result)
    return result
