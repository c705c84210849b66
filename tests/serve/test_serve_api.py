"""The workbench's JSON API against its peers: `scratchllm generate` and generate_text for sampling, the model's own
inspect() and the recorded snapshots for attention; every bad input answered 4xx naming its field; concurrency,
client disconnects, Ctrl-C and the page's no-outside-URL rule against a live server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from scratchllm.checkpoint import load_model
from scratchllm.cli import main
from scratchllm.generate import generate_text, stream_text
from scratchllm.runfolder import attention_files, load_attention, read_probe
from scratchllm.serve import create_app
from scratchllm.serve.schemas import MAX_NEW_TOKENS, MAX_PROMPT_CHARS, MAX_TEXT_CHARS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(serve_run):
    with TestClient(create_app(serve_run), base_url="http://127.0.0.1") as c:
        yield c


def _post(url: str, body: dict, accept: str = "application/json", timeout: float = 60):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Accept": accept})
    return urllib.request.urlopen(req, timeout=timeout)


def _events(raw: str) -> list[tuple[str, dict]]:
    return [(m[0], json.loads(m[1])) for m in re.findall(r"event: (\w+)\ndata: (.*)\n\n", raw)]


def test_health_and_run_describe_the_folder(client, serve_run):
    assert client.get("/api/health").json()["status"] == "ok"
    run = client.get("/api/run").json()
    assert run["snapshot_steps"] == [step for step, _ in attention_files(serve_run)] == [0, 10, 20, 30]
    assert run["config"]["train"]["max_steps"] == 30 and run["summary"]["steps"] == 30
    assert {r["kind"] for r in run["metrics"]} >= {"train", "eval"}
    assert all("loss" in r and "lr" in r for r in run["metrics"] if r["kind"] == "train")
    assert [s["step"] for s in run["samples"]] and run["model"]["n_layer"] == 2
    assert all(isinstance(f["steps"], list) for f in run["findings"])


def test_greedy_equals_scratchllm_generate(client, serve_run, capsys):
    assert main(["generate", "--run", str(serve_run), "--prompt", "ROMEO:", "--max-new-tokens", "25",
                 "--temperature", "0"]) == 0
    cli_text = capsys.readouterr().out
    answer = client.post("/api/generate", json={"prompt": "ROMEO:", "max_new_tokens": 25, "temperature": 0}).json()
    assert "ROMEO:" + answer["text"] + "\n" == cli_text
    assert "".join(s["text"] for s in answer["steps"]) + answer["tail"] == answer["text"]


@pytest.mark.parametrize("kw", [dict(temperature=0.9, seed=7), dict(temperature=1.3, top_k=20, seed=3),
                                dict(temperature=0.7, top_p=0.8, seed=11)])
def test_seeded_sampling_equals_generate_text(client, serve_run, kw):
    model, tok, _ = load_model(serve_run)
    want = generate_text(model, tok, "JULIET:", 30, **kw)
    got = client.post("/api/generate", json={"prompt": "JULIET:", "max_new_tokens": 30, **kw}).json()
    assert got["text"] == want and got["seed"] == kw["seed"]


def test_top10_are_the_models_probabilities(client, serve_run):
    model, tok, _ = load_model(serve_run)
    step = client.post("/api/generate", json={"prompt": "To be", "max_new_tokens": 1, "temperature": 0.5}).json()
    with torch.no_grad():
        logits = model.eval()(torch.tensor([tok.encode("To be")]))[0][0, -1]
    probs = (logits / 0.5).softmax(-1)
    top = step["steps"][0]["top"]
    assert [t["id"] for t in top] == probs.topk(10).indices.tolist()
    np.testing.assert_allclose([t["p"] for t in top], probs.topk(10).values.tolist(), atol=1e-5)
    assert abs(step["steps"][0]["p"] - float(probs[step["steps"][0]["id"]])) < 1e-5


def test_stream_sends_each_token_then_done(client):
    body = {"prompt": "ROMEO:", "max_new_tokens": 12, "temperature": 0}
    with client.stream("POST", "/api/generate", json=body, headers={"Accept": "text/event-stream"}) as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        events = _events(res.read().decode())
    tokens = [d for name, d in events if name == "token"]
    assert events[-1][0] == "done" and len(tokens) == events[-1][1]["tokens"]
    whole = client.post("/api/generate", json=body).json()
    assert [t["id"] for t in tokens] == [s["id"] for s in whole["steps"]]
    assert events[-1][1]["text"] == whole["text"]


def test_split_characters_never_show_half(client, serve_run):
    """A token ending inside a character carries '' until the character is whole; labels escape a cut's bytes."""
    _, tok, _ = load_model(serve_run)
    assert client.post("/api/tokenize", json={"text": "é"}).json()["tokenizers"][0]["tokens"] == ["\\xc3", "\\xa9"]
    answer = client.post("/api/generate", json={"prompt": "é", "max_new_tokens": 200, "temperature": 3.0,
                                                "seed": 1}).json()  # hot sampling picks many lone high bytes
    texts = [s["text"] for s in answer["steps"]]
    assert "" in texts  # this seed does cut characters
    model, _, _ = load_model(serve_run)
    want = list(stream_text(model, tok, "é", 200, temperature=3.0, seed=1))  # generate.py holds back cut bytes too
    assert [t for t in texts if t] + ([answer["tail"]] if answer["tail"] else []) == want


