#!/usr/bin/env bash
# The GPU check in one go (issue 21): the matmul peak MFU is taken on (bf16 at 8192, measured on this machine, with
# the device's name), the CUDA-marked tests (every tests/ file that marks `cuda`, run with -m cuda), the gpt2-124m
# preset's tokens/s and MFU (bf16, compiled, through `scratchllm train`) and the speedrun-5min recipe's tokens/s.
# This script only runs the parts; benchmarks/gpu_report.py reads their files into one JSON, prints it and writes it
# to benchmarks/results/gpu_check.json (scratchllm.config.write_json: temp file + rename). Budgeted to 8 minutes:
# the parts' time limits add up to 480 s; how long it takes on a GPU is unmeasured until it runs on one.
#
# Made for a bare GPU machine that holds this checkout and a Python with CUDA PyTorch, and maybe no network:
# `make setup` would fetch torch 2.13.0 and the dev extras (fastapi, selenium...) from PyPI and apt-get chromium,
# none of which the check needs, and an editable install would change that machine's environment. So the check
# runs from the source tree (PYTHONPATH) on .venv's Python when that one sees a GPU, else on the first python3
# that does ($PYTHON overrides both). Each part runs under its own timeout, so one that fails or hangs still
# leaves the JSON of the others; a failed part carries the tail of its log.
#
# Usage: benchmarks/gpu_check.sh [--cpu] [--out FILE]
#   --cpu       dry run of this script's logic on a CPU: float32 peak at 1024, tiny shapes, a few steps, no compile
#               (CUDA tests skip); writes to a temporary file unless --out is given, so it never overwrites the GPU's
#               result
#   --out FILE  where the JSON goes (default benchmarks/results/gpu_check.json)
# Settings (environment): GPU_CHECK_GPT2_STEPS (50), GPU_CHECK_GPT2_ACCUM (8: 131k tokens a step; the preset's 32
# would add more micro-batches of the same 16 x 1024 shape per optimizer step, 4x the time for the same tokens/s),
# GPU_CHECK_SPEEDRUN_STEPS (100), and the parts' time limits in seconds GPU_CHECK_PEAK_S (60), GPU_CHECK_TESTS_S
# (160), GPU_CHECK_GPT2_S (170), GPU_CHECK_SPEEDRUN_S (90).
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
PEAK_DTYPE=bfloat16  # both runs train in bf16 on CUDA
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
    PEAK_DTYPE=float32
fi
printf '%s\n' "${GPT2_SETS[@]}" >"$WORK/gpt2_124m.sets"  # the report lists each run's overrides, in order
printf '%s\n' "${SPEEDRUN_SETS[@]}" >"$WORK/speedrun_5min.sets"
# The files that mark tests `cuda`, not all of tests/: collecting every module would import the dev extras
# (hypothesis...) a bare machine may lack, and one collection error stops pytest before any test runs.
mapfile -t CUDA_TESTS < <(grep -rlE 'pytest\.mark\.cuda' tests --include='test_*.py' | sort)

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

if [ -z "$PY" ]; then
    echo "gpu_check: no Python here imports torch and sees CUDA (tried .venv/bin/python, python3, python; set" \
         "\$PYTHON): every part is reported as not run" >&2
else
    "$PY" -c "import importlib.util as u; print(' '.join(m for m in ('numpy', 'regex', 'tiktoken', 'safetensors',
        'yaml', 'tqdm', 'matplotlib', 'pytest', 'hypothesis') if u.find_spec(m) is None))" >"$WORK/missing" 2>&1
    run_part peak "${GPU_CHECK_PEAK_S:-60}" "$PY" benchmarks/gpu_report.py peak --device "$MODE" \
        --dtype "$PEAK_DTYPE" "$WORK/peak.json"
    run_part tests "${GPU_CHECK_TESTS_S:-160}" "$PY" -m pytest -p no:cacheprovider -q -rfE -m cuda \
        --junitxml="$WORK/tests.xml" "${CUDA_TESTS[@]}"
    run_part gpt2_124m "${GPU_CHECK_GPT2_S:-170}" "$PY" -m scratchllm train --preset gpt2-124m --quiet \
        --out "$WORK/gpt2_124m" "${GPT2_SETS[@]/#/--set=}"
    run_part speedrun_5min "${GPU_CHECK_SPEEDRUN_S:-90}" "$PY" -m scratchllm train --preset speedrun-5min --quiet \
        --out "$WORK/speedrun_5min" "${SPEEDRUN_SETS[@]/#/--set=}"
fi

# ----------------------------------------------------------------------------- one JSON from the parts

# benchmarks/gpu_report.py reads the work folder (tests/test_gpu_report.py checks it on a hand-made one). It needs
# PyYAML and numpy (scratchllm.config, scratchllm.runfolder), not a GPU: the parts' Python if it imports them, else
# the first that does, so a machine where no Python saw CUDA still gets its report (every part "not run").
REPORTER=""
for candidate in ${PY:+"$PY"} .venv/bin/python python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import scratchllm.runfolder" >/dev/null 2>&1; then
        REPORTER=$(command -v "$candidate")
        break
    fi
done
if [ -z "$REPORTER" ]; then
    echo '{"error": "no Python here imports scratchllm.runfolder (it needs PyYAML and numpy); set $PYTHON"}'
    exit 1
fi
"$REPORTER" benchmarks/gpu_report.py report "$WORK" "$OUT" --mode "$MODE" --warmup-steps "$WARMUP_STEPS" \
    --started-ns "$START_NS" --python "$PY" --python-how "$PY_HOW"
