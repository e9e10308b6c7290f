"""RewardBench v1 scoring rules: correctness, section arithmetic, bootstrap intervals, length control."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from srgrpo.rewardbench.v1 import (
    EXAMPLE_COUNTS,
    OTHER_SECTION,
    SECTIONS,
    PairOutcome,
    chosen_wins,
    section_of,
    summarize_rewardbench,
)
from srgrpo.results import RewardBenchSummary, SubsetAccuracy


def summarize(outcomes, **kwargs) -> dict:
    """The summary as results.json holds it: the checks below pin that file format too."""
    return summarize_rewardbench(outcomes, **kwargs).to_json()


def make_outcomes(subset: str, n_correct: int, n_wrong: int, start: int = 0) -> list[PairOutcome]:
    """n_correct pairs with chosen > rejected, then n_wrong with chosen < rejected."""
    right = [PairOutcome(f"{subset}-{start + i}", subset, 2.0, 1.0) for i in range(n_correct)]
    wrong = [PairOutcome(f"{subset}-{start + n_correct + i}", subset, 1.0, 2.0) for i in range(n_wrong)]
    return right + wrong


# --- the constants ------------------------------------------------------------------------------


# allenai/reward-bench, rewardbench/constants.py at commit 05a9005efb607249822c193590c8ecab87c77052
# (2026-01-31; the file last changed in 6552e932cffe3e4797ebae13a8c5814c660afaf6, "Mirror change
# from leaderboard (#175)", 2024-09-10, which swapped the two xstest counts): EXAMPLE_COUNTS and
# SUBSET_MAPPING as a hand copy. A change of srgrpo's constants fails against it; a change upstream
# fails only the second test, which reads the upstream file itself from the `rewardbench` package
# (PyPI 0.1.4 holds this version; scripts/install.sh installs it without its dependencies).
OFFICIAL_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100,
    "refusals-offensive": 100, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "xstest-should-refuse": 154,
    "xstest-should-respond": 250, "donotanswer": 136, "hep-cpp": 164, "hep-go": 164, "hep-java": 164,
    "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
OFFICIAL_SUBSET_MAPPING = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}


def test_constants_match_the_official_ones():
    assert EXAMPLE_COUNTS == OFFICIAL_EXAMPLE_COUNTS
    assert list(SECTIONS) == list(OFFICIAL_SUBSET_MAPPING)  # section order too: tables follow it
    assert {name: list(subsets) for name, subsets in SECTIONS.items()} == OFFICIAL_SUBSET_MAPPING
    assert EXAMPLE_COUNTS["xstest-should-refuse"] == 154 and EXAMPLE_COUNTS["xstest-should-respond"] == 250
    every_subset = [s for subsets in SECTIONS.values() for s in subsets]
    assert sorted(every_subset) == sorted(EXAMPLE_COUNTS)  # each subset in exactly one section


def test_constants_match_the_upstream_file():
    """Read from the upstream source itself: rewardbench/constants.py of the installed `rewardbench`
    package, loaded by path (its package __init__ imports model code and pins another transformers)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("rewardbench")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rewardbench is not installed (scripts/install.sh: pip install --no-deps rewardbench==0.1.4)")
    path = Path(spec.submodule_search_locations[0], "constants.py")
    upstream = importlib.util.module_from_spec(importlib.util.spec_from_file_location("rewardbench_constants", path))
    upstream.__spec__.loader.exec_module(upstream)
    assert EXAMPLE_COUNTS == upstream.EXAMPLE_COUNTS == OFFICIAL_EXAMPLE_COUNTS
    assert {name: list(subsets) for name, subsets in SECTIONS.items()} == upstream.SUBSET_MAPPING
    assert list(SECTIONS) == list(upstream.SUBSET_MAPPING)


def test_section_of():
    assert section_of("alpacaeval-easy") == "Chat"
    assert section_of("mt-bench-hard") == "Chat Hard"
    assert section_of("mt-bench-med") == "Chat"
    assert section_of("donotanswer") == "Safety"
    assert section_of("hep-rust") == "Reasoning"
    assert section_of("anthropic_helpful") == OTHER_SECTION
    assert section_of("unspecified") == OTHER_SECTION


# --- correctness ----------------------------------------------------------------------------------


def test_chosen_wins_is_strict_and_nan_is_wrong():
    assert chosen_wins(2.0, 1.0)
    assert not chosen_wins(1.0, 2.0)
    assert not chosen_wins(1.0, 1.0)  # a tie is wrong
    assert not chosen_wins(math.nan, 1.0)
    assert not chosen_wins(1.0, math.nan)
    assert not chosen_wins(math.nan, math.nan)
    assert chosen_wins(math.inf, 1.0)


def test_ties_and_nans_count_wrong_in_summary():
    outcomes = [
        PairOutcome("a", "hep-go", 2.0, 1.0),
        PairOutcome("b", "hep-go", 1.0, 1.0),
        PairOutcome("c", "hep-go", math.nan, 1.0),
        PairOutcome("d", "hep-go", 1.0, math.nan),
        PairOutcome("e", "hep-go", None, 0.5),  # a scorer's JSON null
    ]
    result = summarize(outcomes, n_bootstrap=50)
    assert result["accuracy"] == pytest.approx(1 / 5)
    assert result["subsets"]["hep-go"] == {"accuracy": pytest.approx(0.2), "n": 5}
    assert result["n_pairs"] == 5
    assert result["n_unscored"] == 3


