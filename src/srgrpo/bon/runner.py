"""`srgrpo bon`: sample once, select for every N, grade, report.

Flow: problems -> one greedy answer and max(N) samples per question (each scored as it is generated)
-> graded candidates in `generations.jsonl` -> every selector on nested prefixes of each question's
samples -> results.json, report.md, accuracy_vs_n.png.

Generations are appended to `generations.jsonl` chunk by chunk as they are produced; a run started
again with the same arguments generates only what is missing. Selectors, N and the bootstrap are
not pinned in `run.json`: they are recomputed from the saved generations, so trying another
selector never regenerates anything.

`run.json` pins the generator's score-defining options (never its batch size) and records the
versions of the candidate features, the dataset loader and the graders: a resume whose features or
loader are defined differently is refused (the features were computed while generating), while the
graders are recorded as they are now (every run grades the saved texts again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from srgrpo.bon.selectors import DEFAULT_BORDA_POWER, DEFAULT_SELECTORS, SELECTORS, accuracy_by_n, build_selectors
from srgrpo.features import FEATURES, pinned_options
from srgrpo.generation import SAMPLE_FEATURES, Sample, Sampling
from srgrpo.options import ScoringOptions
from srgrpo.records import RunCache, prepare_output_dir, run_versions
from srgrpo.results import BestOfNSummary, Comparison, Gain
from srgrpo.stats import bootstrap_mean_interval
from srgrpo.evaluation.datasets import Problem, dataset_version
from srgrpo.evaluation.grading import grader_versions
from srgrpo.evaluation.runner import answer_problems, answer_record, regrade

OUTPUT_FILES = ("generations.jsonl", "run.json", "results.json", "report.md", "accuracy_vs_n.png")


def candidate_record(problem: Problem, sample: Sample) -> dict:
    """A candidate as saved: policy evaluation's answer record (text, length, grade) with its scores."""
    return answer_record(problem, sample)


def _chunk_seed(seed: int, chunk: int) -> int:
    # A chunk's samples depend only on (seed, chunk), not on what an earlier, killed run finished.
    return int.from_bytes(hashlib.sha256(f"{seed}/{chunk}".encode()).digest()[:4], "little")


def generate_all(generator, problems: Sequence[Problem], n_max: int, sampling: Sampling, seed: int,
                 cache: RunCache, questions_per_chunk: int, progress: bool = True) -> None:
    """Greedy answer and n_max samples for every problem not yet in the cache, a chunk at a time.

    Greedy answers go n_max chunks at once, so a greedy batch is as wide as a sampling batch: one
    answer per generate call would leave a CPU reading every weight for a single row."""
    greedy = dataclasses.replace(sampling, greedy=True)
    chunks = [problems[i:i + questions_per_chunk] for i in range(0, len(problems), questions_per_chunk)]

    def complete(p: Problem) -> bool:
        return cache.has("greedy", p.id) and cache.has("samples", p.id)

    def answer(stage: str, todo: list[Problem], n: int, decoding: Sampling, chunk: int) -> None:
        # The same path as `srgrpo evaluate`: the task's prompt, the generator, the grader.
        answers = answer_problems(generator, todo, n, decoding, seed=_chunk_seed(seed, chunk))
        for p, records in zip(todo, answers):
            cache.put(stage, p.id, records[0] if stage == "greedy" else records)

    done = sum(map(complete, problems))
    with tqdm(total=len(problems), initial=done, unit="question", desc="best-of-n", disable=not progress) as bar:
        for first in range(0, len(chunks), n_max):
            group = chunks[first:first + n_max]
            finished_before = {p.id for chunk in group for p in chunk if complete(p)}
            todo = [p for chunk in group for p in chunk if not cache.has("greedy", p.id)]
            if todo:
                answer("greedy", todo, 1, greedy, first)
            for k, chunk in enumerate(group, start=first):
                pending = [p for p in chunk if not cache.has("samples", p.id)]
                if pending:
                    answer("samples", pending, n_max, sampling, k)
                bar.update(sum(1 for p in chunk if p.id not in finished_before))


def summarize_best_of_n(problems: Sequence[Problem], cache: RunCache, ns: Sequence[int],
                        selector_names: Sequence[str], borda_power: float = DEFAULT_BORDA_POWER,
                        seed: int = 0) -> BestOfNSummary:
    """Accuracies (fractions) per selector and N, greedy, intervals and gains: results.json's content."""
    selectors = build_selectors(selector_names, borda_power)
    # Graded again from the saved text, so a grading fix applies to old runs without regenerating.
    per_question = [[regrade(p, c) for c in cache.get("samples", p.id)] for p in problems]
    greedy = np.array([float(regrade(p, cache.get("greedy", p.id))["correct"]) for p in problems])
    rng = np.random.default_rng(seed)
    correctness = {name: {n: np.array(v) for n, v in accuracy_by_n(per_question, sel, ns).items()}
                   for name, sel in selectors.items()}
    # The draw order below (greedy, every selector's intervals, then the gains) is part of the
    # results: the same seed gives the same intervals as earlier runs.
    greedy_interval = bootstrap_mean_interval(greedy, rng)
    intervals = {name: {str(n): bootstrap_mean_interval(v, rng) for n, v in by_n.items()}
                 for name, by_n in correctness.items()}
    # Gains of each selector over greedy and over random choice among the same samples, with
    # paired bootstrap intervals (the same questions resampled for both sides).
    gains = {}
    for name, by_n in correctness.items():
        if name == "random":
            continue
        gains[name] = {}
        for n, v in by_n.items():
            vs_greedy = _gain(v, greedy, rng)
            vs_random = _gain(v, correctness["random"][n], rng) if "random" in correctness else None
            gains[name][str(n)] = Gain(vs_greedy, vs_random)
    samples = [c for q in per_question for c in q]
    return BestOfNSummary(
        greedy=float(greedy.mean()),
        selectors={name: {str(n): float(v.mean()) for n, v in by_n.items()} for name, by_n in correctness.items()},
        n_questions=len(problems),
        ns=list(ns),
        greedy_interval=greedy_interval,
        intervals=intervals,
        gains=gains,
        oracle={str(n): float(np.mean([any(c["correct"] for c in q[:n]) for q in per_question])) for n in ns},
        mean_tokens=float(np.mean([c["n_tokens"] for c in samples])),
        unfinished_fraction=float(np.mean([not c["finished"] for c in samples])),
        no_answer_fraction=float(np.mean([c["answer"] is None for c in samples])),
        borda_power=borda_power,
    )


