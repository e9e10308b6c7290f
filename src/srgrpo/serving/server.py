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
texts than `max_texts_per_request` 413; a body not sent within `read_timeout` 408; a missing or
wrong API key 401; a full server (the connection cap, or `max_inflight_bytes` of bodies in flight:
see `srgrpo.serving.connections.InflightBytes`) 503 with `Retry-After`; always with `{"error": message}`. `/health` and
`/metrics` answer HEAD too. Connections (every head and body timed, room kept for key holders, a
rejected body drained so its client reads the answer) are `srgrpo.serving.connections`'s. Work is
bounded and fair (see `srgrpo.serving.worker`); a request whose client has gone is not computed
further. On SIGTERM or SIGINT the server stops accepting connections, answers every request it has
accepted, then exits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
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
from srgrpo.serving.connections import (
    READ_RESERVATION_BYTES,
    ConnectionGuard,
    InflightBytes,
    current_connection,
    guarded_protocol,
)
from srgrpo.serving.protocol import PARSE_FACTOR_BY_WIDTH, BadRequest, parse_peak_bytes, parse_request, plain_parse_bytes
from srgrpo.serving.worker import BatchingWorker, Job

logger = logging.getLogger("srgrpo.serve")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
API_KEY_ENV = "SRGRPO_API_KEY"
H11_MAX_HEAD_BYTES = 16 * 1024  # a longer request head gets 400 (h11's own default)
# What the HTTP stack may hold of a body on its way in, beside our own buffer: asyncio reads up to
# 256 KiB at a time, h11 buffers it and hands a copy on, uvicorn keeps up to 64 KiB before pausing
# reading and copies that again for the application. Charged on arrival with the body (InflightBytes).
STACK_BYTES = 512 * 1024
# A body larger than this is parsed on the parser thread, and its memory trimmed once freed.
LARGE_BODY_BYTES = 1 << 20


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
    read_timeout: float = 60.0  # seconds to receive each request head, and each request body
    keep_alive_timeout: int = 15  # seconds an idle keep-alive connection is kept
    max_connections: int = 4096  # beyond this many open connections, 503
    # Requests without the API key get 503 while more connections than this carry them; None: half
    # of max_connections. Only with an API key (see srgrpo.serving.connections).
    max_unauthenticated_connections: int | None = None
    # Bound on the bytes charged to request bodies being received, parsed or queued (see
    # InflightBytes); beyond it 503 with Retry-After. None: derived from memory
    # (default_max_inflight_bytes).
    max_inflight_bytes: int | None = None
    backlog: int = 4096  # listen queue (the kernel caps it at net.core.somaxconn)
    drain_timeout: int | None = 600  # seconds to finish accepted requests on SIGTERM; None = no limit

    def validate(self) -> "ServeConfig":
        FEATURES.lookup(self.feature)
        if isinstance(self.unscored_value, bool) or not math.isfinite(self.unscored_value):
            raise ValueError(f"the unscored value must be a finite number, got {self.unscored_value!r}")
        for name in ("max_body_bytes", "max_texts_per_request", "max_batch_texts", "max_batch_tokens",
                     "max_connections", "backlog", "keep_alive_timeout"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("target_batch_seconds", "read_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.max_inflight_bytes is not None and self.max_inflight_bytes < request_charge(self.max_body_bytes):
            raise ValueError(
                f"max-inflight-bytes ({self.max_inflight_bytes}) must be at least four times max-body-bytes plus "
                f"528 KiB ({request_charge(self.max_body_bytes)}): a body is charged four times its size on arrival "
                "(itself, its parsed texts and the parser's copy of them), so a smaller bound could never admit a "
                "body of the largest size; raise it or lower --max-body-bytes")
        if self.max_unauthenticated_connections is not None and not (
                1 <= self.max_unauthenticated_connections <= self.max_connections):
            raise ValueError(f"max-unauthenticated-connections must be in 1..max-connections ({self.max_connections}), "
                             f"got {self.max_unauthenticated_connections}")
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

    @property
    def unauthenticated_share(self) -> int:
        if self.max_unauthenticated_connections is not None:
            return self.max_unauthenticated_connections
        return max(1, self.max_connections // 2)

    @property
    def drain_bytes(self) -> int:
        """How much of a rejected body is read and discarded so that its client still reads the
        answer (lingering close): twice the body limit, at least 64 MiB."""
        return max(2 * self.max_body_bytes, 64 * 1024 * 1024)


def available_memory() -> int:
    """Bytes of memory available to this process now: the system's available memory, capped by a
    cgroup v2 limit (a container) when one is set."""
    import psutil

    available = psutil.virtual_memory().available
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, available)


# What each byte of a chunked body is charged as it arrives: itself and its parse as plain text.
CHARGE_PER_BODY_BYTE = 1 + PARSE_FACTOR_BY_WIDTH[1]


def request_charge(length: int) -> int:
    """What a body of `length` bytes is charged on arrival (see InflightBytes): itself, the HTTP
    stack's copies, and its parse if it is plain one-byte text with a few texts (plain_parse_bytes);
    the rest of its parse cost (wider characters, many JSON values) is charged once it has arrived."""
    return length + min(length, STACK_BYTES) + plain_parse_bytes(length)


def default_max_inflight_bytes(max_body_bytes: int, max_connections: int, available: int | None = None) -> int:
    """The default in-flight body bound: a quarter of the memory available when the server starts
    (the model is loaded by then), at least one largest body's charge and at most every connection's."""
    available = available_memory() if available is None else available
    largest = request_charge(max_body_bytes)
    return max(largest, min(available // 4, largest * max_connections))


class _Charge:
    """What one request holds of an `InflightBytes` bound. Its first charge takes over its
    connection's read reservation (the stack's copies are part of the charge from then on); the
    connection takes a new one once the answer is sent (`GuardedH11Protocol`)."""

    def __init__(self, bound: InflightBytes, conn=None):
        self.bound, self.conn, self.held = bound, conn, 0

    def take(self, n: int) -> bool:
        absorb = self.conn.read_reservation if self.conn is not None and self.held == 0 else 0
        if not self.bound.take(n, absorb=absorb):
            return False
        if absorb:
            self.conn.read_reservation = 0
        self.held += n
        return True

    def become(self, n: int) -> None:
        """Hold `n` bytes from now on (the memory is already spent: never refused)."""
        self.bound.take(n - self.held, force=True)
        self.held = n

    def release(self) -> None:
        self.become(0)


def _parsed_size(parsed) -> int:
    import sys

    size = 0
    for texts in (parsed.query, parsed.responses, parsed.prompts):
        size += sys.getsizeof(texts) if texts is not None else 0
        for item in texts or ():
            size += sys.getsizeof(item)
            if not isinstance(item, str):  # chat messages: the list, each dict and what it holds
                size += sum(sys.getsizeof(m) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in m.items())
                            for m in item)
    return size


def _libc_malloc_trim():
    """glibc's malloc_trim, or None where there is none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class _Trimmer:
    """Once a large body, or the texts parsed from it, is freed, hand the heap's free pages back to
    the OS (glibc's malloc_trim, queued on the parser thread: about 10 ms when it returns 32 MiB,
    0.02 ms when there is nothing to return). glibc keeps freed buffers in the heap of the thread
    that allocated them: a body is read on the event loop's thread and parsed on the parser's, so
    without this neither heap reuses the other's memory and a burst's high-water mark stays
    resident. The allocation policy is left alone (torch's own large buffers are unaffected)."""

    def __init__(self, executor):
        self.executor = executor
        self.trim = _libc_malloc_trim()

    async def freed(self, nbytes: int) -> None:
        """Returns once the pages are back with the OS, so that a charge given back after it matches
        resident memory (a charge given back before would let others in while the pages stay)."""
        if self.trim is None or nbytes <= LARGE_BODY_BYTES:
            return
        try:
            await asyncio.wrap_future(self.executor.submit(self.trim, 0))
        except RuntimeError:  # the parser has shut down (the server is stopping)
            pass


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
        self.inflight_bytes = Gauge("srgrpo_inflight_bytes", "bytes charged to request bodies being received, "
                                    "parsed or queued (4 L + min(L, 512 KiB) for a body of L bytes on arrival, "
                                    "more before parsing for wide characters or many JSON values, then its parsed "
                                    "texts' size)", registry=r)
        self.inflight_reserved_bytes = Gauge(
            "srgrpo_inflight_reserved_bytes", "read reservations of connections whose request is not charged yet "
            "(320 KiB each: what the HTTP stack may buffer), counted against --max-inflight-bytes", registry=r)
        self.connections_waiting = Gauge("srgrpo_connections_waiting", "connections whose reading is paused until "
                                         "a read reservation fits under --max-inflight-bytes", registry=r)
        self.connections_waited = Counter("srgrpo_connections_waited", "times a connection was paused for room "
                                          "under --max-inflight-bytes", registry=r)
        self.inflight_bytes_limit = Gauge("srgrpo_inflight_bytes_limit", "the bound on srgrpo_inflight_bytes plus "
                                          "srgrpo_inflight_reserved_bytes "
                                          "(--max-inflight-bytes)", registry=r)
        self.connections_open = Gauge("srgrpo_connections_open", "open HTTP connections", registry=r)
        self.connections_closed = Counter("srgrpo_connections_closed", "connections closed by the server's guards, "
                                          "by reason (head_timeout, body_timeout, evicted, lingering_close, "
                                          "drain_limit, drain_timeout)", ["reason"], registry=r)
        self.refused = Counter("srgrpo_refused", "requests answered 503, by reason (connection_cap, "
                               "unauthenticated_share, inflight_bytes, shutting_down)", ["reason"], registry=r)
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


class _Busy(Exception):
    pass


async def _read_body(request: Request, limit: int, declared: int | None = None, charge=None) -> bytearray:
    """The body, at most `limit` bytes (else _TooLarge); `charge(n)` is asked for each chunk's bytes
    when given, and _Busy raised when it refuses. One buffer, allocated at the declared length when
    there is one (no growth, no second copy from a join)."""
    body = bytearray(declared or 0)
    size = 0
    async for chunk in request.stream():
        if size + len(chunk) > limit:
            raise _TooLarge
        if charge is not None and not charge(len(chunk)):
            raise _Busy
        body[size:size + len(chunk)] = chunk  # in place while within the declared length
        size += len(chunk)
    if size < len(body):  # the connection ended early
        del body[size:]
    return body


def _authorized_value(header: str, key: str | None) -> bool:
    """`Authorization: Bearer KEY`, or HTTP Basic with KEY as the password or the user name (what
    aiohttp and requests send for a URL like http://srgrpo:KEY@host:5000/get_reward)."""
    if not key:
        return True
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


class _Admission:
    """ASGI middleware: asks the connection's `ConnectionGuard` whether to serve a request at all
    (the connection cap, and the share of it keyless requests may hold), before any route runs;
    503 with Retry-After and `Connection: close` when not. Passes everything through where no
    guarded connection is known (e.g. starlette's TestClient)."""

    MESSAGES = {
        "connection_cap": "the server holds its maximum of {cap} connections (--max-connections); retry shortly",
        "unauthenticated_share": "too many connections without the API key (--max-unauthenticated-connections "
                                 "{share}); send 'Authorization: Bearer KEY'",
    }

    def __init__(self, app, config: ServeConfig, metrics: Metrics):
        self.app, self.config, self.metrics = app, config, metrics

    async def __call__(self, scope, receive, send):

        conn = current_connection() if scope["type"] == "http" else None
        if conn is not None:
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
            reason = conn.guard.admit(conn, _authorized_value(header, self.config.api_key))
            if reason is not None:
                self.metrics.refused.labels(reason=reason).inc()
                message = self.MESSAGES[reason].format(cap=self.config.max_connections,
                                                       share=self.config.unauthenticated_share)
                response = _error(503, message, close=True, headers={"Retry-After": "1"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _authorized(request: Request, key: str | None) -> bool:
    return _authorized_value(request.headers.get("authorization", ""), key)


class _RewardService:
    """What the routes share: the batching worker, the metrics, the bound on request bodies in flight
    and the parser thread; `get_reward` answers POST /get_reward in named steps (admit, read, parse,
    score)."""

    UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}

    def __init__(self, scorer: StableRankScorer | list[StableRankScorer], config: ServeConfig):
        self.config = config
        self.metrics = metrics = Metrics()
        self.worker = BatchingWorker(
            scorer, config.feature, max_batch_texts=config.max_batch_texts, max_batch_tokens=config.max_batch_tokens,
            target_batch_seconds=config.target_batch_seconds, batch_wait_s=config.batch_wait_ms / 1000,
            metrics=metrics,
        )
        self.counts = {"draining": False, "accepted": 0, "answered": 0}
        limit = config.max_inflight_bytes or default_max_inflight_bytes(config.max_body_bytes, config.max_connections)
        self.inflight = InflightBytes(limit, metrics.inflight_bytes, metrics.inflight_reserved_bytes)
        # Large bodies are parsed off the event loop, one at a time: parsing holds the GIL anyway, and
        # one thread means one allocator arena and at most one body's transient parse copy at a time.
        self.parser = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="srgrpo-parse")
        self.trimmer = _Trimmer(self.parser)
        metrics.inflight_bytes_limit.set(limit)
        self.too_large = f"body exceeds the limit of {config.max_body_bytes} bytes (--max-body-bytes)"

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.worker.start()
        try:
            yield
        finally:
            self.counts["draining"] = True
            await asyncio.to_thread(self.worker.close)
            self.parser.shutdown(wait=False)
            logger.info("reward worker stopped: %d requests accepted, %d answered", self.counts["accepted"],
                        self.counts["answered"])

    def unauthorized(self, request: Request) -> Response | None:
        if _authorized(request, self.config.api_key):
            return None
        return _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", headers=self.UNAUTHORIZED)

    async def get_reward(self, request: Request) -> Response:
        """POST /get_reward, counted in the metrics whatever the answer."""
        started = time.perf_counter()
        self.metrics.inflight.inc()
        status = 500
        try:
            response = await self._admitted(request)
            status = response.status_code
            return response
        finally:
            self.metrics.inflight.dec()
            self.metrics.requests.labels(status=str(status)).inc()
            self.metrics.latency.observe(time.perf_counter() - started)

    async def _admitted(self, request: Request) -> Response:
        """The key and the declared length checked before any byte of the body is read."""
        refused = self.unauthorized(request)
        if refused is not None:
            return refused
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.config.max_body_bytes:
            return _error(413, self.too_large, close=True)  # not read: answer, drain (lingering close), drop
        # Given back when the request is answered, whatever the answer; it takes over the connection's
        # read reservation (None outside a guarded connection, e.g. starlette's TestClient).
        charge = _Charge(self.inflight, current_connection())
        try:
            # The body is held in a list that `_parse` empties, so that no frame keeps it once parsed.
            held = [await self._read(request, length, charge)]
            if isinstance(held[0], Response):
                return held[0]
            parsed = await self._parse(held, charge)
            if isinstance(parsed, Response):
                return parsed
            return await self._score(request, parsed)
        finally:
            try:
                await self.trimmer.freed(charge.held)  # the parsed texts (the caller's references are gone by now)
            finally:
                charge.release()

    def _busy(self) -> Response:
        self.metrics.refused.labels(reason="inflight_bytes").inc()
        return _error(503, f"request bodies in flight would exceed {self.inflight.limit} bytes (--max-inflight-bytes); "
                      "retry shortly", close=True, headers={"Retry-After": "1"})

    async def _on_parser(self, f, body):
        """f(body), on the parser thread for a large body (see `parser`), else here."""
        if len(body) > LARGE_BODY_BYTES:
            return await asyncio.get_running_loop().run_in_executor(self.parser, f, body)
        return f(body)

    async def _read(self, request: Request, length: str, charge: _Charge) -> bytearray | Response:
        """The body, charged to the in-flight bound as it arrives (or the answer that refuses it)."""
        declared = int(length) if length.isdigit() else None
        # a chunked body: the stack's copies and the few separators assumed now, each chunk as it comes
        if not charge.take(request_charge(declared) if declared is not None else STACK_BYTES + plain_parse_bytes(0)):
            return self._busy()
        try:
            per_chunk = None if declared is not None else (lambda n: charge.take(CHARGE_PER_BODY_BYTE * n))
            return await asyncio.wait_for(_read_body(request, self.config.max_body_bytes, declared, per_chunk),
                                          self.config.read_timeout)
        except _TooLarge:
            return _error(413, self.too_large, close=True)
        except _Busy:
            return self._busy()
        except asyncio.TimeoutError:
            return _error(408, f"the request body did not arrive within {self.config.read_timeout:g} s", close=True)
        except ClientDisconnect:
            return Response(status_code=499)

    async def _parse(self, held: list, charge: _Charge):
        """The parsed request of the body `held` holds (taken out of it), its charge moved from the body
        to the parsed texts (or a refusal)."""
        body = held.pop()
        peak = await self._on_parser(parse_peak_bytes, body)
        extra = peak - plain_parse_bytes(len(body))  # beyond what the arrival charge assumed
        if extra > 0 and not charge.take(extra):
            if charge.held + extra > self.inflight.limit:
                return _error(413, f"parsing this body would hold about {charge.held + extra} bytes (wide characters "
                              f"or many JSON values), more than --max-inflight-bytes ({self.inflight.limit}) allows: "
                              "send it in smaller requests", close=True)
            return self._busy()
        try:
            parsed = await self._on_parser(parse_request, body)
        except BadRequest as err:
            return _error(err.status, str(err))
        parsed.labels = None  # accepted and ignored: not kept while the request waits
        size = len(body)
        del body  # from here the parsed texts are what this request holds
        await self.trimmer.freed(size + max(0, extra))  # the body and the parser's copies, before the charge drops
        charge.become(_parsed_size(parsed))
        if len(parsed.texts) > self.config.max_texts_per_request:
            return _error(413, f"{len(parsed.texts)} texts in one request exceed the limit of "
                          f"{self.config.max_texts_per_request} (--max-texts-per-request): send them in smaller requests")
        return parsed

    async def _score(self, request: Request, parsed) -> Response:
        """The texts through the batching worker's queue; 499 when the client leaves first."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def resolve(_job):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        texts = parsed.texts
        job = Job(texts, parsed.prompts, responses_only=parsed.responses is not None, on_done=resolve)
        try:
            self.worker.submit(job)
        except RuntimeError as err:
            self.metrics.refused.labels(reason="shutting_down").inc()
            return _error(503, str(err), close=True)
        self.counts["accepted"] += 1
        self.metrics.texts.inc(len(texts))
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not done.done():
                self.worker.cancel(job)  # the client has gone (or this task is being cancelled)
            gone.cancel()
        self.counts["answered"] += 1
        if not done.done():
            return Response(status_code=499)  # nobody is left to answer
        rewards = [self.config.unscored_value if v is None else v for v in job.values]
        unscored = [1.0 if v is None else 0.0 for v in job.values]
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {"srgrpo_unscored": unscored},
                             "warnings": job.warnings})

    def health(self) -> dict:
        worker, config = self.worker, self.config
        return {"status": "draining" if self.counts["draining"] else "ok", "model": config.model_name,
                "feature": config.feature, "unscored_value": config.unscored_value,
                "options": dataclasses.asdict(worker.options), "requests": self.counts["answered"],
                "batches": worker.batches, "queue_texts": worker.pending_texts, "replicas": worker.replica_stats()}

    def prometheus(self, request: Request) -> Response:
        refused = self.unauthorized(request)
        if refused is not None:
            return refused
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = f"{exc.detail}: {request.method} {request.url.path}; use POST /get_reward, GET /health or GET /metrics"
        return _error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):  # a bug: say so, keep serving
        logger.exception("request failed")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _add_routes(app: FastAPI, service: _RewardService) -> None:
    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health():
        return service.health()

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    async def prometheus(request: Request):
        return service.prometheus(request)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        return await service.get_reward(request)


def create_app(scorer: StableRankScorer | list[StableRankScorer], config: ServeConfig) -> FastAPI:
    """The FastAPI application; its lifespan starts and drains the batching worker. `scorer` may be a
    list: one model replica per device, all fed by the worker's one fair queue."""
    config.validate()
    service = _RewardService(scorer, config)
    app = FastAPI(title="srgrpo reward server", lifespan=service.lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.worker, app.state.metrics, app.state.config = service.worker, service.metrics, config
    app.state.counts, app.state.inflight = service.counts, service.inflight
    app.add_middleware(_Admission, config=config, metrics=service.metrics)
    _add_error_handlers(app)
    _add_routes(app, service)
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
        self.guard = ConnectionGuard(
            read_timeout=config.read_timeout, max_connections=config.max_connections,
            max_unauthenticated=config.unauthenticated_share, keyed=bool(config.api_key),
            drain_bytes=config.drain_bytes, metrics=self.app.state.metrics, budget=self.app.state.inflight)
        self.app.state.metrics.connections_open.set_function(lambda: len(self.guard.connections))
        self.app.state.metrics.connections_waiting.set_function(lambda: len(self.guard.waiting))
        readers = self.app.state.inflight.limit // READ_RESERVATION_BYTES
        if readers < config.max_connections:
            logger.warning("--max-inflight-bytes %d leaves room for %d connections reading at once (320 KiB each); "
                           "beyond that, connections wait with reading paused (--max-connections is %d)",
                           self.app.state.inflight.limit, readers, config.max_connections)
        # The connection cap is the guard's (uvicorn's limit_concurrency cannot tell key holders from
        # others); uvicorn's h11 protocol is subclassed, not patched: see srgrpo.serving.connections.
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            self.app, backlog=config.backlog, timeout_keep_alive=config.keep_alive_timeout,
            limit_concurrency=None, timeout_graceful_shutdown=config.drain_timeout,
            access_log=False, log_config=None, lifespan="on", loop="asyncio", reset_contextvars=False,
            http=guarded_protocol(self.guard), h11_max_incomplete_event_size=H11_MAX_HEAD_BYTES,
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
