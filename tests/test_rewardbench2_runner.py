"""RewardBench 2 end to end on the tiny model: schema detection, hand-computed subset scores through
the CLI, chance for the random scorer on a large synthetic file, resume, and v1 still scored as v1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srgrpo.cli import main
from srgrpo.rewardbench.preference_data import detect_protocol, load_completion_sets
from srgrpo.rewardbench.methods import random_score
from srgrpo.options import ScoringOptions
from srgrpo.scoring import StableRankScorer

PROMPT = "Name a thing."
ONE = ["the", "is", "def", "12"]  # one token each in the test tokenizer (checked below)
LONG = "The capital of France is Paris"  # several distinct tokens: SR > 1


def rb2_rows() -> list[dict]:
    """A synthetic RewardBench 2 file whose stable_rank and length scores are known by hand, with the
    short-span rule off (--min-span-tokens 0): a 1-token response has SR exactly 1 (and length 1), LONG has SR > 1 (and
    more tokens), and two equal texts under one prompt have equal scores."""
    row = lambda i, subset, chosen, rejected: {  # noqa: E731
        "id": i, "prompt": PROMPT, "chosen": chosen, "rejected": rejected, "num_correct": len(chosen),
        "num_incorrect": len(rejected), "total_completions": len(chosen) + len(rejected), "models": [],
        "subset": subset, "additional_metadata": {}}
    return [
        row("f1", "Factuality", [ONE[0]], ONE[1:]),  # four 1-token answers tie at SR 1: credit 1/4
        row("f2", "Factuality", [LONG], ONE[1:]),  # chosen alone at the top: 1
        row("m1", "Math", [ONE[0]], [LONG, ONE[1], ONE[2]]),  # chosen below LONG: 0
        row("ref:1", "Ties", [LONG], [ONE[0]]),  # margin SR(LONG) - 1 > 0: accurate
        row("tied:1", "Ties", [LONG, LONG], [ONE[1]]),  # spread 0, margin > 0: accurate, tanh(+inf) = 1
        row("ref:2", "Ties", [ONE[0]], [LONG]),  # margin < 0
        row("tied:2", "Ties", [ONE[0], ONE[0]], [LONG]),  # spread 0, margin < 0: tanh(-inf) = -1
    ]


# By hand (the comments above): Factuality (1/4 + 1) / 2; Math 0; Ties: ref and tied accuracy 1/2,
# both margin tests 1/2, tanh term (1 - 1) / 2 = 0 -> 0.3/2 + 0.3/2 + 0.2/2 + 0.2/2 = 0.5.
EXPECTED = {"Factuality": 0.625, "Math": 0.0, "Ties": 0.5}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_hand_computed_premises_hold(tokenizer, tiny_model):
    scorer = StableRankScorer(tiny_model, tokenizer, ScoringOptions(max_length=2048, min_span_tokens=0))
    encoded = scorer.encode([PROMPT] * 5, [*ONE, LONG])
    assert [e.response_end - e.response_start for e in encoded[:4]] == [1, 1, 1, 1]
    values = scorer.score([PROMPT] * 5, [*ONE, LONG])
    assert values[:4] == [1.0, 1.0, 1.0, 1.0]  # exactly 1, not approximately
    assert values[4] > 1.0 + 1e-3


def test_schema_detection_and_loading(tmp_path):
    v2 = write_jsonl(tmp_path / "rb2.jsonl", rb2_rows())
    v1 = write_jsonl(tmp_path / "rb1.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b", "subset": "hep-go"}])
    assert detect_protocol(v2, "test") == "v2" and detect_protocol(v1, "filtered") == "v1"
    loaded = load_completion_sets(v2)
    assert not loaded.problems and [s.id for s in loaded.sets] == [r["id"] for r in rb2_rows()]
    assert loaded.sets[4].completions == [LONG, LONG, ONE[1]] and loaded.sets[4].num_correct == 2
    bad = write_jsonl(tmp_path / "bad.jsonl", [
        {"id": 1, "prompt": "p", "chosen": "a string", "rejected": ["b"]},
        {"id": 2, "prompt": "p", "chosen": ["a"], "rejected": []},
        {"id": 3, "prompt": "p", "chosen": ["a"], "rejected": ["b"], "num_correct": 2},
        {"id": 4, "prompt": "p", "chosen": ["a"], "rejected": ["b", "c"], "subset": "Math"}])
    loaded = load_completion_sets(bad)
    assert [s.id for s in loaded.sets] == ["4"]
    problems = "\n".join(loaded.problems)
    assert "list of strings" in problems and "empty list" in problems and "num_correct" in problems


def run_cli(data, out, model_dir, *extra):
    return main(["rewardbench", "--data", str(data), "--output-dir", str(out), "--model", str(model_dir),
                 "--bootstrap", "50", "--quiet", *extra])


def test_cli_scores_a_synthetic_rb2_file_by_the_rb2_rules(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "rb2.jsonl", rb2_rows())
    out = tmp_path / "run"
    assert run_cli(data, out, tiny_model_dir, "--scorers", "stable_rank,length,random", "--min-span-tokens", "0") == 0
    results = json.loads((out / "results.json").read_text())
    for name in ("stable_rank", "length"):
        assert results[name]["protocol"] == "v2"
        assert results[name]["sections"] == pytest.approx(EXPECTED), name
        assert results[name]["score"] == pytest.approx(np.mean(list(EXPECTED.values())))
        assert results[name]["ties"]["margin_score"] == 0.0
    # random: each completion's seeded number, best-of-n by hand (argmax, no ties among uniforms)
    rows = rb2_rows()
    credit = lambda r: float(np.argmax([random_score(0, r["id"], str(k)) for k in range(len(r["chosen"] + r["rejected"]))]) == 0)  # noqa: E731
    assert results["random"]["sections"]["Factuality"] == pytest.approx((credit(rows[0]) + credit(rows[1])) / 2)
    run = json.loads((out / "run.json").read_text())
    assert run["protocol"] == "v2" and run["scoring"]["max_length"] == 2048  # RB2's window by default
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert prompts[0]["scores"]["stable_rank"] == [1.0, 1.0, 1.0, 1.0] and prompts[0]["credit"]["stable_rank"] == 0.25
    assert prompts[3]["credit"] is None  # Ties rows are scored as a subset
    report = (out / "report.md").read_text()
    assert "Ties components" in report and "Precise IF" in report
    # resuming computes nothing new and gives the same numbers; --protocol v1 on this file is refused
    assert run_cli(data, out, tiny_model_dir, "--scorers", "stable_rank,length,random", "--min-span-tokens", "0") == 0
    assert json.loads((out / "results.json").read_text()) == results
    assert run_cli(data, tmp_path / "v1", tiny_model_dir, "--scorers", "length", "--protocol", "v1") == 2


def test_cli_short_span_rule_changes_the_one_token_ties(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "rb2.jsonl", rb2_rows()[:1])
    out = tmp_path / "run"
    assert run_cli(data, out, tiny_model_dir, "--scorers", "stable_rank", "--min-span-tokens", "4") == 0
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert prompts[0]["context_tokens"] == [3, 3, 3, 3]  # each 1-token answer scored with 3 tokens before it
    assert all(v > 1.0 for v in prompts[0]["scores"]["stable_rank"])
    assert len(set(prompts[0]["scores"]["stable_rank"])) == 4  # no longer tied at exactly 1
    # the default rule (16 tokens) reaches back to the prompt: the span is the 16 tokens ending with the answer
    assert run_cli(data, tmp_path / "default", tiny_model_dir, "--scorers", "stable_rank") == 0
    default = json.loads((tmp_path / "default" / "prompts.jsonl").read_text().splitlines()[0])
    assert default["context_tokens"] == [15, 15, 15, 15]


def test_random_lands_near_chance_on_a_large_synthetic_file(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(0)
    subsets = ["Factuality", "Precise IF", "Math", "Safety", "Focus"]
    rows = [{"id": str(i), "prompt": f"Question {i}?", "subset": subsets[i % 5],
             "chosen": [f"answer {rng.integers(100)}"], "rejected": [f"answer {rng.integers(100)}" for _ in range(3)]}
            for i in range(2500)]
    data = write_jsonl(tmp_path / "large.jsonl", rows)
    out = tmp_path / "run"
    assert run_cli(data, out, tiny_model_dir, "--scorers", "random") == 0  # no forward pass: token counts only
    results = json.loads((out / "results.json").read_text())["random"]
    for subset in subsets:
        assert results["sections"][subset] == pytest.approx(0.25, abs=0.05), subset  # 500 prompts each: sd 0.019
    assert results["accuracy"] == pytest.approx(0.25, abs=0.025)  # 2500 prompts: sd 0.009
    assert results["absent_sections"] == ["Ties"]


def test_a_v1_file_is_still_scored_by_the_v1_rules(tmp_path, tiny_model_dir):
    rows = [{"id": i, "prompt": PROMPT, "chosen": LONG, "rejected": ONE[i % 4], "subset": "hep-go"} for i in range(3)]
    rows.append({"id": 9, "prompt": PROMPT, "chosen": ONE[0], "rejected": ONE[1], "subset": "hep-go"})  # a tie: wrong
    data = write_jsonl(tmp_path / "rb1.jsonl", rows)
    out = tmp_path / "run"
    assert run_cli(data, out, tiny_model_dir, "--scorers", "stable_rank", "--min-span-tokens", "0") == 0
    result = json.loads((out / "results.json").read_text())["stable_rank"]
    assert "protocol" not in result and result["accuracy"] == 0.75  # 3 of 4 pairs; ties count wrong, no 1/2 credit
    assert set(result["sections"]) == {"Reasoning"}
    assert json.loads((out / "run.json").read_text())["scoring"]["max_length"] == 512


def test_every_scorer_kind_runs_under_v2_and_the_judges_match_a_direct_call(tmp_path):
    from conftest import make_model, make_tokenizer

    from srgrpo import judges
    from srgrpo.rewardbench.preference_data import CompletionSet
    from srgrpo.rewardbench.runner import RewardBenchConfig, run_rewardbench2

    tok = make_tokenizer()
    tok.add_tokens(["Yes", "No"])
    model = make_model(len(tok), seed=1)
    sets = [CompletionSet("p1", "Name a city.", ["Paris is a city."], ["the", "Blue river.", "12"], "Math", 1),
            CompletionSet("ref:1", PROMPT, [LONG], ["is"], "Ties", 1),
            CompletionSet("tied:1", PROMPT, [LONG, "def"], ["is"], "Ties", 2)]
    scorers = ["stable_rank", "mean_logprob", "length", "random", "ipo", "pointwise_judge", "pairwise_judge"]
    results = run_rewardbench2(model, tok, sets, tmp_path / "run", RewardBenchConfig(scorers=scorers, n_bootstrap=20,
                                                                                          progress=False))
    assert set(results) == set(scorers) and all(r["protocol"] == "v2" for r in results.values())
    prompts = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "run" / "prompts.jsonl").read_text().splitlines()}
    # IPO: each completion alone, with the question of the v1 section Math maps to (Reasoning)
    direct = judges.ipo_scores(model, tok, ["Name a city."] * 4, sets[0].completions, ["Reasoning"] * 4, batch_size=8)
    assert prompts["p1"]["scores"]["ipo"] == pytest.approx(direct, rel=1e-5)
    # pairwise: a round robin; a completion scores its wins (both orders agreeing)
    verdicts = judges.pairwise_verdicts(model, tok, ["Name a city."] * 6, [sets[0].completions[i] for i, _ in PAIRS4],
                                        [sets[0].completions[j] for _, j in PAIRS4], batch_size=8)
    wins = [0.0] * 4
    for (i, j), v in zip(PAIRS4, verdicts):
        wins[i] += v == 1
        wins[j] += v == -1
    assert prompts["p1"]["scores"]["pairwise_judge"] == wins


PAIRS4 = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
