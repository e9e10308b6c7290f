"""Moved to `srgrpo.tasks.datasets` (shared with training). This alias keeps `srgrpo.bon.tasks`
importable until training/ and benchmarks import from the new place; new code should not use it."""

from srgrpo.tasks.datasets import *  # noqa: F401,F403
from srgrpo.tasks.datasets import DATASETS, LETTERS, DatasetError, Problem, load_problems  # noqa: F401
