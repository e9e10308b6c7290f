"""Length-robust stable-rank scores (issue 13): the variants, the per-model state some of them need,
and a small scoring loop for callers that are not yet on the feature registry.

Plain SR of a T x d matrix is bounded by min(T, d) and, on real hidden states, grows with T, so as a
reward it prefers longer responses. The variants here divide that growth out (see
`benchmarks/study_length.py` for the study that chose among them and `srgrpo.metrics` for the math).

Each variant is `fn(hidden, mask, prompt_hidden, prompt_mask, dtype, state) -> (B,)`, where hidden /
mask are the scored span's states at the variant's tap, padded (B, S, d) with a (B, S) mask, and
prompt_hidden / prompt_mask the prompt part's states (only for variants with needs_prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from srgrpo import metrics

__all__ = ["Variant", "VARIANTS", "NullState", "default_state", "fit_growth_exponent", "score_encoded",
           "span_states"]


@dataclass
class NullState:
    """What a variant needs to know about a model, estimated once on neutral text (never on the data
    being scored): growth exponents of log SR against log T, keyed by variant name."""

    exponents: dict[str, float] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class Variant:
    help: str
    tap: str  # "final_norm" or "last_block" (ScoringOptions.layer names)
    fn: Callable
    higher_is_better: bool = True
    needs_prompt: bool = False
    needs_state: bool = False


def _null_ratio(h, m, p, pm, dtype, state):
    return metrics.stable_rank_null_ratio(h, m, dtype)


def _null_ratio_centered(h, m, p, pm, dtype, state):
    return metrics.stable_rank_null_ratio(h, m, dtype, center=True)


VARIANTS: dict[str, Variant] = {
    "stable_rank_null": Variant(
        "SR over the E[SR] of an i.i.d. Gaussian matrix of the same shape, T d / (sqrt T + sqrt d)^2",
        "final_norm", _null_ratio),
    "stable_rank_null_centered": Variant(
        "SR of the centred token vectors over the Gaussian null's E[SR] for that shape",
        "final_norm", _null_ratio_centered),
}


def fit_growth_exponent(prefix_values: dict[int, Sequence[float]]) -> float:
    """Slope of mean log metric against log prefix length (least squares), from
    {prefix length: metric values of neutral-text prefixes of that length}."""
    xs, ys = [], []
    for length, values in sorted(prefix_values.items()):
        vals = [v for v in values if v > 0 and math.isfinite(v)]
        if vals:
            xs.append(math.log(length))
            ys.append(sum(math.log(v) for v in vals) / len(vals))
    if len(xs) < 2:
        raise ValueError("need metric values at two or more prefix lengths")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def default_state(scorer=None) -> NullState:
    """The state the shipped variants use (none of them needs a fitted one yet)."""
    return NullState(source="none")


def span_states(states: torch.Tensor, starts: Sequence[int], ends: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [start, end) of each sequence gathered into (B, S, d) with a (B, S) mask."""
    width = max(max((e - s for s, e in zip(starts, ends)), default=1), 1)
    offsets = torch.arange(width, device=states.device)
    starts_t = torch.tensor(list(starts), device=states.device)
    lengths = torch.tensor([e - s for s, e in zip(starts, ends)], device=states.device)
    positions = (starts_t[:, None] + offsets).clamp(min=0, max=states.shape[1] - 1)
    gathered = states.gather(1, positions[..., None].expand(-1, -1, states.shape[-1]))
    return gathered, offsets[None, :] < lengths[:, None]


def score_encoded(scorer, encoded: Sequence, variant: str, state: NullState | None = None) -> list[float]:
    """The variant's score of each encoded pair (`srgrpo.scoring.encode_pair` / `encode_ids`), in
    order; NaN where a pair cannot be scored. Uses the scorer's backbone, batching and window; the
    tap is the variant's. Prompt states, for variants that need them, are the window's tokens
    before the response, without the first one (the attention sink)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    state = state or default_state(scorer)
    dtype = getattr(torch, scorer.options.compute_dtype)
    tap = scorer.layer_module(spec.tap)
    values = [math.nan] * len(encoded)
    for batch in scorer.length_batches(list(encoded)):
        pairs = [encoded[i] for i in batch]
        ids, attention = scorer.collate(pairs)
        captured = {}
        scorer.run_backbone(ids, attention, {"h": tap}, captured.__setitem__)
        states = captured["h"]
        h, m = span_states(states, [p.start for p in pairs], [p.end for p in pairs])
        p = pm = None
        if spec.needs_prompt:
            p, pm = span_states(states, [min(1, p.response_start) for p in pairs], [p.response_start for p in pairs])
        out = spec.fn(h, m, p, pm, dtype, state)
        for i, v in zip(batch, out.tolist()):
            values[i] = v
    return values
