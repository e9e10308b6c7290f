"""Fitting what the length-robust features need to know about a model, on neutral text.

Plain SR of a T x d matrix is bounded by min(T, d) and, on real hidden states, grows with T, so as a
reward it prefers longer responses. The feature `stable_rank_prompt_adjusted` (srgrpo.features)
divides that growth out with T^beta; beta (ScoringOptions.length_exponent) is how the feature,
taken without the division, grows along neutral text: fit it once per model here, never on the data
to be scored. `studies/length/` is the study that chose the feature.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from srgrpo.engine import gather_spans
from srgrpo.features import FEATURES, SpanStates

PREFIX_LENGTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
FEATURE = "stable_rank_prompt_adjusted"


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


def fit_length_exponent(scorer, prompts: Sequence, responses: Sequence[str],
                        prefix_lengths: Sequence[int] = PREFIX_LENGTHS, min_texts: int = 5) -> float:
    """beta for `scorer`'s model: the feature (with beta = 0) on every prefix of every neutral
    response, one forward pass per text (with causal attention a prefix's states are the text's
    first rows), then the slope of its mean log against log prefix length. Pass the result as
    ScoringOptions(length_exponent=beta) / --length-exponent."""
    options = dataclasses.replace(scorer.options, length_exponent=0.0)
    feature = FEATURES[FEATURE]
    per_length: dict[int, list[float]] = {n: [] for n in prefix_lengths}
    for e in scorer.encode(prompts, responses):
        lengths = [n for n in prefix_lengths if n <= e.response_end - e.response_start]
        if e.problem is not None or not lengths:
            continue
        states = scorer.hidden_states(*scorer.engine.collate([e])).expand(len(lengths), -1, -1)
        span = gather_spans(states, [e.response_start] * len(lengths), [e.response_start + n for n in lengths])
        prompt = gather_spans(states, [0] * len(lengths), [e.response_start] * len(lengths))
        for n, v in zip(lengths, feature.compute(SpanStates(*span, options, *prompt)).tolist()):
            per_length[n].append(v)
    return fit_growth_exponent({n: v for n, v in per_length.items() if len(v) >= min_texts})
