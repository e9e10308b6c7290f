"""Does running the model in bfloat16 change stable rank's verdicts, and what does it save?

Scores the same RewardBench pairs (default: the first 40 of each HEP subset, the 240 pairs of the
reference figure in DESIGN.md) with the model in float32 and in bfloat16 (SR arithmetic in
float32 both times) and prints, per dtype, the pairwise accuracy (ties wrong) and the wall time,
then the median and max relative SR difference and how many pair verdicts flip.

    python benchmarks/compare_dtypes.py [--per-subset 40] [--subsets hep-] [--model M]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import REWARDBENCH_OFFLINE

import srgrpo

DEFAULT_DATA = REWARDBENCH_OFFLINE


def pick_rows(path: Path, prefix: str, per_subset: int) -> list[dict]:
    by_subset: dict[str, list[dict]] = {}
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        if row["subset"].startswith(prefix):
            by_subset.setdefault(row["subset"], []).append(row)
    return [r for subset in sorted(by_subset) for r in by_subset[subset][:per_subset]]


def score_pairs(model_name, dtype, rows, batch_size):
    model, tokenizer = srgrpo.load_model(model_name, dtype=dtype, device="cpu")
    scorer = srgrpo.StableRankScorer(model, tokenizer, batch_size=batch_size)
    prompts = [r["prompt"] for r in rows]
    started = time.perf_counter()
    chosen = scorer.score(prompts, [r["chosen"] for r in rows])
    rejected = scorer.score(prompts, [r["rejected"] for r in rows])
    return chosen, rejected, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subsets", default="hep-", help="subset name prefix")
    parser.add_argument("--per-subset", type=int, default=40)
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    rows = pick_rows(args.data, args.subsets, args.per_subset)
    results = {dtype: score_pairs(args.model, dtype, rows, args.batch_size) for dtype in ("float32", "bfloat16")}
    print(f"\n{len(rows)} pairs ({args.subsets}*, first {args.per_subset} per subset), SR on response tokens after the final norm")
    verdicts = {}
    for dtype, (chosen, rejected, seconds) in results.items():
        verdicts[dtype] = [c > r for c, r in zip(chosen, rejected)]
        print(f"  model {dtype:<9} accuracy {sum(verdicts[dtype]) / len(rows):.3f}   {seconds:6.1f} s")
    f32 = results["float32"][0] + results["float32"][1]
    b16 = results["bfloat16"][0] + results["bfloat16"][1]
    rel = [abs(b - a) / a for a, b in zip(f32, b16)]
    flips = sum(a != b for a, b in zip(verdicts["float32"], verdicts["bfloat16"]))
    print(f"  relative SR difference bf16 vs fp32: median {statistics.median(rel):.2e}, max {max(rel):.2e}")
    print(f"  verdicts that flip: {flips} of {len(rows)}")
    print(f"  bf16 speed-up: {results['float32'][2] / results['bfloat16'][2]:.2f}x")


if __name__ == "__main__":
    main()