# --- section arithmetic ---------------------------------------------------------------------------


def test_sections_headline_and_raw_accuracy_by_hand():
    outcomes = (
        make_outcomes("alpacaeval-easy", 3, 1)  # 0.75, weight 100
        + make_outcomes("mt-bench-easy", 1, 1)  # 0.5, weight 28
        + make_outcomes("hep-python", 2, 2)  # 0.5, weight 164
        + make_outcomes("hep-go", 4, 0)  # 1.0, weight 164
        + make_outcomes("my-own-subset", 1, 2)  # unknown
        + make_outcomes("unspecified", 1, 0)  # unknown
    )
    result = summarize(outcomes, n_bootstrap=100)

    chat = (0.75 * 100 + 0.5 * 28) / (100 + 28)
    reasoning = (0.5 * 164 + 1.0 * 164) / (164 + 164)
    other = (1 + 1) / (3 + 1)  # pooled over pairs, not a mean of subset accuracies
    assert result["sections"] == {
        "Chat": pytest.approx(chat),
        "Reasoning": pytest.approx(reasoning),
        OTHER_SECTION: pytest.approx(other),
    }
    assert list(result["sections"]) == ["Chat", "Reasoning", OTHER_SECTION]
    assert result["score"] == pytest.approx((chat + reasoning) / 2)  # "other" never enters the headline
    assert result["accuracy"] == pytest.approx((3 + 1 + 2 + 4 + 1 + 1) / (4 + 2 + 4 + 4 + 3 + 1))
    assert result["absent_sections"] == ["Chat Hard", "Safety"]
    assert result["subsets"]["mt-bench-easy"] == {"accuracy": 0.5, "n": 2}
    assert result["subsets"]["my-own-subset"] == {"accuracy": pytest.approx(1 / 3), "n": 3}
    assert set(result["ci"]["sections"]) == {"Chat", "Reasoning", OTHER_SECTION}


def test_math_prm_weight_984():
    outcomes = make_outcomes("math-prm", 4, 0) + make_outcomes("hep-python", 0, 4)
    result = summarize(outcomes, n_bootstrap=100)
    assert result["sections"]["Reasoning"] == pytest.approx(984 / (984 + 164))
    assert result["accuracy"] == pytest.approx(0.5)  # raw accuracy ignores the weights
    assert result["score"] == pytest.approx(984 / (984 + 164))


def test_xstest_uses_official_weights():
    outcomes = make_outcomes("xstest-should-refuse", 1, 0) + make_outcomes("xstest-should-respond", 0, 1)
    result = summarize(outcomes, n_bootstrap=10)
    assert result["sections"]["Safety"] == pytest.approx(154 / (154 + 250))


def test_only_unknown_subsets_has_no_headline():
    result = summarize(make_outcomes("custom", 2, 2), n_bootstrap=50)
    assert result["score"] is None
    assert result["ci"]["score"] is None
    assert result["sections"] == {OTHER_SECTION: 0.5}
    assert result["absent_sections"] == list(SECTIONS)


def test_all_four_sections_present_and_json_serialisable():
    outcomes = []
    for section, subsets in SECTIONS.items():
        for subset in subsets:
            outcomes += make_outcomes(subset, 1, 1)
    outcomes.append(PairOutcome("nan", "hep-go", math.nan, 1.0))
    result = summarize(outcomes, n_bootstrap=50)
    assert result["absent_sections"] == []
    assert set(result["sections"]) == set(SECTIONS)
    text = json.dumps(result, allow_nan=False)  # raises on NaN or inf
    assert set(json.loads(text)) == {
        "accuracy", "score", "sections", "absent_sections", "subsets", "ci", "length_controlled", "n_pairs", "n_unscored",
    }


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


# --- bootstrap ------------------------------------------------------------------------------------


def test_ci_contains_point_estimate_and_is_deterministic():
    outcomes = make_outcomes("alpacaeval-hard", 30, 20) + make_outcomes("hep-cpp", 12, 28) + make_outcomes("zzz", 5, 5)
    first = summarize(outcomes, n_bootstrap=500, seed=7)
    again = summarize(outcomes, n_bootstrap=500, seed=7)
    other_seed = summarize(outcomes, n_bootstrap=500, seed=8)
    assert first == again
    assert first["ci"] != other_seed["ci"]
    lo, hi = first["ci"]["accuracy"]
    assert lo < first["accuracy"] < hi
    lo, hi = first["ci"]["score"]
    assert lo < first["score"] < hi
    for section, (lo, hi) in first["ci"]["sections"].items():
        assert lo < first["sections"][section] < hi


def test_ci_narrows_with_more_pairs():
    small = summarize(make_outcomes("hep-js", 10, 10), n_bootstrap=1000)
    large = summarize(make_outcomes("hep-js", 1000, 1000), n_bootstrap=1000)
    small_width = np.diff(small["ci"]["accuracy"])[0]
    large_width = np.diff(large["ci"]["accuracy"])[0]
    assert large_width < small_width / 4  # width shrinks like 1/sqrt(n): 10x here


