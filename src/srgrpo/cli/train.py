"""`srgrpo train`: TRL's parser (srgrpo.training.config) over srgrpo.training.trainer.train.

The `train` sub-command takes its arguments verbatim and hands them to
`srgrpo.training.config.TrainArgumentParser` (a `trl.TrlParser`), which owns every flag and the
`--config` YAML file. So the sub-parser declares no option of its own: its `prefix_chars="+"`
keeps argparse from reading `--flags` as the sub-parser's options (a REMAINDER positional alone
would refuse a first argument that starts with `-`). `--help` shows srgrpo's settings and the main
TRL ones; `--help-trl` every setting of trl.GRPOConfig and trl.ModelConfig.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from srgrpo.cli import COMMANDS, EXIT_OK
from srgrpo.reports.training import write_training_curves
from srgrpo.training.config import RewardArguments, TrainArgumentParser, TrainScriptArguments
from srgrpo.training.trainer import train

HELP = COMMANDS["train"].help

# The TRL settings `srgrpo train --help` shows beside srgrpo's own; `--help-trl` lists all of them.
MAIN_TRL_SETTINGS = (
    "output_dir", "model_name_or_path", "dtype", "max_steps", "num_generations", "per_device_train_batch_size",
    "gradient_accumulation_steps", "learning_rate", "beta", "max_completion_length", "temperature", "lora_r",
    "lora_alpha", "lora_target_modules", "save_steps", "seed",
)
HELP_TRL = "--help-trl"


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("train", help=HELP, add_help=False, prefix_chars="+",
                            description=HELP + " (srgrpo train --help lists the flags)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)
    return parser


def short_help(parser: argparse.ArgumentParser) -> str:
    """srgrpo's own settings (prompts, evaluation, watch, rewards) and the main TRL ones, dashed flags."""
    short = argparse.ArgumentParser(prog=parser.prog, usage=parser.usage, description=parser.description,
                                    formatter_class=parser.formatter_class, add_help=False,
                                    epilog=f"{HELP_TRL} lists every setting of trl.GRPOConfig and trl.ModelConfig "
                                    "(each one is a flag and a --config key).\n\n" + (parser.epilog or ""))
    general = short.add_argument_group("options")
    general.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS, help="this help")
    general.add_argument(HELP_TRL, action="store_true", default=argparse.SUPPRESS, help="every TRL setting as well")
    ours = (TrainScriptArguments._argument_group_name, RewardArguments._argument_group_name)
    groups = {title: short.add_argument_group(title) for title in ours}
    trl_main = short.add_argument_group(f"main TRL settings (trl.GRPOConfig, trl.ModelConfig; all: {HELP_TRL})")
    for group in parser._action_groups:
        for action in group._group_actions:
            target = (general if action.dest == "config" else groups.get(group.title)
                      or (trl_main if action.dest in MAIN_TRL_SETTINGS else None))
            if target is not None:
                shown = copy.copy(action)  # the dashed spelling only, as the documentation writes flags
                shown.option_strings = [s for s in action.option_strings if "_" not in s] or action.option_strings
                target._group_actions.append(shown)
    return short.format_help()


def run(args: argparse.Namespace) -> int:
    parser = TrainArgumentParser()
    if HELP_TRL in args.argv:
        parser.print_help()
        raise SystemExit(EXIT_OK)
    if "-h" in args.argv or "--help" in args.argv:
        print(short_help(parser))
        raise SystemExit(EXIT_OK)
    run = parser.parse(args.argv)  # bad input raises ValueError
    summary = train(run)
    if run.grpo.process_index != 0:
        return EXIT_OK
    plot = write_training_curves(run.grpo.output_dir)  # the report, as every command writes its own
    print(report(summary, Path(run.grpo.output_dir), plot))
    return EXIT_OK


# The training columns the report shows from the first and last logged steps: (label, column, format).
REPORT_COLUMNS = (("reward", "reward_mean", "{:.4f}"), ("KL", "kl", "{:.4f}"), ("length", "completion_length", "{:.1f}"))


def report(summary: dict, output_dir: Path, plot: Path | None) -> str:
    """The short table that ends a run: how the reward, KL and length moved, the held-out accuracy,
    any watch warning, and where the adapter, metrics, plot and summary are."""
    first, last = summary.get("first_step") or {}, summary.get("last_step") or {}
    rows = []
    for label, column, fmt in REPORT_COLUMNS:
        if column in first and column in last:
            rows.append((label, f"{fmt.format(first[column])} -> {fmt.format(last[column])}  (step {first['step']} -> "
                                f"{last['step']})"))
    evaluation = summary.get("eval") or {}
    if "before" in evaluation and "after" in evaluation:
        before, after = evaluation["before"], evaluation["after"]
        rows.append(("accuracy", f"{before['accuracy']:.3f} -> {after['accuracy']:.3f}  (greedy, {after['n']} "
                                 f"questions of {after['dataset']})"))
    rows += [("warning", text) for text in summary.get("watch_warnings") or []]
    rows += [("adapter", f"{output_dir / 'final'}  (srgrpo evaluate --adapter {output_dir / 'final'})"),
             ("metrics", str(output_dir / "metrics.jsonl")),
             ("plot", str(plot) if plot else "none (no step was logged)"),
             ("summary", str(output_dir / "summary.json"))]
    width = max(len(label) for label, _ in rows)
    head = f"\ntrained {summary['global_step']} step(s) in {summary['train_seconds']:.1f} s"
    return "\n".join([head, *(f"  {label:<{width}}  {text}" for label, text in rows)])
