"""SR-GRPO training: a tiny GRPO run on CPU, resume, configuration through TRL's parser, bad input,
the collapse watch, the curves."""

from __future__ import annotations

import json
import math

import pytest
import references
import torch
from conftest import help_text, make_model, make_tokenizer

from srgrpo.cli import main
from srgrpo.training.config import make_run, parse_train_args
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
    "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj", "gate_proj"], "max_steps": 2, "reward_batch_size": 4,
    "warmup_steps": 0.0,
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

    run = make_run(dataset=str(prompts_file), output_dir=str(tmp_path / "run"), **TINY)
    model = make_model(len(tokenizer), seed=7)
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    watch = WatchCallback(tmp_path / "run" / "metrics.jsonl")
    trainer, reward = build_trainer(run, model, make_tokenizer(), load_prompt_dataset(str(prompts_file)), [watch])
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
        assert torch.equal(base[key].cpu(), value.cpu()), name  # the trainer may have moved the model to a GPU

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
    # Pretend the run died after checkpoint 1 had been written and step 2 logged, while writing a line.
    import shutil

    shutil.rmtree(out / "checkpoint-2")
    with (out / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 3, "loss": 0.1')
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]  # the cut line is skipped

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
    ("unknown_setting", "unknown setting(s) learning_rat (did you mean learning_rate?)"),
    ("unknown_flag", "unknown flag(s) --learning-rat (did you mean --learning-rate?)"),
    ("bad_choice_in_config", "dtype must be one of auto, bfloat16, float16, float32, got 'float33'"),
    ("bad_scale_rewards", "scale_rewards must be group, batch or none, got 'groups'"),
    ("resume_and_overwrite", "--resume and --overwrite contradict each other"),
    ("full_finetuning", "srgrpo train needs LoRA (use_peft)"),
    ("unsupported_model_option", "cannot honour load_in_4bit=True"),
    ("missing_dataset", "--dataset: no such file"),
    ("vllm_without_gpu", "use_vllm needs a CUDA GPU and vLLM"),
    ("too_few_prompts", "has 4 prompt(s) but one optimizer step needs 16 (per_device_train_batch_size 8 x "
                        "gradient_accumulation_steps 16 x 1 process(es) / num_generations 8)"),
])
def test_bad_input_fails_before_any_compute(case, message, tiny_model_dir, prompts_file, config_file, tmp_path,
                                            capsys, monkeypatch):
    import trl

    def no_training(*args, **kwargs):
        raise AssertionError("GRPOTrainer was built despite bad input")

    monkeypatch.setattr(trl, "GRPOTrainer", no_training)
    dataset, model, config, extra = prompts_file, tiny_model_dir, config_file(), []
    never_loaded = tmp_path / "never-loaded"  # for checks that come before the model is loaded
    if case == "no_prompt_column":
        dataset = tmp_path / "texts.jsonl"
        dataset.write_text(json.dumps({"text": "hi", "label": 1}) + "\n")
        model = never_loaded
    elif case == "no_chat_template":
        model = tmp_path / "plain"
        make_model(len(make_tokenizer())).save_pretrained(model)
        make_tokenizer(chat_template=None).save_pretrained(model)
    elif case == "bad_lora_target":
        config = config_file(lora_target_modules=["q_proj", "qkv_proj"])
    elif case == "unknown_setting":
        config, model = config_file(learning_rat=0.1), never_loaded
    elif case == "unknown_flag":
        extra, model = ["--learning-rat", "0.1"], never_loaded
    elif case == "bad_choice_in_config":
        config, model = config_file(dtype="float33"), never_loaded
    elif case == "bad_scale_rewards":
        config, model = config_file(scale_rewards="groups"), never_loaded
    elif case == "resume_and_overwrite":
        extra, model = ["--resume", "--overwrite"], never_loaded
    elif case == "full_finetuning":
        extra, model = ["--use_peft", "false"], never_loaded
    elif case == "unsupported_model_option":
        extra, model = ["--load_in_4bit"], never_loaded
    elif case == "missing_dataset":
        dataset = tmp_path / "missing.jsonl"
    elif case == "vllm_without_gpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        config = config_file(use_vllm=True)
    elif case == "too_few_prompts":  # the defaults: 8 per device x 16 accumulation / K=8 = 16 prompts a step
        config, model, extra = None, never_loaded, ["--max-steps", "2"]
    args = ["train", "--dataset", str(dataset), "--output-dir", str(tmp_path / "run"), "--model", str(model)]
    code = main(args + (["--config", str(config)] if config else []) + extra)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_run_too_small_for_one_step_is_refused_before_the_model_loads(prompts_file, tmp_path, capsys, monkeypatch):
    """`srgrpo train --dataset prompts.jsonl --max-steps 2` with 4 prompts and the defaults used to
    train 0 steps and exit 0; it must say how many prompts a step needs and which settings count."""
    import srgrpo.models

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(srgrpo.models, "load_model", no_model)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "has 4 prompt(s) but one optimizer step needs 16" in err
    for setting in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations", "process"):
        assert setting in err
    assert not out.exists()
    # The same data fills a step once the batch is smaller: 2 per device x 2 accumulation / K=2 = 2 prompts.
    from srgrpo.training.trainer import check_prompts_fill_a_step, prompts_per_step

    small = make_run(dataset=str(prompts_file), output_dir=str(out), num_generations=2,
                     per_device_train_batch_size=2, gradient_accumulation_steps=2).grpo
    assert prompts_per_step(small) == 2
    check_prompts_fill_a_step(small, 4, "prompts.jsonl")
    # Generation rounds that serve fewer micro-batches than a step takes need several rounds' prompts.
    rounds = make_run(dataset="d", output_dir="o", num_generations=2, per_device_train_batch_size=2,
                      gradient_accumulation_steps=4, steps_per_generation=2).grpo
    assert prompts_per_step(rounds) == 4  # 2x2 completions per round = 2 prompts, 2 rounds per step
    with pytest.raises(ValueError, match="needs 4 .*steps_per_generation"):
        check_prompts_fill_a_step(rounds, 3, "prompts.jsonl")


