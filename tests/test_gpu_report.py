"""benchmarks/gpu_report.py on a hand-made work folder, as gpu_check.sh's parts leave it: pytest's JUnit XML, the
runs' metrics.jsonl / summary.json / config.json, the parts' .rc and .log files and the measured peak. A failed,
timed-out or unrun part is reported as such; the report is written through config.write_json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scratchllm.config import GPTConfig
from scratchllm.model import GPT

TINY_MODEL = {"vocab_size": 64, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
PEAK = {"device": "NVIDIA H100 80GB HBM3", "dtype": "bfloat16", "matmul_n": 8192, "measured_flops": 700e12,
        "spec_flops": 989e12, "spec_source": "NVIDIA datasheet"}
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" \
failures="1" skipped="1" tests="3" time="9.1" timestamp="2026-12-05T07:02:09" hostname="gpu">\
<testcase classname="tests.test_cuda" name="test_bf16_autocast_steps_track_fp32_steps" time="4.250" />\
<testcase classname="tests.test_cuda" name="test_fsdp2_on_one_gpu_equals_the_plain_model[True]" time="3.100">\
<failure message="AssertionError: Tensor-likes are not close!">tests/test_cuda.py:120: AssertionError</failure>\
</testcase><testcase classname="tests.test_device_precision" name="test_float32_on_cuda_turns_on_tf32" time="0.000">\
<skipped type="pytest.skip" message="needs a CUDA GPU (benchmarks/gpu_check.sh)">skipped</skipped></testcase>\
</testsuite></testsuites>"""


@pytest.fixture(scope="module")
def gpu_report(load_benchmark):
    return load_benchmark("gpu_report")


def write_part(work: Path, name: str, rc: int, ms: int, log: str = "") -> None:
    (work / f"{name}.rc").write_text(f"{rc} {ms}\n")  # as run_part writes them
    (work / f"{name}.log").write_text(log)


