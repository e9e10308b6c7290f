"""The scorer: (prompt, response) pairs -> features, through the forward engine.

`StableRankScorer` is the public entry point: it encodes pairs (`srgrpo.text`), runs them through
the `ForwardEngine` (batching, device, layer taps) and computes the requested features from the
registry (`srgrpo.features`), all of them and a layer sweep in one forward pass per batch.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from srgrpo import metrics
from srgrpo.engine import Batch, ForwardEngine, finish_logits, gather_spans
from srgrpo.features import FEATURES, SpanStates, logit_stats
from srgrpo.options import ScoringOptions
from srgrpo.text import EncodedPair, Prompt, check_pair, encode_pairs

__all__ = ["StableRankScorer", "PairScore", "ItemFeatures", "warn_unscored"]


@dataclass
class PairScore:
    """The result for one pair; `value` is NaN when `warning` says why."""

    index: int
    value: float
    n_tokens: int  # tokens in the scored span
    truncated: bool
    warning: str | None = None
    context_tokens: int = 0  # tokens before the response in the scored span (the short-span rule)


@dataclass
class ItemFeatures:
    """Every requested score of one (prompt, response) item; NaN where `warning` says why."""

    index: int
    values: dict[str, float]
    n_tokens: int  # tokens in the scored span
    response_tokens: int  # response tokens inside the window
    truncated: bool
    warning: str | None = None
    layer_values: dict[int, float] = field(default_factory=dict)  # SR per hidden_states index (sweep)
    context_tokens: int = 0  # tokens before the response in the scored span (the short-span rule)


class Tap(enum.Enum):
    """The engine taps a scorer reads (the engine's keys are opaque to it; these are typed)."""

    MAIN = "main"  # the scored layer (ScoringOptions.layer): the hidden-state features
    FINAL = "final"  # the backbone's final output: the LM head, for the logit features


@dataclass(frozen=True)
class SweepLayer:
    """A layer-sweep tap and its result: stable rank at hidden_states[index]."""

    index: int


class SpanCheck(enum.Enum):
    """Per-row checks of the scored span's states, returned beside the features."""

    FINITE = "finite"  # every value finite
    NONZERO = "nonzero"  # not all zero


@dataclass(frozen=True)
class RowValues:
    """One row's results from the engine, by meaning: the features, the sweep, the span's checks."""

    features: dict[str, float]
    layers: dict[int, float]
    finite: bool = True
    nonzero: bool = True

    @classmethod
    def from_engine(cls, values: dict) -> RowValues:
        return cls(features={k: v for k, v in values.items() if isinstance(k, str)},
                   layers={k.index: v for k, v in values.items() if isinstance(k, SweepLayer)},
                   finite=bool(values.get(SpanCheck.FINITE, True)),
                   nonzero=bool(values.get(SpanCheck.NONZERO, True)))

    def warning(self) -> str | None:
        """Why the hidden-state features cannot be trusted, or None."""
        if not self.finite:
            return "hidden states contain NaN or inf"
        if not self.nonzero:
            return "hidden states are all zero"
        return None


# Pairs encoded per chunk: the engine encodes the next chunk while the device runs this one. The
# first chunk is small so the device starts early.
FIRST_CHUNK_BATCHES = 2
CHUNK_BATCHES = 32


def _char_length(prompt: Prompt, response: str) -> int:
    text = prompt if isinstance(prompt, str) else "".join(str(m.get("content", "")) for m in prompt)
    return len(text) + len(response)


class StableRankScorer:
    """Scores (prompt, response) pairs with the stable rank of their hidden states.

    >>> model, tokenizer = srgrpo.load_model()
    >>> StableRankScorer(model, tokenizer, span="response").score(["Hi!"], ["Hello, how can I help?"])

    Options are the fields of `ScoringOptions`. The model stays on its device and dtype (choose them
    in `load_model`); the SR arithmetic runs in `compute_dtype`. `iter_features` computes any
    registered feature (`srgrpo.features.FEATURES`) and a layer sweep in the same pass.
    """

    def __init__(self, model, tokenizer, options: ScoringOptions | None = None, **overrides):
        self.model = model
        self.tokenizer = tokenizer
        self.options = dataclasses.replace(options or ScoringOptions(), **overrides)
        self.engine = ForwardEngine(model, tokenizer.pad_token_id, self.options.batch_size)
        self._tap = self.engine.layer_module(self.options.layer)  # validates the layer now

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[EncodedPair]:
        return encode_pairs(self.tokenizer, prompts, responses, self.options)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) hidden states at the chosen layer; layers after it are not run."""
        captured = {}
        self.engine.run(input_ids, attention_mask, {"h": self._tap}, captured.__setitem__)
        return captured["h"]

    def lm_logits(self, final_states: torch.Tensor) -> torch.Tensor:
        """The LM's logits for rows of final (post-norm) hidden states."""
        head = self.model.get_output_embeddings()
        return finish_logits(self.model, head(final_states.to(head.weight.device)))

    def iter_features(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        features: Sequence[str] = ("stable_rank",),
        sweep_layers: Sequence[int] = (),
        progress: bool = False,
    ) -> Iterator[ItemFeatures]:
        """Yield every requested feature of each pair as soon as its batch is done (unscorable
        pairs first in their chunk, all NaN). All features and the layer sweep (SR at each listed
        hidden_states index) share one forward pass per batch; the next chunk of pairs is
        templated and tokenised while the device runs the current one."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            check_pair(prompt, response, f"pair {i}")  # before any work, naming the bad pair
        # Chunks follow the pairs' character lengths (a proxy for token lengths known before
        # tokenising), so the engine's per-chunk length sort still puts similar lengths together.
        order = sorted(range(len(prompts)), key=lambda i: -_char_length(prompts[i], responses[i]))
        sizes = [FIRST_CHUNK_BATCHES * self.options.batch_size]
        while sum(sizes) < len(order):
            sizes.append(CHUNK_BATCHES * self.options.batch_size)
        bounds = [sum(sizes[:k]) for k in range(len(sizes) + 1)]

        def chunk(picked):
            return lambda: encode_pairs(self.tokenizer, [prompts[i] for i in picked], [responses[i] for i in picked],
                                        self.options, first_index=picked[0])

        chunks = [chunk(order[lo:hi]) for lo, hi in zip(bounds, bounds[1:]) if lo < len(order)]
        for item in self._iter(chunks, len(prompts), features, sweep_layers, progress):
            item.index = order[item.index]
            yield item

    def iter_encoded_features(
        self,
        encoded: Sequence[EncodedPair],
        features: Sequence[str] = ("stable_rank",),
        sweep_layers: Sequence[int] = (),
        progress: bool = False,
    ) -> Iterator[ItemFeatures]:
        """`iter_features` for pairs already encoded (`encode_pairs`, or `encode_ids` for exact token ids)."""
        yield from self._iter([lambda: encoded] if encoded else [], len(encoded), features, sweep_layers, progress)

    def _iter(self, chunks, total: int, features, sweep_layers, progress) -> Iterator[ItemFeatures]:
        features = FEATURES.check(features)
        hidden = [FEATURES[f] for f in features if FEATURES[f].source == "hidden"]
        logits = [FEATURES[f] for f in features if FEATURES[f].source == "logits"]
        taps: dict = {SweepLayer(k): self.engine.layer_module(k) for k in sweep_layers}
        if hidden:
            taps[Tap.MAIN] = self._tap
        if logits:
            taps[Tap.FINAL] = None
        compute_dtype = getattr(torch, self.options.compute_dtype)

        def on_states(batch: Batch, key, states) -> dict:
            if key is Tap.FINAL:
                stats = logit_stats(self.lm_logits, states, batch.input_ids, *batch.spans("response"))
                return {f.name: f.compute(stats) for f in logits}
            span, mask = gather_spans(states, *batch.spans())
            if key is Tap.MAIN:
                prompt = (gather_spans(states, [0] * len(batch.items), [p.response_start for p in batch.items])
                          if any(f.needs_prompt for f in hidden) else (None, None))
                span_states = SpanStates(span, mask, self.options, *prompt)
                out: dict = {f.name: f.compute(span_states) for f in hidden}
                real = span.float()
                out[SpanCheck.FINITE] = torch.isfinite(real).flatten(1).all(1)
                out[SpanCheck.NONZERO] = real.flatten(1).abs().amax(1) > 0
                return out
            return {key: metrics.stable_rank(span, mask, compute_dtype)}  # a SweepLayer

        with tqdm(total=total, unit="response", desc="scoring", disable=not progress) as bar:
            for index, item, values in self.engine.stream(chunks, taps, on_states):
                n_tokens, response_tokens = item.end - item.start, item.response_end - item.response_start
                if values is None:
                    yield ItemFeatures(index, {f: math.nan for f in features}, n_tokens, response_tokens,
                                       item.truncated, item.problem, {k: math.nan for k in sweep_layers},
                                       item.context_tokens)
                else:
                    row = RowValues.from_engine(values)
                    yield ItemFeatures(index, {f: row.features[f] for f in features}, n_tokens, response_tokens,
                                       item.truncated, row.warning() if hidden else None,
                                       {k: row.layers[k] for k in sweep_layers}, item.context_tokens)
                bar.update(1)

    def iter_scores(self, prompts: Sequence[Prompt], responses: Sequence[str], progress: bool = False) -> Iterator[PairScore]:
        """Yield one PairScore (stable rank) per pair as soon as its batch is done."""
        for item in self.iter_features(prompts, responses, ("stable_rank",), progress=progress):
            yield PairScore(item.index, item.values["stable_rank"], item.n_tokens, item.truncated, item.warning,
                            item.context_tokens)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], progress: bool = False) -> list[float]:
        """One stable rank per pair, in input order; NaN (with a warning) where a pair cannot be scored."""
        results = sorted(self.iter_scores(prompts, responses, progress=progress), key=lambda r: r.index)
        warn_unscored(results)
        return [r.value for r in results]


def warn_unscored(results: Iterable) -> None:
    """One warning per reason, naming the pairs (results: anything with .index and .warning)."""
    reasons: dict[str, list[int]] = {}
    for r in results:
        if r.warning is not None:
            reasons.setdefault(r.warning, []).append(r.index)
    for reason, indices in reasons.items():
        shown = ", ".join(map(str, indices[:10])) + (" ..." if len(indices) > 10 else "")
        warnings.warn(f"{len(indices)} pair(s) scored NaN ({reason}): pair {shown}", stacklevel=3)
