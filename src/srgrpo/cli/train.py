"""`srgrpo train`: TRL's parser (srgrpo.training.config) over srgrpo.training.trainer.train.

The `train` sub-command takes its arguments verbatim and hands them to
`srgrpo.training.config.TrainArgumentParser` (a `trl.TrlParser`), which owns every flag, the
`--config` YAML file and `--help`. So the sub-parser declares no option of its own: its
`prefix_chars="+"` keeps argparse from reading `--flags` as the sub-parser's options (a REMAINDER
positional alone would refuse a first argument that starts with `-`).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "SR-GRPO: GRPO + LoRA whose reward is the stable rank under the frozen base model"


def add_parser(sub) -> argparse.ArgumentParser:
    train = sub.add_parser("train", help=HELP, add_help=False, prefix_chars="+",
                           description=HELP + " (srgrpo train --help lists the flags)")
    train.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    train.set_defaults(func=run)
    return train


def run(args: argparse.Namespace) -> int:
    from srgrpo.reports.training import write_training_curves
    from srgrpo.training.config import parse_train_args
    from srgrpo.training.trainer import train

    run = parse_train_args(args.argv)  # --help prints and exits here; bad input raises ValueError
    summary = train(run)
    if run.grpo.process_index != 0:
        return 0
    write_training_curves(run.grpo.output_dir)  # the report, as every command writes its own
    report = {k: summary[k] for k in ("global_step", "train_seconds", "world_size", "first_step", "last_step", "eval",
                                      "watch_warnings") if k in summary}
    print(json.dumps(report, indent=2))
    print(f"wrote checkpoints, metrics.jsonl, training_curves.png and summary.json to {run.grpo.output_dir}",
          file=sys.stderr)
    return 0
