import json
import re

import pytest
import references
from conftest import fail_on_batch, help_text

from srgrpo import load_model
from srgrpo.cli import main
from srgrpo.scoring import StableRankScorer

GOOD = [
    {"id": "a", "prompt": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"prompt": [{"role": "user", "content": "Add 1/3 and 1/4."}], "response": "1/3 + 1/4 = 7/12."},
    {"id": 7, "prompt": "Say hi.", "response": "Hello there, nice to meet you!"},
]


def write_lines(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def read_jsonl(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_score_end_to_end_matches_the_python_api(tmp_path, tiny_model_dir):
    src = write_lines(tmp_path / "pairs.jsonl", GOOD)
    out = tmp_path / "out" / "scores.jsonl"
    assert main(["score", "--input", str(src), "--output", str(out), "--model", str(tiny_model_dir), "--batch-size", "2"]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", 2, 7]  # the id, or the line number
    model, tok = load_model(tiny_model_dir)
    expected = StableRankScorer(model, tok).score([g["prompt"] for g in GOOD], [g["response"] for g in GOOD])
    for row, value in zip(rows, expected):
        assert row["stable_rank"] == pytest.approx(value, rel=1e-5)
        assert row["n_tokens"] > 0 and row["truncated"] is False


def test_score_options_reach_the_scorer(tmp_path, tiny_model_dir):
    src = write_lines(tmp_path / "pairs.jsonl", GOOD[:1])
    out = tmp_path / "scores.jsonl"
    args = ["score", "--input", str(src), "--output", str(out), "--model", str(tiny_model_dir), "--quiet"]
    model, tok = load_model(tiny_model_dir)
    # A window that keeps the prompt and the first two response tokens.
    window = StableRankScorer(model, tok).encode([GOOD[0]["prompt"]], [GOOD[0]["response"]])[0].response_start + 2
    assert main(args + ["--span", "full", "--layer", "1", "--max-length", str(window)]) == 0
    row = read_jsonl(out)[0]
    expected = StableRankScorer(model, tok, span="full", layer=1, max_length=window).score([GOOD[0]["prompt"]], [GOOD[0]["response"]])
    assert row["stable_rank"] == pytest.approx(expected[0], rel=1e-5)
    assert row["truncated"] is True and row["n_tokens"] == window


def test_bad_lines_are_reported_and_the_rest_still_scored(tmp_path, tiny_model_dir, tiny_model, tokenizer, capsys):
    lines = [
        GOOD[0],
        "{not json",
        "",  # blank lines are skipped but keep their numbers
        {"id": "no-response", "prompt": "hi"},
        {"id": "number", "prompt": "hi", "response": 42},
        ["a", "list"],
        {"id": "empty", "prompt": "hi", "response": "   "},
        {"id": "special", "prompt": "hi", "response": "<|im_end|>"},
        GOOD[2],
    ]
    src = write_lines(tmp_path / "pairs.jsonl", lines)
    out = tmp_path / "scores.jsonl"
    code = main(["score", "--input", str(src), "--output", str(out), "--model", str(tiny_model_dir), "--quiet"])
    assert code == 1
    rows = {r["line"]: r for r in read_jsonl(out)}
    assert sorted(rows) == [1, 2, 4, 5, 6, 7, 8, 9]
    for line, pair in ((1, GOOD[0]), (9, GOOD[2])):  # tiny_model_dir holds tiny_model and tokenizer
        expected = references.pair_stable_rank(tiny_model, tokenizer, pair["prompt"], pair["response"])
        assert rows[line]["stable_rank"] == pytest.approx(expected, rel=1e-5)
    assert "malformed JSON" in rows[2]["error"] and rows[2]["id"] == 2
    assert "missing field(s) response" in rows[4]["error"]
    assert "response must be a string" in rows[5]["error"] and rows[5]["id"] == "number"
    assert "expected a JSON object" in rows[6]["error"]
    assert rows[7]["stable_rank"] is None and "empty" in rows[7]["warning"]
    assert rows[8]["stable_rank"] is None and "special tokens" in rows[8]["warning"]
    err = capsys.readouterr().err
    assert f"{src}:2: malformed JSON" in err and "4 row(s) rejected" in err and "scored 2 of 8 rows" in err


def test_a_crash_keeps_the_scores_already_written(tmp_path, tiny_model_dir, tiny_model, tokenizer, monkeypatch):
    pairs = [{"id": i, "prompt": "Q?", "response": "Answer " * (i + 1)} for i in range(6)]
    src = write_lines(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "scores.jsonl"
    fail_on_batch(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated"):
        main(["score", "--input", str(src), "--output", str(out), "--model", str(tiny_model_dir), "--batch-size", "2", "--quiet"])
    rows = read_jsonl(out)
    assert len(rows) == 2
    for row in rows:
        expected = references.pair_stable_rank(tiny_model, tokenizer, "Q?", pairs[row["id"]]["response"])
        assert row["stable_rank"] == pytest.approx(expected, rel=1e-5)


def test_user_errors_exit_2_with_a_message(tmp_path, tiny_model_dir, capsys):
    src = write_lines(tmp_path / "pairs.jsonl", GOOD)
    out = str(tmp_path / "o.jsonl")
    assert main(["score", "--input", str(tmp_path / "nope.jsonl"), "--output", out]) == 2
    assert f"srgrpo score: error: --input: no such file: {tmp_path / 'nope.jsonl'}" in capsys.readouterr().err
    assert main(["score", "--input", str(src), "--output", out, "--model", str(tiny_model_dir), "--layer", "x"]) == 2
    assert "srgrpo score: error: --layer must be" in capsys.readouterr().err
    assert main(["score", "--input", str(src), "--output", out, "--model", str(tmp_path / "missing")]) == 2
    assert f"--model: no such file or folder: {tmp_path / 'missing'}" in capsys.readouterr().err


def test_help_reads_well(capsys):
    top = help_text(capsys, ["--help"])
    assert "score" in top
    assert re.search(r"exit status.*\n  0  all went well\n  1  some rows failed.*\n  2  a usage or input error", top)
    text = help_text(capsys, ["score", "--help"])
    for flag in ("--input", "--output", "--model", "--span", "--layer", "--max-length", "--batch-size", "--truncation-side"):
        assert flag in text
    assert re.search(r"\(default:\s+512\)", text)


def test_train_help_shows_srgrpos_settings_first_and_points_to_the_rest(capsys):
    short = help_text(capsys, ["train", "--help"])
    assert short.startswith("usage: srgrpo train --dataset DATASET --output-dir OUTPUT_DIR")
    for flag in ("--dataset", "--eval-dataset", "--resume", "--rewards", "--reward-span", "--output-dir",
                 "--max-steps", "--num-generations", "--learning-rate", "--beta", "--lora-r", "--help-trl"):
        assert re.search(rf"^  (.*, )?{flag}\b", short, re.M), flag
    assert short.index("\n  --eval-dataset") < short.index("\n  --reward-span") < short.index("\n  --num-generations")
    assert not re.search(r"^  --use-vllm", short, re.M)  # the rest is in --help-trl
    assert not re.search(r"^  (.*, )?--\w+_", short, re.M)  # every flag listed with dashes
    full = help_text(capsys, ["train", "--help-trl"])
    assert "--use_vllm" in full and "--adam_beta1" in full
    assert len(short.splitlines()) < len(full.splitlines()) / 4


def test_train_ends_with_a_short_table_of_where_things_are(tmp_path):
    from srgrpo.cli.train import report

    summary = {"global_step": 3, "train_seconds": 12.34, "watch_warnings": ["possible reward hacking: ..."],
               "first_step": {"step": 1, "reward_mean": 1.5, "kl": 0.0, "completion_length": 40.0},
               "last_step": {"step": 3, "reward_mean": 1.75, "kl": 0.002, "completion_length": 31.0},
               "eval": {"before": {"accuracy": 0.25, "n": 16, "dataset": "sample"},
                        "after": {"accuracy": 0.3125, "n": 16, "dataset": "sample"}}}
    text = report(summary, tmp_path / "run", tmp_path / "run" / "training_curves.png")
    assert "trained 3 step(s) in 12.3 s" in text
    assert re.search(r"reward +1\.5000 -> 1\.7500 +\(step 1 -> 3\)", text)
    assert re.search(r"KL +0\.0000 -> 0\.0020", text) and re.search(r"length +40\.0 -> 31\.0", text)
    assert re.search(r"accuracy +0\.250 -> 0\.312 +\(greedy, 16 questions of sample\)", text)
    assert "warning   possible reward hacking" in text
    for label, path in (("adapter", "final"), ("metrics", "metrics.jsonl"), ("plot", "training_curves.png"),
                        ("summary", "summary.json")):
        assert re.search(rf"^  {label} +{re.escape(str(tmp_path / 'run' / path))}", text, re.M), label
    assert "{" not in text  # no raw dicts