def test_attention_equals_model_inspect(client, serve_run):
    model, tok, _ = load_model(serve_run)
    text = "O Romeo, Romeo! wherefore art thou Romeo?"
    answer = client.post("/api/attention", json={"text": text, "layer": 1, "head": 1}).json()
    ids = tok.encode(text)[:32]
    layers = model.inspect(torch.tensor([ids]))
    assert answer["token_ids"] == ids and answer["truncated"] == (len(tok.encode(text)) > 32)
    want = torch.stack([layer["att"][0] for layer in layers]).numpy()
    np.testing.assert_allclose(answer["attention"], want, atol=1e-5)
    for name in ("q", "k", "v", "scores"):
        np.testing.assert_allclose(answer[name], layers[1][name][0, 1].numpy(), atol=1e-5)
    assert np.array_equal(answer["mask"], np.tril(np.ones((len(ids), len(ids)), bool)))


def test_attention_equals_the_recorded_final_snapshot(client, serve_run):
    probe = read_probe(serve_run)
    answer = client.post("/api/attention", json={"text": probe["text"]}).json()
    assert answer["token_ids"] == probe["token_ids"]
    step, path = attention_files(serve_run)[-1]
    np.testing.assert_allclose(answer["attention"], load_attention(path)["att"], atol=2e-3)  # float16 on disk
    history = client.get("/api/attention/history").json()
    assert [s["step"] for s in history["steps"]] == [s for s, _ in attention_files(serve_run)]
    np.testing.assert_allclose(history["steps"][-1]["attention"], load_attention(path)["att"], atol=1e-5)
    assert len(history["probe"]["tokens"]) == len(probe["token_ids"])


def test_tokenize_rows_count_and_join_back(client, serve_run):
    _, tok, _ = load_model(serve_run)
    text = "But soft, what light"
    rows = {r["name"]: r for r in client.post("/api/tokenize", json={"text": text}).json()["tokenizers"]}
    assert rows["this run's bpe"]["count"] == len(tok.encode(text))
    assert "".join(rows["characters"]["tokens"]) == text and rows["characters"]["count"] == len(text)
    assert "".join(rows["words (GPT-4 split)"]["tokens"]) == text
    assert rows["UTF-8 bytes"]["count"] == len(text.encode()) and rows["UTF-8 bytes"]["bytes_per_token"] == 1


