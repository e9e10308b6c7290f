"""The paper's Table 2 from any set of `srgrpo evaluate` runs: one row per policy, one column per
task plus the STEM and Math averages, and each policy's difference to the base with a paired
bootstrap 95% interval over the questions both runs answered."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from srgrpo.results import ComparisonSummary, PairedDifference, PolicyRow
from srgrpo.stats import bootstrap_mean_interval
from srgrpo.evaluation.datasets import TASK_GROUPS
from srgrpo.evaluation.runner import group_average, load_run


def column_order(tasks: set[str]) -> list[str]:
    """Tasks in the paper's order (then any others, sorted), then the group averages present."""
    paper = [t for t in TASK_GROUPS["paper"] if t in tasks]
    groups = [g for g in ("stem", "math") if any(t in tasks for t in TASK_GROUPS[g])]
    return paper + sorted(tasks - set(paper)) + groups


def compare_runs(run_dirs: Sequence[str | Path], base: str | Path | None = None, seed: int = 0) -> ComparisonSummary:
    """Table 2 of `run_dirs` (each a finished `srgrpo evaluate --output-dir`). The base is `base`
    (one of the folders), else the first run without an adapter, else the first run."""
    if not run_dirs:
        raise ValueError("compare needs at least one run folder")
    runs = [(Path(d), *load_run(d)) for d in run_dirs]
    if base is not None:
        matches = [i for i, (d, _, _) in enumerate(runs) if d.resolve() == Path(base).resolve()]
        if not matches:
            raise ValueError(f"--base {base} is not one of the run folders given")
        base_index = matches[0]
    else:
        base_index = next((i for i, (_, s, _) in enumerate(runs) if s.adapter is None), 0)
    runs.insert(0, runs.pop(base_index))
    names = _unique_names([(d, s.policy) for d, s, _ in runs])
    columns = column_order({t for _, s, _ in runs for t in s.tasks})
    rng = np.random.default_rng(seed)
    _, _, base_questions = runs[0]
    rows = []
    for (run_dir, summary, questions), name in zip(runs, names):
        accuracy = {t: r.accuracy for t, r in summary.tasks.items()}
        intervals = {t: r.interval for t, r in summary.tasks.items()}
        n = {t: r.n for t, r in summary.tasks.items()}
        for group, avg in summary.groups.items():
            accuracy[group], intervals[group], n[group] = avg.accuracy, avg.interval, sum(n[t] for t in avg.tasks)
        row = PolicyRow(policy=name, run_dir=str(run_dir), accuracy=accuracy, intervals=intervals, n=n)
        if rows:  # not the base
            row.vs_base = paired_differences(questions, base_questions, rng)
        rows.append(row)
    return ComparisonSummary(base=names[0], columns=columns, rows=rows)


def paired_differences(ours: dict[str, dict[str, float]], base: dict[str, dict[str, float]],
                       rng: np.random.Generator) -> dict[str, PairedDifference]:
    """Per task and group: mean of (ours - base) over the shared questions, paired bootstrap
    interval. A group's difference is the mean of its tasks' differences, defined only when both
    runs hold every group task the base holds (so it compares like with like)."""
    diffs: dict[str, np.ndarray] = {}
    for task in sorted(set(ours) & set(base)):
        shared = [q for q in ours[task] if q in base[task]]
        if shared:
            diffs[task] = np.array([ours[task][q] - base[task][q] for q in shared])
    out = {t: PairedDifference(float(d.mean()), bootstrap_mean_interval(d, rng), len(d)) for t, d in diffs.items()}
    for group in ("stem", "math"):
        in_base = [t for t in TASK_GROUPS[group] if t in base]
        if in_base and all(t in diffs for t in in_base):
            mean, interval = group_average(diffs, in_base, rng)
            out[group] = PairedDifference(mean, interval, sum(len(diffs[t]) for t in in_base))
    return out


def _unique_names(runs: list[tuple[Path, str]]) -> list[str]:
    counts: dict[str, int] = {}
    for _, name in runs:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name} ({d.name})" for d, name in runs]
