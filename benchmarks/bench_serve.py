"""Load test of the workbench server: N concurrent clients send mixed requests for T seconds to 127.0.0.1 only.

The mix, in turn per client: POST /api/generate (JSON, 16 tokens), the same streamed as server-sent events,
POST /api/attention, POST /api/tokenize, GET /api/run, GET /api/health. Latency is per request, first byte to last;
an error is any non-2xx answer, a broken stream or a timeout (expected: 0). The server runs in this process on a free
port over a run folder (--run; by default a tiny run trained first into a temporary folder, ~15 s).

Run: .venv/bin/python benchmarks/bench_serve.py [--run DIR] [--clients 8] [--seconds 10]
     -> table on stdout, benchmarks/results/serve.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scratchllm.config import load_config
from scratchllm.metrics import hardware_info
from scratchllm.serve.app import bind, create_app, server
from scratchllm.train import train

RESULTS = Path(__file__).parent / "results" / "serve.json"
MIX = [
    ("generate", "POST", "/api/generate", {"prompt": "ROMEO:", "max_new_tokens": 16, "temperature": 0.8}, False),
    ("generate_sse", "POST", "/api/generate", {"prompt": "JULIET:", "max_new_tokens": 16, "temperature": 0.8}, True),
    ("attention", "POST", "/api/attention", {"text": "But soft, what light through yonder window breaks?"}, False),
    ("tokenize", "POST", "/api/tokenize", {"text": "It is the east, and Juliet is the sun."}, False),
    ("run", "GET", "/api/run", None, False),
    ("health", "GET", "/api/health", None, False),
]


def request(base: str, method: str, route: str, body: dict | None, stream: bool) -> None:
    """One call; raises on a non-2xx status or a stream that does not end with its `done` event."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    with urllib.request.urlopen(urllib.request.Request(base + route, data, headers, method=method), timeout=60) as r:
        payload = r.read()
    if stream and b"event: done" not in payload:
        raise RuntimeError("stream ended without its done event")


def client(base: str, offset: int, until: float, log: list) -> None:
    i = offset
    while time.monotonic() < until:
        name, method, route, body, stream = MIX[i % len(MIX)]
        start, ok = time.perf_counter(), True
        try:
            request(base, method, route, body, stream)
        except Exception:  # every failure counts as an error of its kind
            ok = False
        log.append((name, time.perf_counter() - start, ok))
        i += 1


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def summarise(log: list, seconds: float) -> dict:
    rows = {}
    for name in [m[0] for m in MIX] + ["all"]:
        times = [t for n, t, _ in log if name in (n, "all")]
        errors = sum(1 for n, _, ok in log if name in (n, "all") and not ok)
        if times:
            rows[name] = {"requests": len(times), "errors": errors, "p50_ms": round(1000 * percentile(times, 50), 1),
                          "p95_ms": round(1000 * percentile(times, 95), 1)}
    rows["all"]["requests_per_s"] = round(len(log) / seconds, 1)
    return rows


def tiny_run(folder: Path) -> Path:
    cfg = load_config("tiny", ["train.max_steps=40", "train.record_attention_every=10"])
    train(cfg, folder / "run", progress=False)
    return folder / "run"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="run folder to serve (default: train a tiny one first)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to send requests (default 10)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else tiny_run(Path(tmp))
        sock = bind("127.0.0.1", 0)  # loopback only: the load never leaves the machine
        srv = server(create_app(run))
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.02)
        base, log = f"http://127.0.0.1:{sock.getsockname()[1]}", []
        start = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            for k in range(args.clients):
                pool.submit(client, base, k, start + args.seconds, log)
        elapsed = time.monotonic() - start
        srv.should_exit = True
        thread.join(10)
    rows = summarise(log, elapsed)
    print(f"{'request':<14}{'n':>7}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for name, r in rows.items():
        print(f"{name:<14}{r['requests']:>7}{r['errors']:>8}{r['p50_ms']:>10}{r['p95_ms']:>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"clients": args.clients, "seconds": round(elapsed, 2), "run": str(run.name),
                                   "results": rows, "machine": hardware_info()}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
