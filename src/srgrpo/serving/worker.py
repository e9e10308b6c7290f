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


class BatchingWorker:
    """Scores jobs with `scorer` (a `StableRankScorer`) on one thread; see the module docstring."""

    def __init__(self, scorer: StableRankScorer, feature: str = "stable_rank", *, max_batch_texts: int = 64,
                 max_batch_tokens: int = 16384, target_batch_seconds: float = 1.0, batch_wait_s: float = 0.005,
                 metrics=None):
        self.scorer = scorer
        self.tokenizer = scorer.tokenizer
        self.options: ScoringOptions = scorer.options
        self.feature = feature
        self.max_batch_texts = max_batch_texts
        self.max_batch_tokens = max_batch_tokens
        self.target_batch_seconds = target_batch_seconds
        self.batch_wait_s = batch_wait_s
        self.metrics = metrics
        self.special_ids = set(self.tokenizer.all_special_ids)
        self.tokens_per_second: float | None = None  # measured, smoothed
        self.batches = 0
        self.pending_texts = 0
        self._active: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="srgrpo-reward-worker", daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Finish every job already submitted, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

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
    def encode(self, job: Job, i: int) -> tuple[EncodedPair | None, str | None]:
        """(encoded item, note) or (None, why it cannot be scored)."""
        text = job.texts[i]
        prompt = job.prompts[i] if job.prompts is not None else None
        note = None
        if prompt is not None and not isinstance(prompt, str):
            prompt = self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
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
        ids, start, _ = response_token_span(self.tokenizer, query, boundary, len(query), with_special=False)
        response = strip_trailing(ids[start:], self.special_ids)
        encoded = encode_ids(self.tokenizer, ids[:start], response, self.options)
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

    def token_budget(self) -> int:
        if self.tokens_per_second is None:
            return min(self.max_batch_tokens, self.options.batch_size * self.options.max_length)
        return max(1, min(self.max_batch_tokens, int(self.tokens_per_second * self.target_batch_seconds)))

    def _collect(self) -> list[tuple[Job, int, EncodedPair]]:
        batch, tokens, budget = [], 0, self.token_budget()
        floor = min(self.options.batch_size, self.max_batch_texts)  # never below one forward batch
        while len(batch) < self.max_batch_texts and (tokens < budget or len(batch) < floor):
            with self._cond:
                picked = self._next_item()
                self._gauge()
            if picked is None:
                break
            job, i = picked
            try:
                encoded, note = self.encode(job, i)
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
        job.remaining -= 1
        if job.remaining == 0 and job.on_done is not None:
            try:
                job.on_done(job)
            except Exception:  # a callback must not kill the worker
                logger.exception("delivering a result failed")

    # ------------------------------------------------------------------ scoring
    def _score(self, encoded: list[EncodedPair]) -> list[tuple[float | None, str | None]]:
        results: list[tuple[float | None, str | None]] = [(None, "not scored")] * len(encoded)
        for item in self.scorer.iter_encoded_features(encoded, (self.feature,)):
            value = item.values[self.feature]
            if item.warning is None and value is not None and math.isfinite(value):
                results[item.index] = (float(value), None)
            else:
                results[item.index] = (None, item.warning or f"{self.feature} is not finite")
        return results

    def _score_isolated(self, encoded: list[EncodedPair]) -> list[tuple[float | None, str | None]]:
        try:
            return self._score(encoded)
        except Exception as err:
            if len(encoded) == 1:
                logger.warning("scoring one text failed: %s: %s", type(err).__name__, err)
                return [(None, f"scoring failed: {type(err).__name__}: {err}")]
            logger.warning("a batch of %d failed (%s); scoring its texts one by one", len(encoded), err)
            return [r for e in encoded for r in self._score_isolated([e])]

    def _run(self) -> None:
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
            batch = self._collect()
            if not batch:
                continue
            started = time.perf_counter()
            results = self._score_isolated([e for _, _, e in batch])
            elapsed = time.perf_counter() - started
            n_tokens = sum(len(e.input_ids) for _, _, e in batch)
            rate = n_tokens / max(elapsed, 1e-6)
            self.tokens_per_second = rate if self.tokens_per_second is None else 0.7 * self.tokens_per_second + 0.3 * rate
            self.batches += 1
            if self.metrics is not None:
                self.metrics.batch_texts.observe(len(batch))
                self.metrics.batch_tokens.observe(n_tokens)
                self.metrics.batch_seconds.observe(elapsed)
            for (job, i, _), (value, warning) in zip(batch, results):
                self._finish(job, i, value, warning)
