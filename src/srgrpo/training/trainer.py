"""SR-GRPO end to end: prompts -> TRL GRPOTrainer with LoRA and the stable-rank reward -> checkpoints,
metrics.jsonl, training curves, and greedy accuracy before and after.

Every check that can fail on the user's input (dataset columns, whether the prompts fill one
optimizer step, chat template, LoRA targets, an output folder holding another run) runs before any
generation or training step, and all but the model's own checks before the model is loaded.

Under a distributed launcher (torchrun, accelerate launch) every process runs this same code: TRL
and accelerate split the prompts and average the gradients (`SRGRPOConfig` picks the gloo backend
on CPU), and only the main process writes reports; checkpoints are TRL's (main process only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import re
import shutil
import time
import warnings
from pathlib import Path

import datasets
import torch
import trl
from transformers.trainer_utils import get_last_checkpoint

from srgrpo import models
from srgrpo.evaluation.accuracy import greedy_accuracy
from srgrpo.evaluation.datasets import SAMPLE, dataset_version, example_file, load_problems
from srgrpo.features import FEATURES
from srgrpo.records import VERSIONS_KEY, changed_versions, describe_changes, run_versions
from srgrpo.results import TrainingSummary
from srgrpo.training.config import TrainRun, check_rewards
from srgrpo.training.curve import GreedyCurveCallback, read_probe_prompts
from srgrpo.training.ema import EMACallback, add_ema_adapter
from srgrpo.training.hacking import CollapseRule, PromptNgrams, collapse_step
from srgrpo.training.reward_registry import build_rewards, logged_name
from srgrpo.training.sr_reward import BatchMonitor, TrainerReward
from srgrpo.training.watch import CollapseThresholds, WatchCallback, read_metrics, use_console_progress

logger = logging.getLogger("srgrpo.train")

PROMPT_COLUMNS = ("prompt", "question")  # in order of preference
ANSWER_COLUMNS = ("solution", "answer")  # the accuracy reward's gold answer, in order of preference


# ---------------------------------------------------------------------------------------- data
def _read_rows(source: str, split: str):
    """A datasets.Dataset from a JSONL/JSON file, a Hugging Face dataset id/folder, or `sample` (the
    GSM8K questions shipped with srgrpo)."""
    path = Path(source)
    if source == SAMPLE and not path.exists():
        path = example_file("gsm8k_sample.jsonl")
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise ValueError(f"prompt dataset {source}: expected a .jsonl or .json file")
        return datasets.load_dataset("json", data_files=str(path), split="train")
    if source.endswith((".jsonl", ".json")):
        raise ValueError(f"--dataset: no such file: {source}")
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as err:  # datasets raises many kinds for a missing/unknown dataset
        raise ValueError(f"could not load prompt dataset {source!r} (split {split!r}): {err}") from err


def load_prompt_dataset(source: str, split: str = "train", with_answers: bool = False):
    """The prompts as a dataset with one column, `prompt`, holding chat messages (TRL templates and
    tokenises them itself). Takes a `prompt` column (a string or messages) or, for GSM8K-style
    files, a `question` column. `with_answers`: also a `solution` column (from `solution` or
    `answer`; TRL hands it to the accuracy reward); a dataset without one is refused."""
    rows = _read_rows(source, split)
    column = next((c for c in PROMPT_COLUMNS if c in rows.column_names), None)
    if column is None:
        raise ValueError(
            f"prompt dataset {source} has no prompt column: expected one of {', '.join(PROMPT_COLUMNS)}, "
            f"found {', '.join(rows.column_names) or 'no columns'}"
        )
    if len(rows) == 0:
        raise ValueError(f"prompt dataset {source} is empty")

    answer = next((c for c in ANSWER_COLUMNS if c in rows.column_names), None)
    if with_answers and answer is None:
        raise ValueError(f"the accuracy reward needs a gold answer column in {source}: expected one of "
                         f"{', '.join(ANSWER_COLUMNS)}, found {', '.join(rows.column_names)}")

    def as_messages(row):
        value = row[column]
        if isinstance(value, str):
            out = {"prompt": [{"role": "user", "content": value}]}
        elif isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            out = {"prompt": value}
        else:
            raise ValueError(f"prompt dataset {source}: column {column!r} must hold strings or chat messages, "
                             f"got {type(value).__name__}")
        if with_answers:
            out["solution"] = "" if row[answer] is None else str(row[answer])  # "" cannot be parsed: reward None
        return out

    return rows.map(as_messages, remove_columns=rows.column_names)


# ---------------------------------------------------------------------------------------- checks
def check_chat_template(tokenizer, name: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"model {name} has no chat template: SR-GRPO samples assistant turns from chat prompts, "
            "so use an instruct/chat model (or give the tokenizer a chat_template)"
        )


def check_lora_targets(model, targets) -> None:
    """Every LoRA target must name modules of the model (peft silently skips a typo when another
    name matches). `targets`: module names, "all-linear", or a regular expression over full
    module names (peft's meaning of a string)."""
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    if isinstance(targets, str):
        if targets == "all-linear" or any(re.fullmatch(targets, name) for name, _ in model.named_modules()):
            return
        raise ValueError(f"LoRA target pattern {targets!r} matches no module of the model; "
                         f"its linear layers are: {', '.join(linear)}")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"LoRA target module(s) {', '.join(missing)} not found in the model; "
                         f"its linear layers are: {', '.join(linear)}")


