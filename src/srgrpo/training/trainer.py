"""SR-GRPO end to end: prompts -> TRL GRPOTrainer with LoRA and the stable-rank reward -> checkpoints,
metrics.jsonl, training curves, and greedy accuracy before and after.

Every check that can fail on the user's input (dataset columns, chat template, LoRA targets,
an output folder holding another run) runs before any generation or training step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from srgrpo.training.config import TrainConfig
from srgrpo.training.reward import StableRankReward

logger = logging.getLogger("srgrpo.train")

PROMPT_COLUMNS = ("prompt", "question")  # in order of preference


# ---------------------------------------------------------------------------------------- data
def _read_rows(source: str, split: str):
    """A datasets.Dataset from a JSONL/JSON file or a Hugging Face dataset id/folder."""
    import datasets

    path = Path(source)
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise ValueError(f"prompt dataset {source}: expected a .jsonl or .json file")
        return datasets.load_dataset("json", data_files=str(path), split="train")
    if source.endswith((".jsonl", ".json")):
        raise FileNotFoundError(f"prompt dataset not found: {source}")
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as err:  # datasets raises many kinds for a missing/unknown dataset
        raise ValueError(f"could not load prompt dataset {source!r} (split {split!r}): {err}") from err


def load_prompt_dataset(source: str, split: str = "train"):
    """The prompts as a dataset with one column, `prompt`, holding chat messages (TRL templates and
    tokenises them itself). Takes a `prompt` column (a string or messages) or, for GSM8K-style
    files, a `question` column."""
    rows = _read_rows(source, split)
    column = next((c for c in PROMPT_COLUMNS if c in rows.column_names), None)
    if column is None:
        raise ValueError(
            f"prompt dataset {source} has no prompt column: expected one of {', '.join(PROMPT_COLUMNS)}, "
            f"found {', '.join(rows.column_names) or 'no columns'}"
        )
    if len(rows) == 0:
        raise ValueError(f"prompt dataset {source} is empty")

    def as_messages(row):
        value = row[column]
        if isinstance(value, str):
            return {"prompt": [{"role": "user", "content": value}]}
        if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            return {"prompt": value}
        raise ValueError(f"prompt dataset {source}: column {column!r} must hold strings or chat messages, "
                         f"got {type(value).__name__}")

    return rows.map(as_messages, remove_columns=rows.column_names)


# ---------------------------------------------------------------------------------------- checks
def check_chat_template(tokenizer, name: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"model {name} has no chat template: SR-GRPO samples assistant turns from chat prompts, "
            "so use an instruct/chat model (or give the tokenizer a chat_template)"
        )


def check_lora_targets(model, targets: list[str]) -> None:
    """Every LoRA target must name modules of the model (peft silently skips a typo when another
    name matches)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        import torch

        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"LoRA target module(s) {', '.join(missing)} not found in the model; "
                         f"its linear layers are: {', '.join(linear)}")


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> str | None:
    """The checkpoint to resume from (None for a fresh run). A folder holding another run is refused
    unless --resume or --overwrite says what to do with it."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume:
        if last is None:
            raise ValueError(f"--resume: no checkpoint-* folder in {output_dir}")
        return last
    if not overwrite and output_dir.is_dir() and (last or (output_dir / "metrics.jsonl").exists()):
        raise ValueError(f"{output_dir} holds a previous run: pass --resume to continue it or --overwrite to start afresh")
    return None


# ---------------------------------------------------------------------------------------- trainer
def grpo_arguments(config: TrainConfig, device_type: str):
    """TRL's GRPOConfig from ours; `config.grpo` may add any other GRPOConfig field."""
    from trl import GRPOConfig

    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(set(config.grpo) - known)
    if unknown:
        raise ValueError(f"grpo: unknown GRPOConfig argument(s) {', '.join(unknown)}")
    values = dict(
        output_dir=config.output_dir,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # transformers 5: a value below 1 is a share of the steps
        beta=config.beta,
        scale_rewards=config.scale_rewards,
        max_steps=config.max_steps,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        seed=config.seed,
        bf16=(device_type == "cuda") if config.bf16 is None else config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        report_to="none",
    )
    values.update(config.grpo)
    return GRPOConfig(**values)


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_target_modules), task_type="CAUSAL_LM")


