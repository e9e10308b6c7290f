"""`srgrpo demo`: score the example pairs shipped with srgrpo and print a table."""

from __future__ import annotations

import argparse
import time
from importlib import resources

from srgrpo.cli.common import (
    HelpFormatter,
    add_model_arguments,
    add_scoring_arguments,
    load_model_from_args,
    scoring_options,
)


def add_parser(sub) -> None:
    demo = sub.add_parser(
        "demo", formatter_class=HelpFormatter,
        help="score the example pairs shipped with srgrpo and print a table",
        description="Score the example pairs shipped with srgrpo and print a table: a quick check that "
        "the install and the model work.",
    )
    add_model_arguments(demo)
    add_scoring_arguments(demo)
    demo.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from srgrpo.score_io import read_pairs
    from srgrpo.scoring import StableRankScorer

    with resources.as_file(resources.files("srgrpo") / "examples" / "pairs.jsonl") as path:
        rows = read_pairs(path)
    model, tokenizer = load_model_from_args(args)
    scorer = StableRankScorer(model, tokenizer, scoring_options(args))
    started = time.perf_counter()
    scores = scorer.score([r.prompt for r in rows], [r.response for r in rows])
    elapsed = time.perf_counter() - started
    print(f"\n{'id':<22} {'SR':>7}  response")
    for row, value in zip(rows, scores):
        text = " ".join(row.response.split())
        print(f"{str(row.id):<22} {value:7.3f}  {text[:70] + ('...' if len(text) > 70 else '')}")
    print(f"\n{len(rows)} pairs scored in {elapsed:.1f} s with {args.model or 'the embedded SmolLM2-135M-Instruct'}"
          f" (span={scorer.options.span}, layer={scorer.options.layer}, window={scorer.options.max_length})")
    return 0
