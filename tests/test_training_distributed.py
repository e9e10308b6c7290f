"""`srgrpo train` under torchrun: two CPU processes (gloo) train one model data-parallel, and only
the main process writes the reports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from srgrpo.training.watch import read_metrics

SRC = Path(__file__).resolve().parents[1] / "src"
QUESTIONS = ["What is the capital of France?", "Add 1/3 and 1/4.", "Write a haiku about rain.", "Say hello.",
             "Name a colour.", "Count to three.", "What is 2+2?", "Spell cat."]
# 2 processes x 2 completions per device x 1 accumulation step / K=2: 2 prompts per optimizer step.
TINY = {"num_generations": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
        "learning_rate": 1e-2, "max_completion_length": 8, "save_steps": 1, "gradient_checkpointing": False,
        "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"], "max_steps": 2, "reward_batch_size": 4,
        "warmup_steps": 0.0}


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "srgrpo.cli", "train", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_two_cpu_processes_train_data_parallel(tiny_model_dir, tmp_path):
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    done = torchrun(["--dataset", "prompts.jsonl", "--output-dir", "run", "--model", str(tiny_model_dir),
                     "--config", "tiny.json"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    log = done.stdout + done.stderr
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in log  # today's symptom of two independent copies

    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 2
    assert summary["parallel"] == {"parallel_mode": "distributed", "ddp_backend": "gloo",
                                   "model_wrapper": "DistributedDataParallel"}
    # One writer: each step is logged once, not once per process.
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert (out / "checkpoint-2").is_dir() and (out / "final" / "adapter_config.json").is_file()
    assert (out / "training_curves.png").stat().st_size > 0
    assert done.stdout.count("trained 2 step(s)") == 1  # only the main process prints the report


def test_torchrun_trains_with_the_ema_scorer_and_a_held_out_curve(tiny_model_dir, tmp_path):
    """Two processes train with the EMA scorer (its second adapter is updated after every optimizer
    step in each process) and a held-out curve evaluated every step: finite rewards, one metrics row
    and one curve row per step (one writer), the scorer recorded in summary.json."""
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    done = torchrun(["--dataset", "prompts.jsonl", "--output-dir", "run", "--model", str(tiny_model_dir),
                     "--config", "tiny.json", "--reward_scorer", "ema", "--reward_ema_decay", "0.5",
                     "--eval_dataset", "gsm8k", "--eval_limit", "2", "--eval_every", "1",
                     "--eval_max_new_tokens", "8", "--eval_batch_size", "2"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 2
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["reward_mean"]) for r in rows)
    curve = [json.loads(line) for line in (out / "eval_curve.jsonl").read_text().splitlines()]
    assert [row["step"] for row in curve] == [0, 1, 2]  # one writer
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in curve)
    assert [r["scorer"] for r in summary["rewards"]] == ["ema"]


def test_every_command_leaves_the_process_group_it_ran_in(monkeypatch):
    """A process that exits still in a gloo group can abort in interpreter teardown after a run that
    succeeded; srgrpo's entry point leaves the group whoever joined it, also when the command fails."""
    import argparse
    import socket

    import torch.distributed as dist

    import srgrpo.cli as cli

    def join_then(result):
        def command(args):
            with socket.socket() as s:  # a free port for this one-process group
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
            assert dist.is_initialized()
            if isinstance(result, Exception):
                raise result
            return result
        return command

    for result, code in ((0, 0), (ValueError("bad flag"), cli.EXIT_USAGE)):
        parser = argparse.ArgumentParser()
        parser.set_defaults(func=join_then(result), command="train")
        monkeypatch.setattr(cli, "build_parser", lambda command, parser=parser: parser)
        assert cli.main([]) == code
        assert not dist.is_initialized()
