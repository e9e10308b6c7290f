"""Selectors on constructed candidates, nested-prefix evaluation, the resumable runner and the CLI."""

import json
import math

import pytest

from srgrpo.bon.runner import BonConfig, run_bon
from srgrpo.bon.selectors import accuracy_by_n, best_by, borda, build_selectors, majority_vote, random_choice
from srgrpo.cli import main
from srgrpo.generation import Sample, Sampling
from srgrpo.reports.best_of_n import write_best_of_n_report
from srgrpo.results import BestOfNSummary
from srgrpo.evaluation.datasets import Problem


def cand(answer, correct, sr=1.0, sc=0.0):
    return {"answer": answer, "correct": correct, "features": {"stable_rank": sr, "self_certainty": sc}}


def test_best_by_feature_picks_the_highest_and_ranks_nan_last():
    cands = [cand("1", False, sr=2.0), cand("2", True, sr=3.5), cand("3", False, sr=float("nan"))]
    assert best_by("stable_rank")(cands) == 1.0
    cands[2]["features"]["stable_rank"] = 9.0
    assert best_by("stable_rank")(cands) == 0.0
    # A tie keeps the first candidate; a missing score (None in JSON) ranks last.
    tie = [cand("1", False, sr=2.0), cand("2", True, sr=2.0), cand("3", True, sr=None)]
    assert best_by("stable_rank")(tie) == 0.0


def test_random_is_the_exact_expectation():
    assert random_choice([cand("1", True), cand("2", False), cand("3", False), cand("4", True)]) == 0.5


def test_majority_pools_answers_and_breaks_ties_by_first_seen():
    cands = [cand("5", False), cand("7", True), cand("7", True), cand(None, False), cand("9", False)]
    assert majority_vote(cands) == 1.0  # 7 has two votes; an answerless candidate casts none
    tie = cands + [cand("5", False)]
    assert majority_vote(tie) == 0.0  # 5 and 7 tie at two votes: 5 was seen first
    assert majority_vote([cand(None, False), cand(None, True)]) == 0.0  # nothing to vote on: wrong


def test_borda_weights_ranks_and_p0_is_majority():
    # SR ranks: c0 (rank 1, 3 votes at p=1), c1 (rank 2, 2 votes), c2 (rank 3, 1 vote).
    cands = [cand("right", True, sr=3.0), cand("wrong", False, sr=2.0), cand("wrong", False, sr=1.0)]
    assert borda("stable_rank", power=1.0)(cands) == 1.0  # 3 votes vs 2 + 1 = 3: tie, first seen wins
    assert borda("stable_rank", power=2.0)(cands) == 1.0  # 9 vs 4 + 1
    assert borda("stable_rank", power=0.5)(cands) == 0.0  # 1.73 vs 1.41 + 1
    assert borda("stable_rank", power=0.0)(cands) == majority_vote(cands) == 0.0
    swapped = [cand("wrong", False, sr=3.0), cand("right", True, sr=2.0), cand("right", True, sr=1.0)]
    assert borda("stable_rank", power=0.0)(swapped) == 1.0


def test_nested_prefixes_evaluate_every_n_on_the_same_samples():
    # The best SR candidate is wrong among the first 2 and right once the 4th is seen.
    q = [cand("a", False, sr=2.0), cand("b", False, sr=1.0), cand("c", False, sr=0.5), cand("d", True, sr=5.0)]
    by_n = accuracy_by_n([q, q], best_by("stable_rank"), [1, 2, 4])
    assert by_n == {1: [0.0, 0.0], 2: [0.0, 0.0], 4: [1.0, 1.0]}
    assert accuracy_by_n([q], random_choice, [1, 2, 4]) == {1: [0.0], 2: [0.0], 4: [0.25]}
    with pytest.raises(ValueError, match="unknown selector"):
        build_selectors(["stable_rank", "vibes"])


class FakeGenerator:
    """Deterministic candidates: sample k of a question answers its gold only when k is odd, with
    SR rising in k. Counts what it was asked for; can crash after a number of calls."""

    def __init__(self, crash_after=None):
        self.calls = []
        self.crash_after = crash_after

    def generate(self, prompts, n, sampling, seed=0, progress=False):
        if self.crash_after is not None and len(self.calls) >= self.crash_after:
            raise RuntimeError("killed")
        self.calls.append((len(prompts), n, sampling.greedy, seed))
        out = []
        for messages in prompts:
            gold = messages[0]["content"].split("?")[0].split()[-1]
            samples = []
            for k in range(n):
                answer = gold if (k % 2 == 1) != sampling.greedy else "0"
                samples.append(Sample(f"The answer is {answer}.", [1] * (k + 1), True,
                                      {"stable_rank": float(k), "self_certainty": -float(k),
                                       "mean_logprob": 0.0, "mean_entropy": 0.0}))
            out.append(samples)
        return out


