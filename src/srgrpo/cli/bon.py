"""`srgrpo bon`: Best-of-N decoding, the command-line face of srgrpo.bon.runner."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from srgrpo.bon.runner import BonConfig, run_bon
from srgrpo.bon.selectors import DEFAULT_BORDA_POWER, DEFAULT_SELECTORS, SELECTORS
from srgrpo.cli import COMMANDS, EXIT_OK, HelpFormatter
from srgrpo.cli.common import (
    DATA_DIR_HELP,
    add_model_arguments,
    add_scoring_arguments,
    check_at_least,
    load_model_from_args,
    scoring_options,
)
from srgrpo.evaluation.datasets import DATASETS, DatasetError, load_problems
from srgrpo.generation import HFGenerator, Sampling, VLLMGenerator
from srgrpo.reports.best_of_n import best_of_n_markdown, write_best_of_n_report
from srgrpo.results import BestOfNSummary
from srgrpo.scoring import StableRankScorer


def parse_ns(text: str) -> list[int]:
    try:
        ns = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--n takes comma-separated positive integers, got {text!r}") from None
    if not ns or ns[0] < 1:
        raise argparse.ArgumentTypeError(f"--n takes comma-separated positive integers, got {text!r}")
    return ns


def parse_selectors(text: str) -> list[str]:
    names = list(SELECTORS) if text == "all" else [x.strip() for x in text.split(",") if x.strip()]
    return SELECTORS.check(names or [text], also=("all",))


def _selector_help() -> str:
    width = max(map(len, SELECTORS)) + 3
    return "\n".join(f"  {name:<{width}}{spec.description}" for name, spec in SELECTORS.items())


def _dataset_help() -> str:
    return "\n".join(f"  {name}: {spec.description}" for name, spec in DATASETS.items())


def run(args: argparse.Namespace) -> int:
    check_at_least(args, limit=1, gen_batch_size=1, max_new_tokens=1)
    options = scoring_options(args)
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    try:
        problems = load_problems(args.dataset, limit=args.limit, seed=args.seed, data_dir=args.data_dir)
    except DatasetError as err:
        raise ValueError(f"--dataset: {err}") from None
    print(f"{len(problems)} questions from {args.dataset}; N = {args.n}; selectors: {', '.join(args.selectors)}",
          file=sys.stderr)
    if args.backend == "vllm" and args.model is None:  # before any model is loaded
        raise ValueError("--backend vllm needs --model (a Hugging Face id or folder vLLM can load)")
    model, tokenizer = load_model_from_args(args)
    if args.backend == "vllm":
        generator = VLLMGenerator(args.model, StableRankScorer(model, tokenizer, options))
    else:
        generator = HFGenerator(model, tokenizer, options, batch_size=args.gen_batch_size, scoring=args.scoring)
    started = time.perf_counter()
    results = run_bon(generator, problems, args.output_dir, BonConfig(
        ns=args.n, selectors=args.selectors, sampling=sampling,
        seed=args.seed, overwrite=args.overwrite, borda_power=args.borda_power, progress=not args.quiet,
        questions_per_chunk=max(1, args.gen_batch_size // max(args.n)),
        run_info={"dataset": args.dataset, "model": args.model, "dtype": args.dtype, "backend": args.backend,
                    "scoring": args.scoring},  # run_bon pins the generator's scoring options itself
    ))
    summary = BestOfNSummary.from_json(results)
    write_best_of_n_report(summary, args.output_dir)
    print(best_of_n_markdown(summary))
    print(f"wrote results.json, generations.jsonl, report.md and accuracy_vs_n.png to {args.output_dir} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return EXIT_OK


def add_parser(sub) -> None:
    bon = sub.add_parser(
        "bon", formatter_class=HelpFormatter, help=COMMANDS["bon"].help,
        description="Sample max(N) answers per question once (plus one greedy answer), score each with "
        "stable rank and the baselines while it is generated, and evaluate every selector at every N on "
        "nested prefixes of the same samples. Writes results.json ({greedy, selectors: {name: {N: acc}}}), "
        "report.md (accuracy table, gains over greedy and over random with bootstrap intervals), "
        "accuracy_vs_n.png and generations.jsonl. Generations are saved as they are produced: run the "
        "same command again to resume; --selectors, and --n up to the largest N already sampled, can change "
        "between runs on the same folder without regenerating anything.",
        epilog="examples:\n"
        "  srgrpo bon --dataset sample --limit 4 --n 1,4 --max-new-tokens 128 --output-dir runs/bon\n"
        "  srgrpo bon --dataset gsm8k --limit 100 --n 1,4,8 --output-dir runs/bon-gsm8k\n"
        "  srgrpo bon --dataset my_questions.jsonl --n 1,4,8,16 --selectors stable_rank,random,majority "
        "--output-dir runs/bon-mine\n"
        "selectors:\n" + _selector_help() + "\ndatasets:\n" + _dataset_help(),
    )
    bon.add_argument("--dataset", required=True,
                     help=f"one of {', '.join(DATASETS)}, or a JSONL file of {{question, answer}} rows "
                     "(optional 'choices' list for multiple choice)")
    bon.add_argument("--output-dir", required=True, type=Path, help="folder for results, generations, report, plot")
    bon.add_argument("--n", type=parse_ns, default=parse_ns("1,4,8,16"), help="N values (default: 1,4,8,16)")
    bon.add_argument("--selectors", type=parse_selectors, default=list(DEFAULT_SELECTORS),
                     help=f"comma-separated selector names or 'all' (default: {','.join(DEFAULT_SELECTORS)})")
    bon.add_argument("--limit", type=int, default=None,
                     help="first N questions (MMLU: a seeded sample of N across subjects)")
    bon.add_argument("--seed", type=int, default=0, help="sampling, GPQA option order, MMLU sample, bootstrap")
    bon.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default: 0.7, the paper's)")
    bon.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling (default: 0.9, the paper's)")
    bon.add_argument("--max-new-tokens", type=int, default=512, help="longest answer (default: 512)")
    bon.add_argument("--gen-batch-size", type=int, default=64, help="sequences per generate call (default: 64)")
    bon.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                     help="hf: transformers generate (default); vllm: GPU sampling, scored by a re-forward pass")
    bon.add_argument("--scoring", choices=("free", "reforward"), default="free",
                     help="free: read SR off the generator's own hidden states (default); reforward: a second "
                     "forward pass over the exact generated ids")
    bon.add_argument("--borda-power", type=float, default=DEFAULT_BORDA_POWER,
                     help="p of the Borda selectors (default: 0.5; 0 = majority vote)")
    bon.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    bon.add_argument("--overwrite", action="store_true", help="discard a previous run in OUTPUT_DIR")
    bon.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(bon)
    add_scoring_arguments(bon)
    bon.set_defaults(func=run)