def test_defaults_are_the_papers_and_every_trl_option_is_a_flag(tmp_path):
    from peft import LoraConfig
    from trl import GRPOConfig, ModelConfig, get_peft_config

    run = parse_train_args(["--dataset", "d.jsonl", "--output-dir", "o"])
    grpo, model = run.grpo, run.model
    assert isinstance(grpo, GRPOConfig) and isinstance(model, ModelConfig)
    assert (grpo.num_generations, grpo.learning_rate, grpo.lr_scheduler_type, grpo.warmup_steps) == (8, 1e-6, "cosine", 0.1)
    assert (grpo.beta, grpo.scale_rewards, grpo.max_steps) == (0.04, "group", 400)
    assert grpo.per_device_train_batch_size * grpo.gradient_accumulation_steps == 128  # the paper's batch
    assert grpo.bf16 is (torch.cuda.is_available()) and grpo.world_size == 1
    lora = get_peft_config(model)
    assert isinstance(lora, LoraConfig) and (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.1)
    assert lora.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert model.model_name_or_path is None and model.dtype == "auto"  # the embedded model, srgrpo's auto dtype
    assert (run.script.dataset, grpo.output_dir) == ("d.jsonl", "o")

    # A YAML file overrides the defaults; flags override the file; any GRPOConfig/ModelConfig field
    # and every scoring option is settable without srgrpo naming it.
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-5\nbeta: 0.01\ntop_p: 0.9\nlora_target_modules: [q_proj]\n"
                    "reward_truncation_side: left\nreward_compute_dtype: float64\nreward_window_size: 16\n"
                    "max_steps: 9\n")
    run = parse_train_args(["--dataset", "d", "--output_dir", "o", "--config", str(path), "--max_steps", "7",
                            "--model", "m", "--reward-span", "full", "--num_iterations", "2"])
    assert (run.grpo.learning_rate, run.grpo.beta, run.grpo.top_p, run.grpo.max_steps) == (1e-5, 0.01, 0.9, 7)
    assert run.grpo.num_iterations == 2 and run.model.model_name_or_path == "m"
    assert run.model.lora_target_modules == ["q_proj"]  # a single module name stays a name, not a regex
    assert vars(run.reward.scoring_options()) == {"span": "full", "layer": "final_norm", "max_length": 512,
                                                  "truncation_side": "left", "batch_size": 8, "min_span_tokens": 16,
                                                  "window_size": 16, "length_exponent": 0.147, "compute_dtype": "float64"}
    assert parse_train_args(["--dataset", "d", "--output_dir", "o", f"--config={path}"]).grpo.max_steps == 9
    old = tmp_path / "old.yaml"  # keys of no setting are refused by name (no aliases kept for old names)
    old.write_text("span: full\nreward_spam: full\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) span, reward_spam \(did you mean reward_span\?\)"):
        parse_train_args(["--dataset", "d", "--output_dir", "o", "--config", str(old)])
    with pytest.raises(ValueError, match="span"):
        make_run(dataset="d", output_dir="o", reward_span="prompt")
    with pytest.raises(ValueError, match="not_a_field"):
        make_run(dataset="d", output_dir="o", not_a_field=1)


