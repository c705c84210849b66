"""report: the guide built from run folders made in the contract's format, parsed back with pypdf (an independent
PDF reader): chapters, the run's own numbers, embedded images and fonts, and listings equal to the live source."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

from scratchllm.config import InputError
from scratchllm.report import CHAPTER_TITLES, build_report
from scratchllm.report.collect import EXCERPTS, excerpt, param_parts
from scratchllm.tokenizer import train_bpe

RECORDED = (0, 10, 20, 30)
PROBE = "To be, or not to be, that is the question"


def _lr(step: int, peak: float = 3e-3, warmup: int = 5, total: int = 30) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))))


def _record_attention(run, model, probe_ids, step):
    arrays = {name: torch.stack([layer[name][0] for layer in model.inspect(torch.tensor([probe_ids]))]).numpy()
              for name in ("att", "q", "k", "v")}  # (L, H, T, T) / (L, H, T, hd)
    np.savez_compressed(run / "attention" / f"step_{step:06d}.npz", step=np.array(step),
                        **{k: v.astype(np.float16) for k, v in arrays.items()})


def _val(model, val_ids, bytes_per_token):
    """Mean validation loss over 32-token windows, and the bits per byte it implies."""
    n = (len(val_ids) - 1) // 32 * 32
    x, y = val_ids[:n].view(-1, 32), val_ids[1:n + 1].view(-1, 32)
    with torch.no_grad():
        loss = model(x, y)[1].item()
    return loss, loss / math.log(2) / bytes_per_token


def _train(run, text, tok):
    """A real tiny GPT trained for 31 AdamW steps, logging metrics, attention records and samples as train.py does."""
    from scratchllm.checkpoint import save_model
    from scratchllm.generate import generate_text
    from scratchllm.model import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg)
    ids = torch.tensor(tok.encode(text[:16000]))
    val_ids = torch.tensor(tok.encode(text[16000:18000]))
    bpt = len(text[16000:18000].encode()) / len(val_ids)
    probe = tok.encode(PROBE)
    (run / "attention").mkdir()
    (run / "attention" / "probe.json").write_text(json.dumps({"text": PROBE, "token_ids": probe,
                                                              "tokens": [tok.decode([i]) for i in probe]}))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    metrics, samples = [], []
    for step in range(RECORDED[-1] + 1):
        if step in RECORDED:
            _record_attention(run, model, probe, step)
            loss, bpb = _val(model, val_ids, bpt)
            metrics.append({"kind": "eval", "step": step, "train_loss": loss, "val_loss": loss,
                            "val_ppl": math.exp(loss), "val_bpb": bpb, "train_bpb": bpb})
        if step in (0, RECORDED[-1]):
            samples.append({"step": step, "prompt": "ROMEO:", "text": generate_text(
                model, tok, "ROMEO:", 30, temperature=0.8, seed=1)})
        for g in opt.param_groups:
            g["lr"] = _lr(step)
        start = torch.randint(0, len(ids) - 33, (8,))
        x, y = torch.stack([ids[i:i + 32] for i in start]), torch.stack([ids[i + 1:i + 33] for i in start])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics.append({"kind": "train", "step": step, "loss": loss.item(), "lr": _lr(step), "grad_norm": 1.0,
                        "tokens_per_s": 5000.0 + step, "mfu": 0.01, "mem_mb": 300.0 + step, "elapsed_s": 0.05 * step,
                        "tokens": 256 * (step + 1)})
    save_model(run / "checkpoints" / "latest", model, tok, {"step": RECORDED[-1]})
    return model, cfg, metrics, samples


def make_run(run, text, full=True):
    """A run folder in the contract's format from a real tiny model; `full` adds the comparison, doctor and figures."""
    from scratchllm.doctor import diagnose_run
    from scratchllm.tokenizer.compare import compare_tokenizers, write_comparison
    from scratchllm.viz import render_all

    tok = train_bpe(text[:16000], 300, progress=False)
    tok.save(run / "tokenizer.json")
    model, cfg, metrics, samples = _train(run, text, tok)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    config = {"model": dataclasses.asdict(cfg), "data": {"corpus": "shakespeare"},
              "tokenizer": {"type": "bpe", "vocab_size": 300},
              "train": {"lr": 3e-3, "grad_accum_steps": 2, "grad_checkpointing": False, "dtype": "float32"}}
    (run / "config.json").write_text(json.dumps(config))
    final = [m for m in metrics if m["kind"] == "eval"][-1]["val_bpb"]
    (run / "summary.json").write_text(json.dumps({
        "params": model.num_params(), "final_val_bpb": final, "best_val_bpb": final, "steps": RECORDED[-1] + 1,
        "elapsed_s": 1.5, "tokens_per_s": 5000.0, "mfu": 0.01, "device": "cpu", "dtype": "float32",
        "hardware": "test CPU", "corpus": {"name": "shakespeare", "bytes": 16000},
        "tokenizer": {"type": "bpe", "vocab_size": 300}}))
    if full:
        write_comparison(compare_tokenizers(text[:20000], 300), run)
        diagnose_run(run)
        render_all(run, [])
    return model.num_params(), final