def _problems(count=5):
    return [Problem(f"q{i}", f"What is {10 + i}?", str(10 + i), "gsm8k") for i in range(count)]


def test_one_sampling_pass_serves_every_n(tmp_path):
    gen = FakeGenerator()
    results = run_bon(gen, _problems(), tmp_path, BonConfig(
        ns=[1, 2, 4], selectors=["stable_rank", "random", "majority"], sampling=Sampling(), questions_per_chunk=2,
        progress=False))
    assert not (tmp_path / "report.md").exists()  # the runner writes data; reports are the reports' job
    write_best_of_n_report(BestOfNSummary.from_json(results), tmp_path)
    sampled = [c for c in gen.calls if not c[2]]
    assert {c[1] for c in sampled} == {4} and sum(c[0] for c in sampled) == 5  # max(N) once per question
    assert [c[0] for c in gen.calls if c[2]] == [5]  # and one greedy answer each, in one batch (up to N chunks)
    assert results["greedy"] == 1.0  # greedy answers gold in the fake
    sr = results["selectors"]["stable_rank"]
    assert sr == {"1": 0.0, "2": 1.0, "4": 1.0}  # highest SR = last sample: odd index k=1 at N=2, k=3 at N=4
    assert results["selectors"]["random"] == {"1": 0.0, "2": 0.5, "4": 0.5}
    assert results["gains"]["stable_rank"]["4"]["vs_random"]["absolute"] == pytest.approx(0.5)
    assert results["gains"]["stable_rank"]["2"]["vs_greedy"]["relative"] == pytest.approx(0.0)
    for name in ("results.json", "report.md", "accuracy_vs_n.png", "generations.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["selectors"] == results["selectors"] and isinstance(saved["greedy"], float)
    assert "stable_rank" in (tmp_path / "report.md").read_text()


def test_a_killed_run_resumes_without_regenerating(tmp_path):
    kwargs = dict(ns=[1, 4], selectors=["stable_rank", "random"], sampling=Sampling(), questions_per_chunk=2,
                  progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        run_bon(FakeGenerator(crash_after=3), _problems(), tmp_path / "run", BonConfig(**kwargs))
    saved = (tmp_path / "run" / "generations.jsonl").read_text().splitlines()
    # Three calls finished: the greedy answers of chunks 1-3 (N=4 chunks at once), chunk 1's and 2's samples.
    assert sorted(json.loads(line)["key"] for line in saved) == ["q0", "q0", "q1", "q1", "q2", "q2", "q3", "q3", "q4"]
    resumed = FakeGenerator()
    results = run_bon(resumed, _problems(), tmp_path / "run", BonConfig(**kwargs))
    # Only what is missing: samples for q4.
    assert [(c[0], c[2]) for c in resumed.calls] == [(1, False)]
    fresh = run_bon(FakeGenerator(), _problems(), tmp_path / "fresh", BonConfig(**kwargs))
    assert results["selectors"] == fresh["selectors"] and results["greedy"] == fresh["greedy"]
    # A different sampling setting in the same folder is refused rather than mixed in.
    with pytest.raises(ValueError, match="different arguments"):
        run_bon(FakeGenerator(), _problems(), tmp_path / "run", BonConfig(**{**kwargs,
                                                                          "sampling": Sampling(temperature=1.0)}))


def test_a_run_can_add_selectors_without_regenerating(tmp_path):
    kwargs = dict(ns=[1, 4], sampling=Sampling(), progress=False)
    run_bon(FakeGenerator(), _problems(), tmp_path, BonConfig(selectors=["stable_rank"], **kwargs))
    again = FakeGenerator()
    results = run_bon(again, _problems(), tmp_path, BonConfig(
        selectors=["stable_rank", "majority", "borda_self_certainty"], **kwargs))
    assert again.calls == [] and set(results["selectors"]) == {"stable_rank", "majority", "borda_self_certainty"}
    # Fewer N than were generated: the first samples serve, nothing is regenerated.
    smaller = run_bon(again, _problems(), tmp_path, BonConfig(selectors=["stable_rank"], **{**kwargs, "ns": [1, 2]}))
    assert again.calls == [] and set(smaller["selectors"]["stable_rank"]) == {"1", "2"}
    # More N than were generated would need new samples: refused with a message, not mixed.
    with pytest.raises(ValueError, match="n_max"):
        run_bon(again, _problems(), tmp_path, BonConfig(selectors=["stable_rank"], **{**kwargs, "ns": [1, 8]}))


def test_cli_bon_end_to_end(tmp_path, tiny_model_dir, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"question": f"What is {k} + 1?", "answer": str(k + 1)}) for k in range(3)))
    out = tmp_path / "out"
    args = ["bon", "--dataset", str(questions), "--output-dir", str(out), "--model", str(tiny_model_dir),
            "--n", "1,2", "--max-new-tokens", "6", "--selectors", "stable_rank,random,self_certainty,majority", "--quiet"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["selectors"]) == {"stable_rank", "random", "self_certainty", "majority"}
    assert set(results["selectors"]["stable_rank"]) == {"1", "2"}
    # Every accuracy again from generations.jsonl, by the selectors' definitions written out here.
    saved = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    greedy = {r["key"]: r["value"] for r in saved if r["stage"] == "greedy"}
    samples = {r["key"]: r["value"] for r in saved if r["stage"] == "samples"}
    assert len(greedy) == len(samples) == 3 and all(len(c) == 2 for c in samples.values())
    assert results["greedy"] == pytest.approx(sum(g["correct"] for g in greedy.values()) / 3)

    def best(cands, feature):
        scored = [(c["features"][feature] if c["features"][feature] is not None else -math.inf, -i)
                  for i, c in enumerate(cands)]
        return cands[-max(scored)[1]]["correct"]

    for n in (1, 2):
        first = [c[:n] for c in samples.values()]
        assert results["selectors"]["random"][str(n)] == pytest.approx(
            sum(sum(x["correct"] for x in c) / n for c in first) / 3)
        assert results["selectors"]["stable_rank"][str(n)] == pytest.approx(sum(best(c, "stable_rank") for c in first) / 3)
        assert results["selectors"]["self_certainty"][str(n)] == pytest.approx(
            sum(best(c, "self_certainty") for c in first) / 3)
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    samples = [r for r in rows if r["stage"] == "samples"]
    assert len(samples) == 3 and all(len(r["value"]) == 2 for r in samples)
    assert all(not math.isnan(c["features"]["stable_rank"] or math.nan) for r in samples for c in r["value"]
               if c["n_tokens"] > 0)
    assert "Best-of-N" in capsys.readouterr().out
    # Bad input: a clear message and exit status 2, before any model is loaded.
    assert main(["bon", "--dataset", "nope", "--output-dir", str(out)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["bon", "--dataset", "gsm8k", "--output-dir", str(out), "--backend", "vllm"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["bon", "--dataset", "gsm8k", "--output-dir", str(out), "--gen-batch-size", "0"]) == 2
    assert "--gen-batch-size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bon", "--dataset", "gsm8k", "--output-dir", str(out), "--n", "0,4"])
    with pytest.raises(SystemExit):
        main(["bon", "--dataset", "gsm8k", "--output-dir", str(out), "--selectors", "vibes"])