BAD = [
    ("/api/generate", {"prompt": "x", "temprature": 1}, "temprature"),
    ("/api/generate", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
    ("/api/generate", {"prompt": 5}, "prompt"),
    ("/api/generate", {"max_new_tokens": 0}, "max_new_tokens"),
    ("/api/generate", {"max_new_tokens": MAX_NEW_TOKENS + 1}, "max_new_tokens"),
    ("/api/generate", {"max_new_tokens": "5"}, "max_new_tokens"),
    ("/api/generate", {"max_new_tokens": True}, "max_new_tokens"),
    ("/api/generate", {"temperature": -0.1}, "temperature"),
    ("/api/generate", {"temperature": 1e9}, "temperature"),
    ("/api/generate", {"top_p": 0}, "top_p"),
    ("/api/generate", {"top_p": 1.01}, "top_p"),
    ("/api/generate", {"top_k": 0}, "top_k"),
    ("/api/generate", {"top_k": 301}, "top_k"),
    ("/api/generate", {"seed": -1}, "seed"),
    ("/api/attention", {}, "text"),
    ("/api/attention", {"text": ""}, "text"),
    ("/api/attention", {"text": "x" * (MAX_TEXT_CHARS + 1)}, "text"),
    ("/api/attention", {"text": "hi", "layer": 2}, "layer"),
    ("/api/attention", {"text": "hi", "head": 2}, "head"),
    ("/api/attention", {"text": "hi", "path": "/etc/passwd"}, "path"),
    ("/api/tokenize", {"text": ["a"]}, "text"),
    ("/api/tokenize", [], "body"),
]


@pytest.mark.parametrize("route, body, field", BAD, ids=[f"{r}-{f}-{i}" for i, (r, _, f) in enumerate(BAD)])
def test_bad_input_is_4xx_json_naming_the_field(client, route, body, field):
    res = client.post(route, json=body)
    assert 400 <= res.status_code < 500 and res.json()["field"] == field, res.json()
    assert field in res.json()["error"]


@pytest.mark.parametrize("method, route, kw", [
    ("POST", "/api/generate", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
    ("GET", "/api/run?path=/etc/passwd", {}),
    ("POST", "/api/tokenize", {"content": b'{"text": "' + b"a" * 70_000 + b'"}',
                               "headers": {"Content-Type": "application/json"}}),
    ("GET", "/static/../../config.json", {}),
    ("GET", "/api/nothing", {}),
])
def test_malformed_requests_are_4xx_json(client, method, route, kw):
    res = client.request(method, route, **kw)
    assert 400 <= res.status_code < 500 and "error" in res.json()


def test_foreign_host_names_are_refused(serve_run, client):
    """A DNS name re-pointed at 127.0.0.1 (DNS rebinding) does not reach a local-only server; a shared one answers."""
    res = client.get("/api/health", headers={"Host": "attacker.example"})
    assert res.status_code == 400 and res.json()["field"] == "host"
    assert client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200
    with TestClient(create_app(serve_run, local_only=False), base_url="http://attacker.example") as shared:
        assert shared.get("/api/health").status_code == 200


def test_24_concurrent_requests_all_answered_correctly(live_server):
    url, _ = live_server
    jobs = [("/api/generate", {"prompt": f"ROMEO{i % 3}:", "max_new_tokens": 8, "temperature": 0}) if i % 2 else
            ("/api/attention", {"text": f"What light {i % 4}", "layer": i % 2}) for i in range(24)]

    def call(job):
        with _post(url + job[0], job[1]) as res:
            return json.loads(res.read())

    with ThreadPoolExecutor(24) as pool:
        together = list(pool.map(call, jobs))
    alone = {json.dumps(j): call(j) for j in jobs[:8]}  # one of each distinct request, one at a time
    for job, got in zip(jobs, together, strict=True):
        want = alone[json.dumps(job)]
        if job[0] == "/api/generate":
            assert got["text"] == want["text"]
        else:
            assert got["attention"] == want["attention"] and got["q"] == want["q"]


def test_client_disconnect_stops_generation(live_server):
    url, app = live_server
    engine = app.state.engine
    res = _post(url + "/api/generate", {"prompt": "ROMEO:", "max_new_tokens": MAX_NEW_TOKENS, "temperature": 1},
                accept="text/event-stream")
    assert res.readline().startswith(b"event: token")
    res.close()
    deadline = time.monotonic() + 3  # the lock is released at once, not whenever the garbage collector runs
    while json.loads(urllib.request.urlopen(url + "/api/health").read())["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped_at = engine.tokens_generated
    time.sleep(0.3)
    assert engine.tokens_generated == stopped_at  # nothing is generating any more
    assert not json.loads(urllib.request.urlopen(url + "/api/health").read())["busy"]


LOCAL = re.compile(r"https?://(?!127\.0\.0\.1|localhost|\[::1\])[^\s\"')]+")


def test_the_page_loads_nothing_from_outside(live_server):
    url, _ = live_server
    folder = resources.files("scratchllm.serve") / "static"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for name in names:
        text = (folder / name).read_text(encoding="utf-8")
        assert not [u for u in LOCAL.findall(text) if u != "http://www.w3.org/2000/svg"], name  # SVG namespace id
    for route in ("/", "/static/app.js", "/static/style.css"):
        with urllib.request.urlopen(url + route) as res:
            body, csp = res.read().decode(), res.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "http" not in csp
        assert not [u for u in LOCAL.findall(body) if u != "http://www.w3.org/2000/svg"], route


def test_cli_serves_on_loopback_and_ctrl_c_stops_it(serve_run):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scratchllm", "serve", str(serve_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert "http://127.0.0.1:" in first and "only" in proc.stdout.readline()
        port = re.search(r":(\d+)/", first).group(1)
        assert json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health").read())["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        proc.kill()


def test_cli_rejects_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
