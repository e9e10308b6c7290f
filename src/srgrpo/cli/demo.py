"""`srgrpo demo`: which of two answers stable rank prefers, on the example pairs shipped with srgrpo."""

from __future__ import annotations

import argparse
import time

from srgrpo.cli import COMMANDS, EXIT_OK, HelpFormatter
from srgrpo.cli.common import add_model_arguments, add_scoring_arguments, load_model_from_args, scoring_options
from srgrpo.evaluation.datasets import example_file
from srgrpo.score_io import read_pairs
from srgrpo.scoring import StableRankScorer

EXCERPT = 64  # characters of an answer shown

MEANING = ("A higher stable rank means the answer's hidden states spread over more directions (richer, less\n"
           "repetitive text); srgrpo uses it as a reward that needs no labels and no reward model.")

NEXT_STEPS = """\
next:
  srgrpo score --input sample --output scores.jsonl        # the six answers above, one JSON line each
  srgrpo rewardbench --data sample --output-dir runs/rb    # 24 RewardBench pairs, beside baselines
  srgrpo bon --dataset sample --limit 4 --n 1,2,4 --max-new-tokens 48 --output-dir runs/bon   # Best-of-N
  srgrpo --help                                            # every command"""


def add_parser(sub) -> None:
    demo = sub.add_parser(
        "demo", formatter_class=HelpFormatter, help=COMMANDS["demo"].help,
        description="Score the example pairs shipped with srgrpo (three prompts, each with a better and a worse "
        "answer) and show, for each, which answer stable rank prefers and whether that is the better one: a "
        "quick check that the install and the model work, and a first look at what the score does.",
    )
    add_model_arguments(demo)
    add_scoring_arguments(demo)
    demo.set_defaults(func=run)


def chosen_and_rejected(rows) -> list[tuple]:
    """(chosen, rejected) rows: the example file holds each prompt's better answer, then its worse one."""
    pairs = list(zip(rows[0::2], rows[1::2]))
    if len(rows) % 2 or any(c.prompt != r.prompt for c, r in pairs):
        raise ValueError("the example pairs must come two by two, the better answer first")
    return pairs


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 3] + "..."


def question(prompt) -> str:
    """The user's request of a prompt (a string or chat messages)."""
    if isinstance(prompt, str):
        return excerpt(prompt)
    return excerpt(next((m["content"] for m in reversed(prompt) if m["role"] == "user"), ""))


def run(args: argparse.Namespace) -> int:
    pairs = chosen_and_rejected(read_pairs(example_file("pairs.jsonl")))
    model, tokenizer = load_model_from_args(args)
    scorer = StableRankScorer(model, tokenizer, scoring_options(args))
    started = time.perf_counter()
    rows = [row for pair in pairs for row in pair]
    scores = scorer.score([r.prompt for r in rows], [r.response for r in rows])
    elapsed = time.perf_counter() - started
    name = args.model or "the embedded SmolLM2-135M-Instruct"
    print(f"\nWhich answer does stable rank prefer? ({name})\n{MEANING}\n")
    right = 0
    for k, (chosen, rejected) in enumerate(pairs):
        sr_chosen, sr_rejected = scores[2 * k], scores[2 * k + 1]
        correct = sr_chosen > sr_rejected  # a tie is no preference, so it counts as wrong (as RewardBench)
        right += correct
        print(f"{k + 1}. {question(chosen.prompt)}   [{chosen.id} vs {rejected.id}]")
        print(f"   chosen   SR {sr_chosen:7.3f}  {excerpt(chosen.response)}")
        print(f"   rejected SR {sr_rejected:7.3f}  {excerpt(rejected.response)}")
        print(f"   stable rank prefers the {'chosen answer: right' if correct else 'rejected answer: wrong'}\n")
    print(f"stable rank preferred the better answer in {right} of {len(pairs)} pairs "
          f"({len(pairs)} pairs scored in {elapsed:.1f} s; span={scorer.options.span}, layer={scorer.options.layer}, "
          f"window={scorer.options.max_length})")
    if right < len(pairs):
        print("A label-free score is not always right: srgrpo rewardbench measures how often it is, beside baselines.")
    print("\n" + NEXT_STEPS)
    return EXIT_OK