def test_every_scoring_option_is_a_flag_and_reaches_the_reward(tokenizer, prompts_file, tmp_path):
    import dataclasses

    from srgrpo.options import ScoringOptions
    from srgrpo.training.config import RewardArguments, TrainArgumentParser
    from srgrpo.training.trainer import build_trainer, load_prompt_dataset

    flags = {s for action in TrainArgumentParser()._actions for s in action.option_strings}
    names = [f.name for f in dataclasses.fields(ScoringOptions)]
    assert len(names) == 9 and {f"--reward_{n}" for n in names} <= flags
    assert [f.name for f in dataclasses.fields(RewardArguments)] == [
        "rewards", "reward_scorer", "reward_ema_decay", "reward_model"] + [f"reward_{n}" for n in names]
    options = {"reward_span": "full", "reward_layer": "last_block", "reward_max_length": 64,
               "reward_truncation_side": "left", "reward_batch_size": 3, "reward_window_size": 16,
               "reward_length_exponent": 0.3, "reward_compute_dtype": "float64", "reward_min_span_tokens": 4,
               "rewards": "stable_rank_prompt_adjusted"}
    run = make_run(dataset=str(prompts_file), output_dir=str(tmp_path / "run"), **{**TINY, **options})
    _, reward = build_trainer(run, make_model(len(tokenizer)), make_tokenizer(), load_prompt_dataset(str(prompts_file)))
    assert reward.options == ScoringOptions(span="full", layer="last_block", max_length=64, truncation_side="left",
                                            batch_size=3, window_size=16, length_exponent=0.3, compute_dtype="float64",
                                            min_span_tokens=4)
    assert reward.feature == "stable_rank_prompt_adjusted"


def test_paper_defaults_name_existing_trl_fields():
    """The defaults srgrpo sets on TRL's classes name fields the installed TRL has (with_defaults
    refuses any other at import), and an unknown name is refused."""
    from trl import GRPOConfig

    from srgrpo.training.config import SRGRPOConfig, with_defaults

    assert issubclass(SRGRPOConfig, GRPOConfig)
    with pytest.raises(TypeError, match="GRPOConfig has no field 'num_generation'"):
        @with_defaults(num_generation=8)
        class Renamed(GRPOConfig):
            pass


def test_train_help_lists_the_flags(capsys):
    out = help_text(capsys, ["train", "--help-trl"])
    assert out.startswith("usage: srgrpo train --dataset DATASET --output-dir OUTPUT_DIR")
    for flag in ("--dataset", "--output_dir", "--config", "--model", "--max_steps", "--eval_dataset", "--resume",
                 "--overwrite", "--stop_on_collapse", "--num_generations", "--beta", "--lora_r", "--use_vllm",
                 "--reward_span", "--reward_truncation_side", "--reward_compute_dtype", "--reward_window_size"):
        assert f"  {flag} " in out or f", {flag} " in out, flag


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


