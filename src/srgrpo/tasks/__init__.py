"""Benchmark questions and their grading, shared by the apps below which they sit: Best-of-N samples
and grades with them, training's before/after check grades greedy answers with them.

- `srgrpo.tasks.datasets`: `Problem`, the dataset registry and `load_problems`;
- `srgrpo.tasks.grading`: answer extraction and `grade(problem, completion) -> (answer, correct)`.
"""

from srgrpo.tasks.datasets import DATASETS, DatasetError, Problem, load_problems
from srgrpo.tasks.grading import extract_answer, grade, is_correct

__all__ = ["DATASETS", "DatasetError", "Problem", "load_problems", "extract_answer", "grade", "is_correct"]
