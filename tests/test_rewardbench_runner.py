"""End-to-end RewardBench runs on the tiny model: every scorer kind, resume, bad input, CLI."""

import json
import math

import pytest
from conftest import make_model, make_tokenizer, shared_data_dir

from srgrpo.cli import main
from srgrpo.engine import ForwardEngine
from srgrpo.rewardbench.preference_data import PreferencePair, load_preference_pairs
from srgrpo.rewardbench.v1 import chosen_wins
from srgrpo.rewardbench.runner import RewardBenchConfig, run_rewardbench
from srgrpo.options import ScoringOptions
from srgrpo.reports.rewardbench import write_rewardbench_report_from_dir
from srgrpo.scoring import StableRankScorer


def make_pairs():
    pairs = []
    topics = ["Paris", "Canberra", "fractions", "haiku", "python"]
    for i in range(10):
        topic = topics[i % len(topics)]
        subset = ["llmbar-natural", "hep-python", "mystery-subset"][i % 3]
        pairs.append(PreferencePair(
            id=str(i), prompt=f"Tell me about {topic}.", subset=subset,
            chosen=f"{topic} is interesting because " + "it has a long history. " * (1 + i % 4),
            rejected=f"{topic}? " + "I do not know. " * (1 + (i + 2) % 3),
        ))
    return pairs


@pytest.fixture(scope="module")
def judge_ready():
    """Tiny tokenizer with single-token Yes/No, so the judges can run."""
    tok = make_tokenizer()
    tok.add_tokens(["Yes", "No"])
    return make_model(len(tok), seed=1), tok


ALL = ["stable_rank", "stable_rank_centered", "stable_rank_normalized", "stable_rank_windowed",
       "stable_rank_prompt_adjusted", "effective_rank", "inverse_condition_number", "pca_dimension",
       "mean_logprob", "self_certainty", "mean_entropy", "length", "shorter", "random", "ipo", "pointwise_judge",
       "pairwise_judge"]


def test_the_list_holds_every_registered_scorer():
    from srgrpo.rewardbench.methods import METHODS

    assert sorted(ALL) == sorted(METHODS)  # "every scorer" below means every one


def test_every_scorer_runs_and_results_follow_the_protocol(tmp_path, judge_ready):
    model, tok = judge_ready
    pairs = make_pairs()
    results = run_rewardbench(model, tok, pairs, tmp_path, RewardBenchConfig(scorers=ALL, progress=False, n_bootstrap=50))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == results and list(results) == ALL
    rows = [json.loads(l) for l in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in pairs]
    for name, summary in results.items():
        correct = [chosen_wins(r["scores"][name]["chosen"] if r["scores"][name]["chosen"] is not None else math.nan,
                          r["scores"][name]["rejected"] if r["scores"][name]["rejected"] is not None else math.nan)
                   for r in rows]
        assert summary["accuracy"] == pytest.approx(sum(correct) / len(rows)), name
        assert set(summary["subsets"]) == {"llmbar-natural", "hep-python", "mystery-subset"}
        assert "other" in summary["sections"] and set(summary["absent_sections"]) == {"Chat", "Safety"}
    # Length scorers read the response token counts; the pairwise judge gives 1/0 or a 0/0 tie.
    for r in rows:
        assert r["scores"]["length"]["chosen"] == r["chosen_tokens"]
        assert r["scores"]["shorter"]["rejected"] == -r["rejected_tokens"]
        assert {r["scores"]["pairwise_judge"]["chosen"], r["scores"]["pairwise_judge"]["rejected"]} <= {0.0, 1.0}
        assert 0 <= r["scores"]["ipo"]["chosen"] <= 1 and 1 <= r["scores"]["pointwise_judge"]["chosen"] <= 5
    # Stable rank in the run equals the scorer's own value.
    scorer = StableRankScorer(model, tok)
    expected = scorer.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    assert [r["scores"]["stable_rank"]["chosen"] for r in rows] == pytest.approx(expected, rel=1e-5)
    assert not (tmp_path / "report.md").exists()  # the runner writes data; reports are the reports' job
    write_rewardbench_report_from_dir(tmp_path)
    for name in ("report.md", "sections.png", "score_distributions.png", "score_vs_length.png"):
        assert (tmp_path / name).is_file(), name


