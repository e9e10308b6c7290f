"""`srgrpo score`: score (prompt, response) pairs from a JSONL file."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from srgrpo.cli.common import (
    HelpFormatter,
    add_model_arguments,
    add_scoring_arguments,
    load_model_from_args,
    scoring_options,
)


def add_parser(sub) -> None:
    score = sub.add_parser(
        "score", formatter_class=HelpFormatter,
        help="score (prompt, response) pairs from a JSONL file",
        description="Score every line of a JSONL file of {\"prompt\", \"response\", optional \"id\"} objects "
        "(prompt: a string or a list of chat messages) and write one {\"id\", \"stable_rank\", ...} line per "
        "input line. Results are written as they are computed, then sorted into input order. A bad line "
        "gets an \"error\" and the rest are still scored (exit status 1); a pair that cannot be scored "
        "(e.g. an empty response) gets stable_rank null and a \"warning\".",
        epilog="example:\n  srgrpo score --input pairs.jsonl --output scores.jsonl --span response --layer final_norm",
    )
    score.add_argument("--input", required=True, type=Path, help="JSONL file of pairs")
    score.add_argument("--output", required=True, type=Path, help="JSONL file to write")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(score)
    add_scoring_arguments(score)
    score.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from srgrpo import distributed
    from srgrpo.records import json_float
    from srgrpo.score_io import JsonlWriter, read_pairs, rewrite_sorted
    from srgrpo.scoring import StableRankScorer

    options = scoring_options(args)  # validate before loading anything
    main_process = distributed.is_main()
    rows = read_pairs(args.input)
    good = [r for r in rows if r.error is None]
    bad = [r for r in rows if r.error is not None]
    if main_process:
        for r in bad:
            print(f"error: {r.error}", file=sys.stderr)
    model, tokenizer = load_model_from_args(args)
    scorer = StableRankScorer(model, tokenizer, options)

    def score_share(share):
        """(row, result) for each pair of `share`, as soon as its batch is done."""
        results = scorer.iter_scores([r.prompt for r in share], [r.response for r in share],
                                     progress=not args.quiet and not distributed.is_distributed())
        return ((share[result.index], result) for result in results)

    if distributed.is_distributed():
        # Each process scores a share; the main process writes every round's results as they arrive.
        scored = (pair for results in distributed.sharded_rounds(good, 32 * options.batch_size,
                                                                 lambda share: list(score_share(share)))
                  for pair in results)
    else:
        scored = score_share(good)
    if not main_process:
        for _ in scored:
            pass
        return 0

    started = time.perf_counter()
    values, unscored, truncated, n_tokens = [], {}, 0, 0
    with JsonlWriter(args.output) as out:
        for r in bad:
            out.write({"id": r.id, "line": r.line, "stable_rank": None, "error": r.error})
        try:
            for row, result in scored:
                record = {"id": row.id, "line": row.line, "stable_rank": json_float(result.value),
                          "n_tokens": result.n_tokens, "truncated": result.truncated}
                if result.warning:
                    record["warning"] = result.warning
                    unscored.setdefault(result.warning, []).append(row.line)
                    print(f"warning: {args.input}:{row.line}: scored NaN ({result.warning})", file=sys.stderr)
                else:
                    values.append(result.value)
                out.write(record)
                truncated += result.truncated
                n_tokens += result.n_tokens
        except BaseException:
            print(f"\ninterrupted: the scores computed so far are in {args.output}", file=sys.stderr)
            raise
    rewrite_sorted(args.output, key=lambda rec: rec["line"])
    elapsed = time.perf_counter() - started

    workers = f" by {distributed.world_size()} processes" if distributed.is_distributed() else ""
    print(f"\nscored {len(values)} of {len(rows)} rows in {elapsed:.1f} s{workers} "
          f"({n_tokens / max(elapsed, 1e-9):.0f} scored tokens/s) -> {args.output}", file=sys.stderr)
    if values:
        print(f"stable rank: mean {statistics.fmean(values):.4f}  median {statistics.median(values):.4f}  "
              f"min {min(values):.4f}  max {max(values):.4f}", file=sys.stderr)
    if truncated:
        print(f"{truncated} row(s) longer than the {options.max_length}-token window were cut "
              f"on the {options.truncation_side}", file=sys.stderr)
    for reason, lines in unscored.items():
        print(f"{len(lines)} row(s) scored null ({reason})", file=sys.stderr)
    if bad:
        print(f"{len(bad)} row(s) rejected as bad input (see 'error' in the output)", file=sys.stderr)
    return 1 if bad else 0
