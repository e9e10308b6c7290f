"""`srgrpo rewardbench`: stable rank and baselines as zero-shot reward models, RewardBench protocol."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from srgrpo.cli import COMMANDS, EXIT_OK, EXIT_ROWS_FAILED, HelpFormatter
from srgrpo.cli.common import (
    add_model_arguments,
    add_scoring_arguments,
    check_at_least,
    load_model_from_args,
    parse_layers,
    scoring_options,
)
from srgrpo.reports.rewardbench import rewardbench_markdown, write_rewardbench_report_from_dir
from srgrpo.results import rewardbench_results_from_json
from srgrpo.rewardbench import v2 as rewardbench2
from srgrpo.rewardbench.methods import DEFAULT_METHODS, METHODS, parse_methods
from srgrpo.rewardbench.preference_data import detect_protocol, load_completion_sets, load_preference_pairs
from srgrpo.rewardbench.runner import RewardBenchConfig, run_rewardbench, run_rewardbench2


def add_parser(sub) -> None:
    bench = sub.add_parser(
        "rewardbench", formatter_class=HelpFormatter, help=COMMANDS["rewardbench"].help,
        description="Score every response with each scorer and report RewardBench accuracies with 95% "
        "bootstrap intervals. v1 (string chosen/rejected): per subset, per section (example-count weighted, "
        "math-prm as 984), the headline (mean of the sections present), raw accuracy, a length-controlled "
        "accuracy; a pair is correct only if chosen scores strictly higher. v2 (RewardBench 2: lists of "
        "completions): every completion scored alone, best-of-4 credit 1/(ties at the maximum) on the five "
        "subsets, the Ties formula on Ties, the headline the mean of the six. The protocol follows the data's "
        "schema unless --protocol says otherwise. Scores are cached in OUTPUT_DIR as they are computed: run "
        "the same command again to resume.",
        epilog="examples:\n"
        "  srgrpo rewardbench --data sample --output-dir runs/rb\n"
        "  srgrpo rewardbench --data allenai/reward-bench --output-dir runs/rb --scorers all --layers all\n"
        "  srgrpo rewardbench --data allenai/reward-bench-2 --output-dir runs/rb2 --scorers stable_rank,length,random\n"
        "scorers:\n" + "\n".join(f"  {name:<{max(map(len, METHODS)) + 2}}{spec.help}" for name, spec in METHODS.items()),
    )
    bench.add_argument("--data", required=True,
                       help="RewardBench-schema JSONL or parquet file, a folder of them, a Hugging Face dataset id, or "
                       "'sample': 24 LLMBar and HumanEvalPack pairs shipped with srgrpo")
    bench.add_argument("--output-dir", required=True, type=Path, help="folder for results, cache, report and plots")
    bench.add_argument("--scorers", default="default",
                       help="comma-separated scorer names, 'default' (" + ", ".join(DEFAULT_METHODS) + ": four that "
                       "share one forward pass, the lengths and random) or 'all' (every scorer: adds the other "
                       "features, the ablations and the LLM judges) (default: default)")
    bench.add_argument("--limit", type=int, default=None, help="keep the first N pairs of each subset")
    bench.add_argument("--layers", default=None,
                       help="layer sweep: 'all' or comma-separated hidden_states indices; SR accuracy per layer, "
                       "all from the same forward pass")
    bench.add_argument("--protocol", choices=("auto", "v1", "v2"), default="auto",
                       help="RewardBench version: auto (the default) reads it off the data: list-valued chosen/"
                       "rejected -> v2 (RewardBench 2), strings -> v1")
    bench.add_argument("--split", default=None,
                       help="split of a Hugging Face dataset (default: 'test' for v2 and for an id containing "
                       "'reward-bench-2', else 'filtered')")
    bench.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    bench.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the random scorer")
    bench.add_argument("--overwrite", action="store_true", help="discard a previous run in OUTPUT_DIR")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(bench)
    add_scoring_arguments(bench, default_notes={"max_length": "512 for v1, 2048 for v2 as RewardBench 2's run_v2.py"})
    bench.set_defaults(func=run)


def _split(args) -> str:
    if args.split is not None:
        return args.split
    return "test" if args.protocol == "v2" or "reward-bench-2" in str(args.data) else "filtered"


def _load(args, protocol: str, split: str) -> tuple[list, str, int]:
    """(the pairs or v2 prompts, their name, how many rows were skipped as bad), the data's problems printed."""
    if protocol == "v2":
        loaded = load_completion_sets(args.data, split=split, limit_per_subset=args.limit)
        units, unit_name = loaded.sets, "prompts"
    else:
        loaded = load_preference_pairs(args.data, split=split, limit_per_subset=args.limit)
        units, unit_name = loaded.pairs, "pairs"
    for line in loaded.problems[:20]:
        print(f"data: {line}", file=sys.stderr)
    if len(loaded.problems) > 20:
        print(f"data: ... and {len(loaded.problems) - 20} more", file=sys.stderr)
    skipped = sum(line.endswith("row skipped") for line in loaded.problems)  # the others are notes
    if not units:
        raise ValueError(f"--data {args.data}: no usable {'RewardBench 2 prompts' if protocol == 'v2' else 'preference pairs'}"
                         + (f" ({skipped} row(s) skipped as bad input, see above)" if skipped else ""))
    return units, unit_name, skipped


def run(args: argparse.Namespace) -> int:
    check_at_least(args, limit=1, bootstrap=1)
    scorers = parse_methods(args.scorers)
    split = _split(args)
    try:
        protocol = detect_protocol(args.data, split) if args.protocol == "auto" else args.protocol
        units, unit_name, skipped = _load(args, protocol, split)
    except (FileNotFoundError, RuntimeError) as err:  # RuntimeError: a hub dataset that cannot be loaded
        raise ValueError(f"--data: {err}") from None
    options = scoring_options(args, **({"max_length": rewardbench2.WINDOW} if protocol == "v2" else {}))
    print(f"RewardBench {protocol}: {len(units)} {unit_name} from {args.data}; scorers: {', '.join(scorers)}; "
          f"window {options.max_length} tokens", file=sys.stderr)
    model, tokenizer = load_model_from_args(args)
    layers = parse_layers(args.layers, model.config.get_text_config().num_hidden_layers)
    started = time.perf_counter()
    runner = run_rewardbench2 if protocol == "v2" else run_rewardbench
    results = runner(model, tokenizer, units, args.output_dir, RewardBenchConfig(
        scorers=scorers, options=options, layers=layers,
        n_bootstrap=args.bootstrap, seed=args.seed, overwrite=args.overwrite, progress=not args.quiet,
        run_info={"model": args.model or "embedded SmolLM2-135M-Instruct", "dtype": args.dtype,
                  "data": str(args.data), "limit_per_subset": args.limit},
    ))
    if results is None:  # a helper process of a distributed run: the main process reports
        return EXIT_OK
    title = "RewardBench 2 evaluation" if protocol == "v2" else "RewardBench evaluation"
    write_rewardbench_report_from_dir(args.output_dir, title=title, extra_meta={
        "compute seconds (this invocation)": round(time.perf_counter() - started, 1)})
    print(rewardbench_markdown(rewardbench_results_from_json(results), title=title))
    print(f"\nwrote results.json, {'prompts.jsonl, ' if protocol == 'v2' else ''}pairs.jsonl, report.md and plots "
          f"to {args.output_dir} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if skipped:
        print(f"{skipped} row(s) of {args.data} skipped as bad input (listed above as data: ...)", file=sys.stderr)
        return EXIT_ROWS_FAILED
    return EXIT_OK