def _gain(ours: np.ndarray, baseline: np.ndarray, rng) -> Comparison:
    base = float(baseline.mean())
    absolute = float(ours.mean()) - base
    return Comparison(absolute=absolute, relative=absolute / base if base > 0 else None,
                      interval=bootstrap_mean_interval(ours - baseline, rng))


@dataclasses.dataclass
class BonConfig:
    """What a Best-of-N run computes, beside its inputs (generator, problems, output folder). The
    defaults are `srgrpo bon`'s, which builds one from its flags; Python users build their own."""

    ns: Sequence[int] = dataclasses.field(default=(1, 4, 8, 16), metadata={
        "help": "the N values; one sampling pass of max(N) candidates serves every N (--n)"})
    selectors: Sequence[str] = dataclasses.field(default=DEFAULT_SELECTORS, metadata={
        "help": "the methods compared, names of srgrpo.bon.selectors.SELECTORS (--selectors)"})
    sampling: Sampling = dataclasses.field(default_factory=Sampling, metadata={
        "help": "decoding of the N candidates (the greedy answer uses the same budget)"})
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the sampling and of the bootstrap"})
    run_info: dict | None = dataclasses.field(default=None, metadata={
        "help": "what the caller adds to run.json (model name, dataset, ...); a resume with other values "
                "is refused"})
    overwrite: bool = dataclasses.field(default=False, metadata={
        "help": "start afresh in an output folder that holds another run, instead of refusing"})
    questions_per_chunk: int = dataclasses.field(default=8, metadata={
        "help": "questions generated between two appends to generations.jsonl"})
    borda_power: float = dataclasses.field(default=DEFAULT_BORDA_POWER, metadata={
        "help": "exponent of the Borda selectors' rank weights (--borda-power)"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "show a progress bar"})


def run_bon(generator, problems: Sequence[Problem], output_dir: str | Path, config: BonConfig | None = None) -> dict:
    """Generate (resumably), select, grade and write results.json; returns its content. The report
    (report.md, accuracy_vs_n.png) is `srgrpo.reports.best_of_n.write_best_of_n_report`'s job.

    Named as `run_rewardbench` names the same things: `config.selectors` are the methods compared
    (as its `scorers`), `config.run_info` what the caller adds to run.json (model name, dataset, ...)."""
    config = config or BonConfig()
    selector_names, ns, sampling, seed = list(config.selectors), config.ns, config.sampling, config.seed
    if not problems:
        raise ValueError("no problems to run")
    if not ns or min(ns) < 1:
        raise ValueError(f"N values must be positive integers, got {list(ns)}")
    build_selectors(selector_names, config.borda_power)  # fail on a bad name before any generation
    output_dir = Path(output_dir)
    # Samples already drawn for a larger N serve any smaller N: keep their count as the pinned one.
    n_max = max(ns)
    previous = output_dir / "run.json"
    if previous.is_file() and not config.overwrite:
        n_max = max(n_max, json.loads(previous.read_text()).get("n_max", 0))
    pinned = dict(config.run_info or {})
    # The generator's scoring options are pinned here, whoever calls (the CLI or Python): only what
    # decides the candidates' features, never the batch size.
    scorer = getattr(generator, "scorer", None)
    features = SAMPLE_FEATURES if scorer is not None else ()
    pinned.update({"n_max": n_max, "seed": seed, "sampling": dataclasses.asdict(sampling),
                   "options": pinned_options(scorer.options, features) if scorer is not None else None,
                   "problems": [p.id for p in problems]})
    versions = run_versions(
        features=FEATURES.versions(features),
        datasets=dataset_version(pinned["dataset"]) if isinstance(pinned.get("dataset"), str) else {},
        graders=grader_versions(problems))
    prepare_output_dir(output_dir, pinned, config.overwrite, OUTPUT_FILES, versions=versions, exempt=("graders",),
                       unpinned={"options": [f.name for f in dataclasses.fields(ScoringOptions)]})
    cache = RunCache(output_dir / "generations.jsonl")
    started = time.perf_counter()
    try:
        generate_all(generator, problems, n_max, sampling, seed, cache, config.questions_per_chunk, config.progress)
    finally:
        cache.close()  # the records stay in memory for the summary
    generation_seconds = time.perf_counter() - started
    summary = summarize_best_of_n(problems, cache, ns, selector_names, config.borda_power, seed)
    summary.generation_seconds_this_call = generation_seconds
    summary.run = {k: v for k, v in pinned.items() if k != "problems"}
    summary.run["versions"] = {**versions, "selectors": SELECTORS.versions(selector_names)}
    results = summary.to_json()
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