def test_the_selector_registry_is_the_one_list_of_names(capsys):
    import srgrpo.bon
    from srgrpo.bon.selectors import SELECTORS

    # Written out: every feature a candidate carries (all but the full-spectrum ablations, in the
    # feature registry's order), then the pooled and baseline selectors.
    assert tuple(SELECTORS) == (
        "stable_rank", "stable_rank_centered", "stable_rank_normalized", "stable_rank_windowed",
        "stable_rank_prompt_adjusted", "mean_logprob", "self_certainty", "mean_entropy",
        "random", "majority", "borda_stable_rank", "borda_self_certainty")
    assert not hasattr(srgrpo.bon, "SELECTOR_NAMES")  # no second list of the names beside the registry
    built = build_selectors(list(SELECTORS))
    assert list(built) == list(SELECTORS) and all(callable(s) for s in built.values())
    # Every registered selector is listed, with its description, in `srgrpo bon --help`.
    with pytest.raises(SystemExit):
        main(["bon", "--help"])
    help_text = capsys.readouterr().out
    for name, spec in SELECTORS.items():
        assert f"{name} " in help_text and spec.description.split(":")[0] in help_text
    with pytest.raises(ValueError, match="unknown selector"):
        build_selectors(["stable_rank", "vibes"])


def test_the_report_is_a_function_of_the_typed_summary(tmp_path):
    from srgrpo.bon.selectors import SELECTORS
    from srgrpo.reports.best_of_n import (
        SELECTOR_STYLES,
        accuracy_vs_n_figure,
        best_of_n_markdown,
        write_best_of_n_report,
    )
    from srgrpo.results import BestOfNSummary

    results = run_bon(FakeGenerator(), _problems(), tmp_path, BonConfig(
        ns=[1, 2, 4], sampling=Sampling(), progress=False, selectors=["stable_rank", "random", "majority"],
        run_info={"dataset": "fake"}))
    assert set(results) == {"greedy", "selectors", "n_questions", "ns", "greedy_interval", "intervals", "gains",
                            "oracle", "mean_tokens", "unfinished_fraction", "no_answer_fraction", "borda_power",
                            "generation_seconds_this_call", "run"}  # results.json's format
    summary = BestOfNSummary.from_json(json.loads((tmp_path / "results.json").read_text()))
    assert summary.to_json() == results
    write_best_of_n_report(summary, tmp_path)
    assert summary.gains["majority"]["4"].vs_random is not None and "random" not in summary.gains

    md = best_of_n_markdown(summary)
    assert md == (tmp_path / "report.md").read_text()
    assert "| stable_rank | 0.0 [0.0, 0.0] | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in md
    assert "| greedy | 100.0 [100.0, 100.0] |  |  |" in md and "| oracle (any correct) | 0.0 | 100.0 | 100.0 |" in md
    assert "| stable_rank@4 | +0.0 (+0.0%) [+0.0, +0.0] | +50.0 (+100.0%) [+50.0, +50.0] |" in md

    # The figure: one line per selector (y = accuracy in %) and the greedy line, on a log2 N axis.
    fig = accuracy_vs_n_figure(summary)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"stable_rank", "random", "majority", "greedy"}
    assert list(lines["stable_rank"].get_xdata()) == [1, 2, 4]
    assert list(lines["stable_rank"].get_ydata()) == [0.0, 100.0, 100.0]
    assert list(lines["random"].get_ydata()) == [0.0, 50.0, 50.0]
    assert list(lines["greedy"].get_ydata()) == [100.0, 100.0]  # axhline
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]
    assert ax.get_title() == "Best-of-N on fake (5 questions)" and ax.get_ylabel() == "accuracy (%)"
    assert len(ax.collections) == 2  # the 95% bands of stable_rank and random
    assert set(SELECTOR_STYLES) <= set(SELECTORS)  # styles are keyed by registered names only