# ModelConfig/GRPOConfig settings srgrpo train cannot honour (it loads the model with
# srgrpo.load_model), with the value it needs; anything else is refused before the model loads.
UNSUPPORTED = {
    "model_revision": "main", "attn_implementation": None, "load_in_8bit": False, "load_in_4bit": False,
    "lora_task_type": "CAUSAL_LM", "trust_remote_code": False, "model_init_kwargs": None,
}


def check_run_settings(run: TrainRun) -> None:
    """Settings the run depends on that TRL's own configuration checks leave open."""
    check_rewards(run)  # weights per reward, the frozen and EMA scorers need LoRA
    if run.grpo.scale_rewards not in ("group", "batch", "none"):  # TRL checks it only at the first step
        raise ValueError(f"scale_rewards must be group, batch or none, got {run.grpo.scale_rewards!r}")
    values = {**vars(run.model), **vars(run.grpo)}
    bad = [f"{name}={values[name]!r}" for name, value in UNSUPPORTED.items() if name in values and values[name] != value]
    if bad:
        raise ValueError(f"srgrpo train cannot honour {', '.join(bad)} (it loads the model with srgrpo.load_model); "
                         "leave these settings at their defaults")
    if run.grpo.use_vllm:
        if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
            raise ValueError("use_vllm needs a CUDA GPU and vLLM (pip install 'srgrpo[vllm]')")


def prompts_per_step(args) -> int:
    """Distinct prompts one optimizer step consumes, by TRL's sampler (trl 1.x RepeatSampler): a
    generation round draws generation_batch_size / num_generations prompts (a round short of that
    is dropped) and serves num_iterations x steps_per_generation micro-batches; an optimizer step
    takes gradient_accumulation_steps micro-batches. With the defaults (steps_per_generation =
    gradient_accumulation_steps) this is per_device_train_batch_size x gradient_accumulation_steps
    x processes / num_generations."""
    per_round = args.generation_batch_size // args.num_generations
    micro_batches_per_round = args.num_iterations * args.steps_per_generation
    return per_round * math.ceil(args.gradient_accumulation_steps / micro_batches_per_round)


