"""One error convention for every command: exit 0 when all went well, 1 when some rows failed but the
rest were written, 2 for a usage or input error, with a message that names the user's flag and file
(never an internal name or a traceback). The table below is the one the documentation gives."""

import json

import pytest

from srgrpo.cli import main

PAIRS = [
    {"prompt": "Capital of France?", "chosen": "Paris is the capital of France.", "rejected": "Lyon, I think.",
     "subset": "llmbar-natural"},
    {"prompt": "Add 1/3 and 1/4.", "chosen": "1/3 + 1/4 = 7/12.", "rejected": "2/7.", "subset": "hep-go"},
]
QUESTIONS = [{"question": "What is 3 + 4?", "answer": "7"}, {"question": "What is 2 + 2?", "answer": "4"}]


@pytest.fixture
def files(tmp_path):
    def write(name, rows, tail=""):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
        return path

    return {
        "pairs": write("pairs.jsonl", [{"prompt": p["prompt"], "response": p["chosen"]} for p in PAIRS]),
        "pairs_bad_row": write("pairs_bad.jsonl", [{"prompt": PAIRS[0]["prompt"], "response": "Paris."}], "{broken\n"),
        "preference": write("preference.jsonl", PAIRS),
        "preference_bad_row": write("preference_bad.jsonl", PAIRS, '{"prompt": "Hi", "chosen": "Hello!"}\n'),
        "preference_all_bad": write("preference_all_bad.jsonl", [{"prompt": "Hi"}]),
        "questions": write("questions.jsonl", QUESTIONS),
        "prompts": write("prompts.jsonl", [{"question": q["question"], "answer": "#### 7"} for q in QUESTIONS * 2]),
        "missing": tmp_path / "missing.jsonl",
        "out": tmp_path / "out",
        "tmp": tmp_path,
    }


TINY_TRAIN = ["--num-generations", "2", "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "1",
              "--max-completion-length", "4", "--max-steps", "1", "--lora-r", "2", "--lora-target-modules", "q_proj",
              "--reward-batch-size", "4", "--save-steps", "1", "--warmup-steps", "0"]

# (command line, exit status, what the message must say); {name} is a file of the fixture, {model} the tiny model.
TABLE = [
    # score
    ("score --input {pairs} --output {out}/s.jsonl", 0, "scored 2 of 2 rows"),
    ("score --input {pairs_bad_row} --output {out}/s.jsonl", 1, "{pairs_bad_row}:2: malformed JSON"),
    ("score --input {missing} --output {out}/s.jsonl", 2, "--input: no such file: {missing}"),
    ("score --input {pairs} --output {out}/s.jsonl --batch-size 0", 2, "--batch-size must be a positive integer"),
    ("score --input {pairs} --output {out}/s.jsonl --model {missing}", 2, "--model: no such file or folder: {missing}"),
    # rewardbench
    ("rewardbench --data {preference} --output-dir {out}/rb --bootstrap 5", 0, "wrote results.json"),
    ("rewardbench --data {preference_bad_row} --output-dir {out}/rb1 --bootstrap 5", 1,
     "1 row(s) of {preference_bad_row} skipped as bad input"),
    ("rewardbench --data {preference} --output-dir {out}/rb --limit 0", 2, "--limit must be at least 1, got 0"),
    ("rewardbench --data {preference} --output-dir {out}/rb --limit -1", 2, "--limit must be at least 1, got -1"),
    ("rewardbench --data {missing} --output-dir {out}/rb", 2, "--data: preference data not found: {missing}"),
    ("rewardbench --data nobody/no-such-dataset --output-dir {out}/rb", 2, "--data: 'nobody/no-such-dataset' is not"),
    ("rewardbench --data {preference_all_bad} --output-dir {out}/rb --protocol v1", 2,
     "--data {preference_all_bad}: no usable preference pairs (1 row(s) skipped as bad input"),
    # bon
    ("bon --dataset {questions} --n 1,2 --max-new-tokens 4 --output-dir {out}/bon", 0, "wrote results.json"),
    ("bon --dataset {questions} --limit 0 --output-dir {out}/bon", 2, "--limit must be at least 1, got 0"),
    ("bon --dataset {missing} --output-dir {out}/bon", 2, "--dataset: no such file: {missing}"),
    ("bon --dataset {questions} --max-new-tokens 0 --output-dir {out}/bon", 2, "--max-new-tokens must be at least 1"),
    # train
    ("train --dataset {prompts} --output-dir {out}/grpo " + " ".join(TINY_TRAIN), 0, "trained 1 step(s)"),
    ("train --dataset {missing} --output-dir {out}/grpo", 2, "--dataset: no such file: {missing}"),
    ("train --dataset {prompts} --output-dir {out}/grpo --learning-rat 1", 2, "unknown flag(s) --learning-rat"),
    ("train --dataset {prompts} --output-dir {out}/grpo --model {missing} " + " ".join(TINY_TRAIN), 2,
     "--model: no such file or folder: {missing}"),
    # evaluate
    ("evaluate --tasks {questions} --max-new-tokens 4 --output-dir {out}/eval", 0, "wrote answers.jsonl"),
    ("evaluate --tasks {questions} --limit 0 --output-dir {out}/eval", 2, "--limit must be at least 1, got 0"),
    ("evaluate --tasks nonsense --output-dir {out}/eval", 2, "unknown task 'nonsense'"),
    ("evaluate --tasks {questions} --samples 0 --output-dir {out}/eval", 2, "--samples must be at least 1, got 0"),
    ("evaluate --tasks {questions} --adapter {tmp} --output-dir {out}/eval", 2, "--adapter {tmp}: no adapter_config.json"),
]


@pytest.mark.parametrize("command, status, message", TABLE, ids=[f"{c.split()[0]}-{s}-{i}" for i, (c, s, _) in enumerate(TABLE)])
def test_exit_status_and_message(command, status, message, files, tiny_model_dir, capsys):
    names = {k: str(v) for k, v in files.items()}
    argv = command.format(**names).split()
    if "--model" not in argv:
        argv += ["--model", str(tiny_model_dir)]
    assert main(argv + (["--quiet"] if argv[0] in ("score", "rewardbench", "bon", "evaluate") else [])) == status
    out, err = capsys.readouterr()
    assert message.format(**names) in (err if status else out + err)
    assert "Traceback" not in err
    if status == 2:
        assert f"srgrpo {argv[0]}: error: " in err
        assert "limit_per_subset" not in err and "Errno" not in err  # internal names stay inside
