"""Runs tied to the code that made them: one Registry behind every kind of name, versions recorded in
run.json, resumes refused (or only the stale features recomputed) when a definition changed, and
the scoring options split so that only what defines a score pins a run."""

import dataclasses
import json
import types

import pytest

from srgrpo.version import __version__
from srgrpo.bon.runner import BonConfig, run_bon
from srgrpo.bon.selectors import SELECTORS
from srgrpo.rewardbench.v1 import PROTOCOLS, SECTIONS
from srgrpo.rewardbench.runner import RewardBenchConfig, run_rewardbench
from srgrpo.rewardbench.methods import METHODS
from srgrpo.features import FEATURES, pinned_options
from srgrpo.generation import Sample, Sampling
from srgrpo.options import FEATURE, RUNTIME, SCORE, ScoringOptions
from srgrpo.records import changed_versions, prepare_output_dir
from srgrpo.registry import Registry
from srgrpo.scoring import StableRankScorer
from srgrpo.evaluation.datasets import DATASETS, Problem, register_dataset
from srgrpo.evaluation.grading import GRADERS, grade

from test_rewardbench_runner import make_pairs


# ------------------------------------------------------------------------------------------ Registry


def test_registry_is_a_dict_that_refuses_duplicates_and_names_the_known():
    reg = Registry("widget", [("a", types.SimpleNamespace(version=3)), ("b", object())])
    assert dict(reg) == {"a": reg["a"], "b": reg["b"]} and "a" in reg and list(reg) == ["a", "b"]
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.add("a", object())
    with pytest.raises(ValueError, match=r"unknown widget 'c'; known: a, b"):
        reg.lookup("c")
    with pytest.raises(KeyError):
        reg["c"]  # plain dict indexing is unchanged
    assert reg.versions() == {"a": 3, "b": 1}  # an entry without a version is version 1
    register = reg.decorator(lambda name, fn, version=1: types.SimpleNamespace(fn=fn, version=version))

    @register("d", version=2)
    def d():
        return 4

    assert d() == 4 and reg["d"].fn is d and reg.version("d") == 2


def _module_level_objects():
    """(module name, attribute, object) of every module of the package that imports here (a module
    that needs an optional package not installed, such as vLLM, is left out)."""
    import importlib
    import pkgutil

    import srgrpo

    for info in pkgutil.walk_packages(srgrpo.__path__, "srgrpo."):
        if info.name.endswith("__main__"):
            continue  # runs the command line on import
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        for attribute, value in vars(module).items():
            yield info.name, attribute, value


def test_every_kind_of_name_is_one_registry():
    from srgrpo.training.reward_registry import REWARDS
    from srgrpo.training.sr_reward import REWARD_SCORERS

    found = {id(value): attribute for _, attribute, value in _module_level_objects() if isinstance(value, Registry)}
    assert sorted(found.values()) == sorted([
        "COMMANDS", "DATASETS", "FEATURES", "GRADERS", "METHODS", "PROTOCOLS", "REWARDS", "REWARD_SCORERS",
        "SECTIONS", "SELECTORS"])
    for registry in (FEATURES, SELECTORS, DATASETS, METHODS, SECTIONS, GRADERS, PROTOCOLS, REWARDS, REWARD_SCORERS):
        assert isinstance(registry, Registry) and isinstance(registry, dict)
    # No kind of name kept as a plain dict of specs beside them: a module-level mapping of names to
    # entries that carry their own `name` would be a registry without the registry's checks.
    plain = [f"{module}.{attribute}" for module, attribute, value in _module_level_objects()
             if type(value) is dict and value and all(isinstance(k, str) for k in value)
             and all(getattr(v, "name", None) == k for k, v in value.items())]
    assert plain == []
    with pytest.raises(ValueError, match=r"unknown reward 'vibes' in --rewards; known: stable_rank, "):
        REWARDS.lookup("vibes", "--rewards")
    with pytest.raises(ValueError, match=r"unknown features 'vibes', 'mood'; known: stable_rank, .*, all$"):
        FEATURES.check(["stable_rank", "vibes", "mood"], also=["all"])
    assert SECTIONS["Chat"][0] == "alpacaeval-easy" and PROTOCOLS["rewardbench"].sections is SECTIONS
    # An entry that declares no version is version 1; every version is a positive integer.
    assert FEATURES.version("mean_logprob") == 1 and DATASETS.version("gsm8k") == 1
    assert all(isinstance(v, int) and v >= 1 for v in FEATURES.versions().values())
    with pytest.raises(ValueError, match="dataset 'gsm8k' is registered twice"):
        register_dataset("gsm8k", "again")(lambda seed, data_dir: [])


