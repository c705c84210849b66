"""Everything the guide says about one run, gathered into a `RunSummary` before any page is laid out.

Reads only the run folder, through runfolder.py's names and lenient readers (config.json, summary.json,
metrics.jsonl, samples.jsonl, tokenizer.json, tokenizer_comparison.json, doctor.json, attention/, figures/, a
finetune's qa_eval.json or the chat/ finetune stage the quickstart leaves inside), and benchmark JSON files; takes
the code excerpts from the installed source with `inspect.getsource` at build time, so the guide never quotes a
copy that has drifted. Whatever is absent or unreadable becomes a line in `RunSummary.missing` instead of an error.
It draws nothing: build_report has viz draw the missing figures first.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchllm.config import InputError
from scratchllm.runfolder import (
    CHAT,
    CHECKPOINTS,
    CONFIG,
    DOCTOR,
    FIGURES,
    METRICS,
    PROBE,
    QA_EVAL,
    SAMPLES,
    SUMMARY,
    TOKENIZER,
    attention_files,
    is_finite,
    is_run,
    load_attention,
    read_json,
    read_jsonl_lenient,
    read_probe,
    read_qa_eval,
    require_run,
)
from scratchllm.tokenizer import load_tokenizer
from scratchllm.tokenizer.chat_tokens import has_chat_tokens

REPO = Path(__file__).resolve().parents[2]
COMPARISON = "tokenizer_comparison.json"
EXCERPTS = {  # key -> dotted name of the function or class the guide quotes
    "get_stats": "scratchllm.tokenizer.basic.get_stats",
    "merge": "scratchllm.tokenizer.basic.merge",
    "train_naive": "scratchllm.tokenizer.basic.train_naive",
    "train_merges": "scratchllm.tokenizer.trainer.train_merges",
    "reference_attention": "scratchllm.model.reference_attention",
    "block": "scratchllm.model.Block",
    "train_step": "scratchllm.train.train_step",
    "lr_at": "scratchllm.optim.lr_at",
    "sample_next_token": "scratchllm.generate.sample_next_token",
    "wrap_ddp": "scratchllm.distributed.wrap_ddp",
    "wrap_fsdp2": "scratchllm.distributed.wrap_fsdp2",
}


@dataclass
class Excerpt:
    """A function or class quoted from the live source, or the reason it could not be."""

    name: str
    """Dotted name, e.g. scratchllm.model.reference_attention."""
    source: str = ""
    """Its source text as `inspect.getsource` returns it ("" when unavailable)."""
    file: str = ""
    """Path of the defining file relative to the repository."""
    first_line: int = 0
    """Line number of its first line in that file."""
    missing: str = ""
    """Why it is unavailable ("" when it is there)."""


@dataclass
class ParamPart:
    """Parameters of one part of the model."""

    name: str
    """What the part is, e.g. "attention: q, k, v projection (c_attn)"."""
    shape: str
    """Shapes of its tensors, e.g. "128×384"."""
    count: int
    """Parameters in one instance of the part."""
    per_block: bool
    """True when every transformer block has its own copy."""


@dataclass
class Attention:
    """The run's attention records: the probe text and, per recorded step, the arrays of attention/step_*.npz."""

    tokens: list[str]
    """Labels of the probe's tokens."""
    steps: list[int]
    """Recorded training steps, ascending."""
    first: dict[str, np.ndarray]
    """Arrays of the first record: att (L, H, T, T), q, k, v (L, H, T, hd)."""
    last: dict[str, np.ndarray]
    """Arrays of the last record."""
    stats: list[dict]
    """Per step: mean entropy in bits, share of attention on the previous token and on the first token."""


@dataclass
class RunSummary:
    """One run folder read for the guide; every field may be empty, with a reason in `missing`."""

    run_dir: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    train: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    tokenizer: object | None = None
    tokenizer_file: dict = field(default_factory=dict)
    comparison: dict | None = None
    doctor: list[dict] | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    attention: Attention | None = None
    params: list[ParamPart] = field(default_factory=list)
    params_total: int | None = None
    flops_per_token: float | None = None
    benchmarks: dict[str, dict] = field(default_factory=dict)
    excerpts: dict[str, Excerpt] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    qa_eval: dict | None = None
    """qa_eval.json of a finetune run: accuracy by model and question type, end and leak rates, examples."""
    chat: RunSummary | None = None
    """The finetune this guide also tells: the run itself when it is a finetune, else its chat/ stage (quickstart)."""

    @property
    def model_config(self) -> dict:
        return self.config.get("model") or {}

    @property
    def final_bpb(self) -> float | None:
        """Final validation bits per byte: summary.json, else the last eval record."""
        value = self.summary.get("final_val_bpb")
        if value is None and self.evals:
            value = self.evals[-1].get("val_bpb")
        return value if is_finite(value) else None

    @property
    def n_params(self) -> int | None:
        return self.summary.get("params") or self.params_total


