"""Markdown report and PNG plots of RewardBench results, on hand-made results and synthetic pairs."""

from __future__ import annotations

import math
import random

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import pytest  # noqa: E402

from srgrpo.reports.rewardbench import (  # noqa: E402
    plot_layer_sweep,
    plot_score_distributions,
    plot_score_vs_length,
    plot_sections,
)
from srgrpo.reports.rewardbench import rewardbench_markdown as markdown_report  # noqa: E402
from srgrpo.reports.rewardbench import write_rewardbench_report as write_report  # noqa: E402
from srgrpo.results import (  # noqa: E402
    LengthControlled,
    PairRow,
    RewardBenchIntervals,
    RewardBenchSummary,
    SideScores,
    SubsetAccuracy,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


NO_INTERVAL = [math.nan, math.nan]
OFFICIAL = ("Chat", "Chat Hard", "Safety", "Reasoning")


def summary(score, accuracy, chat_hard, reasoning, *, subsets=None, sections=None, length_controlled=(0.553, 47)):
    """A RewardBenchSummary; a section given as None is absent from the data."""
    def interval(v):
        return [v - 0.042, v + 0.039] if v is not None and math.isfinite(v) else NO_INTERVAL

    if sections is None:
        sections = {"Chat Hard": chat_hard, "Reasoning": reasoning}
    sections = {name: v for name, v in sections.items() if v is not None}
    return RewardBenchSummary(
        accuracy=accuracy,
        score=score,
        sections=sections,
        absent_sections=[name for name in OFFICIAL if name not in sections],
        subsets={name: SubsetAccuracy(*entry) for name, entry in (subsets or {}).items()},
        ci=RewardBenchIntervals(interval(accuracy), None if score is None else interval(score),
                                {name: interval(v) for name, v in sections.items()}),
        length_controlled=LengthControlled(*length_controlled),
        n_pairs=200,
        n_unscored=0,
    )


@pytest.fixture
def results():
    sr = summary(0.612, 0.60, 0.55, 0.674, subsets={
        "llmbar-natural": (0.5, 100),
        "hep-go": (0.75, 40),
        "alpha-sub": (0.25, 8),
        "mt-bench-hard": (0.6, 37),
    })
    sr.ci.score = [0.570, 0.651]
    return {
        "random": summary(None, 0.51, 0.49, 0.53),                 # no headline: sorts last
        "length": summary(0.70, 0.68, 0.75, 0.65),                 # best Score: first
        "stable_rank": sr,
        "mean_logprob": summary(0.612, 0.64, 0.60, 0.624),         # same Score as stable_rank, better accuracy
        # every value undefined: NaN accuracy and sections, no Score, no length-matched pair
        "broken": summary(None, math.nan, math.nan, math.nan, length_controlled=(None, 0)),
    }


def table_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose first header cell is `first_header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_markdown_numbers_ci_and_absent_sections(results):
    md = markdown_report(results, title="RB test", meta={"model": "tiny", "wall_time_s": 12.345, "n_pairs": 200})
    assert md.startswith("# RB test\n")
    assert "| model | tiny |" in md and "| wall_time_s | 12.35 |" in md and "| n_pairs | 200 |" in md
    header = next(line for line in md.splitlines() if line.startswith("| Scorer |"))
    assert header == ("| Scorer | Score | Chat | Chat Hard | Safety | Reasoning | All pairs | "
                      "Length-controlled (n) |")
    rows = {row[0]: row for row in table_rows(md, "Scorer")}
    sr = rows["`stable_rank`"]
    assert sr[1] == "61.2 [57.0, 65.1]"                 # Score with its own CI
    assert sr[2] == "—" and sr[4] == "—"                # Chat, Safety absent
    assert sr[3] == "55.0 [50.8, 58.9]"                 # Chat Hard
    assert sr[5] == "67.4 [63.2, 71.3]"                 # Reasoning
    assert sr[6] == "60.0 [55.8, 63.9]"                 # All pairs
    assert sr[7] == "55.3 (n=47)"
    assert "Sections absent from the data (shown as —): Chat, Safety." in md
    assert "Score averages only the sections present: Chat Hard, Reasoning" in md


def test_rows_sorted_by_score_then_accuracy_none_last(results):
    md = markdown_report(results, title="t")
    order = [row[0] for row in table_rows(md, "Scorer")]
    # length 70.0; mean_logprob and stable_rank tie on 61.2, mean_logprob has the higher accuracy;
    # random and broken have no Score: random (accuracy 51%) before broken (accuracy NaN)
    assert order == ["`length`", "`mean_logprob`", "`stable_rank`", "`random`", "`broken`"]


def test_none_and_nan_values_render_as_dash(results):
    md = markdown_report(results, title="t")
    rows = {row[0]: row for row in table_rows(md, "Scorer")}
    assert rows["`broken`"][1:] == ["—"] * 7
    assert rows["`random`"][1] == "—" and rows["`random`"][6] == "51.0 [46.8, 54.9]"
    assert "nan" not in md.lower() and "None" not in md


def test_other_section_column_and_full_coverage():
    res = {"a": summary(0.5, 0.5, None, None, sections={s: 0.5 for s in (*OFFICIAL, "other")})}
    md = markdown_report(res, title="t")
    assert "| Reasoning | other | All pairs |" in md
    assert "Score averages only" not in md and "absent" not in md


def test_subset_table_grouped_by_section_then_name(results):
    md = markdown_report(results, title="t", subset_sections={"alpha-sub": "Reasoning"})
    rows = table_rows(md, "Section")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("Chat Hard", "llmbar-natural", "100"),
        ("Chat Hard", "mt-bench-hard", "37"),
        ("Reasoning", "alpha-sub", "8"),
        ("Reasoning", "hep-go", "40"),
    ]
    header = next(line for line in md.splitlines() if line.startswith("| Section |"))
    assert header.split(" | ")[3:5] == ["length", "mean_logprob"]  # scorer columns in ranking order
    stable_rank_column = header.strip("| ").split(" | ").index("stable_rank")
    assert [r[stable_rank_column] for r in rows] == ["50.0", "60.0", "25.0", "75.0"]


def test_layer_table_marks_best_layer():
    sweep = {i: summary(s, s, s - 0.01, s + 0.01) for i, s in enumerate([0.5, 0.58, 0.66, 0.61])}
    sweep[1].score = None
    md = markdown_report({}, title="t", layer_sweep=sweep)
    rows = table_rows(md, "Layer")
    assert [r[0] for r in rows] == ["0", "1", "**2**", "3"]
    assert rows[2][1:] == ["66.0", "65.0", "67.0", "66.0"]
    assert rows[1][1] == "—"
    assert "Best layer by Score: **2** (66.0)." in md


# ------------------------------------------------------------------------------------------------
# plots


def pair_rows(n_per_section=30, seed=0):
    rng = random.Random(seed)
    rows = []
    for section, subsets in (("Chat Hard", ["llmbar-natural", "mt-bench-hard"]), ("Reasoning", ["hep-go"])):
        for i in range(n_per_section):
            ct, rt = rng.randint(10, 400), rng.randint(10, 400)
            chosen, rejected = 10 + 0.05 * ct + rng.gauss(0, 2), 10 + 0.05 * rt + rng.gauss(0, 2)
            if i % 7 == 0:
                chosen = None
            if i % 11 == 0:
                rejected = float("nan")
            rows.append(PairRow.from_json({
                "id": f"{section}-{i}", "subset": subsets[i % len(subsets)], "section": section,
                "chosen_tokens": ct, "rejected_tokens": rt, "warnings": {},
                "scores": {"stable_rank": {"chosen": chosen, "rejected": rejected},
                           "judge": {"chosen": float(rng.randint(1, 10)), "rejected": float("inf")}}}))
    return rows


def assert_png(path, min_width=500, min_height=300):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height
    assert image.std() > 0  # not a blank canvas


def test_write_report_writes_pngs_and_links(tmp_path, results, drawn):
    sweep = {i: summary(0.5 + 0.02 * i, 0.5 + 0.02 * i, 0.5, 0.5 + 0.04 * i) for i in range(6)}
    paths = write_report(tmp_path / "out", results, pair_rows(), title="RB", meta={"model": "tiny"},
                         layer_sweep=sweep)
    names = [p.name for p in paths]
    assert names == ["report.md", "sections.png", "score_distributions.png", "layer_sweep.png",
                     "score_vs_length.png"]
    for path in paths[1:]:
        assert_png(path)
    # Each file is the figure of its data: the sweep's Score line is 50, 52, ... 60 (%), the best at layer 5.
    sections, distributions, layers, lengths = drawn
    assert sections.axes[0].get_title() == "RewardBench accuracy per section (Chat, Safety: no pairs)"
    assert [ax.get_title().split(":")[0] for ax in distributions.axes if ax.get_visible()] == ["Chat Hard", "Reasoning"]
    score = next(line for line in layers.axes[0].lines if line.get_label() == "Score")
    assert list(score.get_ydata()) == pytest.approx([50, 52, 54, 56, 58, 60])
    assert lengths.get_suptitle() == "Does stable_rank follow length?"
    md = paths[0].read_text(encoding="utf-8")
    for name in names[1:]:
        assert f"]({name})" in md
    assert "| Layer |" in md


def test_write_report_skips_missing_plots(tmp_path, results):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "layer_sweep.png").write_bytes(b"stale")  # from an earlier run: must not survive
    paths = write_report(out, results, pair_rows(), title="RB", scorer_for_plots="not_a_scorer")
    assert [p.name for p in paths] == ["report.md", "sections.png"]
    assert not (out / "layer_sweep.png").exists()
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "layer_sweep.png" not in md and "score_vs_length.png" not in md and "score_distributions.png" not in md
    assert "](sections.png)" in md and "| Layer |" not in md


@pytest.fixture
def drawn(monkeypatch):
    """The Figure objects the RewardBench plots save, in order, to read their data back."""
    import srgrpo.reports.rewardbench as rb

    figures = []
    save = rb.save_figure

    def keep(fig, path, *args, **kwargs):
        figures.append(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(rb, "save_figure", keep)
    return figures


def test_plots_survive_none_and_nan_scores(tmp_path, results, drawn):
    import numpy as np
    from scipy.stats import spearmanr

    rows = pair_rows()
    assert plot_score_distributions(rows, "stable_rank", tmp_path / "d.png") == tmp_path / "d.png"
    assert plot_score_vs_length(rows, "stable_rank", tmp_path / "l.png") == tmp_path / "l.png"
    # rejected all inf: still a histogram of the chosen scores, no pair difference
    assert plot_score_distributions(rows, "judge", tmp_path / "j.png") is not None
    assert plot_score_vs_length(rows, "judge", tmp_path / "jl.png") is not None
    for name in ("d.png", "l.png", "j.png", "jl.png"):
        assert_png(tmp_path / name)

    # What is drawn, against counts made here from the rows (None / NaN / inf are not scores).
    def ok(x):
        return x is not None and math.isfinite(x)

    for section, ax in zip(("Chat Hard", "Reasoning"), drawn[0].axes):
        mine = [r for r in rows if r.section == section]
        chosen = [r.scores["stable_rank"].chosen for r in mine if ok(r.scores["stable_rank"].chosen)]
        rejected = [r.scores["stable_rank"].rejected for r in mine if ok(r.scores["stable_rank"].rejected)]
        pairs = [(r.scores["stable_rank"].chosen, r.scores["stable_rank"].rejected) for r in mine
                 if ok(r.scores["stable_rank"].chosen) and ok(r.scores["stable_rank"].rejected)]
        wins = sum(c > r for c, r in pairs)
        assert ax.get_title() == f"{section}: {len(pairs)} pairs, chosen > rejected {100 * wins / len(pairs):.1f}%"
        filled = [p for p in ax.patches if p.get_fill()]  # the filled histograms: chosen's bars, then rejected's
        heights = [p.get_height() for p in filled]
        assert sum(heights) == len(chosen) + len(rejected)
        assert sum(heights[: len(heights) // 2]) == len(chosen)  # both histograms share the bins
        medians = sorted(line.get_xdata()[0] for line in ax.lines)
        assert medians == pytest.approx(sorted([np.median(chosen), np.median(rejected)]))
    left, right = drawn[1].axes[:2]
    points = {tuple(map(float, xy)) for xy in left.collections[0].get_offsets()}
    expected = {(float(r.chosen_tokens), r.scores["stable_rank"].chosen) for r in rows if ok(r.scores["stable_rank"].chosen)}
    assert points == expected
    xs, ys = zip(*sorted(expected))
    assert f"chosen (n={len(xs)}, Spearman ρ = {spearmanr(xs, ys).statistic:+.2f})" in \
        [t.get_text() for t in left.get_legend().get_texts()]
    both = [(r.chosen_tokens - r.rejected_tokens, r.scores["stable_rank"].chosen - r.scores["stable_rank"].rejected)
            for r in rows if ok(r.scores["stable_rank"].chosen) and ok(r.scores["stable_rank"].rejected)]
    longer_higher = sum(1 for dx, dy in both if dx > 0 and dy > 0)
    assert f"chosen longer, scored higher\n{longer_higher} ({100 * longer_higher / len(both):.0f}%)" in \
        [t.get_text() for t in right.texts]

    for row in rows:
        row.scores["stable_rank"] = SideScores(None, math.nan)
    assert plot_score_distributions(rows, "stable_rank", tmp_path / "none1.png") is None
    assert plot_score_vs_length(rows, "stable_rank", tmp_path / "none2.png") is None
    assert not (tmp_path / "none1.png").exists() and not (tmp_path / "none2.png").exists()


def test_section_and_layer_plots_with_gaps(tmp_path, results, drawn):
    assert_png(plot_sections(results, tmp_path / "s.png"))
    ax = drawn[0].axes[0]
    # Scorers by Score, then accuracy (None last); the bars, category by category, are the fixture's
    # values in percent, written out: Score, the two sections present, then all-pairs accuracy.
    assert [t.get_text() for t in ax.get_xticklabels()] == ["length", "mean_logprob", "stable_rank", "random", "broken"]
    from matplotlib.container import BarContainer

    bars = [(round(c.patches[0].get_x() + c.patches[0].get_width() / 2), round(c.patches[0].get_height(), 6))
            for c in ax.containers if isinstance(c, BarContainer)]
    assert bars == [(0, 70.0), (1, 61.2), (2, 61.2),                   # Score (random, broken: none)
                    (0, 75.0), (1, 60.0), (2, 55.0), (3, 49.0),        # Chat Hard
                    (0, 65.0), (1, 62.4), (2, 67.4), (3, 53.0),        # Reasoning
                    (0, 68.0), (1, 64.0), (2, 60.0), (3, 51.0)]        # All pairs (broken: NaN)
    assert [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [50]  # chance
    assert plot_sections({"x": summary(math.nan, math.nan, None, None)}, tmp_path / "e.png") is None

    sweep = {i: summary(0.5 + 0.01 * i, 0.5 + 0.01 * i, None if i == 2 else 0.55, math.nan) for i in range(8)}
    assert_png(plot_layer_sweep(sweep, tmp_path / "ls.png"))
    lines = {line.get_label(): line for line in drawn[1].axes[0].lines}
    assert list(lines["Score"].get_xdata()) == list(range(8))
    assert list(lines["Score"].get_ydata()) == pytest.approx([50 + i for i in range(8)])
    assert list(lines["Chat Hard"].get_ydata()) == pytest.approx([55, 55, math.nan, 55, 55, 55, 55, 55], nan_ok=True)
    assert "best by Score: layer 7 (57.0%)" in lines
    assert plot_layer_sweep({}, tmp_path / "none.png") is None


def test_spearman_in_the_length_plot_is_the_rank_correlation():
    from srgrpo.reports.rewardbench import _spearman

    assert _spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert _spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)  # ties share their mean rank
    # by hand: ranks (1, 2.5, 2.5, 4) and (1, 2, 3, 4); deviations (-1.5, 0, 0, 1.5) and (-1.5, -0.5,
    # 0.5, 1.5): covariance 4.5, variances 4.5 and 5, rho = 4.5 / sqrt(22.5) = 3 / sqrt(10)
    assert _spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    # 1 - 6 * sum(d^2) / (n (n^2 - 1)) with d = (-1, 1, -1, 1, 0): 1 - 24 / 120
    assert _spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert _spearman([1, 2], [1, 2]) is None  # fewer than 3 points
    assert _spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side has no ranking


def test_the_report_needs_no_scipy():
    """scipy is no dependency of srgrpo: the length plot's Spearman rho is computed with numpy."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['scipy'] = None; sys.modules['scipy.stats'] = None\n"
            "from srgrpo.reports.rewardbench import _spearman\n"
            "print(round(_spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]), 6))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0.8"
