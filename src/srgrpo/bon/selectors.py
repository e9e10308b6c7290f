"""Best-of-N selectors. Each maps one question's candidates to the probability that its pick is
correct: 0 or 1 for a deterministic pick, the exact expectation for random choice (the mean over
every possible draw, i.e. infinitely many draws rather than one).

A candidate is a dict with "features" (stable_rank, self_certainty, mean_logprob, ...), "answer"
(the extracted, normalised answer or None) and "correct" (bool), as stored in generations.jsonl.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from srgrpo.features import FEATURES
from srgrpo.generation import SAMPLE_FEATURES
from srgrpo.registry import Registry

Candidate = dict
Selector = Callable[[Sequence[Candidate]], float]

DEFAULT_BORDA_POWER = 0.5  # DESIGN.md: rank r of N gets (N - r + 1)^p votes; p = 0 is majority vote


def _score(candidate: Candidate, feature: str) -> float:
    """The candidate's `feature`, turned so that higher is better; NaN or missing ranks last."""
    value = candidate["features"].get(feature)
    return -math.inf if value is None or not math.isfinite(value) else FEATURES[feature].oriented(value)


def best_by(feature: str) -> Selector:
    """Keep the candidate with the best `feature` (the first one on a tie; NaN ranks last)."""

    def select(candidates: Sequence[Candidate]) -> float:
        best = max(range(len(candidates)), key=lambda i: (_score(candidates[i], feature), -i))
        return float(candidates[best]["correct"])

    select.__name__ = f"best_by_{feature}"
    return select


def random_choice(candidates: Sequence[Candidate]) -> float:
    """Expected correctness of a uniformly random pick."""
    return sum(bool(c["correct"]) for c in candidates) / len(candidates)


def _pooled_pick(candidates: Sequence[Candidate], votes: Sequence[float]) -> float:
    """Pool votes per extracted answer and return the correctness of the winning answer. Candidates
    without an answer get no vote; ties go to the answer seen first. With no answer at all the pick
    is wrong."""
    totals: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for i, (c, v) in enumerate(zip(candidates, votes)):
        if c["answer"] is not None:
            totals[c["answer"]] = totals.get(c["answer"], 0.0) + v
            first_seen.setdefault(c["answer"], i)
    if not totals:
        return 0.0
    winner = max(totals, key=lambda a: (totals[a], -first_seen[a]))
    return float(candidates[first_seen[winner]]["correct"])


def majority_vote(candidates: Sequence[Candidate]) -> float:
    return _pooled_pick(candidates, [1.0] * len(candidates))


def borda(feature: str, power: float = DEFAULT_BORDA_POWER) -> Selector:
    """Borda voting: rank the N candidates by `feature` (rank 1 = best) and give rank r (N - r + 1)^p
    votes, pooled per final answer."""

    def select(candidates: Sequence[Candidate]) -> float:
        n = len(candidates)
        order = sorted(range(n), key=lambda i: (-_score(candidates[i], feature), i))
        votes = [0.0] * n
        for rank, i in enumerate(order, 1):
            votes[i] = float(n - rank + 1) ** power
        return _pooled_pick(candidates, votes)

    select.__name__ = f"borda_{feature}"
    return select


@dataclass(frozen=True)
class SelectorSpec:
    """A selector's registry entry: its name, a one-line description (CLI help, docs) and how to
    build it for a Borda power p (the non-Borda selectors ignore p)."""

    name: str
    description: str
    build: Callable[[float], Selector]
    version: int = 1  # bumped whenever a change alters which candidate the selector picks


def _best_by_spec(name: str) -> SelectorSpec:
    feature = FEATURES[name]
    word = "highest" if feature.higher_is_better else "lowest"
    return SelectorSpec(name, f"keep the candidate with the {word} {name} ({feature.help})", lambda p: best_by(name))


def _borda_spec(name: str) -> SelectorSpec:
    return SelectorSpec(f"borda_{name}", f"Borda on {name}: rank r of N gets (N-r+1)^p votes, pooled per answer",
                        lambda p: borda(name, p))


# The one list of selector names: the CLI's choices and help, build_selectors and the docs read it.
# Every feature a candidate carries (srgrpo.generation.SAMPLE_FEATURES, read from the feature
# registry) selects by itself; Borda pools the ranks of the main ones per answer.
SELECTORS: Registry[SelectorSpec] = Registry("selector", [
    (spec.name, spec)
    for spec in (
        *(_best_by_spec(name) for name in SAMPLE_FEATURES),
        SelectorSpec("random", "expected accuracy of a uniform pick (exact mean)", lambda p: random_choice),
        SelectorSpec("majority", "most frequent extracted answer", lambda p: majority_vote),
        _borda_spec("stable_rank"),
        _borda_spec("self_certainty"),
    )
])
# What `srgrpo bon` runs without --selectors: the paper's selector, its baselines and the vote-pooling ones.
DEFAULT_SELECTORS = ("stable_rank", "random", "self_certainty", "mean_logprob", "majority", "borda_stable_rank",
                     "borda_self_certainty")


def build_selectors(names: Sequence[str], borda_power: float = DEFAULT_BORDA_POWER) -> dict[str, Selector]:
    return {n: SELECTORS[n].build(borda_power) for n in SELECTORS.check(names)}


def accuracy_by_n(per_question: Sequence[Sequence[Candidate]], selector: Selector, ns: Sequence[int]) -> dict[int, list[float]]:
    """Nested prefixes: for each N, the selector sees the first N candidates of every question, so
    one sampling pass of max(ns) candidates serves every N. Returns per-question correctness."""
    return {n: [selector(candidates[:n]) for candidates in per_question] for n in ns}
