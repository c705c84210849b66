#!/usr/bin/env bash
# The GPU path, checked in one go (issue 21): the CUDA-marked tests (tests/test_cuda.py), the gpt2-124m preset's
# tokens/s and MFU (bf16, compiled, through `scratchllm train`) and the speedrun-5min recipe's tokens/s. Prints one
# JSON object and writes it to benchmarks/results/gpu_check.json (temp file + rename). Under 8 minutes on one H200.
#
# Made for a bare GPU machine that holds this checkout and a Python with CUDA PyTorch, and maybe no network:
# `make setup` would fetch torch 2.13.0 and the dev extras (fastapi, selenium...) from PyPI and apt-get chromium,
# none of which the check needs, and an editable install would change that machine's environment. So the check
# runs from the source tree (PYTHONPATH) on .venv's Python when that one sees a GPU, else on the first python3
# that does ($PYTHON overrides both). Each part runs under its own timeout, so one that fails or hangs still
# leaves the JSON of the others; a failed part carries the tail of its log.
#
# Usage: benchmarks/gpu_check.sh [--cpu] [--out FILE]
#   --cpu       dry run of this script's logic on a CPU: tiny shapes, a few steps, no compile (CUDA tests skip);
#               writes to a temporary file unless --out is given, so it never overwrites the GPU's result
#   --out FILE  where the JSON goes (default benchmarks/results/gpu_check.json)
# Settings (environment): GPU_CHECK_GPT2_STEPS (50), GPU_CHECK_GPT2_ACCUM (8: 131k tokens a step; the preset's 32
# would add more micro-batches of the same 16 x 1024 shape per optimizer step, 4x the time for the same tokens/s),
# GPU_CHECK_SPEEDRUN_STEPS (100), and the parts' time limits in seconds GPU_CHECK_TESTS_S (160),
# GPU_CHECK_GPT2_S (170), GPU_CHECK_SPEEDRUN_S (90).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
MODE=cuda
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) MODE=cpu ;;
        --out) OUT=${2:?--out needs a file}; shift ;;
        *) echo "usage: benchmarks/gpu_check.sh [--cpu] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT  # run folders hold GB-sized checkpoints; the JSON keeps what matters
if [ -z "$OUT" ]; then
    if [ "$MODE" = cpu ]; then OUT="${TMPDIR:-/tmp}/gpu_check_cpu.json"; else OUT="$REPO/benchmarks/results/gpu_check.json"; fi
fi
START_NS=$(date +%s%N)

GPT2_STEPS=${GPU_CHECK_GPT2_STEPS:-50}
GPT2_ACCUM=${GPU_CHECK_GPT2_ACCUM:-8}
SPEEDRUN_STEPS=${GPU_CHECK_SPEEDRUN_STEPS:-100}
WARMUP_STEPS=10  # tokens/s counts the logged windows after this step: compilation and the first steps left out
# A one-line probe: the attention records of a 1024-token probe are 300 MB each (L x H x T x T), written twice.
GPT2_SETS=(train.device=cuda train.dtype=bfloat16 train.compile=true train.max_minutes=0 train.log_every=5
           "train.max_steps=$GPT2_STEPS" "train.grad_accum=$GPT2_ACCUM" "train.probe_text=To be or not to be")
SPEEDRUN_SETS=(train.device=cuda train.max_minutes=0 train.log_every=10 "train.max_steps=$SPEEDRUN_STEPS")
if [ "$MODE" = cpu ]; then  # the same commands and parsing, on shapes a shared 2-core CPU runs in seconds
    SMALL=(train.device=cpu train.dtype=float32 train.compile=false data.prefix_chars=300000 train.eval_batches=2
           train.sample_tokens=8 train.max_steps=6 train.log_every=2 train.batch_size=4)
    GPT2_SETS+=("${SMALL[@]}" model.n_layer=2 model.n_head=2 model.n_embd=64 model.block_size=64
                train.grad_accum=1 tokenizer.vocab_size=512)
    SPEEDRUN_SETS+=("${SMALL[@]}")
    WARMUP_STEPS=2
fi

# ----------------------------------------------------------------------------- the Python that runs it all