def test_grading_goes_through_the_grader_registry():
    assert set(GRADERS) == {"gsm8k", "math", "choice"}
    problem = Problem("p", "2+2?", "4", "gsm8k")
    assert grade(problem, "The answer is 4.") == ("4", True)
    assert grade(Problem("c", "?", "B", "choice", ("x", "y")), "Answer: B") == ("B", True)


# ------------------------------------------------------------------------------------------ options


def test_options_are_split_by_meaning_and_keep_their_keywords():
    assert ScoringOptions.field_names(SCORE) == ("span", "layer", "max_length", "truncation_side", "min_span_tokens",
                                                 "compute_dtype")
    assert ScoringOptions.field_names(FEATURE) == ("window_size", "length_exponent")
    assert ScoringOptions.field_names(RUNTIME) == ("batch_size",)
    options = ScoringOptions(span="full", batch_size=3, window_size=16, length_exponent=0.5)
    assert options.runtime() == {"batch_size": 3}
    assert options.feature_parameters() == {"window_size": 16, "length_exponent": 0.5}
    # Every feature parameter is read by exactly one registered feature, which declares it.
    readers = {p: [f.name for f in FEATURES.values() if p in f.params] for p in ScoringOptions.field_names(FEATURE)}
    assert readers == {"window_size": ["stable_rank_windowed"], "length_exponent": ["stable_rank_prompt_adjusted"]}
    # A run pins the score-defining options and its features' own parameters only.
    assert pinned_options(options, ["stable_rank"]) == {"span": "full", "layer": "final_norm", "max_length": 512,
                                                        "truncation_side": "right", "min_span_tokens": 16,
                                                        "compute_dtype": "float32"}
    assert pinned_options(options, ["stable_rank_windowed"])["window_size"] == 16
    assert "length_exponent" not in pinned_options(options, ["stable_rank_windowed"])


def test_changed_versions_counts_an_old_run_as_version_one():
    current = {"srgrpo": "9.9", "features": {"stable_rank": 2, "mean_logprob": 1}}
    assert changed_versions(None, current) == {"features": {"stable_rank": (1, 2)}}
    assert changed_versions({"features": {"stable_rank": 2}}, current) == {}  # mean_logprob is new: no change
    assert changed_versions({"features": {"stable_rank": 3, "mean_logprob": 1}}, current) == \
        {"features": {"stable_rank": (3, 2)}}


# ------------------------------------------------------------------------------------------ RewardBench


def _bumped(monkeypatch, name, compute=None):
    """Feature `name` at its next version (and, optionally, another computation)."""
    old = FEATURES[name]
    new = dataclasses.replace(old, version=old.version + 1, compute=compute or old.compute)
    monkeypatch.setitem(FEATURES, name, new)
    return new


