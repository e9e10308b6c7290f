"""The batching worker behind the reward server: one thread that owns the tokenizer and the model.

Requests become jobs of items (one item = one text). The worker fills each batch by taking one item
from each waiting job in turn (round robin), so a job of 1000 texts is split into bounded batches
interleaved with everyone else's: a one-text request waits at most for the batch in progress. A
batch stops growing at `max_batch_texts` items or at its token budget: `max_batch_tokens`, lowered
to what the model is measured to score in `target_batch_seconds`, but never below one forward
batch of the scorer (`ScoringOptions.batch_size` texts), so that batching as well as in-process
scoring is kept on a slow device (where one forward batch may then take longer than the target).

Each item is encoded and scored on its own account: an item that cannot be encoded or scored gets
the unscored value and a warning, never failing the items batched with it (a failed forward pass
is retried one item at a time). A job whose client has gone is cancelled: its items not yet in a
batch are skipped.

Several replicas (`srgrpo serve --devices`): one scorer per device, each with its own model copy,
tokenizer and thread, all taking batches from the one fair queue, so one URL uses every device. A
replica's token budget follows its own measured speed; `replica_stats()` counts each one's batches,
texts and busy time (what /health and /metrics show per device).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer
from srgrpo.serving.protocol import locate_response
from srgrpo.text import EncodedPair, encode_ids, response_token_span

logger = logging.getLogger("srgrpo.serve")


@dataclass
class Job:
    """One request's texts. `prompts[i]` is None (score the whole text), a prompt string, or chat
    messages; with `templated_prompts` the text is a response to be put after its rendered prompt."""

    texts: Sequence[str]
    prompts: Sequence | None = None
    responses_only: bool = False
    on_done: Callable[["Job"], None] | None = None
    values: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    cancelled: bool = False
    next_item: int = 0
    remaining: int = 0
    created: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        n = len(self.texts)
        self.values = [None] * n
        self.warnings = [None] * n
        self.remaining = n


def strip_trailing(ids: Sequence[int], drop: set[int]) -> list[int]:
    """`ids` without the end-of-turn/padding ids that close them."""
    ids = list(ids)
    while ids and ids[-1] in drop:
        ids.pop()
    return ids


def parse_devices(text: str) -> list[str]:
    """`srgrpo serve --devices`: "all" -> every visible GPU (cuda:0, cuda:1, ...); "0,1" -> cuda:0,
    cuda:1; device names as torch spells them ("cuda:2", "cpu", "mps"), a name repeated for several
    replicas on one device ("cpu,cpu": two CPU replicas, what the tests use). One replica each."""
    text = (text or "").strip()
    if text == "all":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError("--devices all found no GPU: use --devices cpu (or cpu,cpu for two CPU replicas)")
        return [f"cuda:{i}" for i in range(count)]
    devices = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        devices.append(f"cuda:{part}" if part.isdigit() else part)
    if not devices:
        raise ValueError(f"--devices must be 'all', GPU indices (0,1) or device names (cuda:0,cpu), got {text!r}")
    return devices


def scorer_device(scorer: StableRankScorer) -> str:
    """The device a scorer's model runs on, as text ("cpu", "cuda:0")."""
    try:
        return str(next(scorer.model.parameters()).device)
    except (AttributeError, StopIteration, TypeError):
        return "cpu"


class Replica:
    """One model copy on one device, with its own tokenizer and scoring thread, and its counts."""

    def __init__(self, index: int, scorer: StableRankScorer):
        self.index = index
        self.scorer = scorer
        self.tokenizer = scorer.tokenizer
        self.special_ids = set(self.tokenizer.all_special_ids)
        self.device = scorer_device(scorer)
        self.tokens_per_second: float | None = None  # measured, smoothed
        self.batches = 0
        self.texts = 0
        self.busy_seconds = 0.0
        self.thread: threading.Thread | None = None

    def stats(self) -> dict:
        return {"replica": self.index, "device": self.device, "batches": self.batches, "texts": self.texts,
                "busy_seconds": round(self.busy_seconds, 3),
                "tokens_per_second": None if self.tokens_per_second is None else round(self.tokens_per_second, 1)}


