"""Answer extraction and grading. A completion whose answer cannot be extracted is wrong, never an error.

- gsm8k: the final number ("The answer is N", \\boxed{N}, "#### N", else the last number in the text),
  compared numerically (commas, $ and units dropped; 3/4, \\frac{3}{4} and 0.75 are equal).
- math: math-verify, gold parsed first (it handles LaTeX, boxed answers, fractions, intervals, sets).
  Several answers (OlympiadBench's is_multiple_answer) are one comma-separated gold, which math-verify
  reads as a set: every answer must be given, and no other. Units written in the answer (\\text{ km},
  ^\\circ, \\mathrm{cm}^2) are ignored by math-verify; a percent sign is dropped when the unit is %.
- choice: the option letter ("Answer: C", "the answer is (C)", \\boxed{C}, a leading "C)"), else the
  last standalone letter that is not the article "A"/"I".
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from dataclasses import dataclass
from typing import Callable, Sequence

from srgrpo.registry import Registry
from srgrpo.evaluation.datasets import LETTERS, Problem

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_FINAL_NUMBER_PATTERNS = [
    re.compile(r"answer\s*(?:is|:|=)?\s*[:=]?\s*\$?\s*(?:\\boxed\{)?\s*\\?\$?\s*(" + _NUMBER + ")", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*\\?\$?\s*(" + _NUMBER + r")\s*\}"),
    re.compile(r"####\s*\$?\s*(" + _NUMBER + ")"),
]


def _unlatex(text: str) -> str:
    text = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", text)
    return text.replace("\\!", "").replace("{,}", ",").replace("\\,", "")


def parse_number(text: str) -> Fraction | None:
    """'1,234.50' -> 1234.5, '3/4' -> 0.75, '-7' -> -7; None if `text` is not a number."""
    text = _unlatex(text).strip().rstrip(".").replace(",", "").replace(" ", "").lstrip("$")
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return Fraction(num) / Fraction(den)
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(completion: str) -> str | None:
    """The final numeric answer of a GSM8K-style completion, as written (None if there is none)."""
    text = _unlatex(completion)
    for pattern in _FINAL_NUMBER_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    numbers = re.findall(_NUMBER, text)
    return numbers[-1].strip() if numbers else None


_LETTER_PATTERNS = [
    r"answer\s*(?:is|:)?\s*(?:option\s*)?[:\s]*\(?\**([{L}])\b\)?",
    r"\\boxed\{\s*\(?([{L}])\)?\s*\}",
    r"(?:option|choice)\s*\(?([{L}])\)?\b",
    r"^\s*\(?([{L}])\s*[\).:]",
    r"\(([{L}])\)",
]


def extract_letter(completion: str, n_choices: int = 4, choices: Sequence[str] = ()) -> str | None:
    """The chosen option letter of a multiple-choice completion (None if there is none)."""
    letters = LETTERS[:n_choices]
    text = completion
    # Weak models often restate the option list; a list of labels is not an answer, and its last
    # line ("D) ...") would otherwise always win. Drop such lines when more than one label appears.
    label = rf"^\s*\(?([{letters}])\s*[\).:]"
    # ... but "The correct answer is:\n\nD) ..." answers on the next line: join it to its intro first.
    text = re.sub(rf"(answer\s*(?:is)?\s*:?)[ \t]*\n\s*(?=\(?[{letters}]\s*[\).:])", r"\1 ", text,
                  flags=re.IGNORECASE)
    if len(set(re.findall(label, text, flags=re.MULTILINE))) > 1:
        text = re.sub(label + ".*$", "", text, flags=re.MULTILINE)
    for pattern in _LETTER_PATTERNS:
        found = re.findall(pattern.replace("{L}", letters), text, flags=re.IGNORECASE | re.MULTILINE)
        # Lower-case hits only count for explicit "answer: c"-style patterns, not for prose.
        found = [f for f in found if f.isupper() or pattern is _LETTER_PATTERNS[0]]
        if found:
            return found[-1].upper()
    # "The answer is Whitebear": the text of exactly one option after the last "answer".
    if choices and re.search("answer", text, flags=re.IGNORECASE):
        tail = re.split("answer", text, flags=re.IGNORECASE)[-1].lower()
        hits = [i for i, c in enumerate(choices) if c.strip() and c.strip().lower() in tail]
        if len(hits) == 1:
            return letters[hits[0]]
    # Last resort: a standalone capital letter, skipping "A"/"I" used as words ("A cat ...").
    for match in reversed(list(re.finditer(rf"\b([{letters}])\b", text))):
        letter = match.group(1)
        following = text[match.end():match.end() + 2]
        if letter in "AI" and re.match(r"\s[a-z]", following):
            continue
        return letter
    return None


def _math_grade(gold: str, completion: str) -> tuple[str | None, bool]:
    """math-verify, the completion parsed once for both the pooling key and the verdict."""
    from math_verify import parse, verify

    # math-verify's timeouts use signals, which only work on the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        answer = parse(completion, parsing_timeout=timeout)
    except Exception:  # a pathological expression is no answer, not a crash
        return None, False
    if not answer:
        return None, False
    # parse returns [sympy object, source string]; the sympy form pools 1/2 with \\frac{1}{2}.
    key = str(answer[0]).strip()
    try:
        gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout) or parse(gold, parsing_timeout=timeout)
        return key, bool(gold_parsed) and bool(verify(gold_parsed, answer, timeout_seconds=timeout))
    except Exception:
        return key, False


def _math_problem_grade(problem: Problem, completion: str) -> tuple[str | None, bool]:
    if "%" in problem.unit:  # "4.2\\%" reads as 0.042 to math-verify; the unit is not graded
        completion = completion.replace("\\%", "").replace("%", "")
    return _math_grade(problem.gold, completion)


def _choice_grade(problem: Problem, completion: str) -> tuple[str | None, bool]:
    answer = extract_letter(completion, len(problem.choices) or 4, problem.choices)
    return answer, answer is not None and answer == problem.gold.strip().upper()


def _number_grade(problem: Problem, completion: str) -> tuple[str | None, bool]:
    raw = extract_number(completion)
    value = parse_number(raw) if raw is not None else None
    gold = parse_number(problem.gold)
    return (None if value is None else str(value)), value is not None and gold is not None and value == gold


@dataclass(frozen=True)
class Grader:
    """A problem kind's grader: (problem, non-empty completion) -> (answer, correct)."""

    name: str  # the Problem.kind it grades
    description: str
    grade: Callable[[Problem, str], tuple[str | None, bool]]
    version: int = 1  # bumped whenever a change alters an answer or a verdict