def test_rewardbench_records_versions_and_recomputes_only_the_stale_feature(tmp_path, tiny_model, tokenizer,
                                                                             monkeypatch):
    import torch

    pairs = make_pairs()
    kwargs = dict(scorers=["stable_rank", "mean_logprob"], progress=False, n_bootstrap=20)
    first = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(**kwargs))
    run = json.loads((tmp_path / "run.json").read_text())
    declared = FEATURES["stable_rank"].version
    assert run["versions"]["srgrpo"] == __version__
    assert run["versions"]["features"] == {"stable_rank": declared, "mean_logprob": 1}
    assert run["versions"]["protocol"] == {"rewardbench": 1}
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]

    # A new definition of stable_rank (here: a constant 7), with its version bumped.
    _bumped(monkeypatch, "stable_rank", compute=lambda s: torch.full((s.states.shape[0],), 7.0))
    asked = []
    original = StableRankScorer.iter_features

    def spy(self, prompts, responses, features, **kw):
        asked.append(list(features))
        return original(self, prompts, responses, features, **kw)

    monkeypatch.setattr(StableRankScorer, "iter_features", spy)
    run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(**kwargs))
    assert asked and all(features == ["stable_rank"] for features in asked)  # mean_logprob is not recomputed
    again = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert {r["scores"]["stable_rank"]["chosen"] for r in again} == {7.0}
    assert [r["scores"]["mean_logprob"] for r in again] == [r["scores"]["mean_logprob"] for r in rows]
    assert json.loads((tmp_path / "run.json").read_text())["versions"]["features"]["stable_rank"] == declared + 1
    # Nothing is stale any more: a third run computes nothing.
    asked.clear()
    third = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(**kwargs))
    assert asked == [] and third["mean_logprob"] == first["mean_logprob"]


def test_rewardbench_resumes_with_another_batch_size_but_not_another_window(tmp_path, tiny_model, tokenizer):
    pairs = make_pairs()
    kwargs = dict(scorers=["stable_rank_windowed"], progress=False, n_bootstrap=20)
    first = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(options=ScoringOptions(batch_size=2), **kwargs))
    again = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(options=ScoringOptions(batch_size=5), **kwargs))
    assert again == first
    with pytest.raises(ValueError, match="scoring differ"):
        run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(options=ScoringOptions(window_size=8), **kwargs))
    # A parameter of a feature the run does not use pins nothing.
    run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(options=ScoringOptions(length_exponent=0.3), **kwargs))


