"""The registry of features: every per-response score srgrpo computes, declared once.

A feature has a name, a one-line help, a direction (does higher mean better?) and a source:

- "hidden": computed from the hidden states of the scored span at the chosen layer, given as a
  zero-padded (B, S, d) batch with a (B, S) mask (`SpanStates`);
- "logits": read off the LM's next-token distributions over the response's tokens (`LogitStats`).

Every list of feature names in srgrpo (CLI choices, RewardBench scorers, Best-of-N candidates, the
GRPO reward, the server) is read from `FEATURES`. Adding a feature is one `@feature(...)` function.

Each feature carries a `version` (1 unless declared): bump it when a change alters its values, and
every resumable run notices (`run.json` records the versions it used; see `srgrpo.records`). A
feature that reads a scoring option of its own (`window_size`, `length_exponent`) names it in
`params`: such an option pins a run only when a feature of the run reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from srgrpo import metrics
from srgrpo.options import FEATURE, ScoringOptions
from srgrpo.registry import Registry

SOURCES = ("hidden", "logits")


@dataclass(frozen=True)
class SpanStates:
    """Hidden states of a batch of scored spans."""

    states: torch.Tensor  # (B, S, d), rows past a span's end are zero
    mask: torch.Tensor  # (B, S) bool, True on real rows
    options: ScoringOptions
    # The prompt's states (every token before the response, template included), for the features
    # that declare `needs_prompt`; None otherwise.
    prompt_states: torch.Tensor | None = None  # (B, P, d)
    prompt_mask: torch.Tensor | None = None  # (B, P)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the arithmetic (`compute_dtype`), whatever the model's dtype."""
        return getattr(torch, self.options.compute_dtype)


@dataclass(frozen=True)
class LogitStats:
    """Per-response means over the next-token distributions that predict the response's tokens."""

    mean_logprob: torch.Tensor  # (B,) mean log p(response token | everything before it)
    self_certainty: torch.Tensor  # (B,) mean KL(uniform || p)
    mean_entropy: torch.Tensor  # (B,) mean entropy of p


@dataclass(frozen=True)
class Feature:
    name: str
    help: str
    source: str  # one of SOURCES
    higher_is_better: bool
    compute: Callable  # SpanStates -> (B,) for "hidden"; LogitStats -> (B,) for "logits"
    full_spectrum: bool = False  # needs every singular value (an eigendecomposition in float64)
    needs_prompt: bool = False  # reads SpanStates.prompt_states too
    version: int = 1  # bumped whenever a change alters the values (resumed runs check it)
    params: tuple[str, ...] = ()  # the ScoringOptions fields of kind "feature" this feature reads

    def oriented(self, value: float) -> float:
        """The value turned so that higher is better (for rankings and selections)."""
        return value if self.higher_is_better else -value


FEATURES: Registry[Feature] = Registry("feature")


def feature(name: str, help: str, source: str = "hidden", higher_is_better: bool = True,
            full_spectrum: bool = False, needs_prompt: bool = False, version: int = 1,
            params: tuple[str, ...] = ()):
    """Register the decorated function as feature `name`."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    own = ScoringOptions.field_names(FEATURE)
    wrong = [p for p in params if p not in own]
    if wrong:
        raise ValueError(f"feature {name!r}: params {wrong} are not ScoringOptions fields of kind "
                         f"{FEATURE!r} (those are: {', '.join(own)})")

    def register(fn: Callable) -> Callable:
        FEATURES.add(name, Feature(name, help, source, higher_is_better, fn, full_spectrum, needs_prompt,
                                   version, tuple(params)))
        return fn

    return register


def pinned_options(options: ScoringOptions, names) -> dict:
    """What of `options` decides the values of features `names`: the score-defining options and the
    own parameters of those features. This, with the features' versions, is what pins a resumable
    run; run-time options (batch size) and other features' parameters never do."""
    params = {p for name in names for p in FEATURES.lookup(name).params}
    return {**options.score_definition(), **{p: v for p, v in options.feature_parameters().items() if p in params}}


def names_from(source: str) -> tuple[str, ...]:
    return tuple(n for n, f in FEATURES.items() if f.source == source)


# ---------------------------------------------------------------------------------------- hidden


# A span of one row now scores exactly 1 (it was 1 give or take 2e-7 of rounding): no version bump,
# as no reported number moves by more than that, and a bump would recompute every cached run.
@feature("stable_rank", "stable rank of the response's hidden states, ||H||_F^2 / ||H||_2^2 (the paper)")
def _stable_rank(s: SpanStates) -> torch.Tensor:
    return metrics.stable_rank(s.states, s.mask, s.dtype)


@feature("stable_rank_centered", "SR after subtracting the mean token vector")
def _stable_rank_centered(s: SpanStates) -> torch.Tensor:
    return metrics.stable_rank(s.states, s.mask, s.dtype, center=True)


@feature("stable_rank_normalized", "SR of unit-norm token vectors")
def _stable_rank_normalized(s: SpanStates) -> torch.Tensor:
    return metrics.stable_rank(s.states, s.mask, s.dtype, normalize_rows=True)


