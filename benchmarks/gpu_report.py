"""The GPU check's JSON: benchmarks/gpu_check.sh's work folder in, one report dict out; and the roof MFU is taken on.

gpu_check.sh runs each part under its own timeout and leaves its files in a work folder; this module owns only
reading them (and measuring the matmul peak, as one of those parts). A part that failed, timed out or never ran is
reported as such, with its log's tail, and never stops the report. The work folder holds, per part NAME:
  NAME.rc    "exit_code milliseconds", written by the driver when the part ends (absent: the part did not run)
  NAME.log   the part's stdout and stderr
and also tests.xml (pytest's JUnit XML), peak.json (`measure_peak`), gpt2_124m/ and speedrun_5min/ (run folders),
gpt2_124m.sets and speedrun_5min.sets (their --set overrides, one a line, in order) and missing (packages the
Python lacks, space-separated).

  python benchmarks/gpu_report.py peak --device cuda --dtype bfloat16 WORK/peak.json
  python benchmarks/gpu_report.py report WORK OUT --mode cuda --warmup-steps 10 ...
"""

from __future__ import annotations

import argparse
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from scratchllm.config import GPTConfig, from_dict, write_json
from scratchllm.runfolder import CONFIG, METRICS, SUMMARY, read_json, read_jsonl_lenient

REPO = Path(__file__).resolve().parents[1]
RUNS = ("gpt2_124m", "speedrun_5min")
PARTS = ("peak", "tests", *RUNS)
TIMEOUT_CODES = (124, 137)  # timeout(1)'s exit codes: the limit was reached (137: killed after --kill-after)

SPEC_BF16_DENSE_FLOPS = {  # NVIDIA datasheets, dense (no sparsity) bf16 tensor-core FLOP/s, by torch's device name
    "NVIDIA H200": 989e12,  # H200 SXM
    "NVIDIA H100 80GB HBM3": 989e12,  # H100 SXM5
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
}
"""Only for the name torch reports; any other device gets no spec figure (None), never a neighbour's."""


def spec_peak_flops(device_name: str | None, dtype: str) -> float | None:
    """The datasheet's dense peak for this exact device name, in bf16 only; None for anything else."""
    return SPEC_BF16_DENSE_FLOPS.get(device_name or "") if dtype == "bfloat16" else None


def measure_peak(device: str = "cuda", dtype: str = "bfloat16", n: int | None = None) -> dict:
    """The roof MFU is taken on, measured on this machine: best FLOP/s of an n x n matmul (metrics.matmul_size:
    8192 on CUDA), the device's name as torch reports it, and the datasheet peak when that name is known."""
    from scratchllm import metrics

    n = n or metrics.matmul_size(device)
    name = metrics.hardware_name(device)
    return {"device": name, "dtype": dtype, "matmul_n": n,
            "measured_flops": metrics.matmul_peak_flops(dtype, device, n=n),
            "spec_flops": spec_peak_flops(name, dtype),
            "spec_source": "NVIDIA datasheet, dense bf16, looked up by the device name above"}


def part(work: Path, name: str) -> dict:
    """ok / failed / timeout / not run, its seconds, and its log's tail when not ok."""
    rc_file = work / f"{name}.rc"
    if not rc_file.exists():
        return {"status": "not run"}
    rc, ms = map(int, rc_file.read_text().split())
    status = "ok" if rc == 0 else "timeout" if rc in TIMEOUT_CODES else "failed"
    result = {"status": status, "exit_code": rc, "seconds": ms / 1000}
    if rc != 0:
        log = work / f"{name}.log"
        result["log_tail"] = log.read_text(errors="replace")[-3000:] if log.exists() else None
    return result


def junit_cases(xml: Path) -> tuple[dict, list[dict]]:
    """(counts by outcome, one entry per test case) of pytest's JUnit XML."""
    cases, counts = [], {}
    for case in ET.parse(xml).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "")[:400]
        counts[outcome] = counts.get(outcome, 0) + 1
        cases.append({"name": case.get("name"), "file": case.get("classname"), "outcome": outcome,
                      "seconds": float(case.get("time") or 0), **({"message": message} if message else {})})
    return counts, cases


def cuda_tests(work: Path) -> dict:
    """The tests part, with each case's outcome when pytest got as far as writing its XML."""
    result = part(work, "tests")
    try:
        counts, cases = junit_cases(work / "tests.xml")
    except FileNotFoundError:
        return result
    except ET.ParseError as e:  # pytest killed while writing it
        return {**result, "report_error": f"tests.xml: {e}"}
    return {**result, "counts": counts, "cases": cases}


def steady_tokens_per_s(train: list[dict], warmup_steps: int) -> float | None:
    """Tokens over seconds of the logged windows after `warmup_steps` (each record's tokens/s covers the steps since
    the record before it): the rate the run settles at, without the compilation in its first step.

    >>> steady_tokens_per_s([{"step": 10, "tokens": 0}, {"step": 20, "tokens": 1000, "tokens_per_s": 500.0},
    ...                      {"step": 30, "tokens": 2000, "tokens_per_s": 250.0}], warmup_steps=10)
    333.3333333333333
    """
    tokens = seconds = 0.0
    for before, record in zip(train, train[1:], strict=False):
        if before["step"] >= warmup_steps and record["tokens_per_s"] > 0:
            tokens += record["tokens"] - before["tokens"]
            seconds += (record["tokens"] - before["tokens"]) / record["tokens_per_s"]
    return tokens / seconds if seconds else None


