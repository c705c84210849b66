"""The workbench's HTTP side: the JSON API, the three static files of the page, and the server's start and stop.

The API is the contract (the page uses nothing else, and scripts may use it too): GET /api/health, GET /api/run,
POST /api/generate (server-sent events with `Accept: text/event-stream`, else one JSON answer), POST /api/attention,
GET /api/attention/history, POST /api/tokenize. Errors are JSON {"error", "field"} with a 4xx status. The model
runs one request at a time behind an async lock; a streaming client that leaves stops its generation between tokens.
No route takes a path: the static files are a fixed list, and the run folder is fixed at start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from contextlib import aclosing, asynccontextmanager
from importlib import resources
from pathlib import Path

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from scratchllm.config import InputError
from scratchllm.runfolder import require_run
from scratchllm.serve.engine import Engine, Generation
from scratchllm.serve.runview import attention_history, run_overview
from scratchllm.serve.schemas import MAX_BODY_BYTES, AttentionRequest, FieldError, GenerateRequest, TokenizeRequest

STATIC = {"/": ("index.html", "text/html"), "/static/app.js": ("app.js", "text/javascript"),
          "/static/style.css": ("style.css", "text/css")}
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
# The page may load only from this server: a browser refuses anything else, CDN or font included.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's first complaint as one line naming the field (body.<name>, or "body" for broken JSON)."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = loc[0] if loc and err.get("type") != "json_invalid" else "body"
    message = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
    return _error(422, f"{field}: {message}", field)


async def _no_query(request: Request) -> None:
    """No endpoint takes query parameters: a stray one is an error, not silently ignored."""
    if request.query_params:
        name = next(iter(request.query_params))
        raise FieldError(name, "unknown query parameter")


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _steps(app: FastAPI, gen: Generation, request: Request):
    """The generation's tokens under the model lock, each step on a worker thread; stops when the client leaves."""
    async with app.state.lock:
        while not await request.is_disconnected():
            step = await anyio.to_thread.run_sync(gen.step)
            if step is None:
                return
            yield step


def _done(gen: Generation, text: str, n: int, started: float) -> dict:
    tail = gen.finish()
    return {"text": text + tail, "tail": tail, "tokens": n, "seed": gen.seed, "notes": gen.notes,
            "seconds": round(time.perf_counter() - started, 3)}


async def _stream(app: FastAPI, gen: Generation, request: Request):
    started, text, n = time.perf_counter(), "", 0
    async with aclosing(_steps(app, gen, request)) as steps:
        async for step in steps:
            text, n = text + step.text, n + 1
            yield _sse("token", step.to_dict())
    yield _sse("done", _done(gen, text, n, started))


class _ClosingStream(StreamingResponse):
    """A StreamingResponse that closes its generator when it ends for any reason. Starlette leaves a stream cut by
    its client to the garbage collector, and until then the generator would keep holding the model lock."""

    async def __call__(self, scope, receive, send) -> None:
        async with aclosing(self.body_iterator):
            await super().__call__(scope, receive, send)


def _routes(app: FastAPI, run: Path, engine: Engine) -> None:
    @app.get("/api/health")
    def health():
        return {"status": "ok", "run": run.name, "busy": app.state.lock.locked(),
                "tokens_generated": engine.tokens_generated}

    @app.get("/api/run")
    def run_info():
        cfg = engine.model.config
        return {**run_overview(run), "model": {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                                               "block_size": cfg.block_size, "vocab_size": cfg.vocab_size,
                                               "params": engine.model.num_params()}}

    @app.get("/api/attention/history")
    def history():
        return attention_history(run, engine.label)

    @app.post("/api/tokenize")
    def tokenize(req: TokenizeRequest):
        return engine.tokenize(req.text)

    @app.post("/api/attention")
    async def attention(req: AttentionRequest):
        async with app.state.lock:
            return await anyio.to_thread.run_sync(engine.attention, req)

    @app.post("/api/generate")
    async def generate(req: GenerateRequest, request: Request):
        gen = engine.start(req)  # a bad prompt is refused here, before any stream starts
        if "text/event-stream" in request.headers.get("accept", ""):
            return _ClosingStream(_stream(app, gen, request), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        async with aclosing(_steps(app, gen, request)) as stream:
            started, steps = time.perf_counter(), [s async for s in stream]
        return {**_done(gen, "".join(s.text for s in steps), len(steps), started),
                "steps": [s.to_dict() for s in steps]}


def _static(app: FastAPI) -> None:
    folder = resources.files("scratchllm.serve") / "static"
    for route, (name, media) in STATIC.items():
        body = (folder / name).read_bytes()

        def page(body=body, media=media) -> Response:
            return Response(body, media_type=media, headers={"Content-Security-Policy": CSP,
                                                             "Cache-Control": "no-cache"})
        app.add_api_route(route, page, methods=["GET"], include_in_schema=False)


def create_app(run_dir, local_only: bool = True) -> FastAPI:
    """The workbench for one run folder; its model is loaded now (a missing checkpoint is an InputError).
    local_only: answer only requests addressed to this machine by name (Host 127.0.0.1, localhost or ::1), so a web
    page elsewhere cannot reach the server through a DNS name it re-points at 127.0.0.1."""
    run = require_run(run_dir, "serve").resolve()
    engine = Engine(run)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.lock = asyncio.Lock()  # made inside the server's event loop
        yield

    app = FastAPI(title="scratchllm workbench", lifespan=lifespan, dependencies=[Depends(_no_query)],
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(FieldError, lambda _r, e: _error(400, str(e), e.field))
    app.add_exception_handler(HTTPException, lambda _r, e: _error(e.status_code, str(e.detail)))

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if local_only and request.url.hostname not in LOCAL_NAMES:
            return _error(400, f"host: {request.url.hostname!r} is not this machine's name (serving locally)", "host")
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return _error(413, f"body: larger than {MAX_BODY_BYTES} bytes", "body")
        return await call_next(request)

    _routes(app, run, engine)
    _static(app)
    return app


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only: localhost, 127.x.x.x or ::1."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 = any free port); a port in use is an InputError in one line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    return sock


def server(app: FastAPI) -> object:
    """A uvicorn server for `app`: quiet logs, and at most 3 s to finish streams when stopping."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3))


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the workbench until Ctrl-C, which ends in KeyboardInterrupt (the CLI's exit 130) once uvicorn has
    stopped. uvicorn re-raises the signal it caught, but when that lands after its event loop's last step the loop
    ends quietly, so a server that was asked to stop raises it here too."""
    app = create_app(run_dir, local_only=is_loopback(host))
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"scratchllm serve: {Path(run_dir)} on http://{shown}:{sock.getsockname()[1]}/  (Ctrl-C stops)")
    if is_loopback(host):
        print(f"listening on {host} only: other machines cannot connect (--host 0.0.0.0 to share on a network)")
    else:
        print(f"warning: listening on {host}: anyone who can reach this machine can use the model")
    running = server(app)
    running.run(sockets=[sock])
    if running.started and running.should_exit:
        raise KeyboardInterrupt
