"""RewardBench bootstrap speed: the stratified Binomial count draws against resampling pair indices.

Both give the same distribution of per-subset correct counts (tests/test_rewardbench_protocol.py
checks the intervals agree); this measures what the count draws save. The baseline, resampling
every subset's pair indices with replacement, runs in the same process on the same data, and the
script prints the ratio. The unit test checks the property that makes the draws fast (random
numbers drawn = n_bootstrap x subsets, whatever the number of pairs); the time lives here.

    python benchmarks/bench_bootstrap.py                  # 3,000 pairs over the 23 subsets + 1, 1,000 draws
    python benchmarks/bench_bootstrap.py --pairs 30000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from srgrpo.rewardbench.v1 import SECTIONS, PairOutcome, summarize_rewardbench
from srgrpo.stats import stratified_binomial_counts


def index_resampling_counts(correct: np.ndarray, members: list[np.ndarray], draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = np.empty((draws, len(members)))
    for j, idx in enumerate(members):
        counts[:, j] = correct[idx][rng.integers(0, len(idx), size=(draws, len(idx)))].sum(axis=1)
    return counts


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    subsets = [s for names in SECTIONS.values() for s in names] + ["extra"]
    outcomes = [PairOutcome(str(i), subsets[i % len(subsets)], float(rng.normal()), float(rng.normal()))
                for i in range(args.pairs)]
    correct = np.array([o.chosen > o.rejected for o in outcomes], dtype=float)
    members = [np.array([i for i, o in enumerate(outcomes) if o.subset == s]) for s in subsets]
    sizes = [len(m) for m in members]
    successes = [int(correct[m].sum()) for m in members]

    counts_s = best_of(args.repeats, lambda: stratified_binomial_counts(sizes, successes, args.draws, 0))
    index_s = best_of(args.repeats, lambda: index_resampling_counts(correct, members, args.draws, 0))
    summary_s = best_of(args.repeats, lambda: summarize_rewardbench(outcomes, n_bootstrap=args.draws))
    print(f"{args.pairs} pairs, {len(subsets)} subsets, {args.draws} draws, best of {args.repeats}")
    print(f"  Binomial count draws     {1000 * counts_s:9.2f} ms")
    print(f"  index resampling         {1000 * index_s:9.2f} ms   (baseline)")
    print(f"  ratio count/index        {counts_s / index_s:9.4f}")
    print(f"  whole summarize_rewardbench {1000 * summary_s:6.2f} ms")


if __name__ == "__main__":
    main()