def write_run(work: Path, name: str, sets: list[str]) -> None:
    """A run folder as `scratchllm train` leaves it: logged every 5 steps, a compile-slow first step."""
    run = work / name
    run.mkdir()
    (work / f"{name}.sets").write_text("".join(s + "\n" for s in sets))
    (run / "config.json").write_text(json.dumps({"model": TINY_MODEL, "train": {"device": "cuda"}}))
    train = [(1, 1000, 50.0, 20.0, 900.0), (5, 5000, 4000.0, 21.0, 1200.0), (10, 10000, 5000.0, 22.0, 1200.0),
             (15, 15000, 10000.0, 23.0, None), (20, 20000, 5000.0, 24.0, None)]  # step, tokens, tok/s, elapsed, MB
    records = [{"kind": "train", "step": step, "tokens": tokens, "tokens_per_s": rate, "elapsed_s": elapsed,
                **({"mem_mb": mb} if mb else {})} for step, tokens, rate, elapsed, mb in train]
    records.insert(3, {"kind": "eval", "step": 10, "elapsed_s": 22.5, "val_loss": 3.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "summary.json").write_text(json.dumps({"tokens_per_s": 833.3, "final_val_bpb": 1.25, "mfu": 0.31}))


@pytest.fixture
def work(tmp_path) -> Path:
    """Every part ran: the peak and gpt2_124m ok, one CUDA test failed (pytest exit 1), speedrun_5min timed out."""
    write_part(tmp_path, "peak", 0, 4000)
    (tmp_path / "peak.json").write_text(json.dumps(PEAK))
    write_part(tmp_path, "tests", 1, 9500, log="1 failed, 1 passed, 1 skipped")
    (tmp_path / "tests.xml").write_text(JUNIT)
    write_part(tmp_path, "gpt2_124m", 0, 120_000)
    write_run(tmp_path, "gpt2_124m", ["train.device=cuda", "train.max_steps=50", "train.max_steps=20"])
    write_part(tmp_path, "speedrun_5min", 124, 90_000, log="step 40 ...\n")
    (tmp_path / "missing").write_text("hypothesis\n")
    return tmp_path


def test_report_reads_the_peak_tests_and_runs(gpu_report, work):
    report = gpu_report.build_report(work, mode="cuda", warmup_steps=10, python="/usr/bin/python3")
    assert report["mode"] == "cuda" and report["machine"]["python"] == "/usr/bin/python3"
    assert report["machine"]["missing_packages"] == ["hypothesis"]
    assert report["peak"] == {"status": "ok", "exit_code": 0, "seconds": 4.0, **PEAK}

    tests = report["tests"]
    assert tests["status"] == "failed" and tests["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    failed = next(c for c in tests["cases"] if c["outcome"] == "failed")
    assert failed["name"] == "test_fsdp2_on_one_gpu_equals_the_plain_model[True]"
    assert failed["file"] == "tests.test_cuda" and failed["message"] == "AssertionError: Tensor-likes are not close!"

    run = report["gpt2_124m"]
    with torch.device("meta"):
        model = GPT(GPTConfig(**TINY_MODEL))
    assert run["overrides"] == ["train.device=cuda", "train.max_steps=50", "train.max_steps=20"]
    assert (run["flops_per_token"], run["params"]) == (model.flops_per_token(), model.num_params())
    # windows after step 10: 5,000 tokens at 10,000/s and 5,000 at 5,000/s -> 10,000 tokens in 1.5 s
    assert run["tokens_per_s"] == pytest.approx(10_000 / 1.5)
    assert run["mfu_vs_measured_peak"] == pytest.approx(run["tokens_per_s"] * model.flops_per_token() / 700e12)
    assert run["mfu_vs_spec_peak"] == pytest.approx(run["tokens_per_s"] * model.flops_per_token() / 989e12)
    assert (run["steps"], run["first_step_s"], run["peak_mem_mb"]) == (20, 20.0, 1200.0)
    assert (run["trainer_mfu"], run["final_val_bpb"], run["tokens_per_s_whole_run"]) == (0.31, 1.25, 833.3)
    assert report["all_ok"] is False


def test_failed_timed_out_and_unrun_parts_are_reported_not_raised(gpu_report, work):
    write_part(work, "gpt2_124m", 1, 3000, log="Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory\n")
    (work / "gpt2_124m" / "metrics.jsonl").unlink()  # died before its first logged step
    (work / "tests.xml").write_text(JUNIT[:300])  # pytest killed while writing its XML
    for name in ("peak.rc", "peak.json"):
        (work / name).unlink()  # the peak never ran
    report = gpu_report.build_report(work)
    run = report["gpt2_124m"]
    assert run["status"] == "failed" and run["exit_code"] == 1 and "CUDA out of memory" in run["log_tail"]
    assert "tokens_per_s" not in run
    assert report["speedrun_5min"]["status"] == "timeout" and report["speedrun_5min"]["log_tail"] == "step 40 ...\n"
    assert report["tests"]["status"] == "failed" and report["tests"]["report_error"].startswith("tests.xml")
    assert report["peak"] == {"status": "not run"}
    assert report["all_ok"] is False


def test_mfu_is_none_without_a_spec_for_the_device(gpu_report, work):
    (work / "peak.json").write_text(json.dumps({**PEAK, "device": "NVIDIA GH200 480GB", "spec_flops": None}))
    run = gpu_report.build_report(work)["gpt2_124m"]
    assert run["mfu_vs_spec_peak"] is None and run["mfu_vs_measured_peak"] > 0


def test_spec_peak_only_for_the_exact_device_names_it_lists(gpu_report):
    assert gpu_report.spec_peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
    assert gpu_report.spec_peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12
    assert gpu_report.spec_peak_flops("NVIDIA H100 NVL", "bfloat16") is None  # a neighbour's figure would be wrong
    assert gpu_report.spec_peak_flops("NVIDIA H200", "float32") is None
    assert gpu_report.spec_peak_flops(None, "bfloat16") is None


def test_measure_peak_names_the_device_and_measures_its_roof(gpu_report, one_thread):
    peak = gpu_report.measure_peak("cpu", "float32", n=64)
    assert peak["matmul_n"] == 64 and peak["measured_flops"] > 0 and peak["spec_flops"] is None
    assert "threads" in peak["device"]  # metrics.hardware_name on a CPU


def test_main_writes_through_write_json_and_exits_1_unless_all_ok(gpu_report, work, monkeypatch, capsys):
    written = []
    real = gpu_report.write_json
    monkeypatch.setattr(gpu_report, "write_json", lambda path, obj: (written.append(path), real(path, obj)))
    out = work / "results" / "gpu_check.json"
    assert gpu_report.main(["report", str(work), str(out), "--mode", "cpu", "--started-ns", "1"]) == 1
    assert written == [out] and json.loads(capsys.readouterr().out) == json.loads(out.read_text())
    report = json.loads(out.read_text())
    assert report["mode"] == "cpu dry run" and report["total_seconds"] > 0

    write_part(work, "tests", 0, 9500)
    write_part(work, "speedrun_5min", 0, 60_000)
    assert gpu_report.main(["report", str(work), str(out)]) == 0
    assert json.loads(out.read_text())["all_ok"] is True
