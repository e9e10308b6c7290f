"""`srgrpo score --features`: one column per feature, a summary line per feature, the default unchanged."""

import json
import re

import pytest

from srgrpo import load_model
from srgrpo.cli import main
from srgrpo.features import FEATURES
from srgrpo.scoring import StableRankScorer

PAIRS = [
    {"id": "a", "prompt": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"id": "b", "prompt": "Say hi.", "response": "Hello there, nice to meet you!"},
    {"id": "c", "prompt": "Say hi.", "response": "   "},  # unscorable: every column null, one warning
]


def run(tmp_path, model_dir, *extra):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "scores.jsonl"
    code = main(["score", "--input", str(src), "--output", str(out), "--model", str(model_dir), "--quiet", *extra])
    return code, [json.loads(line) for line in out.read_text().splitlines()]


def test_two_features_write_two_columns_equal_to_the_python_api(tmp_path, tiny_model_dir, capsys):
    code, rows = run(tmp_path, tiny_model_dir, "--features", "stable_rank,mean_logprob")
    assert code == 0
    model, tok = load_model(tiny_model_dir)
    expected = {item.index: item.values for item in StableRankScorer(model, tok).iter_features(
        [p["prompt"] for p in PAIRS[:2]], [p["response"] for p in PAIRS[:2]], ("stable_rank", "mean_logprob"))}
    for k, row in enumerate(rows[:2]):
        assert row["stable_rank"] == pytest.approx(expected[k]["stable_rank"], rel=1e-5)
        assert row["mean_logprob"] == pytest.approx(expected[k]["mean_logprob"], rel=1e-5)
        assert row["mean_logprob"] < 0 < row["stable_rank"]
    assert rows[2]["stable_rank"] is None and rows[2]["mean_logprob"] is None and "warning" in rows[2]
    err = capsys.readouterr().err
    assert re.search(r"stable rank: +mean", err) and "mean_logprob: mean" in err


def test_default_output_is_unchanged_and_all_means_every_feature(tmp_path, tiny_model_dir, capsys):
    _, rows = run(tmp_path, tiny_model_dir, "--min-span-tokens", "0")
    assert set(rows[0]) == {"id", "line", "stable_rank", "n_tokens", "truncated"}
    _, rows = run(tmp_path, tiny_model_dir)  # the short-span rule's column only where it took context
    assert set(rows[0]) == {"id", "line", "stable_rank", "n_tokens", "truncated", "context_tokens"}
    _, rows = run(tmp_path, tiny_model_dir, "--features", "all")
    assert set(FEATURES) <= set(rows[0])
    assert main(["score", "--input", str(tmp_path / "pairs.jsonl"), "--output", str(tmp_path / "x.jsonl"),
                 "--model", str(tiny_model_dir), "--features", "stable_rank,nonsense"]) == 2
    assert "unknown feature 'nonsense'" in capsys.readouterr().err


def test_short_span_rule_is_reported_per_row(tmp_path, tiny_model_dir):
    _, rows = run(tmp_path, tiny_model_dir, "--min-span-tokens", "64")
    model, tok = load_model(tiny_model_dir)
    encoded = StableRankScorer(model, tok).encode([PAIRS[0]["prompt"]], [PAIRS[0]["response"]])[0]
    response = encoded.response_end - encoded.response_start
    # 64 tokens end with the response, unless that reaches the sequence's first token (never included)
    assert rows[0]["context_tokens"] == min(64 - response, encoded.response_start - 1)
    assert rows[0]["n_tokens"] == response + rows[0]["context_tokens"]
