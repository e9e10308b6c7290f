"""The scorers `srgrpo rewardbench` compares, as data: one entry per name.

A scorer turns each (prompt, response) item into a number, higher = better, except the pairwise
judge, which sees both responses of a pair. Every feature of the registry (`srgrpo.features`) is a
scorer of kind "feature"; they all share one forward pass. The judges need forward passes of
their own over judge prompts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from srgrpo.features import FEATURES
from srgrpo.registry import Registry


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    kind: str  # feature | length | random | ipo | pointwise | pairwise
    help: str
    feature: str | None = None  # for kind "feature": the registered feature it reads
    transform: Callable[[float], float] = float  # maps the value so that higher = better
    version: int = 1  # a judge's or baseline's own version; a feature scorer's is its feature's


def _negate(x: float) -> float:
    return -x


# Every registered feature is a scorer under its own name, turned so that higher wins.
SCORERS: Registry[ScorerSpec] = Registry("scorer", [
    (f.name, ScorerSpec(f.name, "feature", f.help, f.name, f.oriented, f.version)) for f in FEATURES.values()
])
for _spec in (
    ScorerSpec("length", "length", "response length in tokens: the longer wins"),
    ScorerSpec("shorter", "length", "minus the response length: the shorter wins", transform=_negate),
    ScorerSpec("random", "random", "uniform random scores (seeded): the chance line"),
    ScorerSpec("ipo", "ipo", "LLM judge: P(Yes) to a per-section yes/no verification question"),
    ScorerSpec("pointwise_judge", "pointwise", "LLM judge: Prometheus-style 1-5 rubric, expected score"),
    ScorerSpec("pairwise_judge", "pairwise", "LLM judge: A/B preference, counted only when both orders agree"),
):
    SCORERS.add(_spec.name, _spec)
RENAMED = {"negative_entropy": "mean_entropy"}  # old scorer names, for a helpful error

# Everything that shares the scorer's forward pass, plus the free ones. Judges are opt-in: each
# costs forward passes over longer judge prompts.
DEFAULT_SCORERS = ("stable_rank", "stable_rank_windowed", "mean_logprob", "self_certainty", "length", "shorter", "random")


def parse_scorers(text: str) -> list[str]:
    """'a,b,c', 'default' or 'all' -> scorer names, checked against the registry."""
    if text.strip() == "all":
        return list(SCORERS)
    if text.strip() == "default":
        return list(DEFAULT_SCORERS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    renamed = [f"{n} (now {RENAMED[n]})" for n in names if n in RENAMED]
    if renamed:
        raise ValueError(f"renamed scorer(s): {', '.join(renamed)}")
    unknown = [n for n in names if n not in SCORERS]
    if unknown or not names:
        raise ValueError(f"unknown scorer(s) {unknown or text!r}; choose from: {', '.join(SCORERS)}, default, all")
    return list(dict.fromkeys(names))


def random_score(seed: int, pair_id: str, side: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, pair, side): reproducible across resumed runs."""
    digest = hashlib.sha256(f"{seed}|{pair_id}|{side}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
