"""Best-of-N selectors. Each maps one question's candidates to the probability that its pick is
correct: 0 or 1 for a deterministic pick, the exact expectation for random choice (the mean over
every possible draw, i.e. infinitely many draws rather than one).

A candidate is a dict with "features" (stable_rank, self_certainty, mean_logprob, ...), "answer"
(the extracted, normalised answer or None) and "correct" (bool), as stored in generations.jsonl.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

Candidate = dict
Selector = Callable[[Sequence[Candidate]], float]

DEFAULT_BORDA_POWER = 0.5  # DESIGN.md: rank r of N gets (N - r + 1)^p votes; p = 0 is majority vote


def _score(candidate: Candidate, feature: str) -> float:
    value = candidate["features"].get(feature)
    return -math.inf if value is None or not math.isfinite(value) else value


def best_by(feature: str) -> Selector:
    """Keep the candidate with the highest `feature` (the first one on a tie; NaN ranks last)."""

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


def build_selectors(names: Sequence[str], borda_power: float = DEFAULT_BORDA_POWER) -> dict[str, Selector]:
    registry: dict[str, Callable[[], Selector]] = {
        "stable_rank": lambda: best_by("stable_rank"),
        "random": lambda: random_choice,
        "self_certainty": lambda: best_by("self_certainty"),
        "mean_logprob": lambda: best_by("mean_logprob"),
        "majority": lambda: majority_vote,
        "borda_stable_rank": lambda: borda("stable_rank", borda_power),
        "borda_self_certainty": lambda: borda("self_certainty", borda_power),
    }
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown selector(s) {unknown}; known: {', '.join(registry)}")
    return {n: registry[n]() for n in names}


SELECTOR_NAMES = ("stable_rank", "random", "self_certainty", "mean_logprob", "majority",
                  "borda_stable_rank", "borda_self_certainty")


def accuracy_by_n(per_question: Sequence[Sequence[Candidate]], selector: Selector, ns: Sequence[int]) -> dict[int, list[float]]:
    """Nested prefixes: for each N, the selector sees the first N candidates of every question, so
    one sampling pass of max(ns) candidates serves every N. Returns per-question correctness."""
    return {n: [selector(candidates[:n]) for candidates in per_question] for n in ns}
