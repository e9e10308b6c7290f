"""An HTTP reward server holding the frozen model, for RL engines that hand rewards text only.

FastAPI on uvicorn (what OpenRLHF's own reward server uses). Protocol (OpenRLHF's remote reward
model: `--reward.remote_url http://HOST:PORT/get_reward`, `--remote_rm_url` before 0.10.2):

    POST /get_reward  {"query": [prompt+response text, ...], "prompts": [prompt text, ...], "labels": [...]}
                   -> {"rewards": [float, ...], "scores": [same], "extra_logs": {"srgrpo_unscored": [0/1, ...]},
                       "warnings": [null or why, ...]}
    POST /get_reward  {"prompts": [prompt text or chat messages, ...], "responses": [text, ...]}   (srgrpo)
    GET  /health      -> {"status": "ok", "model": ..., "feature": ..., "options": {...}, ...}
    GET  /metrics     -> Prometheus text: requests, texts, queue depth, batch sizes, latency

Every reward is a finite number: a text that cannot be scored (empty response, no response token
inside the window, a prompt that cannot be found in its query...) gets `unscored_value` (0.0 by
default) and its `warnings` entry says why; `extra_logs.srgrpo_unscored` marks it with 1.0.

Bad input never reaches the model: malformed JSON (lone surrogates, nesting deeper than the parser
allows) gets 400; a well-formed body of the wrong shape 422; a body over `max_body_bytes` or more
texts than `max_texts_per_request` 413; a body not sent within `read_timeout` 408 (a new connection
that sends no request head within it is closed); a missing or
wrong API key 401; always with `{"error": message}`. Work is bounded and fair (see
`srgrpo.serving.worker`); a request whose client has gone is not computed further. On SIGTERM or
SIGINT the server stops accepting connections, answers every request it has accepted, then exits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from srgrpo.features import FEATURES
from srgrpo.scoring import StableRankScorer
from srgrpo.serving.protocol import BadRequest, parse_request
from srgrpo.serving.worker import BatchingWorker, Job

logger = logging.getLogger("srgrpo.serve")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
API_KEY_ENV = "SRGRPO_API_KEY"


@dataclass
class ServeConfig:
    """Everything `srgrpo serve` can set beside the model and the scoring options."""

    host: str = "127.0.0.1"
    port: int = 5000
    api_key: str | None = None  # required when `host` is not a loopback address
    feature: str = "stable_rank"
    unscored_value: float = 0.0
    model_name: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_texts_per_request: int = 4096
    max_batch_texts: int = 64
    max_batch_tokens: int = 16384
    target_batch_seconds: float = 1.0
    batch_wait_ms: float = 5.0
    read_timeout: float = 60.0  # seconds to receive a new connection's request head, and a request's body
    keep_alive_timeout: int = 15  # seconds an idle keep-alive connection is kept
    max_connections: int = 4096  # beyond this many open connections, 503
    backlog: int = 4096  # listen queue (the kernel caps it at net.core.somaxconn)
    drain_timeout: int | None = 600  # seconds to finish accepted requests on SIGTERM; None = no limit

    def validate(self) -> "ServeConfig":
        if self.feature not in FEATURES:
            raise ValueError(f"unknown feature {self.feature!r}; known: {', '.join(FEATURES)}")
        if isinstance(self.unscored_value, bool) or not math.isfinite(self.unscored_value):
            raise ValueError(f"the unscored value must be a finite number, got {self.unscored_value!r}")
        for name in ("max_body_bytes", "max_texts_per_request", "max_batch_texts", "max_batch_tokens",
                     "max_connections", "backlog", "keep_alive_timeout"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("target_batch_seconds", "read_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch-wait-ms must not be negative, got {self.batch_wait_ms}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if not self.api_key and not is_loopback(self.host):
            raise ValueError(
                f"binding {self.host} exposes the reward server beyond this machine: set an API key "
                f"(--api-key or ${API_KEY_ENV}), or bind 127.0.0.1"
            )
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


class Metrics:
    """Prometheus metrics in their own registry (several servers may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("srgrpo_requests", "POST /get_reward requests answered, by status", ["status"], registry=r)
        self.texts = Counter("srgrpo_texts", "texts received in accepted requests", registry=r)
        self.unscored_texts = Counter("srgrpo_unscored_texts", "texts answered with the unscored value", registry=r)
        self.skipped_texts = Counter("srgrpo_skipped_texts", "texts not computed because their client had gone", registry=r)
        self.inflight = Gauge("srgrpo_requests_in_flight", "requests being read, queued or scored", registry=r)
        self.queue_texts = Gauge("srgrpo_queue_texts", "texts waiting for a batch", registry=r)
        self.latency = Histogram("srgrpo_request_seconds", "POST /get_reward latency", registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 180, math.inf))
        self.batch_texts = Histogram("srgrpo_batch_texts", "texts per scored batch", registry=r,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, math.inf))
        self.batch_tokens = Histogram("srgrpo_batch_tokens", "tokens per scored batch", registry=r,
                                      buckets=(64, 256, 1024, 4096, 16384, 65536, math.inf))
        self.batch_seconds = Histogram("srgrpo_batch_seconds", "time to score one batch", registry=r,
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, math.inf))
        # One series per model replica (srgrpo serve --devices): is every device busy?
        replica = ["replica", "device"]
        self.replica_texts = Counter("srgrpo_replica_texts", "texts scored, by model replica", replica, registry=r)
        self.replica_batches = Counter("srgrpo_replica_batches", "batches scored, by model replica", replica, registry=r)
        self.replica_busy_seconds = Counter("srgrpo_replica_busy_seconds", "time spent scoring, by model replica",
                                            replica, registry=r)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _error(status: int, message: str, close: bool = False, headers: dict | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _authorized(request: Request, key: str | None) -> bool:
    """`Authorization: Bearer KEY`, or HTTP Basic with KEY as the password or the user name (what
    aiohttp and requests send for a URL like http://srgrpo:KEY@host:5000/get_reward)."""
    if not key:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), key.encode())
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), key.encode()) or hmac.compare_digest(user.encode(), key.encode())
    return False


