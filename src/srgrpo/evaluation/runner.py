"""Evaluate a policy on benchmark tasks: answers generated, graded, saved as they come, summarised.

The one path from a model to an accuracy, shared by `srgrpo evaluate`, `srgrpo train --eval-dataset`
(before/after, through `greedy_accuracy`) and Best-of-N's greedy reference (`answer_problems`):

    Problem.messages() (the task's prompt, the model's chat template) -> generator.generate (batched,
    greedy by default; k samples with temperature for pass@k / majority@k) -> grade() -> one record
    per answer {text, n_tokens, finished, answer, correct}.

`run_tasks` makes that resumable: each question's answers are appended to `answers.jsonl` as soon as
they are graded (a `RunCache` keyed by task and question id), and `run.json` pins what decides the
answers (model, adapter, dtype, backend, batch size, sampling, seed, srgrpo version, and per task its
token budget and prompt). A run started again with the same settings generates only what is missing;
a run with other settings in the same folder is refused with the settings that differ. Under
`torchrun` every process generates a share of each round of chunks and the main process writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from srgrpo import distributed
from srgrpo.generation import Sample, Sampling
from srgrpo.records import RunCache, json_float, run_versions
from srgrpo.results import EvaluationSummary, GroupAverage, TaskResult
from srgrpo.stats import BOOTSTRAP_SAMPLES, bootstrap_mean_interval, percentile_interval
from srgrpo.version import __version__
from srgrpo.evaluation.datasets import (
    INSTRUCTIONS,
    MULTIPLE_ANSWERS_NOTE,
    TASK_GROUPS,
    UNIT_NOTE,
    Problem,
    dataset_version,
    load_problems,
    task_budget,
    task_group,
)
from srgrpo.evaluation.grading import grade, grader_versions

ANSWERS_FILE = "answers.jsonl"
OUTPUT_FILES = (ANSWERS_FILE, "run.json", "results.json", "report.md")


# ------------------------------------------------------------------------------------ one answer
def answer_record(problem: Problem, sample: Sample) -> dict:
    """A generated answer as saved: text, length, whether it ended by itself, scores (empty unless
    the generator scored it: Best-of-N's candidates) and its grade."""
    record = {"text": sample.text, "n_tokens": len(sample.token_ids), "finished": sample.finished,
              "features": {k: json_float(v) for k, v in sample.features.items()},
              **({"context_tokens": sample.context_tokens} if sample.context_tokens else {})}  # short-span rule
    return regrade(problem, record)


def regrade(problem: Problem, record: dict) -> dict:
    """The record with its answer and grade computed from its text (so a grading fix applies to
    saved answers without generating again)."""
    answer, correct = grade(problem, record["text"])
    return {**record, "answer": answer, "correct": correct}


def answer_problems(generator, problems: Sequence[Problem], n: int, sampling: Sampling, seed: int = 0,
                    progress: bool = False) -> list[list[dict]]:
    """n graded answers per problem (one when greedy), in problem order."""
    outputs = generator.generate([p.messages() for p in problems], n, sampling, seed=seed, progress=progress)
    return [[answer_record(p, s) for s in samples] for p, samples in zip(problems, outputs)]


# ------------------------------------------------------------------------------------ one task
class MemoryCache:
    """RunCache's interface without a file (greedy_accuracy keeps nothing on disk)."""

    def __init__(self):
        self.records: dict[tuple[str, str], object] = {}

    def get(self, stage, key):
        return self.records.get((stage, key))

    def has(self, stage, key) -> bool:
        return (stage, key) in self.records

    def put(self, stage, key, value) -> None:
        self.records[(stage, key)] = value

    def close(self) -> None:
        pass


def chunk_seed(seed: int, task: str, first_id: str) -> int:
    """A chunk's sampling seed depends only on the run's seed and which questions it holds, not on
    how many chunks an earlier, killed run finished."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{task}/{first_id}".encode()).digest()[:4], "little")


def run_task(generator, task: str, problems: Sequence[Problem], sampling: Sampling, cache,
             config: EvaluationConfig, shard: bool = True) -> int:
    """Answer every problem of `task` that `cache` does not hold yet, a chunk at a time, each
    question's answers put into the cache as soon as they are graded; `sampling` is the task's
    decoding (its budget included), `config` gives the samples, seed, chunk size and progress bar.
    Returns how many questions were answered in this call. Chunks are fixed by position, so a resumed
    run batches (and seeds) the missing questions as the first run would have. Under torchrun (with
    `shard`, the default; every process must call) the chunks of each round are shared between the
    processes and only the main process writes; `shard=False` answers everything in this process alone."""
    n = 1 if sampling.greedy else config.samples
    seed, questions_per_chunk, progress = config.seed, config.questions_per_chunk, config.progress
    parallel = shard and distributed.is_distributed()
    chunks = [list(problems[i:i + questions_per_chunk]) for i in range(0, len(problems), questions_per_chunk)]
    if distributed.is_main() or not parallel:
        pending = [[p.id for p in chunk if not cache.has(task, p.id)] for chunk in chunks]
    else:
        pending = None
    if parallel:
        pending = distributed.broadcast_from_main(pending)
    by_id = {p.id: p for p in problems}
    work = [(chunk[0].id, [by_id[i] for i in ids]) for chunk, ids in zip(chunks, pending) if ids]
    todo = sum(len(ids) for _, ids in work)

    def compute(share):
        out = []
        for first_id, todo_problems in share:
            answers = answer_problems(generator, todo_problems, n, sampling, seed=chunk_seed(seed, task, first_id))
            out += [(p.id, p.gold, a) for p, a in zip(todo_problems, answers)]
        return out

    show = progress and (distributed.is_main() or not parallel)
    rounds = distributed.sharded_rounds(work, 1, compute) if parallel else (compute([w]) for w in work)
    with tqdm(total=len(problems), initial=len(problems) - todo, unit="question", desc=task, disable=not show,
              dynamic_ncols=True) as bar:
        for results in rounds:
            for pid, gold, answers in results:
                cache.put(task, pid, {"gold": gold, "answers": answers})
            bar.update(len(results))
    return todo


# ------------------------------------------------------------------------------------ summaries
def question_scores(problem: Problem, value: dict, k: int) -> dict:
    """One question's numbers from its saved answers (graded again): mean correctness of its
    answers (pass@1; greedy: 0 or 1), pass@k (any right), majority@k (most frequent answer right)."""
    answers = [regrade(problem, a) for a in value["answers"][:k]]
    correct = [bool(a["correct"]) for a in answers]
    extracted = [a["answer"] for a in answers if a["answer"] is not None]
    majority = False
    if extracted:
        top = Counter(extracted).most_common(1)[0][0]  # ties: the answer seen first
        majority = next(a["correct"] for a in answers if a["answer"] == top)
    return {"pass1": float(np.mean(correct)), "pass_k": float(any(correct)), "majority": float(majority),
            "tokens": [a["n_tokens"] for a in answers], "unfinished": [not a["finished"] for a in answers],
            "no_answer": [a["answer"] is None for a in answers]}


def per_question_correctness(problems: Sequence[Problem], cache, task: str, k: int = 1) -> dict[str, float]:
    """question id -> pass@1 of that question (the unit the bootstrap resamples)."""
    return {p.id: question_scores(p, cache.get(task, p.id), k)["pass1"] for p in problems if cache.has(task, p.id)}


def summarize_task(task: str, problems: Sequence[Problem], cache, sampling: Sampling, n: int,
                   rng: np.random.Generator) -> TaskResult:
    scores = [question_scores(p, cache.get(task, p.id), n) for p in problems]
    pass1 = np.array([s["pass1"] for s in scores])
    tokens = [t for s in scores for t in s["tokens"]]
    sampled = n > 1 and not sampling.greedy
    return TaskResult(
        accuracy=float(pass1.mean()), interval=bootstrap_mean_interval(pass1, rng), n=len(problems),
        max_new_tokens=sampling.max_new_tokens, group=task_group(task),
        mean_tokens=float(np.mean(tokens)),
        unfinished_fraction=float(np.mean([u for s in scores for u in s["unfinished"]])),
        no_answer_fraction=float(np.mean([u for s in scores for u in s["no_answer"]])),
        samples=n if sampled else 1,
        pass_at_k=float(np.mean([s["pass_k"] for s in scores])) if sampled else None,
        majority_at_k=float(np.mean([s["majority"] for s in scores])) if sampled else None,
    )


def group_average(per_task: dict[str, np.ndarray], tasks: Sequence[str], rng: np.random.Generator,
                  samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, list[float]]:
    """The plain mean of the tasks' accuracies (the paper's STEM / Math average) and its 95%
    interval: each task's questions resampled on their own, the task means averaged per draw.
    `per_task[name]` holds one value per question (a correctness, or a paired difference)."""
    means = [float(per_task[t].mean()) for t in tasks]
    draws = np.zeros(samples)
    for t in tasks:
        values = per_task[t]
        draws += values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return float(np.mean(means)), percentile_interval(draws / len(tasks))


def summarize_groups(per_task: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, GroupAverage]:
    """STEM and Math averages over the tasks of each group that were run (a group none of whose
    tasks ran is left out; `missing` names the tasks of a partial group)."""
    groups = {}
    for name in ("stem", "math"):
        present = [t for t in TASK_GROUPS[name] if t in per_task and len(per_task[t])]
        if present:
            accuracy, interval = group_average(per_task, present, rng)
            groups[name] = GroupAverage(accuracy, interval, present, [t for t in TASK_GROUPS[name] if t not in present])
    return groups


# ------------------------------------------------------------------------------------ a run
def prompt_pin(problems: Sequence[Problem]) -> str:
    """sha256 of the templates the task's prompts are built from: the instruction of each answer
    kind it has and the notes any problem may add (whether or not the questions run so far need
    them, so that a larger --limit pins the same value)."""
    kinds = sorted({p.kind for p in problems})
    parts = [INSTRUCTIONS[k] for k in kinds] + [MULTIPLE_ANSWERS_NOTE, UNIT_NOTE]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def check_run_config(output_dir: Path, config: dict, overwrite: bool) -> dict:
    """Create the folder; refuse a folder holding a run whose pinned settings differ (the message
    names them). Tasks are pinned one by one: a new task may join a folder, a task run with another
    token budget or prompt may not. Returns the config to write (the union of the tasks)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    run_file = output_dir / "run.json"
    if overwrite:
        for name in OUTPUT_FILES:
            (output_dir / name).unlink(missing_ok=True)
        return config
    if not run_file.is_file():
        return config
    previous = json.loads(run_file.read_text())
    changed = [(k, previous.get(k), config.get(k)) for k in sorted(set(previous) | set(config))
               if k not in ("tasks", "versions") and previous.get(k) != config.get(k)]
    old_tasks, new_tasks = previous.get("tasks", {}), config["tasks"]
    changed += [(f"tasks.{t}.{k}", old_tasks[t].get(k), new_tasks[t].get(k)) for t in sorted(set(old_tasks) & set(new_tasks))
                for k in sorted(set(old_tasks[t]) | set(new_tasks[t])) if old_tasks[t].get(k) != new_tasks[t].get(k)]
    if changed:
        details = ", ".join(f"{k}: {json.dumps(then)} then, {json.dumps(now)} now" for k, then, now in changed)
        raise ValueError(f"{output_dir} holds answers generated with other settings ({details}); use another "
                         "--output-dir, or --overwrite to discard them")
    graders = {**previous.get("versions", {}).get("graders", {}), **config["versions"].get("graders", {})}
    return {**config, "tasks": {**old_tasks, **new_tasks}, "versions": {**config["versions"], "graders": graders}}