class BatchingWorker:
    """Scores jobs with `scorer` (a `StableRankScorer`, or a list of them: one replica each, see the
    module docstring) on one thread per replica, all fed by one fair queue."""

    def __init__(self, scorer: StableRankScorer | Sequence[StableRankScorer], feature: str = "stable_rank", *,
                 max_batch_texts: int = 64, max_batch_tokens: int = 16384, target_batch_seconds: float = 1.0,
                 batch_wait_s: float = 0.005, metrics=None):
        scorers = list(scorer) if isinstance(scorer, (list, tuple)) else [scorer]
        if not scorers:
            raise ValueError("the reward worker needs at least one scorer")
        self.replicas = [Replica(i, s) for i, s in enumerate(scorers)]
        self.scorer = scorers[0]
        self.tokenizer = self.scorer.tokenizer
        self.options: ScoringOptions = self.scorer.options
        self.feature = feature
        self.max_batch_texts = max_batch_texts
        self.max_batch_tokens = max_batch_tokens
        self.target_batch_seconds = target_batch_seconds
        self.batch_wait_s = batch_wait_s
        self.metrics = metrics
        self.special_ids = set(self.tokenizer.all_special_ids)
        self.batches = 0
        self.pending_texts = 0
        self._active: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def tokens_per_second(self) -> float | None:
        """The first replica's measured speed (the only one without --devices)."""
        return self.replicas[0].tokens_per_second

    @tokens_per_second.setter
    def tokens_per_second(self, value: float | None) -> None:
        self.replicas[0].tokens_per_second = value

    def replica_stats(self) -> list[dict]:
        return [r.stats() for r in self.replicas]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            for replica in self.replicas:
                name = "srgrpo-reward-worker" + (f"-{replica.index}" if len(self.replicas) > 1 else "")
                replica.thread = threading.Thread(target=self._run, args=(replica,), name=name, daemon=True)
                replica.thread.start()
            self._thread = self.replicas[0].thread

    def close(self, timeout: float | None = None) -> None:
        """Finish every job already submitted, then stop the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for replica in self.replicas:
            if replica.thread is not None:
                replica.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def submit(self, job: Job) -> None:
        if not job.texts:
            raise ValueError("a job needs at least one text")
        with self._cond:
            if self._stopping:
                raise RuntimeError("the reward worker is shutting down")
            self._active.append(job)
            self.pending_texts += len(job.texts)
            self._gauge()
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """The client has gone: skip the job's items not yet in a batch."""
        with self._cond:
            job.cancelled = True

    # ------------------------------------------------------------------ encoding
    def encode(self, job: Job, i: int, replica: Replica | None = None) -> tuple[EncodedPair | None, str | None]:
        """(encoded item, note) or (None, why it cannot be scored), with `replica`'s tokenizer (each
        replica encodes with its own: a tokenizer is not shared between threads)."""
        tokenizer = self.tokenizer if replica is None else replica.tokenizer
        special_ids = self.special_ids if replica is None else replica.special_ids
        text = job.texts[i]
        prompt = job.prompts[i] if job.prompts is not None else None
        note = None
        if prompt is not None and not isinstance(prompt, str):
            prompt = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
        if job.responses_only:
            query, boundary = (prompt or "") + text, len(prompt or "")
        elif prompt is None:
            query, boundary = text, 0
        else:
            query = text
            boundary, note = locate_response(text, prompt)
            if boundary is None:
                return None, note
        if not query[boundary:].strip():
            return None, "empty response"
        # Tokenised as a whole, as the model read it (a token straddling the boundary is response).
        ids, start, _ = response_token_span(tokenizer, query, boundary, len(query), with_special=False,
                                            window=(self.options.max_length, self.options.truncation_side))
        response = strip_trailing(ids[start:], special_ids)
        encoded = encode_ids(tokenizer, ids[:start], response, self.options)
        if encoded.problem is not None:
            return None, encoded.problem
        if encoded.context_tokens and note is None:  # scored, but not over the response alone
            note = (f"short response: scored with the {encoded.context_tokens} token(s) before it "
                    f"(min_span_tokens={self.options.min_span_tokens})")
        return encoded, note

    # ------------------------------------------------------------------ scheduling
    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_texts.set(self.pending_texts)

    def _next_item(self) -> tuple[Job, int] | None:
        """The next item, round robin over the waiting jobs (call with the lock held)."""
        while self._active:
            job = self._active[0]
            if job.cancelled:
                self._active.popleft()
                skipped = len(job.texts) - job.next_item
                self.pending_texts -= skipped
                if self.metrics is not None:
                    self.metrics.skipped_texts.inc(skipped)
                continue
            i = job.next_item
            job.next_item += 1
            self.pending_texts -= 1
            if job.next_item == len(job.texts):
                self._active.popleft()
            else:
                self._active.rotate(-1)
            return job, i
        return None

    def token_budget(self, replica: Replica | None = None) -> int:
        rate = (replica or self.replicas[0]).tokens_per_second
        if rate is None:
            return min(self.max_batch_tokens, self.options.batch_size * self.options.max_length)
        return max(1, min(self.max_batch_tokens, int(rate * self.target_batch_seconds)))

    def _collect(self, replica: Replica) -> list[tuple[Job, int, EncodedPair]]:
        batch, tokens, budget = [], 0, self.token_budget(replica)
        floor = min(self.options.batch_size, self.max_batch_texts)  # never below one forward batch
        while len(batch) < self.max_batch_texts and (tokens < budget or len(batch) < floor):
            with self._cond:
                picked = self._next_item()
                self._gauge()
            if picked is None:
                break
            job, i = picked
            try:
                encoded, note = self.encode(job, i, replica)
            except Exception as err:  # e.g. a chat template that refuses the messages
                logger.warning("text %d of a request could not be encoded: %s", i, err)
                encoded, note = None, f"could not be encoded: {type(err).__name__}: {err}"
            if encoded is None:
                self._finish(job, i, None, note)
                continue
            job.warnings[i] = note
            batch.append((job, i, encoded))
            tokens += len(encoded.input_ids)
        return batch

    def _finish(self, job: Job, i: int, value: float | None, warning: str | None) -> None:
        job.values[i] = value
        if warning is not None:
            job.warnings[i] = warning
        if value is None and self.metrics is not None:
            self.metrics.unscored_texts.inc()
        with self._cond:  # replicas finish items of one job from several threads
            job.remaining -= 1
            done = job.remaining == 0
        if done and job.on_done is not None:
            try:
                job.on_done(job)
            except Exception:  # a callback must not kill the worker
                logger.exception("delivering a result failed")

    # ------------------------------------------------------------------ scoring
    def _score(self, encoded: list[EncodedPair], replica: Replica | None = None) -> list[tuple[float | None, str | None]]:
        results: list[tuple[float | None, str | None]] = [(None, "not scored")] * len(encoded)
        scorer = self.scorer if replica is None else replica.scorer
        for item in scorer.iter_encoded_features(encoded, (self.feature,)):
            value = item.values[self.feature]
            if item.warning is None and value is not None and math.isfinite(value):
                results[item.index] = (float(value), None)
            else:
                results[item.index] = (None, item.warning or f"{self.feature} is not finite")
        return results

    def _score_isolated(self, encoded: list[EncodedPair], replica: Replica | None = None) -> list[tuple[float | None, str | None]]:
        try:
            return self._score(encoded, replica)
        except Exception as err:
            if len(encoded) == 1:
                logger.warning("scoring one text failed: %s: %s", type(err).__name__, err)
                return [(None, f"scoring failed: {type(err).__name__}: {err}")]
            logger.warning("a batch of %d failed (%s); scoring its texts one by one", len(encoded), err)
            return [r for e in encoded for r in self._score_isolated([e], replica)]

    def _run(self, replica: Replica | None = None) -> None:
        replica = replica or self.replicas[0]
        while True:
            with self._cond:
                while not self._active and not self._stopping:
                    self._cond.wait()
                if not self._active:
                    return  # stopping, and everything submitted is done
                deadline = time.monotonic() + self.batch_wait_s
                while self.pending_texts < self.max_batch_texts and not self._stopping:
                    left = deadline - time.monotonic()  # let concurrent requests join this batch
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch = self._collect(replica)
            if len(self.replicas) > 1:
                with self._cond:
                    if self._active:
                        self._cond.notify()  # texts are left: wake an idle replica for them
            if not batch:
                continue
            started = time.perf_counter()
            results = self._score_isolated([e for _, _, e in batch], replica)
            elapsed = time.perf_counter() - started
            n_tokens = sum(len(e.input_ids) for _, _, e in batch)
            rate = n_tokens / max(elapsed, 1e-6)
            previous = replica.tokens_per_second
            replica.tokens_per_second = rate if previous is None else 0.7 * previous + 0.3 * rate
            replica.batches += 1
            replica.texts += len(batch)
            replica.busy_seconds += elapsed
            with self._cond:
                self.batches += 1
            if self.metrics is not None:
                self.metrics.batch_texts.observe(len(batch))
                self.metrics.batch_tokens.observe(n_tokens)
                self.metrics.batch_seconds.observe(elapsed)
                replica_texts = getattr(self.metrics, "replica_texts", None)
                if replica_texts is not None:
                    labels = {"replica": str(replica.index), "device": replica.device}
                    replica_texts.labels(**labels).inc(len(batch))
                    self.metrics.replica_batches.labels(**labels).inc()
                    self.metrics.replica_busy_seconds.labels(**labels).inc(elapsed)
            for (job, i, _), (value, warning) in zip(batch, results):
                self._finish(job, i, value, warning)
