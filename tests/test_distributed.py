"""Many processes, one command: `torchrun --nproc_per_node 2` (CPU, gloo) splits `srgrpo score` and
`srgrpo rewardbench` across two processes and writes what one process writes."""

import json
import os
import subprocess
import sys

import pytest

from srgrpo.cli import main

PAIRS = [{"id": f"p{i}", "prompt": f"Question {i}: tell me about Paris.",
          "response": "Paris is the capital of France. " * (1 + i % 5)} for i in range(13)]
PAIRS.append({"id": "empty", "prompt": "Q?", "response": "   "})


def torchrun(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "srgrpo.cli", *args]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_rows(a, b, number_keys):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in number_keys} == {k: v for k, v in y.items() if k not in number_keys}
        for key in number_keys:
            if x.get(key) is None:
                assert y.get(key) is None
            else:
                assert y[key] == pytest.approx(x[key], rel=1e-5)


def test_score_split_across_two_processes_writes_the_single_process_output(tmp_path, tiny_model_dir):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    single, double = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert main(["score", "--input", str(src), "--output", str(single), "--model", str(tiny_model_dir),
                 "--batch-size", "2", "--quiet"]) == 0
    done = torchrun(["score", "--input", str(src), "--output", str(double), "--model", str(tiny_model_dir),
                     "--batch-size", "2", "--quiet"], tmp_path)
    assert "by 2 processes" in done.stderr
    assert_same_rows(read_jsonl(single), read_jsonl(double), ["stable_rank"])
    assert not list(tmp_path.glob("two.jsonl.*"))  # no stray part files


def test_rewardbench_split_across_two_processes_gives_the_same_results(tmp_path, tiny_model_dir):
    rows = [{"id": str(i), "prompt": f"Tell me about topic {i}.", "subset": ["llmbar-natural", "hep-python"][i % 2],
             "chosen": "It has a long history. " * (1 + i % 3), "rejected": "I do not know. " * (1 + i % 2)}
            for i in range(10)]
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--data", str(data), "--model", str(tiny_model_dir), "--scorers", "stable_rank,mean_logprob,length",
              "--batch-size", "3", "--bootstrap", "50", "--quiet", "--layers", "0,1"]
    assert main(["rewardbench", *common, "--output-dir", str(tmp_path / "one")]) == 0
    torchrun(["rewardbench", *common, "--output-dir", str(tmp_path / "two")], tmp_path)
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one == two
    # Per-pair scores agree up to float noise (the batches hold other pairs: 1e-7 relative).
    for a, b in zip(read_jsonl(tmp_path / "one" / "pairs.jsonl"), read_jsonl(tmp_path / "two" / "pairs.jsonl"), strict=True):
        assert {k: v for k, v in a.items() if k != "scores"} == {k: v for k, v in b.items() if k != "scores"}
        for name, sides in a["scores"].items():
            for side, value in sides.items():
                assert b["scores"][name][side] == pytest.approx(value, rel=1e-5), (a["id"], name, side)
    # Every item was cached exactly once, by the main process.
    cached = read_jsonl(tmp_path / "two" / "cache.jsonl")
    assert len(cached) == 2 * len(rows) and len({c["key"] for c in cached}) == 2 * len(rows)