def test_run_bon_names_its_settings_as_run_rewardbench_does(tmp_path):
    import dataclasses
    import inspect

    from srgrpo.rewardbench.runner import RewardBenchConfig, run_rewardbench

    # Inputs as parameters, the rest in one config whose fields carry their help.
    assert list(inspect.signature(run_bon).parameters) == ["generator", "problems", "output_dir", "config"]
    assert list(inspect.signature(run_rewardbench).parameters)[-2:] == ["output_dir", "config"]
    bon = {f.name: f for f in dataclasses.fields(BonConfig)}
    rewardbench = {f.name for f in dataclasses.fields(RewardBenchConfig)}
    assert {"seed", "overwrite", "progress", "run_info"} <= set(bon) & rewardbench
    assert "selectors" in bon and "scorers" in rewardbench and "selector_names" not in bon
    assert all(f.metadata.get("help") for f in dataclasses.fields(BonConfig))
    assert all(f.metadata.get("help") for f in dataclasses.fields(RewardBenchConfig))


def test_run_bon_runs_on_its_defaults(tmp_path):
    """Selectors and sampling have real defaults (those of srgrpo bon): leaving them out used to raise
    TypeError although the signature gave them a None default."""
    results = run_bon(FakeGenerator(), _problems(), tmp_path, BonConfig(ns=[1, 2], progress=False))
    assert list(results["selectors"]) == ["stable_rank", "random", "self_certainty", "mean_logprob", "majority",
                                          "borda_stable_rank", "borda_self_certainty"]
    assert results["run"]["sampling"] == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 512, "greedy": False}
