"""Data parallelism proven equal to one process: 2 gloo ranks under torchrun against the same steps run alone."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import scratchllm.distributed as D
from scratchllm.config import InputError

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker as W  # noqa: E402

WORKER = Path(__file__).parent / "ddp_worker.py"


def torchrun(out: Path, *args: str, nproc: int = 2, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={D.free_port()}", str(WORKER), "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One torchrun of 2 ranks: DDP without and with accumulation, FSDP2 with accumulation, FSDP2 loading."""
    out = tmp_path_factory.mktemp("ddp")
    alone = W.fresh_model(seed=123)
    save_file({k: v.contiguous() for k, v in alone.state_dict().items() if k != "lm_head.weight"},
              out / "alone.safetensors")
    proc = torchrun(out, "--modes", "ddp:1,ddp:2,fsdp2:2", "--load", str(out / "alone.safetensors"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), W.fixed_batch_loss(alone)


@functools.cache
def one_process(accum: int) -> tuple[list[float], dict]:
    return W.run(D.DistContext(), "plain", accum, steps=3)


def assert_same_weights(path: Path, state: dict) -> None:
    got = load_file(path)
    for name, t in got.items():
        torch.testing.assert_close(t, state[name], atol=1e-5, rtol=0, msg=name)


def test_ddp_two_ranks_match_one_process_same_global_batch(two_ranks):
    out, res, _ = two_ranks
    losses, state = one_process(accum=1)
    assert res["world_size"] == 2
    assert res["ddp:1"] == pytest.approx(losses, abs=1e-5)
    assert_same_weights(out / "ddp_1.safetensors", state)


def test_ddp_2x2_micro_batches_with_no_sync_match_1x4(two_ranks):
    out, res, _ = two_ranks
    losses, state = one_process(accum=4)  # 1 process x 4 micro-batches of 2 rows = 2 ranks x 2 x 2
    assert res["ddp:2"] == pytest.approx(losses, abs=1e-5)
    assert_same_weights(out / "ddp_2.safetensors", state)


def test_fsdp2_matches_one_process_and_its_full_state_loads_alone(two_ranks):
    out, res, _ = two_ranks
    losses, state = one_process(accum=4)
    assert res["fsdp2:2"] == pytest.approx(losses, abs=1e-5)
    assert_same_weights(out / "fsdp2_2.safetensors", state)
    model, reference = W.fresh_model(seed=5), W.fresh_model(seed=6)
    D.load_full_state_dict(model, load_file(out / "fsdp2_2.safetensors"))  # one plain process, tied head filled in
    reference.load_state_dict(state)
    assert W.fixed_batch_loss(model) == pytest.approx(W.fixed_batch_loss(reference), abs=1e-5)


def test_single_process_weights_load_into_fsdp2(two_ranks):
    _, res, alone_loss = two_ranks
    assert res["loaded_loss"] == pytest.approx(alone_loss, abs=1e-5)


def test_rank_rows_partition_the_global_batch_and_one_process_needs_no_group():
    ctx = D.DistContext()
    model = W.fresh_model()
    with D.maybe_no_sync(model, is_last_micro=False):  # a plain model has nothing to skip: no error, no effect
        _, loss = model(*W.global_batch(0))
    assert torch.isfinite(loss)
    rows = [range(8)[D.rank_rows(8, D.DistContext(rank=r, world_size=4))] for r in range(4)]
    assert sorted(i for part in rows for i in part) == list(range(8))  # disjoint, complete
    with pytest.raises(InputError, match="divisible"):
        D.rank_rows(6, D.DistContext(rank=0, world_size=4))
    assert D.all_mean(3.0, ctx) == 3.0 and D.all_max([1.0, 0.0], ctx) == [1.0, 0.0]
    dealt = [D.own_share(list(range(6)), D.DistContext(rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(dealt, [])) == list(range(6)) and dealt[1] == [1, 4]


def test_port_in_use_is_one_line_input_error():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} .* in use") as e:
            D.launch(["train"], nproc=2, master_port=port)
    assert "\n" not in str(e.value)


def test_a_rank_that_dies_fails_the_run_fast(tmp_path):
    start = time.monotonic()
    proc = torchrun(tmp_path, "--die-rank", "1", "--timeout", "30", timeout=120)
    assert proc.returncode != 0
    assert "dies on purpose" in proc.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_two_nodes_on_localhost_match_one_process(tmp_path):
    """torchrun --nnodes 2 --node_rank 0/1 with one process each, rendezvous on 127.0.0.1 (as two machines would)."""
    port = D.free_port()
    cmds = [D.torchrun_command([], nproc=1, nnodes=2, node_rank=r, master_port=port)[:-2]
            + [str(WORKER), "--out", str(tmp_path), "--modes", "ddp:2"] for r in (0, 1)]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["world_size"] == 2
    assert res["ddp:2"] == pytest.approx(one_process(accum=4)[0], abs=1e-5)



def test_train_nproc_relaunches_the_same_command_without_it():
    from scratchllm.cli import build_parser
    from scratchllm.cli.train_cmd import rank_argv
    args = build_parser().parse_args(["train", "--preset", "tiny", "--nproc", "2", "--max-steps", "3",
                                      "--set", "train.lr=3e-4", "--out", "runs/x", "--master-port=29555"])
    assert (args.nproc, args.master_port, D.wants_launch(args)) == (2, 29555, True)
    again = build_parser().parse_args(rank_argv(args))
    assert (again.nproc, again.preset, again.out, D.wants_launch(again)) == (1, "tiny", "runs/x", False)
    assert set(again.overrides) == {"train.lr=3e-4", "train.max_steps=3"}


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_ddp_train_interrupted_and_resumed_matches_one_process(tmp_path, tiny_corpus_file):
    """scratchllm's train() on 2 ranks x 2 micro-batches, Ctrl-C at step 3, --resume to 6 == 1 process x 4."""
    from scratchllm.train import train
    run = tmp_path / "ddp"
    for extra in (["--stop-at", "3"], ["--resume"]):
        proc = torchrun(run, "--train", str(tiny_corpus_file), "--accum", "2", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    alone = train(W.tiny_run_config(tiny_corpus_file, accum=4), tmp_path / "alone", progress=False)
    ddp, ref = records(run, "train"), records(tmp_path / "alone", "train")
    assert [r["step"] for r in ddp] == [1, 2, 3, 4, 5, 6]  # rank 0 alone writes, each step once
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in ref], abs=1e-5)
    assert [r["grad_norm"] for r in ddp] == pytest.approx([r["grad_norm"] for r in ref], abs=1e-4)
    assert [e["event"] for e in records(run, "event")] == ["interrupt", "resume"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["tokens"] == alone["tokens"]
    assert summary["final_val_bpb"] == pytest.approx(alone["final_val_bpb"], abs=1e-5)


def test_fsdp2_train_resumes_across_world_sizes_and_matches_one_process(tmp_path, tiny_corpus_file):
    """train.parallel=fsdp: a run sharded over 2 ranks x 2 micro-batches, cut at step 3 and resumed by one process
    x 4 (its checkpoint is a single-process one), and the other way round, both equal one process all along."""
    from scratchllm.train import train

    def stop_at_3(session):
        if session.state.step == 3:
            raise KeyboardInterrupt

    alone = tmp_path / "alone"
    train(W.tiny_run_config(tiny_corpus_file, accum=4), alone, progress=False)
    sharded_first, alone_first = tmp_path / "fsdp_then_one", tmp_path / "one_then_fsdp"
    proc = torchrun(sharded_first, "--train", str(tiny_corpus_file), "--accum", "2", "--parallel", "fsdp",
                    "--stop-at", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    train(W.tiny_run_config(tiny_corpus_file, accum=4), sharded_first, resume=True, progress=False)
    assert json.loads((sharded_first / "config.json").read_text())["train"]["grad_accum"] == 4  # as it now runs
    with pytest.raises(KeyboardInterrupt):
        train(W.tiny_run_config(tiny_corpus_file, accum=4), alone_first, progress=False, on_step=stop_at_3)
    proc = torchrun(alone_first, "--train", str(tiny_corpus_file), "--accum", "2", "--parallel", "fsdp", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = records(alone, "train")
    for run in (sharded_first, alone_first):
        got = records(run, "train")
        assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
        assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in ref], abs=1e-5)
        assert [r["grad_norm"] for r in got] == pytest.approx([r["grad_norm"] for r in ref], abs=1e-4)
        assert [r["val_bpb"] for r in records(run, "eval")] == pytest.approx(
            [r["val_bpb"] for r in records(alone, "eval")], abs=1e-5)
        samples = [json.loads(line)["step"] for line in (run / "samples.jsonl").read_text().splitlines()]
        assert samples == [3, 6]  # rank 0 alone, once per evaluation (the end adds none: step 6 had one)


def test_resume_with_another_global_batch_lists_it(tmp_path, tiny_corpus_file):
    from scratchllm.config import InputError
    from scratchllm.train import train
    train(W.tiny_run_config(tiny_corpus_file, accum=2, steps=3), tmp_path / "run", progress=False)
    with pytest.raises(InputError, match=r"grad_accum x processes \(was 2 x 1, now 4 x 1\)"):
        train(W.tiny_run_config(tiny_corpus_file, accum=4, steps=3), tmp_path / "run", resume=True, progress=False)


def tiny_yaml(tmp_path: Path, corpus: Path) -> Path:
    import yaml

    from scratchllm.config import to_dict
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(W.tiny_run_config(corpus, accum=1, steps=3))))
    return path


def test_cli_train_nproc_with_port_in_use_exits_2_with_one_line(tmp_path, tiny_corpus_file, capsys):
    from scratchllm.cli import main
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code = main(["train", "--config", str(tiny_yaml(tmp_path, tiny_corpus_file)), "--nproc", "2",
                     "--master-port", str(s.getsockname()[1]), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "in use" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_cli_train_nproc_2_runs_torchrun_and_rank_0_writes(tmp_path, tiny_corpus_file):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "scratchllm", "train", "--config", str(tiny_yaml(tmp_path, tiny_corpus_file)),
           "--nproc", "2", "--master-port", str(D.free_port()), "--out", str(run), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in records(run, "train")] == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["tokens"] == 3 * 2 * 2 * 16  # steps x ranks x B x T
    assert proc.stdout.count("3 steps") == 1  # one report line, from rank 0
