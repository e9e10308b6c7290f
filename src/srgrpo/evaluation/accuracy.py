"""Greedy accuracy (N = 1) on benchmark questions: a thin wrapper over the policy-evaluation path
(`srgrpo.evaluation.runner`), for callers that want numbers, not files."""

from __future__ import annotations

from typing import Sequence

from srgrpo.generation import HFGenerator, Sampling
from srgrpo.evaluation.datasets import Problem
from srgrpo.evaluation.runner import EvaluationConfig, MemoryCache, run_task


def greedy_accuracy(model, tokenizer, problems: Sequence[Problem], max_new_tokens: int = 512,
                    batch_size: int = 16, progress: bool = False, task: str = "eval") -> tuple[float, list[dict]]:
    """Fraction of `problems` whose greedy answer is graded correct, and one row per problem
    ({id, gold, completion, answer, correct, n_tokens, finished}). Generation goes through the same
    batched, left-padded HFGenerator, prompts and grading as `srgrpo evaluate`, without scoring."""
    generator = HFGenerator(model, tokenizer, batch_size=batch_size, scoring="none")
    cache = MemoryCache()
    run_task(generator, task, problems, Sampling(max_new_tokens=max_new_tokens, greedy=True), cache,
             EvaluationConfig(questions_per_chunk=batch_size, progress=progress), shard=False)
    rows = []
    for p in problems:
        answer = cache.get(task, p.id)["answers"][0]
        rows.append({"id": p.id, "gold": p.gold, "completion": answer["text"], "answer": answer["answer"],
                     "correct": answer["correct"], "n_tokens": answer["n_tokens"], "finished": answer["finished"]})
    return sum(r["correct"] for r in rows) / max(len(rows), 1), rows