def create_app(scorer: StableRankScorer | list[StableRankScorer], config: ServeConfig) -> FastAPI:
    """The FastAPI application; its lifespan starts and drains the batching worker. `scorer` may be a
    list: one model replica per device, all fed by the worker's one fair queue."""
    config.validate()
    metrics = Metrics()
    worker = BatchingWorker(
        scorer, config.feature, max_batch_texts=config.max_batch_texts, max_batch_tokens=config.max_batch_tokens,
        target_batch_seconds=config.target_batch_seconds, batch_wait_s=config.batch_wait_ms / 1000, metrics=metrics,
    )
    state = {"draining": False, "accepted": 0, "answered": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            state["draining"] = True
            await asyncio.to_thread(worker.close)
            logger.info("reward worker stopped: %d requests accepted, %d answered", state["accepted"], state["answered"])

    app = FastAPI(title="srgrpo reward server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker, app.state.metrics, app.state.config, app.state.counts = worker, metrics, config, state
    unauthorized = {"WWW-Authenticate": "Bearer"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = f"{exc.detail}: {request.method} {request.url.path}; use POST /get_reward, GET /health or GET /metrics"
        return _error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):  # a bug: say so, keep serving
        logger.exception("request failed")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health():
        return {"status": "draining" if state["draining"] else "ok", "model": config.model_name,
                "feature": config.feature, "unscored_value": config.unscored_value,
                "options": dataclasses.asdict(worker.options), "requests": state["answered"],
                "batches": worker.batches, "queue_texts": worker.pending_texts, "replicas": worker.replica_stats()}

    @app.get("/metrics")
    async def prometheus(request: Request):
        if not _authorized(request, config.api_key):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", headers=unauthorized)
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        started = time.perf_counter()
        metrics.inflight.inc()
        status = 500
        try:
            response = await _get_reward(request)
            status = response.status_code
            return response
        finally:
            metrics.inflight.dec()
            metrics.requests.labels(status=str(status)).inc()
            metrics.latency.observe(time.perf_counter() - started)

    async def _get_reward(request: Request) -> Response:
        if not _authorized(request, config.api_key):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", headers=unauthorized)
        length = request.headers.get("content-length", "")
        too_large = f"body exceeds the limit of {config.max_body_bytes} bytes (--max-body-bytes)"
        if length.isdigit() and int(length) > config.max_body_bytes:
            return _error(413, too_large, close=True)  # not read: answer and drop the connection
        try:
            body = await asyncio.wait_for(_read_body(request, config.max_body_bytes), config.read_timeout)
        except _TooLarge:
            return _error(413, too_large, close=True)
        except asyncio.TimeoutError:
            return _error(408, f"the request body did not arrive within {config.read_timeout:g} s", close=True)
        except ClientDisconnect:
            return Response(status_code=499)
        try:
            parsed = await asyncio.to_thread(parse_request, body) if len(body) > 1 << 20 else parse_request(body)
        except BadRequest as err:
            return _error(err.status, str(err))
        texts = parsed.texts
        if len(texts) > config.max_texts_per_request:
            return _error(413, f"{len(texts)} texts in one request exceed the limit of {config.max_texts_per_request} "
                          "(--max-texts-per-request): send them in smaller requests")

        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def resolve(_job):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        job = Job(texts, parsed.prompts, responses_only=parsed.responses is not None, on_done=resolve)
        try:
            worker.submit(job)
        except RuntimeError as err:
            return _error(503, str(err), close=True)
        state["accepted"] += 1
        metrics.texts.inc(len(texts))
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not done.done():
                worker.cancel(job)  # the client has gone (or this task is being cancelled)
            gone.cancel()
        if not done.done():
            state["answered"] += 1  # nobody is left to answer
            return Response(status_code=499)
        rewards = [config.unscored_value if v is None else v for v in job.values]
        unscored = [1.0 if v is None else 0.0 for v in job.values]
        state["answered"] += 1
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {"srgrpo_unscored": unscored},
                             "warnings": job.warnings})

    return app


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket, bound before the server starts (so port 0 is known at once)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _protocol_with_first_request_timeout(seconds: float):
    """uvicorn's h11 protocol, plus: a connection that has not sent a whole request head within
    `seconds` of opening is closed (uvicorn times out idle keep-alive connections, but not a new
    connection that never sends, or stalls inside its headers)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._srgrpo_timer = self.loop.call_later(seconds, self._srgrpo_no_request)

        def _srgrpo_no_request(self):
            if getattr(self, "cycle", None) is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc):
            timer = getattr(self, "_srgrpo_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return Protocol


class RewardServer:
    """uvicorn serving `create_app(scorer, config)` on a socket bound at construction.

    `serve()` blocks (in the main thread it drains on SIGTERM/SIGINT); `start()` runs it in a
    thread and returns once it accepts connections; `stop()` drains and joins."""

    def __init__(self, scorer: StableRankScorer | list[StableRankScorer], config: ServeConfig):
        import uvicorn

        self.config = config
        self.app = create_app(scorer, config)
        self.socket = bind_socket(config.host, config.port, config.backlog)
        self.port = self.socket.getsockname()[1]
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            self.app, backlog=config.backlog, timeout_keep_alive=config.keep_alive_timeout,
            limit_concurrency=config.max_connections, timeout_graceful_shutdown=config.drain_timeout,
            access_log=False, log_config=None, lifespan="on", loop="asyncio",
            http=_protocol_with_first_request_timeout(config.read_timeout),
        ))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    @property
    def counts(self) -> dict:
        return dict(self.app.state.counts)

    def serve(self) -> None:
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self, timeout: float = 30.0) -> "RewardServer":
        self._thread = threading.Thread(target=self.serve, name="srgrpo-reward-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reward server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float | None = 60.0) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


def api_key_from_env(value: str | None) -> str | None:
    return value or os.environ.get(API_KEY_ENV) or None