def check_prompts_fill_a_step(args, n_prompts: int, source: str) -> None:
    """Refuse a dataset too small for one optimizer step (TRL would train 0 steps and succeed)."""
    needed = prompts_per_step(args)
    if n_prompts >= needed:
        return
    how = (f"per_device_train_batch_size {args.per_device_train_batch_size} x gradient_accumulation_steps "
           f"{args.gradient_accumulation_steps} x {args.world_size} process(es) / num_generations "
           f"{args.num_generations}")
    if args.steps_per_generation != args.gradient_accumulation_steps or args.num_iterations != 1:
        how = (f"generation_batch_size {args.generation_batch_size} / num_generations {args.num_generations} prompts "
               f"per generation round, {args.num_iterations * args.steps_per_generation} micro-batch(es) per round "
               f"(num_iterations x steps_per_generation), gradient_accumulation_steps "
               f"{args.gradient_accumulation_steps} micro-batches per step")
    raise ValueError(
        f"prompt dataset {source} has {n_prompts} prompt(s) but one optimizer step needs {needed} ({how}): "
        "add prompts, or lower per_device_train_batch_size or gradient_accumulation_steps (or the number of "
        "processes), or raise num_generations"
    )


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> str | None:
    """The checkpoint to resume from (None for a fresh run). A folder holding another run is refused
    unless --resume or --overwrite says what to do with it."""
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume:
        if last is None:
            raise ValueError(f"--resume: no checkpoint-* folder in {output_dir}")
        return last
    if not overwrite and output_dir.is_dir() and (last or (output_dir / "metrics.jsonl").exists()):
        raise ValueError(f"{output_dir} holds a previous run: pass --resume to continue it or --overwrite to start afresh")
    return None


def run_versions_of(run: TrainRun) -> dict:
    """What train_config.json records under "versions": srgrpo's version and those of the reward's
    feature and of the before/after evaluation's dataset and graders."""
    script = run.script
    features = [name for name in run.reward.reward_names() if name in FEATURES]  # the feature rewards
    return run_versions(features=FEATURES.versions(features),
                        datasets=dataset_version(script.eval_dataset) if script.eval_dataset else {})


def check_resume_versions(output_dir: Path, versions: dict) -> None:
    """--resume continues a checkpoint trained with some reward: refuse it when the reward feature is
    now defined differently (the run would mix two rewards), naming what changed."""
    config_file = output_dir / "train_config.json"
    if not config_file.is_file():
        return
    previous = json.loads(config_file.read_text()).get(VERSIONS_KEY)
    changed = {k: v for k, v in changed_versions(previous, versions).items() if k == "features"}
    if changed:
        raise ValueError(f"--resume: {output_dir} was trained with another reward definition "
                         f"({describe_changes(changed)}); use --overwrite or another --output_dir")


# ---------------------------------------------------------------------------------------- trainer
def dataset_ngrams(tokenizer, dataset):
    """The training prompts' token n-grams (user text), for the dataset-overlap hacking measure."""
    def user_ids(prompt):
        text = "\n".join(m["content"] for m in prompt if m["role"] != "assistant")
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return PromptNgrams(user_ids(p) for p in dataset["prompt"])


