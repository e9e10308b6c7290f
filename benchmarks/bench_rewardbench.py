"""Stable rank against every baseline on the offline RewardBench file, with timings.

Three parts, one run:
  1. timing: stable rank alone over every chosen and rejected response of the file, next to the
     bare backbone forward over exactly the same batches (nothing else): SR should cost little
     beyond the forward passes it needs;
  2. all scorers that share the scorer's forward pass (SR, its variants, the spectrum ablations,
     log-prob, self-certainty, entropy) plus length and random, and a layer sweep over every
     layer, on the whole file;
  3. the LLM judges (IPO, pointwise 1-5, pairwise A/B with order swap) beside stable rank on the
     first --judge-limit pairs of each subset (they cost several forward passes per pair over
     longer prompts; pass --judge-limit 0 for the whole file).
Each part writes its results.json, pairs.jsonl, report.md and plots under --output-dir.

    python benchmarks/bench_rewardbench.py [--judge-limit 20] [--skip-timing] [--model M]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import REPO, REWARDBENCH_OFFLINE

import srgrpo
from srgrpo.rewardbench.preference_data import load_preference_pairs
from srgrpo.rewardbench.runner import RewardBenchConfig, run_rewardbench
from srgrpo.rewardbench.methods import METHODS
from srgrpo.reports.rewardbench import rewardbench_markdown, write_rewardbench_report_from_dir
from srgrpo.results import rewardbench_results_from_json

DEFAULT_DATA = REWARDBENCH_OFFLINE
JUDGES = ["ipo", "pointwise_judge", "pairwise_judge"]


def time_stable_rank_vs_forward(model, tokenizer, pairs, batch_size: int) -> dict:
    scorer = srgrpo.StableRankScorer(model, tokenizer, batch_size=batch_size)
    prompts = [p.prompt for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p.chosen, p.rejected)]
    started = time.perf_counter()
    scorer.score(prompts, responses)
    sr_seconds = time.perf_counter() - started

    encoded = scorer.encode(prompts, responses)
    batches = [scorer.engine.collate([encoded[i] for i in b]) for b in scorer.engine.plan(encoded)]
    started = time.perf_counter()
    with torch.inference_mode():
        for ids, attention in batches:
            scorer.engine.backbone(input_ids=ids, attention_mask=attention, use_cache=False)
    forward_seconds = time.perf_counter() - started
    tokens = sum(len(e.input_ids) for e in encoded if e.problem is None)
    return {"items": len(responses), "tokens": tokens, "stable_rank_seconds": sr_seconds,
            "bare_forward_seconds": forward_seconds, "ratio": sr_seconds / forward_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output-dir", type=Path, default=REPO / "benchmarks" / "results" / "rewardbench")
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--judge-limit", type=int, default=20, help="pairs per subset for the judges (0 = all)")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()

    pairs = load_preference_pairs(args.data).pairs
    model, tokenizer = srgrpo.load_model(args.model, dtype=args.dtype)
    options = srgrpo.ScoringOptions(batch_size=args.batch_size)
    info = {"model": args.model or "embedded SmolLM2-135M-Instruct", "dtype": str(model.dtype), "data": str(args.data)}
    summary = {"info": info}
    args.output_dir.mkdir(parents=True, exist_ok=True)

    if not args.skip_timing:
        summary["timing"] = t = time_stable_rank_vs_forward(model, tokenizer, pairs, args.batch_size)
        print(f"stable rank alone on {t['items']} responses ({t['tokens']:,} tokens): {t['stable_rank_seconds']:.1f} s; "
              f"bare forward of the same batches: {t['bare_forward_seconds']:.1f} s; ratio {t['ratio']:.3f}", flush=True)

    shared = [name for name, spec in METHODS.items() if spec.kind in ("feature", "length", "random")]
    started = time.perf_counter()
    results = run_rewardbench(model, tokenizer, pairs, args.output_dir / "all_scorers", RewardBenchConfig(
        scorers=shared, options=options, layers=range(model.config.num_hidden_layers + 1), overwrite=True, run_info=info))
    summary["all_scorers_seconds"] = time.perf_counter() - started
    write_rewardbench_report_from_dir(args.output_dir / "all_scorers")
    summary["all_scorers"] = {k: {"accuracy": v["accuracy"], "sections": v["sections"],
                                  "length_controlled": v["length_controlled"]} for k, v in results.items()}
    print(rewardbench_markdown(rewardbench_results_from_json(results), title=f"All shared-pass scorers, {len(pairs)} pairs"), flush=True)
    print(f"wall time: {summary['all_scorers_seconds']:.0f} s", flush=True)

    judge_pairs = load_preference_pairs(args.data, limit_per_subset=args.judge_limit or None).pairs
    started = time.perf_counter()
    judged = run_rewardbench(model, tokenizer, judge_pairs, args.output_dir / "judges", RewardBenchConfig(
        scorers=["stable_rank", "length", "random", *JUDGES], options=options, overwrite=True, run_info=info))
    summary["judges_seconds"] = time.perf_counter() - started
    write_rewardbench_report_from_dir(args.output_dir / "judges")
    summary["judges"] = {k: {"accuracy": v["accuracy"], "sections": v["sections"]} for k, v in judged.items()}
    print(rewardbench_markdown(rewardbench_results_from_json(judged), title=f"LLM judges beside stable rank, {len(judge_pairs)} pairs"), flush=True)
    print(f"wall time: {summary['judges_seconds']:.0f} s", flush=True)
    (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