@feature("stable_rank_windowed", "mean SR over windows of --window-size tokens (does not grow with length)",
         params=("window_size",))
def _stable_rank_windowed(s: SpanStates) -> torch.Tensor:
    return metrics.windowed_stable_rank(s.states, s.mask, s.dtype, window=s.options.window_size)


# Chosen by studies/length/study.py among k in {1, 4, 16} on the tuning half of RewardBench-offline.
PROMPT_DIRECTIONS = 16


@feature("stable_rank_prompt_adjusted", f"SR of the response after projecting out the top {PROMPT_DIRECTIONS} "
         "directions of the prompt's states, divided by T^--length-exponent: less length-driven than stable_rank "
         "(meant for span=response)", needs_prompt=True, params=("length_exponent",))
def _stable_rank_prompt_adjusted(s: SpanStates) -> torch.Tensor:
    # The prompt's first token is left out: its state is the attention sink, not the prompt's content.
    return metrics.prompt_projected_stable_rank(
        s.states, s.mask, s.prompt_states[:, 1:], s.prompt_mask[:, 1:], s.dtype, k=PROMPT_DIRECTIONS,
        length_exponent=s.options.length_exponent)


# The full-spectrum ablations need float64 to resolve small singular values.
@feature("effective_rank", "exp entropy of the normalised singular values (paper ablation)", full_spectrum=True)
def _effective_rank(s: SpanStates) -> torch.Tensor:
    return metrics.effective_rank(s.states, s.mask)


@feature("inverse_condition_number", "sigma_min / sigma_1 (paper ablation)", full_spectrum=True)
def _inverse_condition_number(s: SpanStates) -> torch.Tensor:
    return 1.0 / metrics.condition_number(s.states, s.mask)


@feature("pca_dimension", "principal components for 95% of the variance (paper ablation)", full_spectrum=True)
def _pca_dimension(s: SpanStates) -> torch.Tensor:
    return metrics.pca_dimension(s.states, s.mask)


# ---------------------------------------------------------------------------------------- logits


@feature("mean_logprob", "mean log-probability of the response tokens (perplexity baseline)", "logits")
def _mean_logprob(s: LogitStats) -> torch.Tensor:
    return s.mean_logprob


@feature("self_certainty", "mean KL(uniform || next-token distribution) (arXiv 2502.18581)", "logits")
def _self_certainty(s: LogitStats) -> torch.Tensor:
    return s.self_certainty


@feature("mean_entropy", "mean next-token entropy (lower wins)", "logits", higher_is_better=False)
def _mean_entropy(s: LogitStats) -> torch.Tensor:
    return s.mean_entropy


def next_token_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: log-softmax over the vocabulary, self-certainty (KL(uniform || p), arXiv
    2502.18581: logsumexp(z) - mean(z) - log V) and entropy. One place for both the re-forward
    scorer and free scoring during generation, so the two agree."""
    logits = logits.float()
    logp = logits.log_softmax(dim=-1)
    certainty = logits.logsumexp(dim=-1) - logits.mean(dim=-1) - math.log(logits.shape[-1])
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return logp, certainty, entropy


def logit_stats(lm_logits: Callable[[torch.Tensor], torch.Tensor], final_states: torch.Tensor,
                input_ids: torch.Tensor, response_starts, response_ends, rows_per_chunk: int = 256) -> LogitStats:
    """`LogitStats` of a batch from its final hidden states (B, T, d). The logits at position t predict
    token t+1, so the response's tokens [start, end) are predicted from positions [start-1, end-1).
    Only those rows go through the LM head, a bounded number at a time: a (rows, vocab) float32
    block is large. A response with nothing to predict gets NaN."""
    device = final_states.device
    rows, positions = [], []
    for row, (start, end) in enumerate(zip(response_starts, response_ends)):
        first, last = max(start - 1, 0), end - 1
        rows.extend([row] * max(last - first, 0))
        positions.extend(range(first, last))
    b = final_states.shape[0]
    sums = torch.zeros(3, b, dtype=torch.float64, device=device)
    counts = torch.zeros(b, dtype=torch.float64, device=device)
    if rows:
        rows_t = torch.tensor(rows, device=device)
        pos_t = torch.tensor(positions, device=device)
        targets = input_ids[rows_t, pos_t + 1]
        counts.index_add_(0, rows_t, torch.ones_like(rows_t, dtype=torch.float64))
        for lo in range(0, len(rows), rows_per_chunk):
            r, p = rows_t[lo : lo + rows_per_chunk], pos_t[lo : lo + rows_per_chunk]
            logp, certainty, entropy = next_token_stats(lm_logits(final_states[r, p]))
            chosen = logp.gather(1, targets[lo : lo + rows_per_chunk, None]).squeeze(1)
            sums.index_add_(1, r, torch.stack([chosen, certainty, entropy]).double())
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.nan)
    return LogitStats(means[0], means[1], means[2])
