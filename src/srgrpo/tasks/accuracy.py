"""Greedy accuracy (N = 1) on benchmark questions with their grading: the before/after check of
`srgrpo train`, with the same batched generator Best-of-N samples from."""

from __future__ import annotations

from typing import Sequence

from srgrpo.generation import HFGenerator, Sampling
from srgrpo.tasks.datasets import Problem
from srgrpo.tasks.grading import is_correct


def greedy_accuracy(model, tokenizer, problems: Sequence[Problem], max_new_tokens: int = 512,
                    batch_size: int = 16, progress: bool = False) -> tuple[float, list[dict]]:
    """Fraction of `problems` whose greedy answer is graded correct, and one row per problem
    ({id, gold, completion, correct}). Generation goes through the same batched, left-padded
    HFGenerator as Best-of-N, without scoring."""
    generator = HFGenerator(model, tokenizer, batch_size=batch_size, scoring="none")
    outputs = generator.generate([p.messages() for p in problems], 1,
                                 Sampling(max_new_tokens=max_new_tokens, greedy=True), progress=progress)
    rows = [{"id": p.id, "gold": p.gold, "completion": out[0].text, "correct": is_correct(p, out[0].text)}
            for p, out in zip(problems, outputs)]
    return sum(r["correct"] for r in rows) / max(len(rows), 1), rows