want_gpu=$([ "$MODE" = cpu ] && echo False || echo True)
usable() {  # $1 imports torch and, unless --cpu, sees a CUDA device
    "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() or not $want_gpu else 1)" >/dev/null 2>&1
}
PY="" PY_HOW=""
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON PY_HOW="\$PYTHON"
else
    for candidate in .venv/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && usable "$candidate"; then
            PY=$(command -v "$candidate") PY_HOW="first of .venv/bin/python, python3, python with torch$([ "$MODE" = cuda ] && echo ' seeing CUDA')"
            break
        fi
    done
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"  # empty: compilation is paid in full, as a fresh run pays it

run_part() {  # name limit_s command...: output to $WORK/name.log, "exit_code milliseconds" to $WORK/name.rc
    local name=$1 limit=$2 t0
    shift 2
    t0=$(date +%s%N)
    echo "gpu_check: $name (at most ${limit} s)" >&2
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    local rc=$?
    echo "$rc $(( ($(date +%s%N) - t0) / 1000000 ))" >"$WORK/$name.rc"
    echo "gpu_check: $name exit $rc" >&2
}

if [ -n "$PY" ]; then
    "$PY" -c "import importlib.util as u; print(' '.join(m for m in ('numpy', 'regex', 'tiktoken', 'safetensors',
        'yaml', 'tqdm', 'matplotlib', 'pytest', 'hypothesis') if u.find_spec(m) is None))" >"$WORK/missing" 2>&1
    run_part tests "${GPU_CHECK_TESTS_S:-160}" "$PY" -m pytest -p no:cacheprovider -q -rfE -m cuda \
        --junitxml="$WORK/tests.xml" tests/test_cuda.py
    run_part gpt2_124m "${GPU_CHECK_GPT2_S:-170}" "$PY" -m scratchllm train --preset gpt2-124m --quiet \
        --out "$WORK/gpt2_124m" "${GPT2_SETS[@]/#/--set=}"
    run_part speedrun_5min "${GPU_CHECK_SPEEDRUN_S:-90}" "$PY" -m scratchllm train --preset speedrun-5min --quiet \
        --out "$WORK/speedrun_5min" "${SPEEDRUN_SETS[@]/#/--set=}"
fi

# ----------------------------------------------------------------------------- one JSON from the parts

REPORTER=${PY:-$(command -v python3 || command -v python)}
if [ -z "$REPORTER" ]; then
    echo '{"error": "no Python found on this machine"}'
    exit 1
fi
WORK=$WORK OUT=$OUT MODE=$MODE REPO=$REPO PY=$PY PY_HOW=$PY_HOW START_NS=$START_NS WARMUP_STEPS=$WARMUP_STEPS \
GPT2_SETS=$(printf '%s\n' "${GPT2_SETS[@]}") SPEEDRUN_SETS=$(printf '%s\n' "${SPEEDRUN_SETS[@]}") \
"$REPORTER" - <<'PYTHON'
"""Gather the parts' exit codes, the test cases (JUnit XML) and the runs' metrics.jsonl into one JSON."""
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

WORK, OUT, REPO = Path(os.environ["WORK"]), Path(os.environ["OUT"]), Path(os.environ["REPO"])
SPEC_PEAK = 989e12  # H200 (SXM) dense bf16 FLOP/s, NVIDIA's datasheet
MEASURED_PEAK = 790e12  # an 8192^3 bf16 matmul through PyTorch on one such H200 (device KINDS.md): the real roof
WARMUP_STEPS = int(os.environ["WARMUP_STEPS"])


def part(name: str) -> dict:
    """ok / failed / timeout (the limit's exit codes 124 and 137) / not run, its seconds, its log's tail if not ok."""
    rc_file = WORK / f"{name}.rc"
    if not rc_file.exists():
        return {"status": "not run"}
    rc, ms = map(int, rc_file.read_text().split())
    result = {"status": "ok" if rc == 0 else "timeout" if rc in (124, 137) else "failed", "exit_code": rc,
              "seconds": ms / 1000}
    if rc != 0:
        result["log_tail"] = (WORK / f"{name}.log").read_text(errors="replace")[-3000:]
    return result