def pdf_text(path) -> tuple[PdfReader, str]:
    reader = PdfReader(path)
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def squash(text: str) -> list[str]:
    """Lines with all whitespace removed, empty ones, running heads and page numbers dropped: text to compare
    whatever the layout."""
    lines = (re.sub(r"\s+", "", line) for line in text.splitlines())
    return [s for s in lines if s and not s.isdigit() and not s.startswith("BuildaLargeLanguageModel")]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, shakespeare_text, one_thread):
    run = tmp_path_factory.mktemp("run")
    n_params, bpb = make_run(run, shakespeare_text)
    out = build_report(run, bench_dir=run / "no-benchmarks")
    return run, out, n_params, bpb, squash(pdf_text(out)[1])


def test_guide_has_every_chapter_and_the_runs_numbers(full_run):
    run, out, n_params, bpb, _ = full_run
    assert out == run / "guide.pdf"
    reader, text = pdf_text(out)
    assert len(reader.pages) >= 15
    for title in CHAPTER_TITLES:
        assert title in text
    assert f"{bpb:.4f}" in text
    assert f"{n_params:,}" in text
    assert "What this run does not have" not in text  # the full run lacks nothing


def test_guide_embeds_figures_fonts_and_bookmarks(full_run):
    run, out, _, _, _ = full_run
    reader = PdfReader(out)
    images = sum(len(page.images) for page in reader.pages)
    assert images >= 6  # loss, pipeline, a layer, evolution, cube, tokenization
    fonts = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            descriptor = font.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            assert "/FontFile2" in descriptor  # TrueType program embedded
            fonts.add(str(descriptor["/FontName"]).split("+")[-1])
    assert {"DejaVuSerifBook", "DejaVuSansBold", "DejaVuSansMonoBook"} <= fonts
    top = [o.title for o in reader.outline if not isinstance(o, list)]
    assert [t.split(". ", 1)[1] for t in top] == list(CHAPTER_TITLES)


@pytest.mark.parametrize("key", sorted(EXCERPTS))
def test_listings_equal_the_live_source(full_run, key):
    """Every listing the guide prints is the source inspect.getsource gives now; one that cannot be imported yet is
    named in an "unavailable" note instead."""
    _, out, _, _, _ = full_run
    module, _, attr = EXCERPTS[key].rpartition(".")
    text = full_run[4]
    try:
        source = inspect.getsource(getattr(importlib.import_module(module), attr))
    except (ImportError, AttributeError):
        assert any(line.startswith(f"Thelistingof{EXCERPTS[key]}isunavailable") for line in text)
        return
    want = squash(source)
    assert any(text[i:i + len(want)] == want for i in range(len(text))), f"{EXCERPTS[key]} not printed verbatim"


@pytest.mark.parametrize("variant", [{}, {"tie_weights": False, "bias": True}, {"activation": "swiglu"},
                                     {"positions": "rope", "qk_norm": True, "norm_type": "rmsnorm"},
                                     {"norm": "post", "n_head": 3}])
