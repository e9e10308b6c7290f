"""The `srgrpo` command line. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from importlib import resources
from pathlib import Path

from srgrpo.options import ScoringOptions

DESCRIPTION = """\
Stable rank (SR = ||H||_F^2 / ||H||_2^2 of a response's last-layer hidden states) as a label-free
reward. The default model is the embedded SmolLM2-135M-Instruct; --model takes any Hugging Face id
or local folder."""


_HelpFormatter = argparse.RawDescriptionHelpFormatter


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="Hugging Face model id, local folder or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    group.add_argument("--dtype", default="auto",
                       help="model dtype: auto (the default: float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
    group.add_argument("--device", default="auto", help="auto (GPU if present; the default), cpu, cuda, cuda:1, ...")
    group.add_argument("--cache-dir", default=None,
                       help="where the embedded model is converted to (default: $SRGRPO_CACHE_DIR or ~/.cache/srgrpo)")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ScoringOptions field, so the options and their help live in one place."""
    group = parser.add_argument_group("scoring options")
    for f in dataclasses.fields(ScoringOptions):
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            type=int if f.type == "int" else str,
            default=f.default,
            choices=f.metadata.get("choices"),
            help=f.metadata["help"] + " (default: %(default)s)",
        )


def scoring_options(args: argparse.Namespace) -> ScoringOptions:
    return ScoringOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ScoringOptions)})


def _load(args):
    from srgrpo.models import load_model

    print(f"loading model {args.model or '(embedded SmolLM2-135M-Instruct)'} ...", file=sys.stderr)
    return load_model(args.model, dtype=args.dtype, device=args.device, cache_dir=args.cache_dir)


def cmd_score(args: argparse.Namespace) -> int:
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
    model, tokenizer = _load(args)
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


def parse_layers(text: str | None, num_layers: int) -> list[int]:
    """'all' -> every hidden_states index 0..L; '0,5,-1' -> those indices (negatives from the end)."""
    if not text:
        return []
    if text.strip() == "all":
        return list(range(num_layers + 1))
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--layers must be 'all' or comma-separated integers, got {text!r}") from None
    n_states = num_layers + 1
    bad = [k for k in layers if not -n_states <= k < n_states]
    if bad:
        raise ValueError(f"--layers {bad} out of range for a model with {num_layers} layers (0..{num_layers})")
    return sorted({k % n_states for k in layers})


def cmd_rewardbench(args: argparse.Namespace) -> int:
    from srgrpo.evaluation.preference_data import load_preference_pairs
    from srgrpo.reports.rewardbench import rewardbench_markdown
    from srgrpo.results import rewardbench_results_from_json
    from srgrpo.evaluation.runner import run_rewardbench
    from srgrpo.evaluation.scorers import parse_scorers

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
    model, tokenizer = _load(args)
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
    print(rewardbench_markdown(rewardbench_results_from_json(results), title="RewardBench evaluation"))
    print(f"\nwrote results.json, pairs.jsonl, report.md and plots to {args.output_dir} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from srgrpo.score_io import read_pairs
    from srgrpo.scoring import StableRankScorer

    with resources.as_file(resources.files("srgrpo") / "examples" / "pairs.jsonl") as path:
        rows = read_pairs(path)
    model, tokenizer = _load(args)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srgrpo", description=DESCRIPTION, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    score = sub.add_parser(
        "score", formatter_class=_HelpFormatter,
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
    score.set_defaults(func=cmd_score)

    bench = sub.add_parser(
        "rewardbench", formatter_class=_HelpFormatter,
        help="evaluate stable rank and baselines as zero-shot reward models (RewardBench protocol)",
        description="Score the chosen and rejected response of every preference pair with each scorer and "
        "report RewardBench v1 accuracies: per subset, per section (example-count weighted, math-prm as 984), "
        "the headline (mean of the sections present), raw accuracy, a length-controlled accuracy, 95% "
        "bootstrap intervals. A pair is correct only if chosen scores strictly higher. Scores are cached "
        "in OUTPUT_DIR as they are computed: run the same command again to resume.",
        epilog="examples:\n"
        "  srgrpo rewardbench --data ../shared/data/preference/rewardbench_offline.jsonl --output-dir runs/rb\n"
        "  srgrpo rewardbench --data allenai/reward-bench --output-dir runs/rb --scorers all --layers all\n"
        "scorers:\n" + "\n".join(f"  {name:<26}{spec.help}" for name, spec in _scorer_registry().items()),
    )
    bench.add_argument("--data", required=True,
                       help="RewardBench-schema JSONL or parquet file, a folder of them, or a Hugging Face dataset id")
    bench.add_argument("--output-dir", required=True, type=Path, help="folder for results, cache, report and plots")
    bench.add_argument("--scorers", default="default",
                       help="comma-separated scorer names, 'default' (the scorers that share one forward pass, "
                       "plus length and random) or 'all' (adds the ablations and the LLM judges) (default: default)")
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
    bench.set_defaults(func=cmd_rewardbench)

    demo = sub.add_parser(
        "demo", formatter_class=_HelpFormatter,
        help="score the example pairs shipped with srgrpo and print a table",
        description="Score the example pairs shipped with srgrpo and print a table: a quick check that "
        "the install and the model work.",
    )
    add_model_arguments(demo)
    add_scoring_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    from srgrpo.bon.cli import add_bon_parser

    add_bon_parser(sub)

    from srgrpo.training.cli import add_train_parser

    add_train_parser(sub)
    from srgrpo.serving.cli import add_serve_parser

    add_serve_parser(sub)
    return parser


def _scorer_registry():
    from srgrpo.evaluation.scorers import SCORERS

    return SCORERS


def _version() -> str:
    from srgrpo import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from srgrpo.models import ModelLoadError

    try:
        return args.func(args)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"srgrpo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
