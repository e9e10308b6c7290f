"""Moved to `srgrpo.tasks.grading` (shared with training). This alias keeps `srgrpo.bon.grading`
importable until training/ imports from the new place; new code should not use it."""

from srgrpo.tasks.grading import *  # noqa: F401,F403
from srgrpo.tasks.grading import extract_answer, extract_letter, extract_number, grade, is_correct, parse_number  # noqa: F401