def build_trainer(config: TrainConfig, model, tokenizer, dataset, callbacks=()):
    """A GRPOTrainer with LoRA on `model` and the stable-rank reward bound to it (adapter disabled,
    so the frozen base costs no extra memory). Returns (trainer, reward)."""
    from trl import GRPOTrainer

    check_chat_template(tokenizer, config.model or "(embedded)")
    check_lora_targets(model, config.lora_target_modules)
    args = grpo_arguments(config, next(model.parameters()).device.type)
    reward = StableRankReward(options=config.scoring_options())
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora_config(config), callbacks=list(callbacks))
    reward.bind(trainer)
    return trainer, reward


# ---------------------------------------------------------------------------------------- evaluation
def greedy_eval(model, tokenizer, config: TrainConfig, output_dir: Path, label: str) -> dict:
    """Greedy accuracy on the held-out slice; per-question rows go to eval_{label}.jsonl."""
    from srgrpo.bon.evaluate import greedy_accuracy
    from srgrpo.bon.tasks import load_problems

    problems = load_problems(config.eval_dataset, limit=config.eval_limit, seed=config.seed)
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    try:
        accuracy, rows = greedy_accuracy(model, tokenizer, problems, max_new_tokens=config.eval_max_new_tokens,
                                         batch_size=config.eval_batch_size)
    finally:
        model.train(was_training)
    with (output_dir / f"eval_{label}.jsonl").open("w") as out:
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
    return {"dataset": config.eval_dataset, "n": len(problems), "accuracy": accuracy,
            "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------------------------- run
def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run SR-GRPO as configured; returns the summary also written to `summary.json`."""
    from srgrpo.models import load_model
    from srgrpo.training.plots import plot_training_curves
    from srgrpo.training.watch import CollapseThresholds, WatchCallback, read_metrics

    if not config.dataset or not config.output_dir:
        raise ValueError("a prompt dataset and an output folder are required")
    output_dir = Path(config.output_dir)
    checkpoint = check_output_dir(output_dir, resume, overwrite)
    if config.use_vllm:
        import importlib.util

        import torch

        if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
            raise ValueError("use_vllm needs a CUDA GPU and vLLM (pip install 'srgrpo[vllm]')")
    dataset = load_prompt_dataset(config.dataset, config.dataset_split)  # before the model: fail fast
    if config.eval_dataset:
        from srgrpo.bon.tasks import load_problems

        load_problems(config.eval_dataset, limit=1)  # an unknown eval set fails now, not after training
    model, tokenizer = load_model(config.model, dtype=config.dtype)
    check_chat_template(tokenizer, config.model or "(embedded)")
    check_lora_targets(model, config.lora_target_modules)

    output_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None and overwrite:  # start afresh: the previous run's checkpoints and files go
        import shutil

        for old in output_dir.glob("checkpoint-*"):
            shutil.rmtree(old)
        for name in ("metrics.jsonl", "summary.json", "eval_before.jsonl", "eval_after.jsonl"):
            (output_dir / name).unlink(missing_ok=True)
    (output_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    summary_path = output_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if checkpoint and summary_path.is_file() else {}
    summary["config"] = dataclasses.asdict(config)

    if config.eval_dataset and "before" not in summary.get("eval", {}):
        summary.setdefault("eval", {})["before"] = greedy_eval(model, tokenizer, config, output_dir, "before")
        logger.warning("greedy accuracy before training: %s", summary["eval"]["before"])
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")

    watch = WatchCallback(output_dir / "metrics.jsonl", CollapseThresholds(window=config.watch_window),
                          stop_on_collapse=config.stop_on_collapse)
    trainer, _ = build_trainer(config, model, tokenizer, dataset, callbacks=[watch])
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    summary["train_seconds"] = round(time.perf_counter() - started, 1)
    summary["global_step"] = trainer.state.global_step
    trainer.save_model(str(output_dir / "final"))  # the LoRA adapter

    rows = read_metrics(output_dir / "metrics.jsonl")
    summary["watch_warnings"] = watch.warnings
    if rows:
        summary["first_step"], summary["last_step"] = rows[0], rows[-1]
        plot_training_curves(rows, output_dir / "training_curves.png")
    if config.eval_dataset:
        summary.setdefault("eval", {})["after"] = greedy_eval(trainer.model, tokenizer, config, output_dir, "after")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
