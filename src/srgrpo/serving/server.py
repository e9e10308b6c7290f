"""An HTTP reward server holding the frozen model, for RL engines that hand rewards text only.

Protocol (OpenRLHF's remote reward model, `--remote_rm_url http://HOST:PORT/get_reward`):

    POST /get_reward  {"query": [full prompt+response text, ...], "prompts": [prompt text, ...]}
                   -> {"rewards": [SR or null, ...], "scores": [same]}
    GET  /health      -> {"status": "ok", "model": ..., "options": {...}, "requests": n, "batches": n}

A query is the text the policy saw and wrote, chat template included. With `prompts`, each query
must start with its prompt and the response is the rest (scored with the `span` option); without,
the whole query is scored. Other fields (OpenRLHF also sends `labels`) are ignored. A query is
tokenised once as a whole, so the tokens match what the model read.

Requests from concurrent clients are queued; one worker thread scores together whatever arrived
within a few milliseconds (one batched forward pass), then answers each client. Bad requests get a
4xx answer with a JSON `{"error": message}` and never reach the worker.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

from srgrpo.scoring import response_token_span

logger = logging.getLogger("srgrpo.serve")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class BadRequest(ValueError):
    """A client error: answered with `status` and the message, the server carries on."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes) -> tuple[list[str], list[str] | None]:
    """(queries, prompts or None) from a /get_reward body; BadRequest says what is wrong."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(f"malformed JSON: {err}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object with a 'query' list, got {type(data).__name__}")
    queries = data.get("query")
    if queries is None:
        raise BadRequest("missing field 'query' (a list of full prompt+response texts)")
    if isinstance(queries, str):
        queries = [queries]
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequest("'query' must be a list of strings")
    if not queries:
        raise BadRequest("'query' is empty")
    prompts = data.get("prompts")
    if prompts is not None:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("'prompts' must be a list of strings")
        if len(prompts) != len(queries):
            raise BadRequest(f"{len(queries)} queries but {len(prompts)} prompts")
    for i, q in enumerate(queries):
        if not q.strip():
            raise BadRequest(f"query {i} is empty")
        if prompts is not None:
            if not q.startswith(prompts[i]):
                raise BadRequest(f"query {i} does not start with its prompt")
            if not q[len(prompts[i]):].strip():
                raise BadRequest(f"query {i} has an empty response after its prompt")
    return queries, prompts


def split_query(tokenizer, query: str, prompt: str | None) -> tuple[list[int], list[int]]:
    """Token ids of the query, tokenised as a whole, split into (prompt ids, response ids). A token
    that straddles the boundary counts as response (the text scorer's rule, shared with it)."""
    boundary = len(prompt) if prompt else 0
    ids, start, _ = response_token_span(tokenizer, query, boundary, len(query), with_special=False)
    return list(ids[:start]), list(ids[start:])


@dataclass
class _Job:
    items: list[tuple[list[int], list[int]]]
    future: Future = field(default_factory=Future)


class BatchingScorer:
    """Queues scoring jobs from many threads; one worker thread scores together what arrived
    within `batch_wait_s` (up to `max_batch_texts` texts) with a StableRankReward."""

    def __init__(self, reward, max_batch_texts: int = 64, batch_wait_s: float = 0.005):
        self.reward = reward
        self.max_batch_texts = max_batch_texts
        self.batch_wait_s = batch_wait_s
        self.requests = 0
        self.batches = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="srgrpo-reward-worker", daemon=True)
        self._worker.start()

    def score(self, items: Sequence[tuple[list[int], list[int]]], timeout: float | None = None) -> list[float | None]:
        job = _Job(list(items))
        self._queue.put(job)
        return job.future.result(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, n = [first], len(first.items)
        deadline = time.monotonic() + self.batch_wait_s
        while n < self.max_batch_texts:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            n += len(job.items)
        return jobs, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            items = [item for job in jobs for item in job.items]
            try:
                values = self.reward.score_ids([p for p, _ in items], [r for _, r in items])
            except Exception as err:  # e.g. out of memory: fail these requests, keep serving
                logger.exception("scoring failed")
                for job in jobs:
                    job.future.set_exception(err)
            else:
                self.requests += len(jobs)
                self.batches += 1
                k = 0
                for job in jobs:
                    job.future.set_result(values[k : k + len(job.items)])
                    k += len(job.items)
            if stop:
                return


class RewardHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, reward, model_name: str = "", max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_batch_texts: int = 64, batch_wait_s: float = 0.005, unscored_value: float | None = None):
        self.reward = reward
        self.model_name = model_name
        self.max_body_bytes = max_body_bytes
        self.unscored_value = unscored_value
        self.scorer = BatchingScorer(reward, max_batch_texts, batch_wait_s)
        # A fast tokenizer's Rust object may refuse to be borrowed by two threads at once.
        self.tokenizer_lock = threading.Lock()
        super().__init__(address, RewardRequestHandler)

    def server_close(self):
        super().server_close()
        self.scorer.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class RewardRequestHandler(BaseHTTPRequestHandler):
    server: RewardHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # route http.server's access log through logging
        logger.info("%s - %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") == "/health":
            options = vars(self.server.reward.options)
            self._send_json(200, {"status": "ok", "model": self.server.model_name, "options": options,
                                  "requests": self.server.scorer.requests, "batches": self.server.scorer.batches})
        else:
            self._send_json(404, {"error": f"no such path {self.path}: use POST /get_reward or GET /health"})

    def do_POST(self):
        try:
            if self.path.rstrip("/") != "/get_reward":
                raise BadRequest(f"no such path {self.path}: use POST /get_reward", 404)
            body = self._read_body()
            queries, prompts = parse_request(body)
            tokenizer = self.server.reward.tokenizer
            with self.server.tokenizer_lock:
                items = [split_query(tokenizer, q, prompts[i] if prompts else None) for i, q in enumerate(queries)]
            values = self.server.scorer.score(items)
        except BadRequest as err:
            self._send_json(err.status, {"error": str(err)})
            return
        except Exception as err:  # never let one request take the server down
            logger.exception("request failed")
            self._send_json(500, {"error": f"{type(err).__name__}: {err}"})
            return
        fill = self.server.unscored_value
        rewards = [fill if v is None or not math.isfinite(v) else v for v in values]
        self._send_json(200, {"rewards": rewards, "scores": rewards})

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise BadRequest("missing Content-Length header", 411)
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise BadRequest(f"bad Content-Length {length!r}") from None
        if n < 0:
            self.close_connection = True
            raise BadRequest(f"bad Content-Length {length!r}")
        if n > self.server.max_body_bytes:
            # Do not read it: answer and drop the connection.
            self.close_connection = True
            raise BadRequest(f"body of {n} bytes exceeds the limit of {self.server.max_body_bytes} bytes", 413)
        return self.rfile.read(n)


def make_server(reward, host: str = "127.0.0.1", port: int = 5000, **kwargs) -> RewardHTTPServer:
    """A server bound to (host, port) (port 0 picks a free one); call serve_forever() to run it."""
    return RewardHTTPServer((host, port), reward, **kwargs)