def test_a_folder_written_before_provenance_still_resumes(tmp_path, tiny_model, tokenizer, monkeypatch):
    # Values written before versions were kept count as version 1: here stable_rank is still defined
    # as it was then (version 1), so nothing is stale.
    monkeypatch.setitem(FEATURES, "stable_rank", dataclasses.replace(FEATURES["stable_rank"], version=1))
    pairs = make_pairs()
    kwargs = dict(scorers=["stable_rank"], progress=False, n_bootstrap=20)
    first = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(**kwargs))
    # What an earlier srgrpo wrote: every option pinned (batch_size too), no versions, records without them.
    run = json.loads((tmp_path / "run.json").read_text())
    del run["versions"]
    run["scoring"] = dataclasses.asdict(ScoringOptions())
    (tmp_path / "run.json").write_text(json.dumps(run))
    lines = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    for line in lines:
        line["value"].pop("versions"), line["value"].pop("layers_version")
    (tmp_path / "cache.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    again = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(options=ScoringOptions(batch_size=3), **kwargs))
    assert again == first
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == len(lines)  # nothing recomputed


def test_cli_rewardbench_resumes_with_another_batch_size(tmp_path, tiny_model_dir):
    from srgrpo.cli import main

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}?", "chosen": "A fine answer.",
                                        "rejected": "No.", "subset": "alpacaeval-easy"}) + "\n" for i in range(3)))
    args = ["rewardbench", "--data", str(data), "--output-dir", str(tmp_path / "out"), "--model", str(tiny_model_dir),
            "--scorers", "stable_rank", "--bootstrap", "20", "--quiet"]
    assert main(args + ["--batch-size", "2"]) == 0
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    assert main(args + ["--batch-size", "5"]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == first
    assert main(args + ["--span", "full"]) == 2  # a score-defining option is still pinned


# ------------------------------------------------------------------------------------------ Best-of-N


class ScoringFake:
    """A generator with a scorer's options, whose candidates carry fixed features."""

    def __init__(self, options=None):
        self.scorer = types.SimpleNamespace(options=options or ScoringOptions())
        self.calls = 0

    def generate(self, prompts, n, sampling, seed=0, progress=False):
        self.calls += 1
        return [[Sample(f"The answer is {k}.", [1, 2], True, {"stable_rank": float(k)}) for k in range(n)]
                for _ in prompts]


def test_bon_pins_the_generators_options_and_refuses_a_changed_feature(tmp_path, monkeypatch):
    problems = [Problem(f"q{i}", "What is 1?", "1", "gsm8k") for i in range(3)]
    kwargs = dict(ns=[1, 2], selectors=["stable_rank"], sampling=Sampling(), progress=False)
    results = run_bon(ScoringFake(ScoringOptions(batch_size=2)), problems, tmp_path, BonConfig(**kwargs))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["options"] == pinned_options(ScoringOptions(), FEATURES)  # pinned from Python, no batch size
    assert run["versions"]["graders"] == {"gsm8k": 1}
    assert run["versions"]["features"]["stable_rank"] == FEATURES["stable_rank"].version
    assert results["run"]["versions"]["selectors"] == {"stable_rank": 1}
    # Another batch size resumes without generating anything.
    again = ScoringFake(ScoringOptions(batch_size=7))
    assert run_bon(again, problems, tmp_path, BonConfig(**kwargs))["selectors"] == results["selectors"]
    assert again.calls == 0
    with pytest.raises(ValueError, match="different arguments"):
        run_bon(ScoringFake(ScoringOptions(layer=0)), problems, tmp_path, BonConfig(**kwargs))
    # The candidates' features were computed while generating: a new definition is refused, named.
    old = FEATURES["stable_rank"].version
    _bumped(monkeypatch, "stable_rank")
    with pytest.raises(ValueError, match=rf"feature stable_rank {old} -> {old + 1}"):
        run_bon(ScoringFake(), problems, tmp_path, BonConfig(**kwargs))


def test_a_grader_change_is_recorded_not_refused(tmp_path, monkeypatch):
    problems = [Problem("q0", "What is 1?", "1", "gsm8k")]
    kwargs = dict(ns=[1], selectors=["stable_rank"], sampling=Sampling(), progress=False)
    run_bon(ScoringFake(), problems, tmp_path, BonConfig(**kwargs))
    # Every run grades the saved texts again, so a new grader applies to the old samples.
    monkeypatch.setitem(GRADERS, "gsm8k", dataclasses.replace(GRADERS["gsm8k"], version=2,
                                                              grade=lambda p, c: ("x", True)))
    results = run_bon(ScoringFake(), problems, tmp_path, BonConfig(**kwargs))
    assert results["greedy"] == 1.0 and json.loads((tmp_path / "run.json").read_text())["versions"]["graders"] == \
        {"gsm8k": 2}


def test_srgrpo_version_is_recorded_not_pinned(tmp_path):
    versions = {"srgrpo": "0.0.1", "features": {"stable_rank": 1}}
    prepare_output_dir(tmp_path, {"a": 1}, False, (), versions=versions)
    prepare_output_dir(tmp_path, {"a": 1}, False, (), versions={**versions, "srgrpo": "0.0.2"})
    saved = json.loads((tmp_path / "run.json").read_text())["versions"]
    assert saved["srgrpo"] == "0.0.2" and saved["srgrpo_earlier"] == ["0.0.1"]


# ------------------------------------------------------------------------------------------ training


def test_training_resume_refuses_another_reward_definition(tmp_path, monkeypatch):
    from srgrpo.training.trainer import check_resume_versions

    versions = {"srgrpo": __version__, "features": {"stable_rank": 1}}
    (tmp_path / "train_config.json").write_text(json.dumps({"script": {}, "versions": versions}))
    check_resume_versions(tmp_path, versions)  # same definitions: fine
    with pytest.raises(ValueError, match=r"feature stable_rank 1 -> 2"):
        check_resume_versions(tmp_path, {**versions, "features": {"stable_rank": 2}})