def test_training_curves_draw_each_column_and_leave_pyplot_alone(tmp_path):
    import sys

    import matplotlib
    from matplotlib.image import imread

    from srgrpo.reports.training import plot_training_curves, training_curves_figure, write_training_curves

    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    data = rows(lambda i: 5 + i, lambda i: 100 - i, diversity=0.25, n=4)
    data[-1]["watch_warning"] = "x"
    axes = training_curves_figure(data).axes
    assert [ax.get_title() for ax in axes] == ["reward", "completion length (tokens)",
                                               "repetition and diversity"]
    # The points drawn are the rows' values, written out by hand (sr_group_std and zero_spread_frac
    # are absent from these rows, so they draw no line); the warned step 4 is a vertical line.
    lines = [[(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines] for ax in axes]
    assert lines[0][0] == ("mean SR", [1, 2, 3, 4], [5, 6, 7, 8]) and len(lines[0]) == 2
    assert lines[1][0] == ("mean length", [1, 2, 3, 4], [100, 99, 98, 97])
    assert lines[2][:2] == [("repeated 3-grams in a completion", [1, 2, 3, 4], [0.0, 0.0, 0.0, 0.0]),
                            ("distinct 2-grams across a group", [1, 2, 3, 4], [0.25, 0.25, 0.25, 0.25])]
    for panel in lines:
        assert [(x, y) for _, x, y in panel if x == [4, 4]] == [([4, 4], [0, 1])]
    path = plot_training_curves(data, tmp_path / "curves.png", dpi=50)
    assert imread(path).shape[:2] == (round(3.6 * 50), 15 * 50)  # 3 panels of 5 x 3.6 inches at 50 dpi
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    # From a run's folder: nothing logged, no file.
    assert write_training_curves(tmp_path) is None


# ---------------------------------------------------------------------------------------- before/after
def test_greedy_accuracy_generates_greedily_and_grades_with_bon(tiny_model, tmp_path):
    from srgrpo.evaluation.accuracy import greedy_accuracy
    from srgrpo.evaluation.datasets import load_problems

    tokenizer = make_tokenizer()
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": "#### 7"}) + "\n" for q in QUESTIONS[:3]))
    problems = load_problems(str(path))
    accuracy, rows = greedy_accuracy(tiny_model, tokenizer, problems, max_new_tokens=6, batch_size=2)
    assert len(rows) == 3 and accuracy == sum(r["correct"] for r in rows) / 3
    for problem, row in zip(problems, rows):
        # Batched left-padded generation gives what the model writes for the prompt alone.
        ids = torch.tensor([tokenizer.apply_chat_template(problem.messages(), add_generation_prompt=True,
                                                          return_dict=True)["input_ids"]], device=tiny_model.device)
        alone = tiny_model.generate(input_ids=ids, do_sample=False, max_new_tokens=6,
                                    pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
        assert row["completion"] == tokenizer.decode(alone, skip_special_tokens=True)


def test_greedy_accuracy_grades_each_completion(tiny_model, monkeypatch):
    """The grade of each row, for completions fixed here and graded by hand (gold 7)."""
    from srgrpo.generation import HFGenerator, Sample
    from srgrpo.evaluation.accuracy import greedy_accuracy
    from srgrpo.evaluation.datasets import Problem

    written = ["So the answer is 7.", "I get 8.", "7 apples, then 2 more: 9.", "#### 7", "no idea"]
    monkeypatch.setattr(HFGenerator, "generate", lambda self, prompts, n, sampling, seed=0, progress=False:
                        [[Sample(text, [1], True)] for text in written[:len(prompts)]])
    problems = [Problem(f"q{i}", "How many?", "7", "gsm8k") for i in range(5)]
    accuracy, rows = greedy_accuracy(tiny_model, make_tokenizer(), problems, max_new_tokens=6)
    # "answer is 7" right; 8 wrong; the last number 9 wrong; "#### 7" right; no number wrong.
    assert [r["correct"] for r in rows] == [True, False, False, True, False] and accuracy == 0.4
    assert [r["completion"] for r in rows] == written and [r["gold"] for r in rows] == ["7"] * 5


def test_train_reports_accuracy_before_and_after(tiny_model_dir, prompts_file, config_file, tmp_path):
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text("".join(json.dumps({"question": q, "answer": "#### 7"}) + "\n" for q in QUESTIONS[:2]))
    out = tmp_path / "run"
    config = config_file(max_steps=1, eval_max_new_tokens=4)
    assert main(["train", "--dataset", str(prompts_file), "--output-dir", str(out), "--model", str(tiny_model_dir),
                 "--config", str(config), "--eval-dataset", str(evalset)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for label in ("before", "after"):
        rows = [json.loads(line) for line in (out / f"eval_{label}.jsonl").read_text().splitlines()]
        assert summary["eval"][label]["n"] == len(rows) == 2
        # The gold is 7: with no "answer is", "####" or \boxed in the text (the tiny model writes 4
        # tokens), a completion is right when its last number, as written, is 7.
        import re

        assert not any(m in r["completion"].lower() for r in rows for m in ("answer", "####", "boxed"))
        last = [(re.findall(r"-?[\d.,/]*\d", r["completion"]) or [None])[-1] for r in rows]
        right = [number == "7" for number in last]
        assert [r["correct"] for r in rows] == right
        assert summary["eval"][label]["accuracy"] == sum(right) / 2


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
    from srgrpo.training.sr_reward import StableRankReward

    calls = []  # what TRL handed the reward at each call, and what it answered
    score = StableRankReward.__call__

    def recording(self, prompts, completions, **kwargs):
        values = score(self, prompts, completions, **kwargs)
        calls.append((prompts, kwargs["completion_ids"], values))
        return values

    monkeypatch.setattr(StableRankReward, "__call__", recording)
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
    assert "stable_rank/group_std" in logged
    # Each completion's reward is the frozen base's (the adapter disabled) stable rank of its tokens
    # after the templated prompt, by the independent route; TRL logs their mean.
    policy = trainer.accelerator.unwrap_model(trainer.model)
    special = set(tokenizer.all_special_ids)
    got, expected = [], []
    with policy.disable_adapter():
        policy.eval()
        for prompts, completion_ids, values in calls:
            for prompt, ids, value in zip(prompts, completion_ids, values):
                prompt_ids = (references.chat_prompt_ids(tokenizer, prompt) if isinstance(prompt, list)
                              else tokenizer(text=prompt)["input_ids"])
                ids = list(ids)
                while ids and ids[-1] in special:
                    ids.pop()
                if value is not None:
                    got.append(value)
                    expected.append(references.span_stable_rank(policy, prompt_ids + ids, len(prompt_ids),
                                                                len(prompt_ids) + len(ids)))
    assert got and got == pytest.approx(expected, rel=1e-4)
    assert logged["rewards/stable_rank/mean"] == pytest.approx(sum(got) / len(got), rel=1e-4)
