"""Bootstrap confidence intervals, shared by every app that reports one (RewardBench, Best-of-N).

All intervals are 95% percentile intervals of bootstrap draws.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def percentile_interval(draws: np.ndarray) -> list[float]:
    """95% percentile interval [2.5th, 97.5th percentile] of bootstrap draws."""
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_mean_interval(values: np.ndarray, rng: np.random.Generator,
                            samples: int = BOOTSTRAP_SAMPLES) -> list[float]:
    """95% interval of the mean of `values` (one per unit, e.g. per question; per-unit differences
    give a paired interval), resampling the units with replacement. [nan, nan] without values."""
    if len(values) == 0:
        return [float("nan"), float("nan")]
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return percentile_interval(means)


def stratified_binomial_counts(sizes: Sequence[int], successes: Sequence[int], draws: int, seed: int) -> np.ndarray:
    """Bootstrap success counts per stratum, shape (draws, strata), each stratum resampled on its own.

    Resampling a stratum's n 0/1 outcomes with replacement and counting the successes is exactly a
    Binomial(n, k/n) draw (k = successes in the stratum), so the counts are drawn directly: the same
    distribution as resampling indices, in O(draws x strata) time and memory.
    """
    rng = np.random.default_rng(seed)
    counts = np.empty((draws, len(sizes)))
    for j, (n, k) in enumerate(zip(sizes, successes)):
        counts[:, j] = rng.binomial(n, k / n, size=draws)
    return counts