@contextlib.contextmanager
def libraries_renamed_calls():
    """Hide the FutureWarnings of transformers 5 about its renamed gradient-checkpointing methods that
    TRL (1.16: around each generation) and peft (PeftModel's constructor) still call. srgrpo calls none
    of them and sets the new activation_checkpointing (srgrpo.training.config), so these warnings are
    about the libraries' code, not anything a user can change; anything else still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
                                category=FutureWarning, module=r"transformers\.modeling_utils")
        yield


def build_trainer(run: TrainRun, model, tokenizer, dataset, callbacks=(), resume_from: str | None = None,
                  completions_path=None):
    """A GRPOTrainer with LoRA (trl.get_peft_config of the run's ModelConfig) on `model` and the
    run's rewards (`--rewards`, `srgrpo.training.reward_registry`), each bound to it (the frozen scorer is
    the adapter disabled, so it costs no extra memory; the EMA scorer is a second adapter, updated
    by an `EMACallback`). Returns (trainer, reward): the first srgrpo reward (None if there is none)."""
    check_chat_template(tokenizer, run.model.model_name_or_path or "(embedded)")
    if run.model.use_peft:
        check_lora_targets(model, run.model.lora_target_modules)
    names, scorers = run.reward.reward_names(), run.reward.reward_scorers()
    monitor = BatchMonitor(dataset_ngrams(tokenizer, dataset), completions_path)
    funcs = build_rewards(names, scorers, run.reward.scoring_options(), run.reward.reward_model, monitor)
    with libraries_renamed_calls():
        trainer = trl.GRPOTrainer(model=model, reward_funcs=funcs, args=run.grpo, train_dataset=dataset,
                                  processing_class=tokenizer, peft_config=trl.get_peft_config(run.model),
                                  callbacks=list(callbacks))
    ours = [f for f in funcs if isinstance(f, TrainerReward)]
    if "ema" in scorers:
        policy = trainer.accelerator.unwrap_model(trainer.model)
        add_ema_adapter(policy)
        trainer.add_callback(EMACallback(policy, run.reward.reward_ema_decay, resume_from=resume_from))
    for reward in ours:
        reward.bind(trainer)
    return trainer, (ours[0] if ours else None)


# ---------------------------------------------------------------------------------------- evaluation
def greedy_eval(model, tokenizer, run: TrainRun, output_dir: Path, label: str) -> dict:
    """Greedy accuracy on the held-out slice, through policy evaluation's path (`greedy_accuracy`
    over `srgrpo.evaluation.runner`: the task's prompt, batched generation, its grader); per-question
    rows go to eval_{label}.jsonl."""
    script = run.script
    problems = load_problems(script.eval_dataset, limit=script.eval_limit, seed=run.grpo.seed)
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    try:
        accuracy, rows = greedy_accuracy(model, tokenizer, problems, max_new_tokens=script.eval_max_new_tokens,
                                         batch_size=script.eval_batch_size)
    finally:
        model.train(was_training)
    with (output_dir / f"eval_{label}.jsonl").open("w") as out:
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
    return {"dataset": script.eval_dataset, "n": len(problems), "accuracy": accuracy,
            "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------------------------- run
def _wait_for_everyone(args) -> None:
    if args.world_size > 1:
        args.distributed_state.wait_for_everyone()


def train(run: TrainRun) -> dict:
    """Run SR-GRPO as configured; returns the summary that the main process writes to `summary.json`."""
    script = run.script
    checkpoint, versions = check_before_loading(run)
    dataset = load_training_prompts(run)
    model, tokenizer = load_policy(run)
    _wait_for_everyone(run.grpo)  # every process has checked the folder before the main one changes it
    prepare_output_dir(run, checkpoint, versions)
    summary = initial_summary(run, checkpoint)
    evaluate_before(run, model, tokenizer, summary)
    rule = CollapseRule(window=script.collapse_window, diversity_drop=script.collapse_diversity_drop,
                        accuracy_drop=script.collapse_accuracy_drop)
    curve: dict = {}  # "callback": the GreedyCurveCallback, once the trainer exists (--eval_every)
    watch = make_watch(run, rule, curve)
    _wait_for_everyone(run.grpo)  # every process has read metrics.jsonl before the main one rewrites it
    trainer, first_reward = build_trainer(run, model, tokenizer, dataset, callbacks=[watch], resume_from=checkpoint,
                                          completions_path=completions_file(run, checkpoint))
    add_curve(run, trainer, tokenizer, curve)
    run_trainer(trainer, checkpoint, first_reward, summary)
    if run.grpo.process_index != 0:
        return summary
    return finish_summary(run, trainer, tokenizer, watch, rule, curve.get("callback"), summary)


def check_before_loading(run: TrainRun) -> tuple[str | None, dict]:
    """(the checkpoint to resume from or None, the run's versions), after every check that needs no data."""
    script = run.script
    output_dir = Path(run.grpo.output_dir)
    check_run_settings(run)
    checkpoint = check_output_dir(output_dir, script.resume, script.overwrite)
    versions = run_versions_of(run)
    if checkpoint is not None:
        check_resume_versions(output_dir, versions)
    return checkpoint, versions


def load_training_prompts(run: TrainRun):
    """The prompt dataset, checked to fill an optimizer step; an unknown held-out set fails here too,
    before the model loads, not after training."""
    script, args = run.script, run.grpo
    with args.main_process_first(desc="prompt dataset"):
        dataset = load_prompt_dataset(script.dataset, script.dataset_split,
                                      with_answers="accuracy" in run.reward.reward_names())
    check_prompts_fill_a_step(args, len(dataset), script.dataset)
    if script.eval_dataset:
        load_problems(script.eval_dataset, limit=1)
    return dataset


def load_policy(run: TrainRun):
    """(model, tokenizer), checked for a chat template and the LoRA targets."""
    model, tokenizer = models.load_model(run.model.model_name_or_path, dtype=run.model.dtype, device=run.grpo.device,
                                         verbose=True)
    check_chat_template(tokenizer, run.model.model_name_or_path or "(embedded)")
    if run.model.use_peft:
        check_lora_targets(model, run.model.lora_target_modules)
    return model, tokenizer


# What a run writes besides checkpoints: --overwrite removes the previous run's.
RUN_FILES = ("metrics.jsonl", "summary.json", "eval_before.jsonl", "eval_after.jsonl", "eval_curve.jsonl",
             "eval_curve_answers.jsonl", "completions.jsonl")


def prepare_output_dir(run: TrainRun, checkpoint: str | None, versions: dict) -> None:
    """The main process makes the folder (emptied of a previous run with --overwrite) and writes train_config.json."""
    if run.grpo.process_index != 0:
        return
    output_dir = Path(run.grpo.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None and run.script.overwrite:
        for old in output_dir.glob("checkpoint-*"):
            shutil.rmtree(old)
        for name in RUN_FILES:
            (output_dir / name).unlink(missing_ok=True)
    (output_dir / "train_config.json").write_text(
        json.dumps({**run.to_dict(), "versions": versions}, indent=2, default=str) + "\n")


def initial_summary(run: TrainRun, checkpoint: str | None) -> dict:
    """The summary so far: a resumed run's summary.json (its "before" evaluation), with this run's config."""
    summary_path = Path(run.grpo.output_dir) / "summary.json"
    main_process = run.grpo.process_index == 0
    summary = json.loads(summary_path.read_text()) if main_process and checkpoint and summary_path.is_file() else {}
    summary["config"] = run.to_dict()
    summary["world_size"] = run.grpo.world_size
    return summary


def evaluate_before(run: TrainRun, model, tokenizer, summary: dict) -> None:
    """Greedy accuracy before training (main process; not again on resume). With --eval_every the
    curve evaluates at step 0 and at the end instead: before/after come from it."""
    script = run.script
    if not script.eval_dataset or script.eval_every or "before" in summary.get("eval", {}):
        return
    if run.grpo.process_index == 0:
        output_dir = Path(run.grpo.output_dir)
        summary.setdefault("eval", {})["before"] = greedy_eval(model, tokenizer, run, output_dir, "before")
        logger.warning("greedy accuracy before training: %s", summary["eval"]["before"])
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


def make_watch(run: TrainRun, rule, curve: dict):
    """The WatchCallback writing metrics.jsonl. Held-out accuracy is known on the main process only;
    with several processes the collapse step uses diversity alone, so that every process stops at
    the same step."""
    script = run.script
    evaluations = (lambda: curve["callback"].evaluations() if "callback" in curve else []) \
        if run.grpo.world_size == 1 else None
    return WatchCallback(Path(run.grpo.output_dir) / "metrics.jsonl", CollapseThresholds(window=script.watch_window),
                         stop_on_collapse=script.stop_on_collapse, collapse_rule=rule, evaluations=evaluations)


def completions_file(run: TrainRun, checkpoint: str | None) -> Path | None:
    """completions.jsonl with --save_completions (main process): fresh, or on resume without the
    steps about to run again."""
    if not run.script.save_completions or run.grpo.process_index != 0:
        return None
    path = Path(run.grpo.output_dir) / "completions.jsonl"
    if checkpoint is None:
        path.unlink(missing_ok=True)
    elif path.is_file():
        done = int(Path(checkpoint).name.rsplit("-", 1)[-1])
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and (json.loads(line).get("step") or 0) <= done]
        path.write_text("".join(line + "\n" for line in kept))
    return path


def add_curve(run: TrainRun, trainer, tokenizer, curve: dict) -> None:
    """With --eval_every: the GreedyCurveCallback on the trained policy, kept in `curve["callback"]`."""
    script = run.script
    if not script.eval_every:
        return
    problems = load_problems(script.eval_dataset, limit=script.eval_limit, seed=run.grpo.seed)
    probes = read_probe_prompts(script.probe_prompts) if script.probe_prompts else []
    curve["callback"] = GreedyCurveCallback(trainer.accelerator.unwrap_model(trainer.model), tokenizer, problems,
                                            Path(run.grpo.output_dir), script.eval_every, probes,
                                            max_new_tokens=script.eval_max_new_tokens,
                                            batch_size=script.eval_batch_size)
    trainer.add_callback(curve["callback"])


def run_trainer(trainer, checkpoint: str | None, first_reward, summary: dict) -> None:
    """Train (one progress bar on the main process), then save the LoRA adapter to OUTPUT_DIR/final."""
    use_console_progress(trainer)
    started = time.perf_counter()
    with libraries_renamed_calls():
        trainer.train(resume_from_checkpoint=checkpoint)
    if first_reward is not None and first_reward.monitor is not None:
        first_reward.monitor.flush()
    args = trainer.args
    summary["train_seconds"] = round(time.perf_counter() - started, 1)
    summary["global_step"] = trainer.state.global_step
    # How the processes trained: e.g. distributed / gloo / DistributedDataParallel under torchrun on CPU.
    summary["parallel"] = {"parallel_mode": args.parallel_mode.value, "ddp_backend": args.ddp_backend,
                           "model_wrapper": type(trainer.model_wrapped).__name__}
    trainer.save_model(str(Path(args.output_dir) / "final"))  # the LoRA adapter (TRL writes it from the main process)


def finish_summary(run: TrainRun, trainer, tokenizer, watch, rule, curve, summary: dict) -> dict:
    """The main process's summary.json: rewards, collapse step, first and last logged steps, the
    held-out accuracy after training (or the curve's first and last points)."""
    script, args = run.script, run.grpo
    output_dir = Path(args.output_dir)
    rows = read_metrics(output_dir / "metrics.jsonl")
    summary["watch_warnings"] = watch.warnings
    names = run.reward.reward_names()
    weights = args.reward_weights or [1.0] * len(names)
    summary["rewards"] = [{"name": n, "logged_as": logged_name(n, sc) if n != "reward_model" else run.reward.reward_model,
                           "scorer": sc, "weight": w}
                          for n, sc, w in zip(names, run.reward.reward_scorers(), weights)]
    summary["multi_objective_aggregation"] = args.multi_objective_aggregation
    summary["collapse"] = collapse_step(rows, rule, curve.evaluations() if curve is not None else [])
    summary["collapse_rule"] = dataclasses.asdict(rule)
    if rows:
        summary["first_step"], summary["last_step"] = rows[0], rows[-1]  # the curves: srgrpo.reports.training
    if script.eval_dataset and not script.eval_every:
        summary.setdefault("eval", {})["after"] = greedy_eval(trainer.model, tokenizer, run, output_dir, "after")
    elif curve is not None and curve.rows:
        points = curve.rows
        summary["eval"] = {label: {"dataset": script.eval_dataset, "n": r["n"], "accuracy": r["accuracy"],
                                   "seconds": r["seconds"]} for label, r in (("before", points[0]), ("after", points[-1]))}
        summary["eval_curve"] = points
    summary = TrainingSummary.from_json(summary).to_json()  # a missing or misnamed field fails here, not in a reader
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
