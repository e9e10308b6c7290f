"""SR-GRPO training: a tiny GRPO run on CPU, resume, config, bad input, the collapse watch."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import make_model, make_tokenizer
from srgrpo.cli import main
from srgrpo.training.config import TrainConfig, load_config
from srgrpo.training.watch import (
    CollapseThresholds,
    WatchCallback,
    batch_watch_stats,
    collapse_warning,
    group_diversity,
    read_metrics,
    repetition_rate,
)

QUESTIONS = ["What is the capital of France?", "Add 1/3 and 1/4.", "Write a haiku about rain.", "Say hello."]

# A tiny run: 2 completions per prompt, 2 prompts per step, 8 new tokens, a large learning rate so
# that LoRA moves visibly in a few steps.
TINY = {
    "num_generations": 2, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
    "learning_rate": 1e-2, "max_completion_length": 8, "save_steps": 1, "gradient_checkpointing": False,
    "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj", "gate_proj"], "max_steps": 2, "reward_batch_size": 4, "warmup_ratio": 0.0,
}


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "gsm8k_like.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in QUESTIONS))
    return path


@pytest.fixture
def config_file(tmp_path):
    def write(**extra):
        path = tmp_path / "grpo.json"
        path.write_text(json.dumps({**TINY, **extra}))
        return path

    return write


def test_tiny_grpo_changes_lora_weights_and_logs_the_reward(tokenizer, prompts_file, tmp_path):
    from srgrpo.training.trainer import build_trainer, load_prompt_dataset
    from srgrpo.training.watch import WatchCallback

    config = TrainConfig(dataset=str(prompts_file), output_dir=str(tmp_path / "run"), **TINY)
    model = make_model(len(tokenizer), seed=7)
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    watch = WatchCallback(tmp_path / "run" / "metrics.jsonl")
    trainer, reward = build_trainer(config, model, make_tokenizer(), load_prompt_dataset(str(prompts_file)), [watch])
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert lora_before and reward.model is None and reward.group_size == 2
    trainer.train()

    lora_after = dict(trainer.model.named_parameters())
    changed = [n for n, before in lora_before.items() if not torch.equal(before, lora_after[n].detach())]
    assert len(changed) == len(lora_before)  # every LoRA matrix moved
    # ... and the base weights, which the reward reads, did not.
    base = trainer.model.get_base_model().state_dict()
    for name, value in base_before.items():
        key = name if name in base else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(base[key], value), name

    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert {"reward_mean", "sr_mean", "sr_group_std", "zero_spread_frac", "completion_length", "repetition",
                "group_diversity"} <= set(row)
        assert row["sr_mean"] >= 1.0 and 1 <= row["completion_length"] <= 8 and 0 <= row["repetition"] <= 1


def test_train_command_resumes_from_the_last_checkpoint(tiny_model_dir, prompts_file, config_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--model", str(tiny_model_dir),
            "--config", str(config_file())]
    assert main(args) == 0
    assert (out / "checkpoint-2").is_dir() and (out / "training_curves.png").stat().st_size > 0
    assert (out / "final" / "adapter_config.json").is_file()
    # Pretend the run died after checkpoint 1 had been written and step 2 logged.
    import shutil

    shutil.rmtree(out / "checkpoint-2")
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]

    assert main(args) == 2  # a folder holding a run is not silently reused
    assert "--resume" in capsys.readouterr().err

    assert main(args + ["--resume", "--max-steps", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 3
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]  # step 2 redone, not duplicated
    assert (out / "checkpoint-3").is_dir()

    assert main(args + ["--overwrite", "--max-steps", "1"]) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1]
    assert not (out / "checkpoint-3").exists()


@pytest.mark.parametrize("case, message", [
    ("no_prompt_column", "no prompt column: expected one of prompt, question, found text, label"),
    ("no_chat_template", "no chat template"),
    ("bad_lora_target", "LoRA target module(s) qkv_proj not found"),
    ("unknown_setting", "unknown setting(s) learning_rat"),
    ("unknown_grpo_argument", "unknown GRPOConfig argument(s) not_a_field"),
    ("missing_dataset", "not found"),
    ("vllm_without_gpu", "use_vllm needs a CUDA GPU and vLLM"),
])
def test_bad_input_fails_before_any_compute(case, message, tiny_model_dir, prompts_file, config_file, tmp_path,
                                            capsys, monkeypatch):
    import trl

    def no_training(*args, **kwargs):
        raise AssertionError("GRPOTrainer was built despite bad input")

    monkeypatch.setattr(trl, "GRPOTrainer", no_training)
    dataset, model, config = prompts_file, tiny_model_dir, config_file()
    if case == "no_prompt_column":
        dataset = tmp_path / "texts.jsonl"
        dataset.write_text(json.dumps({"text": "hi", "label": 1}) + "\n")
        model = tmp_path / "never-loaded"  # the dataset is checked before the model is loaded
    elif case == "no_chat_template":
        model = tmp_path / "plain"
        make_model(len(make_tokenizer())).save_pretrained(model)
        make_tokenizer(chat_template=None).save_pretrained(model)
    elif case == "bad_lora_target":
        config = config_file(lora_target_modules=["q_proj", "qkv_proj"])
    elif case == "unknown_setting":
        config = config_file(learning_rat=0.1)
    elif case == "unknown_grpo_argument":
        config = config_file(grpo={"not_a_field": 1})
    elif case == "missing_dataset":
        dataset = tmp_path / "missing.jsonl"
    elif case == "vllm_without_gpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        config = config_file(use_vllm=True)
    code = main(["train", "--dataset", str(dataset), "--output-dir", str(tmp_path / "run"), "--model", str(model),
                 "--config", str(config)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_config_defaults_are_the_papers_and_files_override_them(tmp_path):
    config = TrainConfig()
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.1)
    assert set(config.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (config.num_generations, config.learning_rate, config.lr_scheduler_type, config.warmup_ratio) == (8, 1e-6, "cosine", 0.1)
    assert (config.beta, config.scale_rewards) == (0.04, "group")
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 128  # the paper's batch
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-5\nbeta: 0.01\ngrpo:\n  top_p: 0.9\n")
    loaded = load_config(path, max_steps=7, model=None)
    assert (loaded.learning_rate, loaded.beta, loaded.max_steps, loaded.grpo) == (1e-5, 0.01, 7, {"top_p": 0.9})
    with pytest.raises(ValueError, match="scale_rewards"):
        TrainConfig(scale_rewards="groups")
    with pytest.raises(ValueError, match="span"):
        TrainConfig(span="prompt")


def test_grpo_arguments_map_the_config():
    from srgrpo.training.trainer import grpo_arguments

    args = grpo_arguments(TrainConfig(output_dir="o", grpo={"top_p": 0.9}), "cpu")
    assert (args.num_generations, args.learning_rate, args.beta, args.scale_rewards) == (8, 1e-6, 0.04, "group")
    assert args.warmup_steps == 0.1 and args.lr_scheduler_type == "cosine" and args.top_p == 0.9
    assert args.bf16 is False and args.use_vllm is False


# ---------------------------------------------------------------------------------------- watch
def test_repetition_and_diversity_measures():
    assert repetition_rate([1, 2, 3, 4, 5]) == 0.0
    assert repetition_rate([1, 2, 3] * 5) == pytest.approx(1 - 3 / 13)  # 13 trigrams, 3 distinct
    assert repetition_rate([1, 2]) == 0.0
    assert group_diversity([[1, 2, 3], [4, 5, 6]]) == 1.0
    assert group_diversity([[1, 2, 3]] * 4) == pytest.approx(0.25)
    assert math.isnan(group_diversity([[1], [2]]))


def test_batch_watch_stats_per_group():
    stats = batch_watch_stats([1.0, 1.0, 2.0, 4.0, None, 3.0], [[1, 2, 3, 9]] * 2 + [[1, 2, 3, 4]] * 4, group_size=2,
                              special_ids={9})
    assert stats["stable_rank/zero_spread_frac"] == pytest.approx(2 / 3)  # {1,1} and {None,3} carry no signal
    assert stats["stable_rank/group_std"] == pytest.approx(math.sqrt(2) / 3)  # stdev(2, 4) / 3 groups
    assert stats["stable_rank/unscored_frac"] == pytest.approx(1 / 6)
    assert stats["completions/group_diversity"] == pytest.approx(0.5)  # each group: two equal completions
    assert stats["completions/repetition"] == 0.0


def rows(sr, length, diversity=1.0, repetition=0.0, n=10):
    return [{"step": i + 1, "sr_mean": sr(i), "completion_length": length(i), "group_diversity": diversity,
             "repetition": repetition} for i in range(n)]


def test_collapse_warning_needs_sr_up_and_a_collapse():
    t = CollapseThresholds(window=3)
    assert collapse_warning(rows(lambda i: 5 + i, lambda i: 100 - 9 * i), t).startswith("possible reward hacking")
    assert collapse_warning(rows(lambda i: 5 + i, lambda i: 100), t) is None  # SR up, length steady
    assert collapse_warning(rows(lambda i: 5 - 0.1 * i, lambda i: 100 - 9 * i), t) is None  # length down, SR not up
    assert collapse_warning(rows(lambda i: 5 + i, lambda i: 100 - 9 * i, n=5), t) is None  # too few steps yet
    assert "repetition" in collapse_warning(rows(lambda i: 5 + i, lambda i: 100, repetition=0.0)[:5]
                                            + rows(lambda i: 9 + i, lambda i: 100, repetition=0.5)[:5], t)


def test_watch_callback_writes_rows_warns_once_and_can_stop(tmp_path):
    from transformers import TrainerControl, TrainerState

    path = tmp_path / "metrics.jsonl"
    watch = WatchCallback(path, CollapseThresholds(window=2), stop_on_collapse=True)
    state, control = TrainerState(), TrainerControl()
    watch.on_train_begin(None, state, control)
    for step in range(1, 7):
        state.global_step = step
        logs = {"reward": 5.0 + step, "rewards/stable_rank/mean": 5.0 + step, "completions/mean_length": 100 / step,
                "completions/repetition": 0.0, "completions/group_diversity": 1.0}
        watch.on_log(None, state, control, logs=logs)
    watch.on_log(None, state, control, logs={"train_runtime": 1.0})  # not a step: no row
    written = read_metrics(path)
    assert [r["step"] for r in written] == [1, 2, 3, 4, 5, 6]
    assert "watch_warning" not in written[2] and "watch_warning" in written[3]
    assert len(watch.warnings) == 1 and control.should_training_stop


def test_training_curves_png(tmp_path):
    from srgrpo.training.plots import plot_training_curves

    data = rows(lambda i: 5 + i, lambda i: 100 - i)
    data[-1]["watch_warning"] = "x"
    path = plot_training_curves(data, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= 600 and height >= 300  # three panels, not a thumbnail
    rgb = image[..., :3]
    assert rgb.std() > 0.01  # something drawn, not a blank canvas
    # lines in colour (matplotlib's default cycle), not only black axes on white
    assert np.any((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.3)


# ---------------------------------------------------------------------------------------- before/after
def test_greedy_accuracy_generates_greedily_and_grades_with_bon(tiny_model, tmp_path):
    from srgrpo.bon.grading import is_correct
    from srgrpo.bon.tasks import load_problems
    from srgrpo.bon.evaluate import greedy_accuracy

    tokenizer = make_tokenizer()
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": "#### 7"}) + "\n" for q in QUESTIONS[:3]))
    problems = load_problems(str(path))
    accuracy, rows = greedy_accuracy(tiny_model, tokenizer, problems, max_new_tokens=6, batch_size=2)
    assert len(rows) == 3 and accuracy == sum(r["correct"] for r in rows) / 3
    for problem, row in zip(problems, rows):
        assert row["correct"] == is_correct(problem, row["completion"])
        # Batched left-padded generation gives what the model writes for the prompt alone.
        ids = torch.tensor([tokenizer.apply_chat_template(problem.messages(), add_generation_prompt=True,
                                                          return_dict=True)["input_ids"]])
        alone = tiny_model.generate(input_ids=ids, do_sample=False, max_new_tokens=6,
                                    pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
        assert row["completion"] == tokenizer.decode(alone, skip_special_tokens=True)


def test_train_reports_accuracy_before_and_after(tiny_model_dir, prompts_file, config_file, tmp_path):
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text("".join(json.dumps({"question": q, "answer": "#### 7"}) + "\n" for q in QUESTIONS[:2]))
    out = tmp_path / "run"
    config = config_file(max_steps=1, eval_max_new_tokens=4)
    assert main(["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--config", str(config), "--eval-dataset", str(evalset)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for label in ("before", "after"):
        assert summary["eval"][label]["n"] == 2 and 0.0 <= summary["eval"][label]["accuracy"] <= 1.0
        assert len((out / f"eval_{label}.jsonl").read_text().splitlines()) == 2


def test_readme_trl_example_runs(prompts_file, tmp_path, monkeypatch):
    """The README's 'five lines a TRL user writes', executed as written (tiny model, tiny run)."""
    import functools
    import re
    from pathlib import Path

    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from srgrpo.training.trainer import load_prompt_dataset

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                   if "StableRankReward()" in block and "GRPOTrainer(" in block)
    monkeypatch.chdir(tmp_path)
    tokenizer = make_tokenizer()
    namespace = {
        "model": make_model(len(tokenizer), seed=11), "tokenizer": tokenizer,
        "prompts": load_prompt_dataset(str(prompts_file)), "GRPOTrainer": GRPOTrainer, "LoraConfig": LoraConfig,
        # Only the run's size shrinks; everything the snippet sets is kept.
        "GRPOConfig": functools.partial(GRPOConfig, max_steps=1, num_generations=2, per_device_train_batch_size=2,
                                        max_completion_length=4, report_to="none", bf16=False,
                                        gradient_checkpointing=False, save_strategy="no"),
    }
    exec(compile(snippet, "README.md", "exec"), namespace)
    trainer, reward = namespace["trainer"], namespace["reward"]
    assert trainer.state.global_step == 1 and reward.model is None
    assert reward._scoring_model() is trainer.accelerator.unwrap_model(trainer.model)
    logged = trainer.state.log_history[0]
    assert logged["rewards/stable_rank/mean"] >= 1.0 and "stable_rank/group_std" in logged