def model_flops(run: Path) -> tuple[float, int]:
    """Training FLOPs per token (GPT.flops_per_token: 6 N + 12 L C T) and parameters of the run's own model, built
    on the meta device from its resolved config.json (vocab as its tokenizer made it)."""
    import torch

    from scratchllm.model import GPT

    with torch.device("meta"):
        model = GPT(from_dict(GPTConfig, read_json(run / CONFIG)["model"]))
    return model.flops_per_token(), model.num_params()


def training_run(work: Path, name: str, warmup_steps: int, peak: dict) -> dict:
    """A training part: its status, overrides, steady tokens/s, and MFU on the measured (and datasheet) peak."""
    sets = work / f"{name}.sets"
    result = {**part(work, name), "overrides": sets.read_text().splitlines() if sets.exists() else None}
    run = work / name
    train = [r for r in read_jsonl_lenient(run / METRICS)[0] if r.get("kind") == "train"]
    if not train:
        return result
    summary = read_json(run / SUMMARY) or {}
    try:
        flops, params = model_flops(run)
        tokens_per_s = steady_tokens_per_s(train, warmup_steps)
        result.update(steps=train[-1]["step"], params=params, flops_per_token=flops, tokens_per_s=tokens_per_s,
                      tokens_per_s_whole_run=summary.get("tokens_per_s"), first_step_s=train[0]["elapsed_s"],
                      peak_mem_mb=max(r.get("mem_mb", 0.0) for r in train), final_val_bpb=summary.get("final_val_bpb"),
                      trainer_mfu=summary.get("mfu"))
    except (OSError, TypeError, ValueError, KeyError, ImportError, RuntimeError) as e:
        return {**result, "report_error": f"{type(e).__name__}: {e}"}
    achieved = tokens_per_s * flops if tokens_per_s else None
    for key, roof in (("mfu_vs_measured_peak", "measured_flops"), ("mfu_vs_spec_peak", "spec_flops")):
        result[key] = achieved / peak[roof] if achieved and peak.get(roof) else None
    return result


def machine(work: Path, python: str | None, python_how: str | None) -> dict:
    """The Python the parts ran on and what it lacks, torch and CUDA versions, nvidia-smi's line, the commit."""
    missing = work / "missing"
    info = {"python": python, "python_chosen_as": python_how,
            "missing_packages": missing.read_text().split() if missing.exists() else None}
    try:
        import torch

        info.update(torch=torch.__version__, cuda=torch.version.cuda,
                    gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    except ImportError as e:
        info["torch"] = f"not importable: {e}"
    smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    for key, cmd in (("nvidia_smi", smi), ("git_commit", ["git", "-C", str(REPO), "rev-parse", "HEAD"])):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            info[key] = None
    return info


def build_report(work: Path, mode: str = "cuda", warmup_steps: int = 10, started_ns: int | None = None,
                 python: str | None = None, python_how: str | None = None) -> dict:
    """The whole check as one dict: machine, the measured peak, the tests, both runs, all_ok when every part is."""
    peak = {**part(work, "peak"), **(read_json(work / "peak.json") or {})}
    report = {"check": "benchmarks/gpu_check.sh", "mode": "cuda" if mode == "cuda" else "cpu dry run",
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(work, python, python_how),
              "peak": peak, "tests": cuda_tests(work),
              **{name: training_run(work, name, warmup_steps, peak) for name in RUNS}}
    report["total_seconds"] = (time.time_ns() - started_ns) / 1e9 if started_ns else None
    report["all_ok"] = all(report[k].get("status") == "ok" for k in PARTS)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    peak = sub.add_parser("peak", help="measure the matmul peak and write it as JSON")
    peak.add_argument("out", type=Path)
    peak.add_argument("--device", default="cuda")
    peak.add_argument("--dtype", default="bfloat16")
    report = sub.add_parser("report", help="read a work folder, write the report, print it; exit 1 unless all ok")
    report.add_argument("work", type=Path)
    report.add_argument("out", type=Path)
    report.add_argument("--mode", choices=("cuda", "cpu"), default="cuda")
    report.add_argument("--warmup-steps", type=int, default=10)
    report.add_argument("--started-ns", type=int)
    report.add_argument("--python")
    report.add_argument("--python-how")
    args = parser.parse_args(argv)
    if args.command == "peak":
        write_json(args.out, measure_peak(args.device, args.dtype))
        return 0
    result = build_report(args.work, args.mode, args.warmup_steps, args.started_ns, args.python or None,
                          args.python_how or None)
    write_json(args.out, result)  # atomic: a reader never sees half a file
    print(args.out.read_text(), end="")
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
