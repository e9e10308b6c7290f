"""`srgrpo train`: argparse wiring over srgrpo.training.trainer.train."""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  srgrpo train --dataset ../shared/data/eval/gsm8k_train.jsonl --output-dir runs/grpo
  srgrpo train --dataset prompts.jsonl --output-dir runs/grpo --config grpo.yaml --eval-dataset gsm8k
  srgrpo train --dataset prompts.jsonl --output-dir runs/grpo --resume

The config file (YAML or JSON) sets any field of srgrpo.training.config.TrainConfig (LoRA, GRPO,
reward and watch settings; unknown keys are errors); TRL GRPOConfig arguments go under `grpo:`.
Flags given on the command line win over the file."""


def add_train_parser(sub) -> argparse.ArgumentParser:
    train = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="SR-GRPO: GRPO + LoRA whose reward is the stable rank under the frozen base model",
        description="Fine-tune a model with TRL's GRPOTrainer and LoRA, rewarding each completion with its "
        "stable rank under the frozen base (the same weights with the adapter switched off). Defaults follow "
        "the paper: LoRA r=16 alpha=32 dropout 0.1 on all attention and MLP projections, K=8 completions per "
        "prompt, lr 1e-6 cosine with 10% warm-up, KL beta 0.04, advantages standardised within groups. "
        "Writes TRL checkpoints, metrics.jsonl (reward, SR spread, length, repetition, zero-spread groups), "
        "training_curves.png and summary.json into OUTPUT_DIR.",
        epilog=EPILOG,
    )
    train.add_argument("--dataset", help="prompt dataset: JSONL/JSON file or HF dataset id with a 'prompt' or 'question' column")
    train.add_argument("--output-dir", help="folder for checkpoints, metrics.jsonl, curves and summary")
    train.add_argument("--model", help="HF id, local folder or .gguf (default: embedded SmolLM2-135M-Instruct)")
    train.add_argument("--max-steps", type=int, help="optimizer steps (default: 400)")
    train.add_argument("--config", help="YAML or JSON file of TrainConfig settings")
    train.add_argument("--dtype", help="auto (default), float32, bfloat16")
    train.add_argument("--use-vllm", action="store_const", const=True, help="generate with vLLM (GPU; pip install srgrpo[vllm])")
    train.add_argument("--eval-dataset", help="greedy accuracy before and after training on: gsm8k, math500, gpqa, mmlu, "
                       "aime2025 or a JSONL of {question, answer}")
    train.add_argument("--eval-limit", type=int, help="questions of the evaluation set (default: 100)")
    train.add_argument("--stop-on-collapse", action="store_const", const=True,
                       help="stop when SR rises while length or diversity collapses (default: only warn)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR")
    train.add_argument("--overwrite", action="store_true", help="discard a previous run in OUTPUT_DIR")
    train.set_defaults(func=cmd_train)
    return train


def cmd_train(args: argparse.Namespace) -> int:
    from srgrpo.training.config import load_config
    from srgrpo.training.trainer import train

    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other")
    config = load_config(
        args.config, dataset=args.dataset, output_dir=args.output_dir, model=args.model, max_steps=args.max_steps,
        dtype=args.dtype, use_vllm=args.use_vllm, eval_dataset=args.eval_dataset, eval_limit=args.eval_limit,
        stop_on_collapse=args.stop_on_collapse,
    )
    if not config.dataset or not config.output_dir:
        raise ValueError("--dataset and --output-dir are required (on the command line or in --config)")
    summary = train(config, resume=args.resume, overwrite=args.overwrite)
    report = {k: summary[k] for k in ("global_step", "train_seconds", "first_step", "last_step", "eval",
                                      "watch_warnings") if k in summary}
    print(json.dumps(report, indent=2))
    print(f"wrote checkpoints, metrics.jsonl, training_curves.png and summary.json to {config.output_dir}",
          file=sys.stderr)
    return 0