@dataclasses.dataclass
class EvaluationConfig:
    """How a policy is evaluated, beside its inputs (generator, tasks, output folder). The defaults are
    `srgrpo evaluate`'s, which builds one from its flags; Python users build their own."""

    budgets: dict[str, int] | None = dataclasses.field(default=None, metadata={
        "help": "{task: max_new_tokens}; None: each task's own budget (srgrpo.evaluation.datasets.task_budget)"})
    sampling: Sampling = dataclasses.field(default_factory=lambda: Sampling(greedy=True), metadata={
        "help": "decoding (its max_new_tokens is replaced by each task's budget); default greedy"})
    samples: int = dataclasses.field(default=1, metadata={
        "help": "answers per question, for pass@1 averaged over samples (1 when greedy) (--samples)"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the sampling and of the bootstrap"})
    run_info: dict | None = dataclasses.field(default=None, metadata={
        "help": "what the caller adds to run.json (model, adapter, ...); a resume with other values is refused"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "start afresh in an output folder that holds another run, instead of refusing"})
    questions_per_chunk: int = dataclasses.field(default=16, metadata={
        "help": "questions generated between two appends to answers.jsonl (--batch-size)"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "show progress bars"})
    policy: str = dataclasses.field(default="base", metadata={
        "help": "the policy's name in results.json and in a comparison of runs"})


def run_tasks(generator, tasks: dict[str, Sequence[Problem]], output_dir: str | Path,
              config: EvaluationConfig | None = None) -> EvaluationSummary | None:
    """Evaluate one policy (the generator's model) on every task, resumably, and write run.json,
    answers.jsonl and results.json in `output_dir`. `config.budgets[task]` is the task's
    max_new_tokens (the rest of the decoding comes from `config.sampling`). Returns the summary on
    the main process, None on the others."""
    config = config or EvaluationConfig()
    if not tasks or any(not problems for problems in tasks.values()):
        raise ValueError("every task needs at least one question")
    if config.samples < 1:
        raise ValueError(f"samples must be positive, got {config.samples}")
    output_dir = Path(output_dir)
    sampling, seed = config.sampling, config.seed
    budgets = config.budgets or {t: task_budget(t) for t in tasks}
    n = 1 if sampling.greedy else config.samples
    decoding = {k: v for k, v in dataclasses.asdict(sampling).items() if k != "max_new_tokens"}
    if sampling.greedy:
        decoding = {"greedy": True}
    # Per task: its budget, its prompt instructions and its loader's version decide the answers. The
    # graders' versions are recorded, not pinned: answers are graded again whenever a run is summarised.
    pinned = {**(config.run_info or {}), "srgrpo_version": __version__, "sampling": decoding, "samples": n,
              "seed": seed, "tasks": {t: {"max_new_tokens": budgets[t], "prompt_sha256": prompt_pin(ps),
                                          "dataset_version": dataset_version(t)} for t, ps in tasks.items()},
              "versions": run_versions(graders=grader_versions([p for ps in tasks.values() for p in ps]))}
    main = distributed.is_main()
    if main:
        pinned = check_run_config(output_dir, pinned, config.overwrite)
        (output_dir / "run.json").write_text(json.dumps(pinned, indent=2))
    distributed.barrier()
    cache = RunCache(output_dir / ANSWERS_FILE, readonly=not main)
    started = time.perf_counter()
    try:
        for task, problems in tasks.items():
            run_task(generator, task, problems, dataclasses.replace(sampling, max_new_tokens=budgets[task]), cache,
                     config)
    finally:
        cache.close()
    if not main:
        return None
    summary = summarize_run(tasks, cache, sampling, budgets, n, seed, policy=config.policy, run=pinned)
    summary.generation_seconds_this_call = round(time.perf_counter() - started, 1)
    (output_dir / "results.json").write_text(json.dumps(summary.to_json(), indent=2))
    return summary


def summarize_run(tasks: dict[str, Sequence[Problem]], cache, sampling: Sampling, budgets: dict[str, int], n: int,
                  seed: int = 0, policy: str = "base", run: dict | None = None) -> EvaluationSummary:
    """results.json's content from the saved answers of `tasks`' questions."""
    rng = np.random.default_rng(seed)
    results = {t: summarize_task(t, ps, cache, dataclasses.replace(sampling, max_new_tokens=budgets[t]), n, rng)
               for t, ps in tasks.items()}
    per_task = {t: np.array(list(per_question_correctness(ps, cache, t, n).values())) for t, ps in tasks.items()}
    run = dict(run or {})
    return EvaluationSummary(policy=policy, model=run.get("model"), adapter=run.get("adapter"), tasks=results,
                             groups=summarize_groups(per_task, rng), samples=n, run=run)


def load_run(output_dir: str | Path) -> tuple[EvaluationSummary, dict[str, dict[str, float]]]:
    """A finished run's summary and, per task, question id -> pass@1 (read back from answers.jsonl,
    graded again), the input of `srgrpo compare`."""
    output_dir = Path(output_dir)
    results_file = output_dir / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(f"{output_dir} holds no results.json: run srgrpo evaluate --output-dir {output_dir} first")
    summary = EvaluationSummary.from_json(json.loads(results_file.read_text()))
    cache = RunCache(output_dir / ANSWERS_FILE, readonly=True)
    seed = summary.run.get("seed", 0)
    data_dir = summary.run.get("data_dir")
    per_question = {}
    for task, result in summary.tasks.items():
        problems = load_problems(task, limit=result.n, seed=seed, data_dir=data_dir)
        per_question[task] = per_question_correctness(problems, cache, task, summary.samples)
    return summary, per_question