def test_killed_run_resumes_to_the_same_numbers(tmp_path, tiny_model, tokenizer, monkeypatch):
    pairs = make_pairs()
    kwargs = dict(scorers=["stable_rank", "mean_logprob", "random", "length"], layers=[0, 1, 2],
                  options=ScoringOptions(batch_size=4), progress=False, n_bootstrap=100)
    reference = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path / "whole", RewardBenchConfig(**kwargs))

    original = ForwardEngine.run
    calls = []

    def killed_on_third_batch(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(ForwardEngine, "run", killed_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run_rewardbench(tiny_model, tokenizer, pairs, tmp_path / "resumed", RewardBenchConfig(**kwargs))
    cached = (tmp_path / "resumed" / "cache.jsonl").read_text().splitlines()
    assert len(cached) == 8  # two batches of 4 items were saved before the kill
    monkeypatch.setattr(ForwardEngine, "run", original)

    calls.clear()
    monkeypatch.setattr(ForwardEngine, "run", lambda self, *a: (calls.append(1), original(self, *a))[1])
    resumed = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path / "resumed", RewardBenchConfig(**kwargs))
    assert len(calls) == 3  # only the 12 missing items (of 20) were computed
    assert resumed == reference
    assert json.loads((tmp_path / "resumed" / "layer_sweep.json").read_text()) == \
        json.loads((tmp_path / "whole" / "layer_sweep.json").read_text())


def test_a_different_run_in_the_same_folder_is_refused(tmp_path, tiny_model, tokenizer):
    pairs = make_pairs()
    run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(scorers=["length"], progress=False))
    with pytest.raises(ValueError, match="scorers differ"):
        run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(scorers=["random"], progress=False))
    results = run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(scorers=["random"], progress=False,
                                                                                      overwrite=True))
    assert list(results) == ["random"]


def test_layer_sweep_matches_per_layer_scoring(tmp_path, tiny_model, tokenizer):
    pairs = make_pairs()
    run_rewardbench(tiny_model, tokenizer, pairs, tmp_path, RewardBenchConfig(scorers=["stable_rank"], layers=[0, 1, 2],
                                                                        progress=False, n_bootstrap=10))
    sweep = json.loads((tmp_path / "layer_sweep.json").read_text())
    assert sorted(sweep) == ["0", "1", "2"]
    for layer in (0, 1, 2):
        s = StableRankScorer(tiny_model, tokenizer, layer=layer)
        chosen = s.score([p.prompt for p in pairs], [p.chosen for p in pairs])
        rejected = s.score([p.prompt for p in pairs], [p.rejected for p in pairs])
        assert sweep[str(layer)]["accuracy"] == pytest.approx(sum(map(chosen_wins, chosen, rejected)) / len(pairs))
    write_rewardbench_report_from_dir(tmp_path)
    assert (tmp_path / "layer_sweep.png").is_file()


def test_cli_rewardbench_with_bad_rows(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"id": 1, "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon, I think.", "subset": "llmbar-natural"},
        {"id": 1, "prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "Milan.", "subset": "llmbar-natural"},
        {"id": 2, "prompt": "2+2?", "chosen": "4", "rejected": "", "subset": "hep-go"},
        {"id": 3, "prompt": "Hi", "chosen": "Hello!", "subset": "hep-go"},
        {"id": 4, "prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "subset": "made-up"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    out = tmp_path / "run"
    code = main(["rewardbench", "--data", str(data), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--scorers", "stable_rank,length", "--bootstrap", "20", "--quiet"])
    assert code == 1  # two rows skipped as bad input, the rest written
    err = capsys.readouterr().err
    assert "missing field" in err and "duplicate" in err.lower() and "empty" in err
    results = json.loads((out / "results.json").read_text())
    sr = results["stable_rank"]
    assert sr["subsets"]["made-up"]["n"] == 1 and "other" in sr["sections"]
    assert sr["n_pairs"] == 4 and sr["n_unscored"] == 1  # the empty rejected response
    assert set(results) == {"stable_rank", "length"}
    # A second identical command resumes: nothing new is computed and the numbers stay.
    assert main(["rewardbench", "--data", str(data), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--scorers", "stable_rank,length", "--bootstrap", "20", "--quiet"]) == 1
    assert json.loads((out / "results.json").read_text()) == results
    assert main(["rewardbench", "--data", str(data), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--scorers", "nonsense"]) == 2
    assert "unknown scorer" in capsys.readouterr().err


def test_loading_the_real_offline_file_if_present():
    path = shared_data_dir() / "preference" / "rewardbench_offline.jsonl"
    if not path.is_file():
        pytest.skip("shared data not present")
    loaded = load_preference_pairs(path, limit_per_subset=2)
    assert len(loaded.pairs) == 22 and not loaded.problems