def test_parameter_parts_add_up_to_the_models_own_count(variant):
    from scratchllm.model import GPT, GPTConfig

    cfg = GPTConfig(**{"vocab_size": 97, "block_size": 16, "n_layer": 3, "n_head": 2, "n_embd": 24, **variant})
    parts, total, _ = param_parts(dataclasses.asdict(cfg))
    model = GPT(cfg)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert total == sum(unique.values())
    assert sum(p.count * (cfg.n_layer if p.per_block else 1) for p in parts) == total
    block = sum(p.numel() for p in model.transformer.h[0].parameters())
    assert sum(p.count for p in parts if p.per_block) == block


def test_partial_run_says_what_is_missing(full_run, tmp_path):
    """Only config, metrics, summary, tokenizer and checkpoint of the full run: no attention, comparison, doctor,
    figures or samples. The report draws the figures those files allow, and no others."""
    for name in ("config.json", "metrics.jsonl", "summary.json", "tokenizer.json", "checkpoints"):
        (shutil.copytree if name == "checkpoints" else shutil.copy)(full_run[0] / name, tmp_path / name)
    (tmp_path / "attention").mkdir()
    (tmp_path / "attention" / "step_000005.npz").write_bytes(b"not a zip")
    out = build_report(tmp_path, tmp_path / "out" / "g.pdf", bench_dir=tmp_path / "none")
    reader, text = pdf_text(out)
    for title in CHAPTER_TITLES:
        assert title in text
    for missing in ("tokenizer_comparison.json", "doctor.json", "attention/step_*.npz", "samples.jsonl",
                    "step_000005.npz: unreadable"):
        assert missing in text
    drawn = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert drawn == {"loss", "tokenization", "embeddings_pca"}  # no attention figure without attention records
    assert sum(len(page.images) for page in reader.pages) == len(drawn)
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left behind


def test_missing_excerpt_is_reported_not_raised():
    ex = excerpt("scratchllm.model.no_such_function")
    assert ex.missing and not ex.source
    assert excerpt("scratchllm.no_such_module.f").missing


def test_not_a_run_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_report(tmp_path / "nope")
    with pytest.raises(InputError, match="not a run folder"):
        build_report(tmp_path)


