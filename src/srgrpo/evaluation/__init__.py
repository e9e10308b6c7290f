"""Benchmark questions, their grading, and policy evaluation, shared by the apps below which they
sit: `srgrpo evaluate` / `compare` run on them, Best-of-N samples and grades with them (its greedy
reference through the same path), training's before/after check evaluates greedy answers with them.

- `srgrpo.evaluation.datasets`: `Problem`, the dataset/task registry (kind, token budget, Table 2 group),
  the `paper` / `stem` / `math` groups and `load_problems`;
- `srgrpo.evaluation.grading`: answer extraction and `grade(problem, completion) -> (answer, correct)`;
- `srgrpo.evaluation.runner`: answers generated, graded and saved as they come (resumable, data parallel),
  and their summary (`run_tasks` with its `EvaluationConfig`, `answer_problems`);
- `srgrpo.evaluation.comparison`: Table 2 of several runs with paired bootstrap differences to the base;
- `srgrpo.evaluation.accuracy`: `greedy_accuracy`, the same path without files.
"""

from srgrpo.evaluation.datasets import DATASETS, TASK_GROUPS, DatasetError, Problem, load_problems, resolve_tasks
from srgrpo.evaluation.grading import extract_answer, grade, is_correct

__all__ = ["DATASETS", "TASK_GROUPS", "DatasetError", "Problem", "load_problems", "resolve_tasks", "extract_answer",
           "grade", "is_correct"]