def _json_or_note(path: Path, missing: list[str], why: str):
    """runfolder.read_json of `path`, or None with a note in `missing` saying it is absent (`why`) or unreadable."""
    if not path.is_file():
        missing.append(f"{path.name}: {why}")
        return None
    value = read_json(path)
    if value is None:
        missing.append(f"{path.name}: unreadable (not valid JSON)")
    return value


def _records_or_note(path: Path, missing: list[str], why: str) -> list[dict]:
    """runfolder.read_jsonl_lenient of `path`; a missing file (`why`) or skipped broken lines become a note."""
    if not path.is_file():
        missing.append(f"{path.name}: {why}")
        return []
    records, bad = read_jsonl_lenient(path)
    if bad:
        missing.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return records


def excerpt(dotted: str) -> Excerpt:
    """Import the module of `dotted` and quote the named object's live source; never raises."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
        lines, first = inspect.getsourcelines(obj)
        file = Path(inspect.getsourcefile(obj)).resolve()
    except (ImportError, AttributeError, OSError, TypeError) as e:
        return Excerpt(dotted, missing=f"{type(e).__name__}: {e}")
    try:
        rel = str(file.relative_to(REPO))
    except ValueError:
        rel = file.name
    return Excerpt(dotted, "".join(lines), rel, first)


def _param_part(name: str) -> tuple[str, bool]:
    """GPT-2 parameter name -> (part description, whether it is per block)."""
    local = re.sub(r"^transformer\.h\.\d+\.", "", name)
    per_block = local != name
    parts = {
        "transformer.wte": "token embedding (wte)", "transformer.wpe": "position embedding (wpe)",
        "ln_1": "norm before attention (ln_1)", "attn.c_attn": "attention: q, k, v projection (c_attn)",
        "attn.q_norm": "attention: q norm", "attn.k_norm": "attention: k norm",
        "attn.c_proj": "attention: output projection (c_proj)", "ln_2": "norm before the MLP (ln_2)",
        "mlp.c_fc": "MLP: up projection (c_fc)", "mlp.c_proj": "MLP: down projection (c_proj)",
        "transformer.ln_f": "final norm (ln_f)", "lm_head": "output head (lm_head)",
    }
    stem = local.rsplit(".", 1)[0]
    return parts.get(stem, stem), per_block


def param_parts(model_config: dict) -> tuple[list[ParamPart], int, float]:
    """Parameters per part of the GPT that `model_config` describes (built on the meta device: no memory), their
    total and the training FLOPs per token."""
    import torch

    from scratchllm.config import from_dict
    from scratchllm.model import GPT, GPTConfig

    with torch.device("meta"):
        model = GPT(from_dict(GPTConfig, model_config))
    parts: dict[str, ParamPart] = {}
    for name, p in model.named_parameters():  # a tied head appears once, as the token embedding
        if re.match(r"transformer\.h\.[1-9]", name):
            continue
        label, per_block = _param_part(name)
        part = parts.setdefault(label, ParamPart(label, "", 0, per_block))
        part.count += p.numel()
        part.shape = " + ".join(filter(None, [part.shape, "×".join(map(str, p.shape))]))
    return list(parts.values()), model.num_params(), model.flops_per_token()


def _entropy_bits(att: np.ndarray) -> float:
    """Mean entropy (bits) of the attention rows of att (..., T, T)."""
    p = att.astype(np.float64)
    return float(-(p * np.log2(np.where(p > 0, p, 1.0))).sum(-1).mean())


def attention_stats(att: np.ndarray) -> dict:
    """Summary of one record's att (L, H, T, T): entropy, share on the previous token and on the first token."""
    T = att.shape[-1]
    p = att.astype(np.float64)
    prev = np.mean([p[..., i, i - 1] for i in range(1, T)]) if T > 1 else float("nan")
    first = np.mean([p[..., i, 0] for i in range(1, T)]) if T > 1 else float("nan")
    return {"entropy_bits": _entropy_bits(att), "uniform_bits": float(np.mean(np.log2(np.arange(1, T + 1)))),
            "previous": float(prev), "first": float(first)}


def read_attention(run: Path, missing: list[str]) -> Attention | None:
    """The attention records of a run (first and last kept whole, statistics of every one), or None with a note."""
    files = attention_files(run)
    if not files:
        missing.append("attention/step_*.npz: no attention records (train.py writes them at each eval)")
        return None
    steps, stats, first, last = [], [], None, None
    for step, path in files:
        try:
            record = load_attention(path)
        except ValueError as e:
            missing.append(f"attention/{path.name}: unreadable ({str(e).rsplit(': ', 1)[-1]})")
            continue
        first, last = first or record, record
        steps.append(step)
        stats.append(dict(step=step, **attention_stats(record["att"])))
    if first is None:
        return None
    if not (run / PROBE).is_file():
        missing.append("probe.json: no probe text")
    T = first["att"].shape[-1]
    tokens = read_probe(run)["tokens"][:T] or [f"#{i}" for i in range(T)]
    return Attention(tokens, steps, first, last, stats)


