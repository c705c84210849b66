"""The chapter "Scaling out": data parallelism (DDP) and sharding (FSDP2), the commands that rerun this very run on
8 processes, the wrappers from the source, and the scaling the distributed benchmark measured.
"""

from __future__ import annotations

import re

from scratchllm.report.chapters.glance import hardware_line
from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book
from scratchllm.report.tables import bench_pivot, flatten, fmt, listing, pretty_key
from scratchllm.runfolder import CONFIG, is_finite

TITLE = "Scaling out"


def _scaling_rows(run: RunSummary) -> list[list[str]]:
    """Numbers of scaling results files other than distributed.json (which has its own table)."""
    rows = []
    for name, data in sorted(run.benchmarks.items()):
        if re.search(r"dist|ddp|fsdp|scal", name, re.I) and name != "distributed":
            rows += [[f"{name}: {pretty_key(k)}", fmt(v)] for k, v in flatten(data) if is_finite(v)][:16]
    return rows


def _torchrun(args: list[str], nproc: int) -> str:
    """The command `scratchllm train --nproc N` runs, as distributed.torchrun_command builds it (or a plain one)."""
    try:
        from scratchllm.distributed import torchrun_command
    except ImportError:
        return shell_lines(["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", "scratchllm", *args])
    return shell_lines(["python", *torchrun_command(args, nproc)[1:]])


def shell_lines(words: list[str], width: int = 88) -> str:
    """A command as lines of at most ~width characters joined by shell continuations (\\)."""
    lines = [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) + 3 > width:
            lines.append("   ")
        lines[-1] += (" " if lines[-1].strip() else "") + word
    return " \\\n".join(lines)


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    config = run.run_dir / CONFIG
    book.para("One process on one device sets the speed limit of everything above. To train faster, or a model "
              "too big for one device, the work is spread over several processes, one per GPU (or per group of "
              "CPU cores), started by PyTorch's `torchrun`. The commands below rerun this very run's configuration "
              "on 8 processes.")
    book.section("Data parallel: DistributedDataParallel")
    book.para("Every process holds a full copy of the model and reads a different slice of each batch. After the "
              "backward pass the gradients are averaged across processes (an all-reduce, overlapped with the "
              "backward computation), so every copy takes the same step and the copies stay identical. N "
              "processes see N times the tokens per step; the effective batch grows N-fold.")
    args = ["train", "--config", str(config), "--out", "runs/ddp"]
    book.code(f"scratchllm {' '.join(args[:3])} --nproc 8 --out runs/ddp\n"
              f"# which starts, one process per device:\n{_torchrun(args, 8)}",
              "Data-parallel training on 8 devices.", python=False)
    listing(book, run, "wrap_ddp", "wrapping the model for data parallelism")
    book.section("Sharded: FSDP2")
    book.para("When the weights, gradients and AdamW state (16 bytes per parameter in float32) no longer fit on one "
              "device, fully sharded data parallelism gives each process only a 1/N slice of every tensor. Before "
              "a block runs, its full weights are gathered from all processes and freed again afterwards; its "
              "gradients are reduced and scattered back to their owners. Memory per device falls nearly N-fold "
              "for the price of more communication. PyTorch's second version, `fully_shard`, shards each block "
              "separately so that gathering the next block overlaps with computing this one.")
    listing(book, run, "wrap_fsdp2", "sharding each block, then the root, with FSDP2")
    book.section("Measured scaling")
    rows = _scaling_rows(run)
    if bench_pivot(book, run, "distributed", "rows", [("mode", "mode", 0), ("nproc", "processes", 0),
                   ("tokens_per_s", "tokens/s", 0), ("efficiency", "efficiency", 2)],
                   "Training throughput by number of processes; efficiency = tokens/s ÷ (processes × one process)"):
        book.para("Perfect scaling would keep the efficiency at 1.00: every added process would add a whole "
                  "process's worth of tokens per second. The shortfall is the time spent averaging gradients "
                  "(and, for FSDP2, gathering weights) that the computation does not hide.")
    elif rows:
        book.table(["benchmark: measurement", "value"], rows, "Scaling measurements from benchmarks/results/.")
    else:
        book.note("No scaling measurements in benchmarks/results/ (a distributed benchmark run on a machine with "
                  "several devices writes them). This run used: " + hardware_line(run) + ".")
