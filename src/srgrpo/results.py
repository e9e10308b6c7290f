"""Typed results of the apps, exactly as their JSON files hold them.

Each app fills one of these (RewardBench: `RewardBenchSummary` per scorer in results.json and per
layer in layer_sweep.json, `PairRow` per line of pairs.jsonl; Best-of-N: `BestOfNSummary`, results.json; training: `TrainingSummary`,
summary.json; policy evaluation: `EvaluationSummary`, results.json of `srgrpo evaluate`, and
`ComparisonSummary`, results.json of `srgrpo compare`), and the reports in `srgrpo.reports` are functions of them. `to_json()` gives the
dict written to disk (its shape is the files' format) and `from_json()` reads one back; a file whose
schema differs fails there, with a KeyError naming the field, instead of showing up as a blank cell
in a report. Accuracies are fractions in 0..1; None means "not defined" (null in JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

Interval = list[float]  # [low, high] of a 95% bootstrap interval, fractions


def _interval(value) -> Interval | None:
    return None if value is None else [value[0], value[1]]


# ------------------------------------------------------------------------------------- RewardBench


@dataclass
class SubsetAccuracy:
    accuracy: float
    n: int  # pairs in the subset


@dataclass
class RewardBenchIntervals:
    accuracy: Interval | None
    score: Interval | None  # None when no official section is present
    sections: dict[str, Interval]


@dataclass
class LengthControlled:
    accuracy: float | None  # None when no pair has responses of similar length
    n: int


@dataclass
class RewardBenchSummary:
    """One scorer's (or one layer's) RewardBench result."""

    accuracy: float | None  # raw accuracy over every pair (v2: None without a best-of-4 prompt)
    score: float | None  # mean of the official sections present; None if none is
    sections: dict[str, float]  # section present -> weighted accuracy (official order, then "other")
    absent_sections: list[str]  # official sections with no pair
    subsets: dict[str, SubsetAccuracy]
    ci: RewardBenchIntervals
    length_controlled: LengthControlled
    n_pairs: int  # pairs (v1) or prompts (v2)
    n_unscored: int  # pairs (prompts) with a NaN score on any side (counted wrong)
    # "v1": pairs, sections = RewardBench v1's four. "v2": RewardBench 2; sections and subsets hold
    # the six subset scores, accuracy the best-of-4 credit over every non-Ties prompt.
    protocol: str = "v1"
    ties: dict[str, float] | None = None  # v2: the Ties subset's components (srgrpo.rewardbench.v2)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if self.ties is None:
            del out["ties"]
        if self.protocol == "v1":
            del out["protocol"]  # v1 files keep the format they had before RewardBench 2
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RewardBenchSummary:
        ci = data["ci"]
        return cls(
            accuracy=data["accuracy"],
            score=data["score"],
            sections=dict(data["sections"]),
            absent_sections=list(data["absent_sections"]),
            subsets={name: SubsetAccuracy(s["accuracy"], s["n"]) for name, s in data["subsets"].items()},
            ci=RewardBenchIntervals(_interval(ci["accuracy"]), _interval(ci["score"]),
                                    {name: _interval(v) for name, v in ci["sections"].items()}),
            length_controlled=LengthControlled(data["length_controlled"]["accuracy"], data["length_controlled"]["n"]),
            n_pairs=data["n_pairs"],
            n_unscored=data["n_unscored"],
            protocol=data.get("protocol", "v1"),  # files written before RewardBench 2 are v1
            ties=data.get("ties"),
        )


@dataclass
class SideScores:
    chosen: float | None  # None: could not be scored (null in JSON)
    rejected: float | None


@dataclass
class PairRow:
    """One preference pair's line in pairs.jsonl: its scores from every scorer."""

    id: str
    subset: str
    section: str
    chosen_tokens: int
    rejected_tokens: int
    warnings: dict[str, str]  # side -> why it could not be scored (only sides with a warning)
    scores: dict[str, SideScores]  # scorer -> scores
    # side -> tokens before the response added to its scored span by the short-span rule (sides with any)
    context_tokens: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if not self.context_tokens:
            del out["context_tokens"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairRow:
        return cls(data["id"], data["subset"], data["section"], data["chosen_tokens"], data["rejected_tokens"],
                   dict(data["warnings"]),
                   {name: SideScores(s["chosen"], s["rejected"]) for name, s in data["scores"].items()},
                   dict(data.get("context_tokens", {})))


def rewardbench_results_from_json(data: Mapping[str, Any]) -> dict[str, RewardBenchSummary]:
    """results.json ({scorer: summary}) or layer_sweep.json ({layer: summary}) as typed summaries."""
    return {str(name): RewardBenchSummary.from_json(summary) for name, summary in data.items()}


# ---------------------------------------------------------------------------------------- Best-of-N


@dataclass
class Comparison:
    """A selector's accuracy minus a baseline's, with a paired bootstrap interval."""

    absolute: float
    relative: float | None  # absolute / baseline; None when the baseline is 0
    interval: Interval


@dataclass
class Gain:
    vs_greedy: Comparison
    vs_random: Comparison | None = None  # only when the random selector ran

    def to_json(self) -> dict:
        out = {"vs_greedy": dataclasses.asdict(self.vs_greedy)}
        if self.vs_random is not None:
            out["vs_random"] = dataclasses.asdict(self.vs_random)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gain:
        random = data.get("vs_random")  # absent by design when random did not run
        return cls(Comparison(**data["vs_greedy"]), None if random is None else Comparison(**random))


@dataclass
class BestOfNSummary:
    """A Best-of-N run. Per-N maps are keyed by str(N), as in JSON."""

    greedy: float
    selectors: dict[str, dict[str, float]]  # selector -> N -> accuracy
    n_questions: int
    ns: list[int]
    greedy_interval: Interval
    intervals: dict[str, dict[str, Interval]]  # selector -> N -> interval
    gains: dict[str, dict[str, Gain]]  # selector (all but random) -> N -> gains
    oracle: dict[str, float]  # N -> fraction of questions with a correct sample among the first N
    mean_tokens: float
    unfinished_fraction: float  # samples that hit the token limit
    no_answer_fraction: float  # samples with no extractable answer
    borda_power: float
    generation_seconds_this_call: float | None = None
    run: dict[str, Any] = field(default_factory=dict)  # the pinned run arguments (run.json, less the ids)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["gains"] = {name: {n: g.to_json() for n, g in by_n.items()} for name, by_n in self.gains.items()}
        if self.generation_seconds_this_call is None:
            del out["generation_seconds_this_call"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BestOfNSummary:
        names = [f.name for f in dataclasses.fields(cls)]
        values = {name: data[name] for name in names if name not in ("generation_seconds_this_call", "run")}
        values["gains"] = {name: {n: Gain.from_json(g) for n, g in by_n.items()}
                           for name, by_n in data["gains"].items()}
        return cls(**values, generation_seconds_this_call=data.get("generation_seconds_this_call"),
                   run=dict(data.get("run", {})))


# ----------------------------------------------------------------------------------------- training


@dataclass
class GreedyEvaluation:
    """Greedy accuracy on a held-out set (training's before/after check)."""

    dataset: str
    n: int
    accuracy: float
    seconds: float


@dataclass
class TrainingSummary:
    """summary.json of `srgrpo train`."""

    config: dict[str, Any]
    global_step: int
    train_seconds: float
    world_size: int = 1  # processes that trained together (data parallel)
    parallel: dict[str, Any] | None = None  # how they did: parallel mode, DDP backend, model wrapper
    watch_warnings: list[str] = field(default_factory=list)
    first_step: dict[str, Any] | None = None  # the first and last metrics.jsonl rows
    last_step: dict[str, Any] | None = None
    eval: dict[str, GreedyEvaluation] = field(default_factory=dict)  # "before" / "after"
    # [{"name", "logged_as", "scorer" (frozen/online/ema, None for model-free), "weight"}], in reward order
    rewards: list[dict[str, Any]] = field(default_factory=list)
    multi_objective_aggregation: str | None = None
    collapse: dict[str, Any] | None = None  # {"collapse_step", "detected_at", "reason"}; None: no collapse
    collapse_rule: dict[str, Any] | None = None  # the CollapseRule's settings
    eval_curve: list[dict[str, Any]] = field(default_factory=list)  # eval_curve.jsonl rows (--eval_every)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("first_step", "last_step", "parallel", "multi_objective_aggregation", "collapse_rule"):
            if out[key] is None:
                del out[key]
        if not self.eval:
            del out["eval"]
        if not self.eval_curve:
            del out["eval_curve"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingSummary:
        return cls(
            config=dict(data["config"]),
            global_step=data["global_step"],
            train_seconds=data["train_seconds"],
            world_size=data.get("world_size", 1),
            parallel=data.get("parallel"),
            watch_warnings=list(data.get("watch_warnings", [])),
            first_step=data.get("first_step"),
            last_step=data.get("last_step"),
            eval={label: GreedyEvaluation(**e) for label, e in data.get("eval", {}).items()},
            rewards=[dict(r) for r in data.get("rewards", [])],
            multi_objective_aggregation=data.get("multi_objective_aggregation"),
            collapse=data.get("collapse"),
            collapse_rule=data.get("collapse_rule"),
            eval_curve=[dict(r) for r in data.get("eval_curve", [])],
        )


# ------------------------------------------------------------------------------ policy evaluation


@dataclass
class TaskResult:
    """One task's result in `srgrpo evaluate`'s results.json."""

    accuracy: float  # pass@1: the fraction of questions answered right (k samples: mean over them)
    interval: Interval  # 95% bootstrap interval over questions
    n: int  # questions
    max_new_tokens: int  # the task's token budget
    group: str | None  # "stem", "math" (the paper's Table 2 groups) or None
    mean_tokens: float  # generated tokens per answer
    unfinished_fraction: float  # answers cut at the token budget
    no_answer_fraction: float  # answers with nothing the grader could extract
    samples: int = 1  # answers per question (1: greedy)
    pass_at_k: float | None = None  # with samples > 1: some answer right
    majority_at_k: float | None = None  # with samples > 1: the most frequent answer right


@dataclass
class GroupAverage:
    """The paper's STEM or Math average: the plain mean of its tasks' accuracies."""

    accuracy: float
    interval: Interval  # each task's questions resampled on their own
    tasks: list[str]  # the group's tasks that were run
    missing: list[str]  # the group's tasks that were not (the average is partial when any are)


@dataclass
class EvaluationSummary:
    """results.json of `srgrpo evaluate` (one policy: a model, or a model with an adapter)."""

    policy: str  # display name: "base" or the adapter's folder name
    model: str | None
    adapter: str | None
    tasks: dict[str, TaskResult]
    groups: dict[str, GroupAverage]
    samples: int = 1
    generation_seconds_this_call: float | None = None
    run: dict[str, Any] = field(default_factory=dict)  # run.json: what decides the answers

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if self.generation_seconds_this_call is None:
            del out["generation_seconds_this_call"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationSummary:
        return cls(
            policy=data["policy"], model=data["model"], adapter=data["adapter"],
            tasks={name: TaskResult(**t) for name, t in data["tasks"].items()},
            groups={name: GroupAverage(**g) for name, g in data["groups"].items()},
            samples=data.get("samples", 1),
            generation_seconds_this_call=data.get("generation_seconds_this_call"),
            run=dict(data.get("run", {})),
        )


@dataclass
class PairedDifference:
    """A policy's accuracy minus the base's on the questions both answered, with a paired
    bootstrap 95% interval (the same questions resampled for both)."""

    absolute: float
    interval: Interval
    n: int  # shared questions (a group: summed over its tasks)


@dataclass
class PolicyRow:
    """One row of the Table 2 comparison."""

    policy: str
    run_dir: str
    accuracy: dict[str, float]  # task or group -> accuracy (the run's own questions)
    intervals: dict[str, Interval]
    n: dict[str, int]
    vs_base: dict[str, PairedDifference] = field(default_factory=dict)  # empty for the base itself


@dataclass
class ComparisonSummary:
    """results.json of `srgrpo compare`: rows per policy, columns per task and group average."""

    base: str  # the base row's policy name
    columns: list[str]  # tasks in the paper's order, then "stem", "math"
    rows: list[PolicyRow]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComparisonSummary:
        rows = [PolicyRow(policy=r["policy"], run_dir=r["run_dir"], accuracy=dict(r["accuracy"]),
                          intervals={k: _interval(v) for k, v in r["intervals"].items()}, n=dict(r["n"]),
                          vs_base={k: PairedDifference(**d) for k, d in r["vs_base"].items()})
                for r in data["rows"]]
        return cls(base=data["base"], columns=list(data["columns"]), rows=rows)
