"""Fixtures of the workbench tests: one tiny trained run (with attention snapshots) and a live server over it."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from scratchllm.config import DataConfig, RunConfig, TokenizerConfig, TrainConfig
from scratchllm.model import GPTConfig
from scratchllm.serve.app import bind, create_app, server
from scratchllm.train import train


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory, tiny_text):
    """A 2-layer, 2-head run of 30 steps on 20 KB of Shakespeare, attention recorded every 10 steps."""
    corpus = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    corpus.write_text(tiny_text, encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on the shared cores
    cfg = RunConfig(model=GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32),
                    data=DataConfig(corpus=str(corpus)), tokenizer=TokenizerConfig(vocab_size=300),
                    train=TrainConfig(max_steps=30, max_minutes=0, batch_size=8, warmup_steps=5, eval_every=10,
                                      eval_batches=2, log_every=2, sample_tokens=20, record_attention_every=10,
                                      device="cpu", dtype="float32"))
    run = tmp_path_factory.mktemp("serve") / "run"
    try:
        train(cfg, run, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session")
def live_server(serve_run):
    """A real uvicorn server on 127.0.0.1 and a free port, in a thread; yields (base URL, app)."""
    app = create_app(serve_run)
    sock = bind("127.0.0.1", 0)
    srv = server(app)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    srv.should_exit = True
    thread.join(10)
