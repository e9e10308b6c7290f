"""`srgrpo score`: score (prompt, response) pairs from a JSONL file."""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

from srgrpo import distributed
from srgrpo.cli import COMMANDS, EXIT_OK, EXIT_ROWS_FAILED, HelpFormatter
from srgrpo.cli.common import add_model_arguments, add_scoring_arguments, load_model_from_args, scoring_options
from srgrpo.evaluation.datasets import SAMPLE, example_file
from srgrpo.features import FEATURES
from srgrpo.records import json_float
from srgrpo.score_io import JsonlWriter, read_pairs, rewrite_sorted
from srgrpo.scoring import StableRankScorer


def parse_features(text: str) -> list[str]:
    """'a,b' or 'all' -> feature names, checked against the registry (ValueError naming the known ones)."""
    if text.strip() == "all":
        return list(FEATURES)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError(f"--features needs at least one name; choose from: {', '.join(FEATURES)}, all")
    return FEATURES.check(names, "--features", also=("all",))


def add_parser(sub) -> None:
    score = sub.add_parser(
        "score", formatter_class=HelpFormatter, help=COMMANDS["score"].help,
        description="Score every line of a JSONL file of {\"prompt\", \"response\", optional \"id\"} objects "
        "(prompt: a string or a list of chat messages) and write one {\"id\", \"stable_rank\", ...} line per "
        "input line, one column per feature of --features (all from one forward pass). Results are written "
        "as they are computed, then sorted into input order. A bad line gets an \"error\" and the rest are "
        "still scored (exit status 1); a pair that cannot be scored (e.g. an empty response) gets null "
        "features and a \"warning\".",
        epilog="examples:\n  srgrpo score --input pairs.jsonl --output scores.jsonl --span response --layer final_norm\n"
        "  srgrpo score --input pairs.jsonl --output scores.jsonl --features stable_rank,mean_logprob\n"
        "  srgrpo score --input pairs.jsonl --output scores.jsonl --features all",
    )
    score.add_argument("--input", required=True, type=Path,
                       help="JSONL file of pairs; 'sample': six example pairs shipped with srgrpo")
    score.add_argument("--output", required=True, type=Path, help="JSONL file to write")
    score.add_argument("--features", default="stable_rank",
                       help="comma-separated feature names, or 'all' for every registered one: one output column "
                       "and one summary line per feature (default: stable_rank); names: " + ", ".join(FEATURES))
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(score)
    add_scoring_arguments(score)
    score.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = scoring_options(args)  # validate before loading anything
    features = parse_features(args.features)
    rows = _read_input(args)
    good = [r for r in rows if r.error is None]
    bad = [r for r in rows if r.error is not None]
    if distributed.is_main():
        for r in bad:
            print(f"error: {r.error}", file=sys.stderr)
    model, tokenizer = load_model_from_args(args)
    scored = _scored(StableRankScorer(model, tokenizer, options), good, features, args.quiet)
    if not distributed.is_main():
        for _ in scored:
            pass
        return EXIT_OK
    started = time.perf_counter()
    tally = _write_scores(args, scored, bad, features)
    _print_summary(args, tally, len(rows), options, time.perf_counter() - started)
    if bad:
        print(f"{len(bad)} row(s) rejected as bad input (see 'error' in the output)", file=sys.stderr)
    return EXIT_ROWS_FAILED if bad else EXIT_OK


def _read_input(args):
    """The rows of --input ('sample': the example pairs shipped with srgrpo)."""
    source = example_file("pairs.jsonl") if str(args.input) == SAMPLE and not args.input.exists() else args.input
    if not source.is_file():
        raise ValueError(f"--input: no such file: {source}")
    return read_pairs(source)


def _scored(scorer, good: list, features: list[str], quiet: bool):
    """(row, result) pairs as their batches finish; under a distributed launcher each process scores a
    share and the main process receives every round's results as they arrive."""
    def score_share(share):
        results = scorer.iter_features([r.prompt for r in share], [r.response for r in share], features,
                                       progress=not quiet and not distributed.is_distributed())
        return ((share[result.index], result) for result in results)

    if not distributed.is_distributed():
        return score_share(good)
    rounds = distributed.sharded_rounds(good, 32 * scorer.options.batch_size, lambda share: list(score_share(share)))
    return (pair for results in rounds for pair in results)


@dataclasses.dataclass
class Tally:
    """What the summary lines report: finite values per feature and the rows' counts."""

    values: dict[str, list[float]]
    unscored: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # reason -> lines scored null
    n_scored: int = 0
    n_tokens: int = 0
    truncated: int = 0
    extended: int = 0


def _write_scores(args, scored, bad: list, features: list[str]) -> Tally:
    """Write --output as results arrive (bad rows first, with their error), then sort it into input order."""
    tally = Tally({f: [] for f in features})
    with JsonlWriter(args.output) as out:
        for r in bad:
            out.write({"id": r.id, "line": r.line, **{f: None for f in features}, "error": r.error})
        try:
            for row, result in scored:
                record = {"id": row.id, "line": row.line, **{f: json_float(result.values[f]) for f in features},
                          "n_tokens": result.n_tokens, "truncated": result.truncated}
                if result.context_tokens:  # the short-span rule took tokens before the response
                    record["context_tokens"] = result.context_tokens
                    tally.extended += 1
                if result.warning:
                    record["warning"] = result.warning
                    tally.unscored.setdefault(result.warning, []).append(row.line)
                    print(f"warning: {args.input}:{row.line}: scored NaN ({result.warning})", file=sys.stderr)
                else:
                    tally.n_scored += 1
                    for f in features:
                        if math.isfinite(result.values[f]):
                            tally.values[f].append(result.values[f])
                out.write(record)
                tally.truncated += result.truncated
                tally.n_tokens += result.n_tokens
        except BaseException:
            print(f"\ninterrupted: the scores computed so far are in {args.output}", file=sys.stderr)
            raise
    rewrite_sorted(args.output, key=lambda rec: rec["line"])
    return tally


def _print_summary(args, tally: Tally, n_rows: int, options, elapsed: float) -> None:
    workers = f" by {distributed.world_size()} processes" if distributed.is_distributed() else ""
    print(f"\nscored {tally.n_scored} of {n_rows} rows in {elapsed:.1f} s{workers} "
          f"({tally.n_tokens / max(elapsed, 1e-9):.0f} scored tokens/s) -> {args.output}", file=sys.stderr)
    width = max(len(_label(f)) for f in tally.values)
    for f, v in tally.values.items():
        if v:
            print(f"{_label(f) + ':':<{width + 1}} mean {statistics.fmean(v):.4f}  median {statistics.median(v):.4f}  "
                  f"min {min(v):.4f}  max {max(v):.4f}" + (f"  ({len(v)} finite)" if len(v) != tally.n_scored else ""),
                  file=sys.stderr)
    if tally.extended:
        print(f"{tally.extended} row(s) shorter than --min-span-tokens {options.min_span_tokens} were scored with the "
              f"tokens before them (context_tokens)", file=sys.stderr)
    if tally.truncated:
        print(f"{tally.truncated} row(s) longer than the {options.max_length}-token window were cut "
              f"on the {options.truncation_side}", file=sys.stderr)
    for reason, lines in tally.unscored.items():
        print(f"{len(lines)} row(s) scored null ({reason})", file=sys.stderr)


def _label(feature: str) -> str:
    return "stable rank" if feature == "stable_rank" else feature  # the line existing users know