# One grader per problem kind (srgrpo.evaluation.datasets.KINDS); `grade` dispatches through it, and
# runs record the versions of the graders they used.
GRADERS: Registry[Grader] = Registry("grader", [(g.name, g) for g in (
    Grader("gsm8k", "the final number, compared numerically", _number_grade),
    # A unit (OlympiadBench) is never graded: a % sign is dropped before math-verify reads the answer.
    Grader("math", "math-verify, gold parsed first", _math_problem_grade),
    # v2: an answer on the line after "The answer is:" counts even when the options are restated.
    Grader("choice", "the option letter", _choice_grade, version=2),
)])
NUMBER_GRADER = "gsm8k"  # what a kind without a grader of its own is graded by (as before the registry)


def grader_versions(problems: Sequence[Problem]) -> dict[str, int]:
    """{kind: version} of the graders `problems` need, for run.json."""
    return {kind: GRADERS.get(kind, GRADERS[NUMBER_GRADER]).version for kind in sorted({p.kind for p in problems})}


def grade(problem: Problem, completion: str) -> tuple[str | None, bool]:
    """(answer, correct): the answer a completion gives, normalised so that equal answers compare
    equal (majority voting pools on it; None when none can be found), and whether it is right."""
    if not isinstance(completion, str) or not completion.strip():
        return None, False
    return GRADERS.get(problem.kind, GRADERS[NUMBER_GRADER]).grade(problem, completion)


def extract_answer(problem: Problem, completion: str) -> str | None:
    return grade(problem, completion)[0]


def is_correct(problem: Problem, completion: str) -> bool:
    return grade(problem, completion)[1]