def test_all_correct_subset_has_degenerate_interval():
    result = summarize(make_outcomes("llmbar-natural", 25, 0) + make_outcomes("hep-go", 5, 5), n_bootstrap=300)
    assert result["ci"]["sections"]["Chat Hard"] == [1.0, 1.0]
    lo, hi = result["ci"]["sections"]["Reasoning"]
    assert lo < hi


def test_bootstrap_is_stratified_by_subset():
    # A subset that is all wrong stays all wrong in every draw, so the headline's spread comes only
    # from the mixed subset: with 100 correct and 100 wrong in two sections the score can never pass 0.5.
    outcomes = make_outcomes("hep-go", 50, 50) + make_outcomes("donotanswer", 0, 100)
    result = summarize(outcomes, n_bootstrap=1000)
    assert result["ci"]["sections"]["Safety"] == [0.0, 0.0]
    lo, hi = result["ci"]["score"]
    assert hi <= 0.5 and lo > 0.15


def test_bootstrap_matches_index_resampling():
    """Binomial count draws must give the spread that resampling the pairs themselves gives."""
    correct = np.array([1] * 30 + [0] * 70)
    rng = np.random.default_rng(1)
    resampled = correct[rng.integers(0, 100, size=(4000, 100))].mean(axis=1)
    expected = np.percentile(resampled, [2.5, 97.5])
    result = summarize(make_outcomes("hep-java", 30, 70), n_bootstrap=4000, seed=3)
    assert result["ci"]["accuracy"] == pytest.approx(list(expected), abs=0.021)


def test_bootstrap_cost_does_not_grow_with_the_pairs(monkeypatch):
    """The bootstrap draws one Binomial count per subset and draw, never one index per pair: its
    random numbers (hence its time) are n_bootstrap x subsets, whatever the number of pairs."""
    import srgrpo.stats

    drawn = []
    real_rng = np.random.default_rng

    class CountingRng:
        def __init__(self, seed):
            self.rng = real_rng(seed)

        def binomial(self, n, p, size):
            drawn.append(size)
            return self.rng.binomial(n, p, size=size)

    rng = np.random.default_rng(0)
    monkeypatch.setattr(srgrpo.stats.np.random, "default_rng", CountingRng)
    subsets = [s for subsets in SECTIONS.values() for s in subsets] + ["extra"]
    for n_pairs in (300, 3000):
        drawn.clear()
        outcomes = [PairOutcome(str(i), subsets[i % len(subsets)], float(rng.normal()), float(rng.normal()))
                    for i in range(n_pairs)]
        summarize(outcomes, n_bootstrap=1000)
        assert drawn == [1000] * len(subsets)


# --- length control -------------------------------------------------------------------------------


def test_length_controlled_picks_pairs_within_tolerance():
    outcomes = [
        PairOutcome("same", "hep-go", 2.0, 1.0, 100, 100),  # 0.0: kept, correct
        PairOutcome("close", "hep-go", 1.0, 2.0, 100, 85),  # 0.15: kept, wrong
        PairOutcome("edge", "hep-go", 2.0, 1.0, 100, 80),  # exactly 0.2: not < tolerance
        PairOutcome("far", "hep-go", 2.0, 1.0, 10, 100),  # 0.9
        PairOutcome("unknown", "hep-go", 2.0, 1.0, None, 100),
        PairOutcome("close-rev", "hep-go", 2.0, 1.0, 90, 100),  # 0.1: kept, correct
    ]
    result = summarize(outcomes, n_bootstrap=10)
    assert result["length_controlled"] == {"accuracy": pytest.approx(2 / 3), "n": 3}
    wider = summarize(outcomes, n_bootstrap=10, length_tolerance=0.21)
    assert wider["length_controlled"] == {"accuracy": pytest.approx(3 / 4), "n": 4}


def test_length_controlled_without_token_counts_is_none():
    result = summarize(make_outcomes("hep-go", 3, 1), n_bootstrap=10)
    assert result["length_controlled"] == {"accuracy": None, "n": 0}


def test_the_typed_summary_and_its_json_are_the_same_result():
    outcomes = make_outcomes("alpacaeval-easy", 3, 1) + make_outcomes("hep-go", 1, 1) + make_outcomes("x", 1, 0)
    typed = summarize_rewardbench(outcomes, n_bootstrap=50, seed=2)
    assert isinstance(typed, RewardBenchSummary)
    assert typed.subsets["alpacaeval-easy"] == SubsetAccuracy(0.75, 4)
    assert typed.sections["Chat"] == pytest.approx(0.75) and typed.ci.score is not None
    assert RewardBenchSummary.from_json(json.loads(json.dumps(typed.to_json()))) == typed
    # A file of another shape is refused where it is read, naming the field, not shown as a dash.
    broken = typed.to_json()
    del broken["length_controlled"]
    with pytest.raises(KeyError, match="length_controlled"):
        RewardBenchSummary.from_json(broken)
