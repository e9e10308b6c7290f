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
           "span_states", "fit_state", "EMBEDDED_EXPONENTS"]


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


PROMPT_K = 16  # prompt directions projected out (study: k in 1, 4, 16; 16 chosen on the tuning half)


def _prompt_adjusted(h, m, p, pm, dtype, state):
    exponent = state.exponents.get("stable_rank_prompt_adjusted", 0.0)
    return metrics.prompt_projected_stable_rank(h, m, p, pm, dtype, k=PROMPT_K, length_exponent=exponent)


VARIANTS: dict[str, Variant] = {
    "stable_rank_prompt_adjusted": Variant(
        f"SR of the response's final-norm states after projecting out the top {PROMPT_K} directions of the "
        "prompt's states, divided by T^beta (T = response tokens; beta = how this SR grows along "
        "neutral text, fitted once per model)",
        "final_norm", _prompt_adjusted, needs_prompt=True, needs_state=True),
}
# Dropped after the study: SR over the Gaussian null's E[SR] (metrics.stable_rank_null_ratio) scores
# 60.6 on RewardBench-offline but is a shortness score (Spearman with length -0.97); whitened SR and
# SR with the end-of-turn token did not help either. See the README's "Length-robust stable rank".
# beta measured by benchmarks/study_length.py on the embedded SmolLM2-135M-Instruct (GSM8K-train
# answers as neutral text; see the README's "Length-robust stable rank").
EMBEDDED_EXPONENTS = {"stable_rank_prompt_adjusted": 0.147}


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
    """The exponents measured for the embedded model. For another model, fit them with
    `fit_state(scorer, prompts, responses)` on neutral text (not the data to be scored)."""
    return NullState(dict(EMBEDDED_EXPONENTS), source="embedded SmolLM2-135M-Instruct, study_length.py")


PREFIX_LENGTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def fit_state(scorer, prompts: Sequence, responses: Sequence[str], prefix_lengths=PREFIX_LENGTHS) -> NullState:
    """Fit each stateful variant's length exponent on neutral (prompt, response) text: the variant
    (exponent 0) is computed on every prefix of every response (one forward pass per text: with
    causal attention a prefix's states are the text's first rows), and beta is the slope of the mean
    log value against log prefix length."""
    from srgrpo.scoring import encode_pair

    dtype = getattr(torch, scorer.options.compute_dtype)
    exponents = {}
    zero = NullState()
    for name, spec in VARIANTS.items():
        if not spec.needs_state:
            continue
        tap = scorer.layer_module(spec.tap)
        per_length: dict[int, list[float]] = {n: [] for n in prefix_lengths}
        for prompt, response in zip(prompts, responses):
            e = encode_pair(scorer.tokenizer, prompt, response, scorer.options)
            if e.problem is not None:
                continue
            ids, attention = scorer.collate([e])
            captured = {}
            scorer.run_backbone(ids, attention, {"h": tap}, captured.__setitem__)
            states = captured["h"]
            lengths = [n for n in prefix_lengths if n <= e.response_end - e.response_start]
            if not lengths:
                continue
            h, m = span_states(states.expand(len(lengths), -1, -1), [e.response_start] * len(lengths),
                               [e.response_start + n for n in lengths])
            p, pm = span_states(states.expand(len(lengths), -1, -1), [min(1, e.response_start)] * len(lengths),
                                [e.response_start] * len(lengths))
            for n, v in zip(lengths, spec.fn(h, m, p, pm, dtype, zero).tolist()):
                per_length[n].append(v)
        exponents[name] = fit_growth_exponent({n: v for n, v in per_length.items() if len(v) >= 5})
    return NullState(exponents, source=f"fitted on {len(responses)} neutral texts")


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
