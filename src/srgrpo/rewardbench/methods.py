"""The methods `srgrpo rewardbench` compares (`--scorers`), as data: one entry per name.

A method turns each (prompt, response) item into a number, higher = better, except the pairwise
judge, which sees both responses of a pair. Every feature of the registry (`srgrpo.features`) is a
method of kind "feature"; they all share one forward pass. The judges need forward passes of
their own over judge prompts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from srgrpo.features import FEATURES
from srgrpo.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    kind: str  # feature | length | random | ipo | pointwise | pairwise
    help: str
    feature: str | None = None  # for kind "feature": the registered feature it reads
    transform: Callable[[float], float] = float  # maps the value so that higher = better
    version: int = 1  # a judge's or baseline's own version; a feature scorer's is its feature's


def _negate(x: float) -> float:
    return -x


# Every registered feature is a method under its own name, turned so that higher wins. The kind is
# "scorer", the word of the `--scorers` flag that picks them.
METHODS: Registry[MethodSpec] = Registry("scorer", [
    (f.name, MethodSpec(f.name, "feature", f.help, f.name, f.oriented, f.version)) for f in FEATURES.values()
])
for _spec in (
    MethodSpec("length", "length", "response length in tokens: the longer wins"),
    MethodSpec("shorter", "length", "minus the response length: the shorter wins", transform=_negate),
    MethodSpec("random", "random", "uniform random scores (seeded): the chance line"),
    MethodSpec("ipo", "ipo", "LLM judge: P(Yes) to a per-section yes/no verification question"),
    MethodSpec("pointwise_judge", "pointwise", "LLM judge: Prometheus-style 1-5 rubric, expected score"),
    MethodSpec("pairwise_judge", "pairwise", "LLM judge: A/B preference, counted only when both orders agree"),
):
    METHODS.add(_spec.name, _spec)

# Everything that shares the scorer's forward pass, plus the free ones. Judges are opt-in: each
# costs forward passes over longer judge prompts.
DEFAULT_METHODS = ("stable_rank", "stable_rank_windowed", "mean_logprob", "self_certainty", "length", "shorter", "random")


def parse_methods(text: str) -> list[str]:
    """'a,b,c', 'default' or 'all' (of `--scorers`) -> method names, checked against the registry."""
    if text.strip() == "all":
        return list(METHODS)
    if text.strip() == "default":
        return list(DEFAULT_METHODS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    return list(dict.fromkeys(METHODS.check(names or [text], "--scorers", also=("default", "all"))))


def random_score(seed: int, pair_id: str, side: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, pair, side): reproducible across resumed runs."""
    digest = hashlib.sha256(f"{seed}|{pair_id}|{side}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