def test_cli_report_writes_pdf_and_rejects_bad_input(full_run, tmp_path, capsys):
    from scratchllm.cli import main

    run = full_run[0]
    assert main(["report", str(run), "-o", str(tmp_path / "g.pdf"), "--bench-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "g.pdf")
    assert PdfReader(tmp_path / "g.pdf").pages
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["report", str(run), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_odd_run_char_tokenizer_diverged_and_corrupt_files(tmp_path):
    """A diverged char-level run with a broken metrics line and a corrupt doctor.json still gives a guide that says
    so, instead of a traceback."""
    from scratchllm.model import GPT, GPTConfig
    from scratchllm.tokenizer import CharTokenizer

    tok = CharTokenizer.train("To be, or not to be: that is the question.\n")
    tok.save(tmp_path / "tokenizer.json")
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8)
    (tmp_path / "config.json").write_text(json.dumps({"model": dataclasses.asdict(cfg)}))
    records = [{"kind": "train", "step": 1, "loss": 3.0, "lr": 1e-3}, {"kind": "train", "step": 2, "loss": math.nan}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{broken\n")
    (tmp_path / "doctor.json").write_text("[{not json")
    (tmp_path / "summary.json").write_text(json.dumps({"status": "diverged", "advice": "lower train.lr to 3e-4"}))
    text = "".join(squash(pdf_text(build_report(tmp_path, bench_dir=tmp_path))[1]))
    for expected in ("metrics.jsonl: 1 unreadable line(s) skipped", "doctor.json: unreadable", "ended as “diverged”",
                     "lower train.lr to 3e-4", "No merges", "cannot encode", f"{GPT(cfg).num_params():,}"):
        assert re.sub(r"\s+", "", expected) in text


def test_benchmark_results_are_quoted(full_run, tmp_path):
    """Numbers from benchmarks/results JSON files (any shape of record) land in the guide's tables."""
    machine = {"torch": "2.13.0+cpu", "threads": 2, "cpu": "Test CPU 9000"}
    results = {
        "model": {"machine": machine, "shapes": {"tiny (2L)": {"sdpa_tokens_per_s": 12345.6,
                                                              "reference_tokens_per_s": 4321.0,
                                                              "sdpa_over_reference": 2.857,
                                                              "grad_checkpointing_slowdown": 1.234}}},
        "distributed": {"machine": machine, "rows": [{"mode": "ddp", "nproc": 2, "tokens_per_s": 7777.0,
                                                      "efficiency": 0.6}]},
        "generate": {"machine": machine, "kv_cache": [{"context": 256, "naive_tokens_per_s": 36.9,
                                                       "kv_cache_tokens_per_s": 308.7, "speedup": 8.4}]},
        "broken": "{not json",
    }
    for name, data in results.items():
        (tmp_path / f"{name}.json").write_text(data if isinstance(data, str) else json.dumps(data))
    text = "".join(squash(pdf_text(build_report(full_run[0], tmp_path / "g.pdf", bench_dir=tmp_path))[1]))
    for expected in ("12,346", "4,321", "2.86", "1.23", "7,777", "0.60", "308.7", "8.4", "TestCPU9000"):
        assert expected in text


def test_guide_of_a_real_tiny_training_run(tmp_path, tiny_corpus_file, one_thread):
    """train() -> doctor -> report end to end: the guide prints the run's own summary numbers."""
    from scratchllm.config import DataConfig, RunConfig, TokenizerConfig, TrainConfig
    from scratchllm.doctor import diagnose_run
    from scratchllm.model import GPTConfig
    from scratchllm.train import train

    cfg = RunConfig(model=GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32),
                    data=DataConfig(corpus=str(tiny_corpus_file)), tokenizer=TokenizerConfig(vocab_size=300),
                    train=TrainConfig(max_steps=20, max_minutes=0, batch_size=8, warmup_steps=5, eval_every=10,
                                      eval_batches=2, log_every=5, sample_tokens=20, record_attention_every=10,
                                      device="cpu", dtype="float32"))
    summary = train(cfg, tmp_path / "run", progress=False)
    diagnose_run(tmp_path / "run")
    text = "".join(squash(pdf_text(build_report(tmp_path / "run", bench_dir=tmp_path))[1]))
    for expected in (*CHAPTER_TITLES, f"{summary['final_val_bpb']:.4f}", f"{summary['params']:,}",
                     "How attention changed during training", "What the doctor found in this run"):
        assert re.sub(r"\s+", "", expected) in text


def test_report_draws_the_figures_a_trained_run_lacks_and_keeps_those_there(tmp_path, shakespeare_text, one_thread):
    """A run folder as training leaves it (no `viz`): the report draws every figure, and a second report redraws
    none of them (their files keep their modification times)."""
    run = tmp_path / "run"
    run.mkdir()
    make_run(run, shakespeare_text, full=False)
    assert not (run / "figures").exists()
    reader, _ = pdf_text(build_report(run, bench_dir=tmp_path / "none"))
    drawn = {p.stem for p in (run / "figures").glob("*.png")}
    assert drawn == {"loss", "attention_layer0", "attention_layer1", "attention_evolution", "attention_cube",
                     "attention_pipeline", "embeddings_pca", "tokenization"}
    assert sum(len(page.images) for page in reader.pages) >= 7  # one layer of the two is shown
    before = {p.name: p.stat().st_mtime_ns for p in (run / "figures").iterdir()}
    build_report(run, tmp_path / "again.pdf", bench_dir=tmp_path / "none")
    assert {p.name: p.stat().st_mtime_ns for p in (run / "figures").iterdir()} == before


MEMORY_BENCH = {"machine": {"cpu_model": "Test CPU 9000", "threads": 2, "torch": "2.13.0+cpu"},
                "memory": {"batch": 64, "block_size": 64, "steps": 5, "rows": [
                    {"variant": "plain", "rss_before_mb": 100.0, "peak_rss_mb": 400.0, "tokens_per_s": 2000.0},
                    {"variant": "grad accumulation (4 x 1/4)", "rss_before_mb": 100.0, "peak_rss_mb": 250.0,
                     "tokens_per_s": 2100.0},
                    {"variant": "activation checkpointing", "rss_before_mb": 100.0, "peak_rss_mb": 340.0,
                     "tokens_per_s": 1600.0}]}}


def test_memory_table_has_a_row_per_technique_with_its_effect_and_machine(full_run, tmp_path):
    """The table "What this run used and what the benchmarks measured" (5.5 with every results file) names each
    technique, its memory and speed beside the plain step, and the machine, in words a learner reads: no dotted
    JSON keys."""
    (tmp_path / "train.json").write_text(json.dumps(MEMORY_BENCH))
    text = "\n".join(squash(pdf_text(build_report(full_run[0], tmp_path / "g.pdf", bench_dir=tmp_path))[1]))
    table = re.split(r"Table5\.\d|CHAPTER6", text[text.index("Whatthisrunused"):])[0]
    assert not re.search(r"[a-z_]+\.[a-z_]+\.\d|rss|_mb|memory\.rows", table)
    for name in ("gradientaccumulation", "activationcheckpointing", "bfloat16"):
        assert name in table
    assert table.count("TestCPU9000") >= 3  # the plain step and the two measured techniques
    assert "150MB(−50%)" in table and "1.05×" in table  # accumulation: 400-100 -> 250-100 MB, 2000 -> 2100 tok/s
    assert "240MB(−20%)" in table and "0.80×" in table  # checkpointing: 340-100 MB, 1600 tok/s


def test_prose_numbers_come_from_the_results_files(full_run, tmp_path):
    """The prose quotes the nanoGPT baseline from speedrun.json and the benchmark MFU from train.json, and says
    nothing of them without those files."""
    speedrun = {"machine": {"cpu": "Test CPU 9000"}, "runs": [
        {"minutes": 1.0, "baseline": {"bpb": {"val": 2.9123}}, "ours": {"corpus": "shakespeare"}},
        {"minutes": 5.0, "baseline": {"bpb": {"val": 2.4567}}, "ours": {"corpus": "shakespeare"}}]}
    train = {"machine": {"cpu": "Test CPU 9000"}, "matmul_peak_fp32_flops": 2.0e11,
             "speed_shakespeare_char": {"mfu": {"ours": 0.4321}}}
    (tmp_path / "speedrun.json").write_text(json.dumps(speedrun))
    (tmp_path / "train.json").write_text(json.dumps(train))
    text = "".join(squash(pdf_text(build_report(full_run[0], tmp_path / "g.pdf", bench_dir=tmp_path))[1]))
    assert "2.91after1minuteand2.46after5minutes" in text
    assert "reaches43%ofameasuredfloat32matrix-productpeakof200GFLOP/s" in text
    assert "babyGPT" not in "".join(full_run[4])  # full_run has no benchmark results
    assert "rarelypass" not in "".join(full_run[4])


def test_report_modules_stay_small_and_leave_layout_to_the_book():
    """No report module passes layout numbers (widths=, size=) to the Book, and none grows past 600 lines."""
    import scratchllm.report

    package = Path(scratchllm.report.__file__).parent
    for path in package.rglob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 600, path.name
        if path.name != "pdf.py":
            assert not re.search(r"\b(widths|size|width)=", source), path.name


@given(st.lists(st.tuples(st.floats(1, 200), st.booleans()), min_size=1, max_size=12), st.booleans())
def test_column_widths_fit_the_page_and_cut_only_the_widest(columns, fill):
    from scratchllm.report.pdf import column_widths

    natural, numeric = [w for w, _ in columns], [n for _, n in columns]
    widths = column_widths(natural, numeric, 166.0, fill)
    assert sum(widths) <= 166.0 + 1e-6
    if sum(natural) > 166.0:  # too wide: the widest columns are cut to one width, the others kept
        cap = max(widths)
        assert all(abs(w - min(n, cap)) < 1e-6 for w, n in zip(widths, natural, strict=True))
    elif fill and not all(numeric):  # fits: text columns stretched to the full width, numbers kept
        assert abs(sum(widths) - 166.0) < 1e-6
        assert all(w == n for w, n, num in zip(widths, natural, numeric, strict=True) if num)
    else:
        assert widths == natural