def _read_tokenizer(run: RunSummary) -> None:
    path = run.run_dir / TOKENIZER
    if not path.is_file():
        path = run.run_dir / CHECKPOINTS / "latest" / TOKENIZER
    try:
        run.tokenizer = load_tokenizer(path)
        run.tokenizer_file = read_json(path) or {}
    except InputError as e:
        run.missing.append(f"{TOKENIZER}: {e}")


def _read_model(run: RunSummary) -> None:
    if not run.model_config:
        info = read_json(run.run_dir / CHECKPOINTS / "latest" / CONFIG) or {}
        run.config.setdefault("model", info.get("model") or {})
    if not run.model_config:
        run.missing.append("model config: neither config.json nor checkpoints/latest/config.json has one")
        return
    try:
        run.params, run.params_total, run.flops_per_token = param_parts(run.model_config)
    except InputError as e:
        run.missing.append(f"model config: {e}")


def read_benchmarks(bench_dir: Path | None) -> dict[str, dict]:
    """benchmarks/results/*.json by file stem; unreadable files are skipped."""
    paths = sorted(Path(bench_dir).glob("*.json")) if bench_dir and Path(bench_dir).is_dir() else []
    return {path.stem: data for path in paths if (data := read_json(path)) is not None}


def _read_metrics(run: RunSummary) -> None:
    records = _records_or_note(run.run_dir / METRICS, run.missing, "no training metrics")
    for kind, bucket in (("train", run.train), ("eval", run.evals), ("event", run.events)):
        bucket.extend(r for r in records if r.get("kind") == kind)


def _read_run(path: Path) -> RunSummary:
    """What every chapter starts from: config, summary, metrics, tokenizer and figures."""
    run = RunSummary(path)
    run.config = _json_or_note(path / CONFIG, run.missing, "no resolved config") or {}
    run.summary = _json_or_note(path / SUMMARY, run.missing, "no run summary (written when training ends)") or {}
    _read_metrics(run)
    _read_tokenizer(run)
    run.figures = {p.stem: p for p in sorted((path / FIGURES).glob("*.png"))}
    return run


def collect_finetune(path: Path) -> RunSummary:
    """A finetune run folder read for the finetuning chapter only: what every run folder holds and qa_eval.json
    (None, with a note, when the finetune has not been scored)."""
    run = _read_run(path)
    run.qa_eval = read_qa_eval(path)
    if run.qa_eval is None:
        run.missing.append(f"{QA_EVAL}: " + ("unreadable (not a JSON object)" if (path / QA_EVAL).is_file()
                                             else "the finetune was not scored on held-out questions"))
    return run


def is_finetune(run_dir: Path) -> bool:
    """A finetune run folder: it holds qa_eval.json, or its tokenizer has the chat turn tokens."""
    if (run_dir / QA_EVAL).is_file():
        return True
    try:
        return has_chat_tokens(load_tokenizer(run_dir / TOKENIZER))
    except InputError:  # absent or unreadable: no chat model to tell
        return False


def finetune_dir(run_dir: Path) -> Path | None:
    """The finetune run folder this guide tells: `run_dir` itself when it is one, else its chat/ stage when that
    is a run folder, else None."""
    if is_finetune(run_dir):
        return run_dir
    return run_dir / CHAT if is_run(run_dir / CHAT) else None


def collect(run_dir, bench_dir=None) -> RunSummary:
    """Read a run folder (and benchmark results) into a RunSummary; a folder that is no run is an InputError."""
    path = require_run(run_dir, "report")
    stage = finetune_dir(path)
    run = collect_finetune(path) if stage == path else _read_run(path)
    run.samples = _records_or_note(path / SAMPLES, run.missing, "no samples")
    run.comparison = _json_or_note(path / COMPARISON, run.missing, "no tokenizer comparison")
    doctor = _json_or_note(path / DOCTOR, run.missing, "the doctor has not examined this run")
    run.doctor = [d for d in doctor if isinstance(d, dict)] if isinstance(doctor, list) else None
    if doctor is not None and run.doctor is None:
        run.missing.append("doctor.json: unreadable (not a list of findings)")
    if not run.figures:
        run.missing.append("figures/: no figures (none could be drawn from what this run folder holds)")
    run.attention = read_attention(path, run.missing)
    _read_model(run)
    run.benchmarks = read_benchmarks(bench_dir)
    run.excerpts = {key: excerpt(name) for key, name in EXCERPTS.items()}
    run.chat = run if stage == path else collect_finetune(stage) if stage else None
    return run