def tests() -> dict:
    result = part("tests")
    xml = WORK / "tests.xml"
    if not xml.exists():
        return result
    cases, counts = [], {}
    for case in ET.parse(xml).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "")[:400]
        counts[outcome] = counts.get(outcome, 0) + 1
        cases.append({"name": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
                      **({"message": message} if message else {})})
    return {**result, "counts": counts, "cases": cases}


def steady_tokens_per_s(train: list[dict]) -> float | None:
    """Tokens over seconds of the logged windows after WARMUP_STEPS (each record's tokens/s covers the steps since
    the one before it): the rate the run settles at, without the compilation in its first step."""
    tokens = seconds = 0.0
    for before, record in zip(train, train[1:]):
        if before["step"] >= WARMUP_STEPS and record["tokens_per_s"] > 0:
            tokens += record["tokens"] - before["tokens"]
            seconds += (record["tokens"] - before["tokens"]) / record["tokens_per_s"]
    return tokens / seconds if seconds else None


def model_flops(run: Path) -> tuple[float, int]:
    """Training FLOPs per token (6 N + 12 L C T, as GPT.flops_per_token) and parameters of the run's own model,
    built on the meta device from its resolved config.json (vocab as its tokenizer made it)."""
    import torch

    from scratchllm.config import GPTConfig
    from scratchllm.model import GPT

    config = json.loads((run / "config.json").read_text())
    with torch.device("meta"):
        model = GPT(GPTConfig(**config["model"]))
    return model.flops_per_token(), model.num_params()


def training_run(name: str, sets: str) -> dict:
    result = {**part(name), "overrides": sets.splitlines()}  # in order: a later one wins
    run = WORK / name
    try:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        train = [r for r in records if r.get("kind") == "train"]
        if not train:
            return result
        flops, params = model_flops(run)
        tokens_per_s = steady_tokens_per_s(train)
        result.update(steps=train[-1]["step"], params=params, flops_per_token=flops, tokens_per_s=tokens_per_s,
                      tokens_per_s_whole_run=summary.get("tokens_per_s"), first_step_s=train[0]["elapsed_s"],
                      peak_mem_mb=max(r.get("mem_mb", 0.0) for r in train), final_val_bpb=summary.get("final_val_bpb"),
                      trainer_mfu=summary.get("mfu"))
        if tokens_per_s:
            result.update(mfu_vs_989_spec=tokens_per_s * flops / SPEC_PEAK,
                          mfu_vs_790_measured=tokens_per_s * flops / MEASURED_PEAK)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
        result["report_error"] = f"{type(e).__name__}: {e}"
    return result


def machine() -> dict:
    info = {"python": os.environ["PY"] or None, "python_chosen_as": os.environ["PY_HOW"] or None,
            "missing_packages": (WORK / "missing").read_text().split() if (WORK / "missing").exists() else None}
    try:
        import torch
        info.update(torch=torch.__version__, cuda=torch.version.cuda, gpu=torch.cuda.get_device_name()
                    if torch.cuda.is_available() else None)
    except ImportError as e:
        info["torch"] = f"not importable: {e}"
    for key, cmd in (("nvidia_smi", ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                     "--format=csv,noheader"]), ("git_commit", ["git", "-C", str(REPO), "rev-parse",
                                                                                 "HEAD"])):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            info[key] = None
    return info


report = {"check": "benchmarks/gpu_check.sh", "mode": "cuda" if os.environ["MODE"] == "cuda" else "cpu dry run",
          "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
          "peaks_flops": {"h200_bf16_spec": SPEC_PEAK, "h200_bf16_measured": MEASURED_PEAK},
          "tests": tests(), "gpt2_124m": training_run("gpt2_124m", os.environ["GPT2_SETS"]),
          "speedrun_5min": training_run("speedrun_5min", os.environ["SPEEDRUN_SETS"])}
report["total_seconds"] = (time.time_ns() - int(os.environ["START_NS"])) / 1e9
report["all_ok"] = all(report[k].get("status") == "ok" for k in ("tests", "gpt2_124m", "speedrun_5min"))
text = json.dumps(report, indent=2) + "\n"
OUT.parent.mkdir(parents=True, exist_ok=True)
tmp = OUT.with_name(f".{OUT.name}.tmp")
tmp.write_text(text)
tmp.replace(OUT)  # a reader never sees half a file
print(text, end="")
raise SystemExit(0 if report["all_ok"] else 1)
PYTHON
