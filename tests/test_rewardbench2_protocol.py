"""RewardBench 2 scoring rules against values worked out by hand (see the comments next to each)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srgrpo.rewardbench.v2 import (
    SUBSET_SIZES,
    TIES_WEIGHTS,
    PromptOutcome,
    best_of_n_credit,
    summarize_rewardbench2,
    ties_components,
    ties_prompt_stats,
)
from srgrpo.results import RewardBenchSummary


def test_constants_match_the_rb2_release():
    # allenai/reward-bench-2, split test: the subset sizes of the paper and the dataset card.
    assert SUBSET_SIZES == {"Factuality": 475, "Precise IF": 160, "Math": 183, "Safety": 450, "Focus": 495, "Ties": 102}
    assert TIES_WEIGHTS == {"tied_accuracy": 0.3, "ref_accuracy": 0.3, "correctness_preferred": 0.2,
                            "correctness_preferred_hard": 0.2, "margin_score": 0.01}


@pytest.mark.parametrize("scores, credit", [
    ([3, 1, 2, 0], 1.0),  # chosen alone at the top
    ([3, 3, 1, 0], 0.5),  # tied with one other at the top
    ([3, 3, 3, 0], 1 / 3),
    ([1, 1, 1, 1], 0.25),  # four equal scores (e.g. four 1-token answers, SR exactly 1 each)
    ([1, 3, 2, 0], 0.0),  # below the maximum
    ([2, 3, 3, 0], 0.0),  # a tie at the top without the chosen one
    ([math.nan, 1, 2, 3], 0.0),  # unscorable chosen
    ([3, math.nan, 1, 2], 0.0),  # any unscorable completion: no credit (upstream's NaN max)
])
def test_best_of_n_credit(scores, credit):
    assert best_of_n_credit(scores) == pytest.approx(credit, abs=0, rel=1e-15)


def test_ties_prompt_stats():
    assert ties_prompt_stats([5, 3, 1], 1) == (True, pytest.approx(math.nan, nan_ok=True), 2.0)
    assert ties_prompt_stats([6, 5, 2, 1], 2) == (True, 1.0, 3.0)
    assert ties_prompt_stats([4, 4, 2], 2) == (True, 0.0, 2.0)
    assert ties_prompt_stats([2, 2, 2], 2) == (False, 0.0, 0.0)  # a tie with the incorrect one is not accurate
    with pytest.raises(ValueError, match="at least one correct and one incorrect"):
        ties_prompt_stats([1, 2], 2)


# Three Ties prompt numbers, worked out by hand:
#   1: ref [5 | 3, 1]    margin 2, accurate;   tied [6, 5 | 2, 1]  spread 1, margin 3, accurate.
#      3 > 1 yes; min(2, 3) = 2 > 1 yes; tanh(2 / 1 - 1) = tanh(1).
#   2: ref [1 | 4]       margin -3, wrong;     tied [4, 4 | 2]     spread 0, margin 2, accurate.
#      2 > 0 yes; min(-3, 2) = -3 > 0 no; tanh(-3 / 0 - 1) = tanh(-inf) = -1.
#   3: ref [2 | 2]       margin 0, wrong;      tied [2, 2 | 2]     spread 0, margin 0, wrong.
#      0 > 0 no; 0 > 0 no; tanh(0 / 0 - 1) = NaN, counted 0.
TIES_ROWS = [
    PromptOutcome("ref:1", "Ties", [5, 3, 1], 1), PromptOutcome("tied:1", "Ties", [6, 5, 2, 1], 2),
    PromptOutcome("ref:2", "Ties", [1, 4], 1), PromptOutcome("tied:2", "Ties", [4, 4, 2], 2),
    PromptOutcome("ref:3", "Ties", [2, 2], 1), PromptOutcome("tied:3", "Ties", [2, 2, 2], 2),
]
TIES_EXPECTED = {
    "tied_accuracy": 2 / 3, "ref_accuracy": 1 / 3, "correctness_preferred": 2 / 3,
    "correctness_preferred_hard": 1 / 3, "margin_score": (math.tanh(1) - 1 + 0) / 3,
}
TIES_SCORE = 0.3 * 2 / 3 + 0.3 * 1 / 3 + 0.2 * 2 / 3 + 0.2 * 1 / 3 + 0.01 * (math.tanh(1) - 1) / 3  # 0.49920...


def test_ties_formula_by_hand():
    got = ties_components(TIES_ROWS)
    for name, value in TIES_EXPECTED.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
    assert got["score"] == pytest.approx(TIES_SCORE, rel=1e-12)
    assert TIES_SCORE == pytest.approx(0.4992053, abs=1e-7)


def test_ties_row_order_does_not_matter_and_unpaired_rows_count_only_for_accuracy():
    assert ties_components(TIES_ROWS[::-1])["score"] == pytest.approx(TIES_SCORE, rel=1e-12)
    # A ref row without its tied row: in the ref accuracy (now 1/4 accurate), in no margin term.
    got = ties_components(TIES_ROWS + [PromptOutcome("ref:9", "Ties", [0, 1], 1)])
    assert got["ref_accuracy"] == pytest.approx(1 / 4)
    assert got["correctness_preferred"] == pytest.approx(2 / 3)


def test_ties_ids_must_name_ref_or_tied():
    with pytest.raises(ValueError, match="'ref:<n>' or 'tied:<n>'"):
        ties_components([PromptOutcome("17", "Ties", [1, 0], 1)])


def test_summary_subset_scores_headline_and_intervals():
    rows = [PromptOutcome("f1", "Factuality", [3, 1, 2, 0], 1), PromptOutcome("f2", "Factuality", [3, 3, 1, 0], 1)]
    summary = summarize_rewardbench2(rows + TIES_ROWS, n_bootstrap=200, seed=1)
    assert summary.protocol == "v2"
    assert summary.sections == pytest.approx({"Factuality": 0.75, "Ties": TIES_SCORE})
    assert summary.score == pytest.approx((0.75 + TIES_SCORE) / 2)  # unweighted mean of the subsets present
    assert summary.accuracy == pytest.approx(0.75)  # best-of-4 credit pooled over the non-Ties prompts
    assert summary.subsets["Ties"].n == 6 and summary.subsets["Factuality"].n == 2
    assert summary.absent_sections == ["Precise IF", "Math", "Safety", "Focus"]
    assert summary.ties["score"] == pytest.approx(TIES_SCORE)
    lo, hi = summary.ci.sections["Factuality"]
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0  # resampling two prompts with credits 1 and 0.5
    assert summary.ci.score[0] <= summary.score <= summary.ci.score[1]
    # the results.json round trip keeps the protocol and the Ties components
    again = RewardBenchSummary.from_json(summary.to_json())
    assert again == summary


def test_unscored_prompts_count_zero_and_are_counted():
    rows = [PromptOutcome("a", "Math", [math.nan, 0, 0, 0], 1), PromptOutcome("b", "Math", [1, 0, 0, 0], 1)]
    summary = summarize_rewardbench2(rows, n_bootstrap=10)
    assert summary.sections["Math"] == 0.5 and summary.n_unscored == 1


def test_random_scores_land_at_chance_on_best_of_4():
    rng = np.random.default_rng(0)
    rows = [PromptOutcome(str(i), "Focus", list(rng.random(4)), 1) for i in range(4000)]
    summary = summarize_rewardbench2(rows, n_bootstrap=100)
    assert summary.sections["Focus"] == pytest.approx(0.25, abs=0.02)
    lo, hi = summary.ci.sections["Focus"]
    assert lo < summary.sections["Focus"] < hi and hi - lo < 0.05
