"""`srgrpo rewardbench`: stable rank and baselines as zero-shot reward models, RewardBench protocol."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from srgrpo.cli.common import (
    HelpFormatter,
    add_model_arguments,
    add_scoring_arguments,
    load_model_from_args,
    parse_layers,
    scoring_options,
)


def add_parser(sub) -> None:
    from srgrpo.evaluation.scorers import DEFAULT_SCORERS, SCORERS

    bench = sub.add_parser(
        "rewardbench", formatter_class=HelpFormatter,
        help="evaluate stable rank and baselines as zero-shot reward models (RewardBench protocol)",
        description="Score the chosen and rejected response of every preference pair with each scorer and "
        "report RewardBench v1 accuracies: per subset, per section (example-count weighted, math-prm as 984), "
        "the headline (mean of the sections present), raw accuracy, a length-controlled accuracy, 95% "
        "bootstrap intervals. A pair is correct only if chosen scores strictly higher. Scores are cached "
        "in OUTPUT_DIR as they are computed: run the same command again to resume.",
        epilog="examples:\n"
        "  srgrpo rewardbench --data ../shared/data/preference/rewardbench_offline.jsonl --output-dir runs/rb\n"
        "  srgrpo rewardbench --data allenai/reward-bench --output-dir runs/rb --scorers all --layers all\n"
        "scorers:\n" + "\n".join(f"  {name:<{max(map(len, SCORERS)) + 2}}{spec.help}" for name, spec in SCORERS.items()),
    )
    bench.add_argument("--data", required=True,
                       help="RewardBench-schema JSONL or parquet file, a folder of them, or a Hugging Face dataset id")
    bench.add_argument("--output-dir", required=True, type=Path, help="folder for results, cache, report and plots")
    bench.add_argument("--scorers", default="default",
                       help="comma-separated scorer names, 'default' (" + ", ".join(DEFAULT_SCORERS) + ": four that "
                       "share one forward pass, the lengths and random) or 'all' (every scorer: adds the other "
                       "features, the ablations and the LLM judges) (default: default)")
    bench.add_argument("--limit", type=int, default=None, help="keep the first N pairs of each subset")
    bench.add_argument("--layers", default=None,
                       help="layer sweep: 'all' or comma-separated hidden_states indices; SR accuracy per layer, "
                       "all from the same forward pass")
    bench.add_argument("--split", default="filtered", help="split of a Hugging Face dataset (default: filtered)")
    bench.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    bench.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the random scorer")
    bench.add_argument("--overwrite", action="store_true", help="discard a previous run in OUTPUT_DIR")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(bench)
    add_scoring_arguments(bench)
    bench.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from srgrpo.evaluation.preference_data import load_preference_pairs
    from srgrpo.evaluation.runner import run_rewardbench
    from srgrpo.evaluation.scorers import parse_scorers
    from srgrpo.reports.rewardbench import rewardbench_markdown, write_rewardbench_report_from_dir
    from srgrpo.results import rewardbench_results_from_json

    options = scoring_options(args)
    scorers = parse_scorers(args.scorers)
    loaded = load_preference_pairs(args.data, split=args.split, limit_per_subset=args.limit)
    for line in loaded.problems[:20]:
        print(f"data: {line}", file=sys.stderr)
    if len(loaded.problems) > 20:
        print(f"data: ... and {len(loaded.problems) - 20} more", file=sys.stderr)
    if not loaded.pairs:
        raise ValueError(f"no usable preference pairs in {args.data}")
    print(f"{len(loaded.pairs)} pairs from {args.data}; scorers: {', '.join(scorers)}", file=sys.stderr)
    model, tokenizer = load_model_from_args(args)
    layers = parse_layers(args.layers, model.config.get_text_config().num_hidden_layers)
    started = time.perf_counter()
    results = run_rewardbench(
        model, tokenizer, loaded.pairs, args.output_dir, scorers=scorers, options=options, layers=layers,
        n_bootstrap=args.bootstrap, seed=args.seed, overwrite=args.overwrite, progress=not args.quiet,
        run_info={"model": args.model or "embedded SmolLM2-135M-Instruct", "dtype": args.dtype,
                  "data": str(args.data), "limit_per_subset": args.limit},
    )
    if results is None:  # a helper process of a distributed run: the main process reports
        return 0
    write_rewardbench_report_from_dir(args.output_dir, extra_meta={
        "compute seconds (this invocation)": round(time.perf_counter() - started, 1)})
    print(rewardbench_markdown(rewardbench_results_from_json(results), title="RewardBench evaluation"))
    print(f"\nwrote results.json, pairs.jsonl, report.md and plots to {args.output_dir} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0
