"""`srgrpo compare`: the paper's Table 2 of any set of `srgrpo evaluate` runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from srgrpo.cli import COMMANDS, EXIT_OK, HelpFormatter
from srgrpo.evaluation.comparison import compare_runs
from srgrpo.reports.evaluation import comparison_markdown, plot_comparison


def run(args: argparse.Namespace) -> int:
    comparison = compare_runs(args.runs, base=args.base, seed=args.seed)
    text = comparison_markdown(comparison)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        results = args.output.with_suffix(".json")
        results.write_text(json.dumps(comparison.to_json(), indent=2))
        plot = args.plot or args.output.with_suffix(".png")
        plot_comparison(comparison, plot)
        print(f"wrote {args.output}, {results} and {plot}", file=sys.stderr)
    elif args.plot is not None:
        plot_comparison(comparison, args.plot)
    return EXIT_OK


def add_parser(sub) -> None:
    cmp = sub.add_parser(
        "compare", formatter_class=HelpFormatter, help=COMMANDS["compare"].help,
        description="One row per run (a model or model + adapter), one column per benchmark in the paper's "
        "order, then the STEM (GPQA, MMLU-Redux) and Math (MATH500, AIME25, OlympiadBench, AMC23) averages. "
        "Below: each run's difference to the base in points, on the questions both runs answered, with a "
        "paired bootstrap 95% interval (the same questions resampled for both runs; a group average "
        "resamples each task on its own). Prints Markdown; --output writes it with a .json of the numbers "
        "and a .png plot.",
        epilog="example:\n  srgrpo compare runs/eval-base runs/eval-sr runs/eval-ipo --output runs/table2.md",
    )
    cmp.add_argument("runs", nargs="+", type=Path, metavar="DIR", help="output folders of srgrpo evaluate")
    cmp.add_argument("--base", type=Path, default=None,
                     help="the run the others are compared with (default: the first run without an adapter)")
    cmp.add_argument("--output", type=Path, default=None, help="Markdown file to write (plus .json and .png beside it)")
    cmp.add_argument("--plot", type=Path, default=None, help="PNG to write (default: beside --output)")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    cmp.set_defaults(func=run)
