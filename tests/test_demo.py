"""`srgrpo demo` explains itself: each pair as chosen vs rejected, the pick marked right or wrong, the
tally, what a higher score means, and what to run next; and the quickstart data shipped with srgrpo."""

import json
import re
from importlib import resources

from srgrpo import load_model
from srgrpo.cli import main
from srgrpo.scoring import StableRankScorer


def example_rows(name):
    text = resources.files("srgrpo").joinpath("examples", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_demo_shows_each_pick_and_the_tally(tiny_model_dir, capsys):
    assert main(["demo", "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    rows = example_rows("pairs.jsonl")
    chosen, rejected = rows[0::2], rows[1::2]
    model, tokenizer = load_model(tiny_model_dir)
    scorer = StableRankScorer(model, tokenizer)
    sr_chosen = scorer.score([r["prompt"] for r in chosen], [r["response"] for r in chosen])
    sr_rejected = scorer.score([r["prompt"] for r in rejected], [r["response"] for r in rejected])
    right = [c > r for c, r in zip(sr_chosen, sr_rejected)]
    assert f"stable rank preferred the better answer in {sum(right)} of 3 pairs" in out
    assert out.count("prefers the chosen answer: right") == sum(right)
    assert out.count("prefers the rejected answer: wrong") == 3 - sum(right)
    for c, r, value_c, value_r in zip(chosen, rejected, sr_chosen, sr_rejected):
        assert f"[{c['id']} vs {r['id']}]" in out
        assert re.search(rf"chosen   SR +{value_c:.3f}  {re.escape(c['response'][:20])}", out)
        assert re.search(rf"rejected SR +{value_r:.3f}  {re.escape(r['response'][:20])}", out)
    assert "A higher stable rank means" in out
    assert "srgrpo rewardbench --data sample" in out and "srgrpo score --input sample" in out
    assert max(len(line) for line in out.splitlines()) < 130  # excerpts, not whole answers


def test_the_example_pairs_come_two_by_two_better_first():
    rows = example_rows("pairs.jsonl")
    assert len(rows) == 6
    assert all(a["prompt"] == b["prompt"] and a["id"].endswith("-good") and not b["id"].endswith("-good")
               for a, b in zip(rows[0::2], rows[1::2]))


def test_the_samples_are_reachable_by_a_short_name(tmp_path, monkeypatch):
    from srgrpo.evaluation.datasets import load_problems
    from srgrpo.rewardbench.preference_data import load_preference_pairs
    from srgrpo.training.trainer import load_prompt_dataset

    monkeypatch.chdir(tmp_path)  # no file called "sample" here: the name is the shipped data
    pairs = load_preference_pairs("sample")
    assert len(pairs.pairs) == 24 and not pairs.problems
    subsets = {p.subset for p in pairs.pairs}
    assert len({s for s in subsets if s.startswith("llmbar")}) == 5 and len({s for s in subsets if s.startswith("hep-")}) == 6
    problems = load_problems("sample")
    raw = example_rows("gsm8k_sample.jsonl")
    assert len(problems) == 16 and problems[0].gold == raw[0]["answer"].rsplit("####", 1)[1].strip()
    assert all(p.kind == "gsm8k" for p in problems)
    prompts = load_prompt_dataset("sample", with_answers=True)
    assert len(prompts) == 16 and prompts[0]["prompt"] == [{"role": "user", "content": raw[0]["question"]}]


def test_the_examples_readme_names_every_file_and_its_licence():
    readme = resources.files("srgrpo").joinpath("examples", "README.md").read_text(encoding="utf-8")
    files = [p.name for p in resources.files("srgrpo").joinpath("examples").iterdir() if p.name.endswith(".jsonl")]
    assert sorted(files) == ["gsm8k_sample.jsonl", "pairs.jsonl", "rewardbench_sample.jsonl"]
    assert all(f"`{name}`" in readme for name in files)
    assert "900616bff90b6c6c8e1681f7d079250637c55992" in readme and "e17a8f6470264286bc6a52eb8263582083bf3bf6" in readme
    assert "3101c7d5072418e28b9008a6636bde82a006892c" in readme and readme.count("MIT") >= 3
    sources = {row["source"].split("@")[0] for row in example_rows("rewardbench_sample.jsonl")}
    assert sources == {"princeton-nlp/LLMBar", "bigcode-project/octopack"}


def test_evaluation_data_lives_in_a_users_folder_not_beside_the_checkout(monkeypatch, tmp_path):
    from srgrpo.evaluation.datasets import DatasetError, default_data_dir, load_problems

    monkeypatch.delenv("SRGRPO_SHARED_DATA", raising=False)
    monkeypatch.delenv("SRGRPO_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "srgrpo" / "data"
    monkeypatch.setenv("SRGRPO_DATA_DIR", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    monkeypatch.setenv("SRGRPO_SHARED_DATA", str(tmp_path / "ci"))  # tests, CI and benchmarks set it
    assert default_data_dir() == tmp_path / "ci"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    try:
        load_problems("amc23")
    except DatasetError as err:
        message = str(err)
    else:
        raise AssertionError("amc23 loaded with no file and no hub")
    assert str(tmp_path / "ci" / "eval" / "amc23_test.jsonl") in message
    assert "--data-dir" in message and "SRGRPO_DATA_DIR" in message and "~/.cache/srgrpo/data" in message
