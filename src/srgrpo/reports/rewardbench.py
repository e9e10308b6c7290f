"""The RewardBench report: Markdown tables and PNG figures of typed RewardBench summaries.

Inputs:

- `results`: scorer name -> `RewardBenchSummary` (srgrpo.results), as results.json holds them;
- `pair_rows`: one `PairRow` per pair, as pairs.jsonl holds them;
- `layer_sweep`: hidden_states index -> `RewardBenchSummary`, as layer_sweep.json holds them.

A value the summary leaves undefined (None, or a NaN score) is shown as "—" in tables and left out of
plots. A plot whose data is missing is skipped (its function returns None) and
`write_rewardbench_report` leaves its link out. Plots are drawn on bare `matplotlib.figure.Figure`
objects (srgrpo.reports.figures), so no pyplot state or GUI backend is touched.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from srgrpo.rewardbench.v1 import OTHER_SECTION, section_of
from srgrpo.rewardbench.v1 import SECTIONS as RB_SECTIONS
from srgrpo.rewardbench.v2 import CHANCE as RB2_CHANCE
from srgrpo.rewardbench.v2 import SUBSETS as RB2_SUBSETS
from srgrpo.rewardbench.v2 import TIES_WEIGHTS
from srgrpo.reports.figures import new_figure, percent_axis, save_figure
from srgrpo.reports.tables import (
    DASH,
    finite,
    finite_interval,
    markdown_table,
    meta_value,
    percent,
    percent_with_interval,
)
from srgrpo.results import PairRow, RewardBenchSummary, rewardbench_results_from_json

__all__ = [
    "SECTIONS",
    "rewardbench_markdown",
    "write_rewardbench_report",
    "plot_sections",
    "plot_score_distributions",
    "plot_layer_sweep",
    "plot_score_vs_length",
]

SECTIONS = tuple(RB_SECTIONS)  # RewardBench v1 order; "other" comes after
OTHER = OTHER_SECTION
CHOSEN_COLOR = "#1f77b4"
REJECTED_COLOR = "#ff7f0e"

FIGURES = {  # file name -> caption
    "sections": "Accuracy per section with 95% CI",
    "score_distributions": "Chosen vs rejected score distributions",
    "layer_sweep": "Accuracy per layer",
    "score_vs_length": "Score vs response length",
}


# ----------------------------------------------------------------------------------------------------
# values


def _section_value(summary: RewardBenchSummary, section: str) -> float | None:
    # `sections` holds the sections present; a missing key is an absent section, not a schema error.
    return finite(summary.sections.get(section))


def _section_ci(summary: RewardBenchSummary, section: str) -> tuple[float, float] | None:
    return finite_interval(summary.ci.sections.get(section))


def _score_ci(summary: RewardBenchSummary) -> tuple[float, float] | None:
    return finite_interval(summary.ci.score)


def _accuracy_ci(summary: RewardBenchSummary) -> tuple[float, float] | None:
    return finite_interval(summary.ci.accuracy)


def _is_v2(summaries: Iterable[RewardBenchSummary]) -> bool:
    return any(s.protocol == "v2" for s in summaries)


def _official(summaries: Iterable[RewardBenchSummary]) -> tuple[str, ...]:
    """The columns of the headline: v1's four sections, or RewardBench 2's six subsets."""
    return RB2_SUBSETS if _is_v2(summaries) else SECTIONS


def _extras(summaries: Sequence[RewardBenchSummary]) -> list[str]:
    """Columns beyond the official ones: v1's "other", or v2 subsets RewardBench 2 does not know."""
    if _is_v2(summaries):
        return sorted({name for s in summaries for name in s.sections if name not in RB2_SUBSETS})
    return [OTHER] if any(OTHER in s.sections for s in summaries) else []


def _has_other(summaries: Iterable[RewardBenchSummary]) -> bool:
    return bool(_extras(list(summaries)))


def _chance(summaries: Iterable[RewardBenchSummary]) -> float:
    return RB2_CHANCE if _is_v2(summaries) else 0.5


def _present_sections(summaries: Sequence[RewardBenchSummary]) -> list[str]:
    """Sections (official order, then the others) with a value for at least one summary."""
    names = [*_official(summaries), *_extras(summaries)]
    return [name for name in names if any(_section_value(s, name) is not None for s in summaries)]


def _absent_sections(summaries: Sequence[RewardBenchSummary]) -> list[str]:
    """Official sections listed as absent by any summary, or with no value in any summary."""
    listed = {name for s in summaries for name in s.absent_sections}
    present = set(_present_sections(summaries))
    return [name for name in _official(summaries) if name in listed or name not in present]


def _sort_key(item: tuple[str, RewardBenchSummary]):
    name, summary = item
    score, accuracy = finite(summary.score), finite(summary.accuracy)
    return (score is None, -(score or 0.0), accuracy is None, -(accuracy or 0.0), name)


def _ranked(results: Mapping[str, RewardBenchSummary]) -> list[tuple[str, RewardBenchSummary]]:
    """(name, summary) sorted by Score descending (None last), then accuracy, then name."""
    return sorted(((str(k), v) for k, v in results.items()), key=_sort_key)


def _layer_items(layer_sweep: Mapping[int, RewardBenchSummary] | None) -> list[tuple[int, RewardBenchSummary]]:
    return sorted((layer_sweep or {}).items(), key=lambda kv: kv[0])


def _best_layer(items: list[tuple[int, RewardBenchSummary]]) -> tuple[int, str, float] | None:
    """(layer, metric name, value) of the best layer by Score, or by raw accuracy if no layer has one."""
    for field, label in (("score", "Score"), ("accuracy", "All pairs")):
        scored = [(layer, finite(getattr(s, field))) for layer, s in items]
        scored = [(layer, v) for layer, v in scored if v is not None]
        if scored:
            layer, value = max(scored, key=lambda lv: (lv[1], -lv[0]))
            return layer, label, value
    return None


# ----------------------------------------------------------------------------------------------------
# Markdown


def _length_controlled(summary: RewardBenchSummary) -> str:
    lc = summary.length_controlled
    if finite(lc.accuracy) is None:
        return DASH
    return f"{percent(lc.accuracy)} (n={lc.n})"


def _subset_table(ranked: list[tuple[str, RewardBenchSummary]], subset_sections: Mapping[str, str] | None) -> list[str]:
    summaries = [s for _, s in ranked]
    subsets = sorted({str(k) for s in summaries for k in s.subsets})
    if not subsets:
        return []
    order = {name: i for i, name in enumerate([*SECTIONS, OTHER])}
    located = [(str((subset_sections or {}).get(name, section_of(name))), name) for name in subsets]
    located.sort(key=lambda sn: (order.get(sn[0], len(order)), sn[0], sn[1]))
    rows = []
    for section, name in located:
        entries = [s.subsets.get(name) for s in summaries]  # None: this scorer's run had no such subset
        n = max((e.n for e in entries if e is not None), default=None)
        cells = []
        for entry in entries:
            if entry is None:
                cells.append(DASH)
                continue
            text = percent(entry.accuracy)
            if entry.n != n:
                text += f" (n={entry.n})"  # this scorer left some of the subset's pairs unscored
            cells.append(text)
        rows.append([section, name, DASH if n is None else n, *cells])
    header = ["Section", "Subset", "n", *[name for name, _ in ranked]]
    return markdown_table(header, rows, ["---", "---", "---:", *["---:"] * len(ranked)])


def _ties_table(ranked: list[tuple[str, RewardBenchSummary]]) -> list[str]:
    with_ties = [(name, s) for name, s in ranked if s.ties]
    if not with_ties:
        return []
    names = [*TIES_WEIGHTS, "score"]
    rows = [[f"`{name}`", *[percent(s.ties.get(k)) for k in names]] for name, s in with_ties]
    return markdown_table(["Scorer", *names], rows, ["---", *["---:"] * len(names)])


def _layer_table(layer_sweep: Mapping[int, RewardBenchSummary] | None) -> list[str]:
    items = _layer_items(layer_sweep)
    if not items:
        return []
    summaries = [s for _, s in items]
    sections = _present_sections(summaries)
    has_score = any(finite(s.score) is not None for s in summaries)
    best = _best_layer(items)
    header = ["Layer", *(["Score"] if has_score else []), *sections, "All pairs"]
    rows = []
    for layer, s in items:
        label = f"**{layer}**" if best and layer == best[0] else str(layer)
        row = [label, *([percent(s.score)] if has_score else [])]
        row += [percent(_section_value(s, name)) for name in sections]
        rows.append([*row, percent(s.accuracy)])
    last = items[-1][0]
    lines = [
        "## Accuracy per layer",
        "",
        f"`hidden_states` index: 0 is the embeddings, {last} the last layer after the final norm.",
        "",
    ]
    if best:
        lines += [f"Best layer by {best[1]}: **{best[0]}** ({100 * best[2]:.1f}).", ""]
    return lines + markdown_table(header, rows, ["---:"] * len(header))


def _results_table(ranked) -> list[str]:
    """The scorer x section table (accuracy % with 95% CI), rows sorted by Score."""
    summaries = [s for _, s in ranked]
    columns = [*_official(summaries), *_extras(summaries)]
    pooled = "Best-of-4, all prompts" if _is_v2(summaries) else "All pairs"
    header = ["Scorer", "Score", *columns, pooled, "Length-controlled (n)"]
    rows = []
    for name, s in ranked:
        cells = [percent_with_interval(_section_value(s, c), _section_ci(s, c)) for c in columns]
        rows.append([f"`{name}`", percent_with_interval(s.score, _score_ci(s)), *cells,
                     percent_with_interval(s.accuracy, _accuracy_ci(s)), _length_controlled(s)])
    return [f"{'Score' if _is_v2(summaries) else 'Accuracy'} in %, 95% confidence interval in brackets; "
            "rows sorted by Score.", ""] + markdown_table(header, rows, ["---", *["---:"] * (len(header) - 1)]) + [""]


def _results_notes(ranked) -> list[str]:
    """The notes under the results table: absent sections, what the Score averages, the protocol's
    columns, the number of pairs (prompts) and the unscored ones."""
    summaries = [s for _, s in ranked]
    official = _official(summaries)
    notes = []
    absent = _absent_sections(summaries)
    if absent:
        notes.append(f"Sections absent from the data (shown as {DASH}): {', '.join(absent)}.")
    covered = [name for name in official if name not in absent]
    version = "2" if _is_v2(summaries) else "v1"
    if len(covered) < len(official):
        notes.append(
            f"Score averages only the {'subsets' if version == '2' else 'sections'} present: "
            f"{', '.join(covered) or 'none'} (RewardBench {version} averages all {len(official)})."
        )
    if _has_other(summaries) and version == "v1":
        notes.append(f"`{OTHER}` holds pairs outside the four RewardBench sections.")
    elif _has_other(summaries):
        notes.append(f"{', '.join(_extras(summaries))}: subsets outside RewardBench 2's six, scored best-of-n, "
                     "not in the Score.")
    if version == "2":
        notes.append("RewardBench 2: every completion scored alone; best-of-4 credit 1/(completions tied at "
                     "the top) when the correct one is at the top (chance 25%); Ties by its own formula; "
                     "Score = mean of the six subsets. Best-of-4, all prompts: the credit over every "
                     "non-Ties prompt. Length-controlled: the same over prompts whose completions' lengths differ by "
                     "less than 20%, with their number.")
    else:
        notes.append("All pairs: raw accuracy over every pair. Length-controlled: accuracy over the "
                     "length-controlled pairs, with their number.")
    n_pairs = sorted({s.n_pairs for s in summaries})
    if n_pairs:
        notes.append(f"{'Prompts' if version == '2' else 'Pairs'}: {', '.join(f'{n:,}' for n in n_pairs)}.")
    unscored = [(name, s.n_unscored) for name, s in ranked if s.n_unscored > 0]
    if unscored:
        notes.append("Pairs a scorer could not score: " + ", ".join(f"`{n}` {k:,}" for n, k in unscored) + ".")
    return [f"- {note}" for note in notes] + [""]


def _detail_tables(ranked, subset_sections) -> list[str]:
    """Ties' components (RewardBench 2) and the accuracy per subset (v1)."""
    lines = []
    subset_lines = [] if _is_v2([s for _, s in ranked]) else _subset_table(ranked, subset_sections)
    ties_lines = _ties_table(ranked)
    if ties_lines:
        lines += ["## Ties components", "",
                  "Score = 0.30 tied accuracy + 0.30 ref accuracy + 0.20 tied margin > spread + 0.20 smaller "
                  "margin > spread + 0.01 tanh term (in %).", ""]
        lines += ties_lines + [""]
    if subset_lines:
        lines += ["## Accuracy per subset", "", "Accuracy in %; n = pairs in the subset.", ""]
        lines += subset_lines + [""]
    return lines


def rewardbench_markdown(
    results: Mapping[str, RewardBenchSummary],
    *,
    title: str,
    meta: dict | None = None,
    layer_sweep: Mapping[int, RewardBenchSummary] | None = None,
    figures: Sequence[tuple[str, str]] | None = None,
    subset_sections: Mapping[str, str] | None = None,
) -> str:
    """The RewardBench report as Markdown: meta table, scorer x section table (accuracy % with 95%
    CI), notes on absent sections, subset x scorer table, layer table (if `layer_sweep`), and
    `figures` given as (relative path, caption) pairs. `subset_sections` maps subset -> section for
    the subset table (default: the RewardBench v1 layout, "other" for unknown subsets)."""
    ranked = _ranked(results)
    lines = [f"# {title}", ""]
    if meta:
        lines += markdown_table(["", ""], [[str(k), meta_value(v)] for k, v in meta.items()], ["---", "---"]) + [""]
    lines += ["## Results", ""]
    if not ranked:
        lines += ["No scorer results.", ""]
    else:
        lines += _results_table(ranked) + _results_notes(ranked) + _detail_tables(ranked, subset_sections)
    layer_lines = _layer_table(layer_sweep) if layer_sweep else []
    if layer_lines:
        lines += layer_lines + [""]
    if figures:
        lines += ["## Figures", ""]
        for path, caption in figures:
            lines += [f"![{caption}]({Path(path).as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------
# plots


def plot_sections(results: Mapping[str, RewardBenchSummary], path) -> Path | None:
    """Grouped bars, one group per scorer (sorted as in the report): Score, each section present and
    all-pairs accuracy, with 95% CI error bars, value labels and the 50% chance line. None when no
    scorer has any value."""
    ranked = _ranked(results)
    summaries = [s for _, s in ranked]
    categories = []  # (label, value getter, CI getter)
    if any(finite(s.score) is not None for s in summaries):
        categories.append(("Score", lambda s: finite(s.score), _score_ci))
    for name in _present_sections(summaries):
        categories.append((name, lambda s, n=name: _section_value(s, n), lambda s, n=name: _section_ci(s, n)))
    if any(finite(s.accuracy) is not None for s in summaries):
        categories.append(("All pairs", lambda s: finite(s.accuracy), _accuracy_ci))
    if not ranked or not categories:
        return None

    import numpy as np
    from matplotlib import colormaps

    n_scorers, n_cats = len(ranked), len(categories)
    width = 0.8 / n_cats
    fig_width = max(7.0, 1.0 + 0.3 * n_scorers * n_cats + 0.25 * n_scorers)
    fig = new_figure(fig_width, 5.0)
    ax = fig.add_subplot()
    colors = ["#333333", *colormaps["tab10"].colors]
    if categories[0][0] != "Score":
        colors = colors[1:]
    x = np.arange(n_scorers)
    label_size = 7 if n_scorers * n_cats <= 40 else 6
    highest = 0.0
    for i, (label, get, get_ci) in enumerate(categories):
        offset = (i - (n_cats - 1) / 2) * width
        labelled = False
        for j, s in enumerate(summaries):
            value = get(s)
            if value is None:
                continue
            v = 100 * value
            ci = get_ci(s)
            yerr = None
            top = v
            if ci is not None:
                yerr = [[max(0.0, v - 100 * ci[0])], [max(0.0, 100 * ci[1] - v)]]
                top = max(v, 100 * ci[1])
            ax.bar(x[j] + offset, v, width, color=colors[i % len(colors)], yerr=yerr,
                   error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#444444"},
                   label=None if labelled else label)
            labelled = True
            ax.text(x[j] + offset, top + 1.0, f"{v:.1f}", rotation=90, ha="center", va="bottom",
                    fontsize=label_size)
            highest = max(highest, top)
    chance = 100 * _chance(summaries)
    ax.axhline(chance, color="#888888", linestyle="--", linewidth=1, label=f"chance ({chance:.0f}%)")
    ax.set_xticks(x)
    longest = max(len(name) for name, _ in ranked)
    rotate = longest * 0.09 > 0.9 * (fig_width - 1.0) / n_scorers  # names wider than their group: tilt them
    ax.set_xticklabels([name for name, _ in ranked], rotation=30 if rotate else 0, ha="right" if rotate else "center",
                       rotation_mode="anchor" if rotate else "default")
    ax.set_xlim(-0.6, n_scorers - 0.4)
    ax.set_ylim(0, max(60.0, highest + 10.0))  # room for the rotated value labels
    ax.set_yticks(range(0, 101, 10))
    percent_axis(ax)
    ax.set_ylabel("accuracy (95% CI)")
    absent = _absent_sections(summaries)
    ax.set_title(("RewardBench 2 score per subset" if _is_v2(summaries) else "RewardBench accuracy per section")
                 + (f" ({', '.join(absent)}: no {'prompts' if _is_v2(summaries) else 'pairs'})" if absent else ""))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    # a figure legend below the axes: constrained layout makes room for it instead of squeezing the bars
    fig.legend(loc="outside lower center", ncol=min(n_cats + 1, max(2, int(fig_width / 1.5))), frameon=False,
               fontsize=9)
    return save_figure(fig, path)


def _pair_scores(pair_rows: Sequence[PairRow], scorer: str) -> list[tuple[PairRow, float | None, float | None]]:
    """(row, chosen, rejected) for each row scored by `scorer`; non-finite scores become None."""
    return [(row, finite(row.scores[scorer].chosen), finite(row.scores[scorer].rejected))
            for row in pair_rows if scorer in row.scores]


def _row_sections(rows: Iterable[PairRow]) -> list[str]:
    found = {row.section for row in rows}
    order = [*SECTIONS, *RB2_SUBSETS, OTHER]
    return [s for s in order if s in found] + sorted(found - set(order))


def plot_score_distributions(pair_rows: Sequence[PairRow], scorer: str, path) -> Path | None:
    """Chosen and rejected score histograms (overlaid, shared bins), one panel per section with scores.
    None when `scorer` has no finite score."""
    import numpy as np

    scored = [(row, c, r) for row, c, r in _pair_scores(pair_rows, scorer) if c is not None or r is not None]
    sections = _row_sections(row for row, _, _ in scored)
    if not sections:
        return None
    n = len(sections)
    cols = min(n, 3)
    rows_n = math.ceil(n / cols)
    fig = new_figure(max(6.0, 4.6 * cols), 3.6 * rows_n + 0.6)
    axes = fig.subplots(rows_n, cols, squeeze=False).ravel()
    for ax, section in zip(axes, sections):
        chosen = np.array([c for row, c, _ in scored if row.section == section and c is not None])
        rejected = np.array([r for row, _, r in scored if row.section == section and r is not None])
        both = np.concatenate([chosen, rejected])
        bins = _bins(both)
        lo, hi = bins[0], bins[-1]
        for values, color, label in ((chosen, CHOSEN_COLOR, "chosen"), (rejected, REJECTED_COLOR, "rejected")):
            if values.size:
                ax.hist(np.clip(values, lo, hi), bins=bins, color=color, alpha=0.45,
                        label=f"{label} (median {np.median(values):.3g})")
                ax.hist(np.clip(values, lo, hi), bins=bins, color=color, histtype="step", linewidth=1.2)
                ax.axvline(np.median(values), color=color, linestyle="--", linewidth=1.2)
        pairs = [(c, r) for row, c, r in scored if row.section == section and c is not None and r is not None]
        wins = sum(c > r for c, r in pairs)
        detail = f"{section}: {len(pairs)} pairs"
        if pairs:
            detail += f", chosen > rejected {100 * wins / len(pairs):.1f}%"
        ax.set_title(detail, fontsize=10)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # headroom so the legend sits above the bars
        ax.set_xlabel(f"{scorer} score")
        ax.set_ylabel("responses")
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8, loc="upper right", framealpha=0.85)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"Score distributions of {scorer}: chosen vs rejected")
    return save_figure(fig, path)


def _bins(values, max_bins: int = 40):
    """Shared bin edges: one bin per value for integer scores over a short range (judge ratings), else
    over the 1st-99th percentile when outliers would squash the rest (values outside are clipped into
    the end bins by the caller), else over the full range."""
    import numpy as np

    lo, hi = float(values.min()), float(values.max())
    if np.all(values == np.round(values)) and hi - lo <= 60:
        return np.arange(lo - 0.5, hi + 1.5)
    if values.size >= 20:
        p_lo, p_hi = np.percentile(values, [1, 99])
        if p_hi > p_lo and (hi - lo) > 3 * (p_hi - p_lo):
            lo, hi = float(p_lo), float(p_hi)
    if hi <= lo:
        pad = 0.5 if lo == 0 else abs(lo) * 0.05
        lo, hi = lo - pad, hi + pad
    n = int(min(max_bins, max(8, round(math.sqrt(values.size) * 1.5))))
    return np.linspace(lo, hi, n + 1)


def plot_layer_sweep(layer_sweep: Mapping[int, RewardBenchSummary], path) -> Path | None:
    """Accuracy against the hidden_states index: one line per section present, the Score and the
    all-pairs accuracy (with its 95% CI band); the best layer is marked. None without data."""
    items = _layer_items(layer_sweep)
    summaries = [s for _, s in items]
    layers = [layer for layer, _ in items]
    series = []  # (label, values, style)
    for name in _present_sections(summaries):
        series.append((name, [_section_value(s, name) for s in summaries], {"linewidth": 1.4, "marker": "o",
                                                                            "markersize": 3}))
    score = [finite(s.score) for s in summaries]
    if any(v is not None for v in score):
        series.append(("Score", score, {"linewidth": 2.4, "color": "#222222"}))
    accuracy = [finite(s.accuracy) for s in summaries]
    if any(v is not None for v in accuracy):
        series.append(("All pairs", accuracy, {"linewidth": 1.6, "linestyle": "-.", "color": "#7f7f7f"}))
    if not series:
        return None

    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(max(7.0, min(14.0, 4.0 + 0.22 * len(layers))), 4.8)
    ax = fig.add_subplot()
    for label, values, style in series:
        y = np.array([np.nan if v is None else 100 * v for v in values])
        ax.plot(layers, y, label=label, **style)
    cis = [_accuracy_ci(s) for s in summaries]
    if any(ci is not None for ci in cis):
        lo = np.array([np.nan if ci is None else 100 * ci[0] for ci in cis])
        hi = np.array([np.nan if ci is None else 100 * ci[1] for ci in cis])
        ax.fill_between(layers, lo, hi, color="#7f7f7f", alpha=0.15, linewidth=0, label="All pairs 95% CI")
    chance = 100 * _chance(summaries)
    ax.axhline(chance, color="#888888", linestyle="--", linewidth=1, label=f"chance ({chance:.0f}%)")
    best = _best_layer(items)
    if best is not None:
        layer, label, value = best
        ax.axvline(layer, color="#d62728", linestyle=":", linewidth=1.2)
        ax.plot([layer], [100 * value], marker="*", markersize=14, color="#d62728", zorder=5,
                label=f"best by {label}: layer {layer} ({100 * value:.1f}%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(len(layers), 16)))
    if len(layers) > 1:
        ax.set_xlim(layers[0] - 0.5, layers[-1] + 0.5)
    ax.set_xlabel(f"hidden_states index (0 = embeddings, {layers[-1]} = after the final norm)")
    ax.set_ylabel("accuracy")
    percent_axis(ax)
    all_values = [100 * v for _, values, _ in series for v in values if v is not None]
    ax.set_ylim(min(chance - 10.0, min(all_values) - 3), max(chance + 10.0, max(all_values) + 3))
    ax.set_title("Accuracy per layer")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    return save_figure(fig, path)


def _average_ranks(values) -> "np.ndarray":
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    import numpy as np

    a = np.asarray(values, dtype=float)
    ranks = np.empty(len(a))
    ranks[np.argsort(a, kind="stable")] = np.arange(1, len(a) + 1)
    _, group, count = np.unique(a, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / count)[group]


def _spearman(x, y) -> float | None:
    """Spearman's rank correlation: Pearson's correlation of the average ranks (numpy only), or None
    when it is undefined (fewer than 3 points, or a constant side)."""
    import numpy as np

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(np.corrcoef(_average_ranks(x), _average_ranks(y))[0, 1])


def _length_points(pair_rows: Sequence[PairRow], scorer: str) -> tuple[dict, tuple[list, list]]:
    """({side: (tokens, scores)}, (token differences, score differences)) of the finite ones."""
    points = {"chosen": ([], []), "rejected": ([], [])}
    diffs = ([], [])
    for row, c, r in _pair_scores(pair_rows, scorer):
        ct, rt = finite(row.chosen_tokens), finite(row.rejected_tokens)
        if c is not None and ct is not None:
            points["chosen"][0].append(ct)
            points["chosen"][1].append(c)
        if r is not None and rt is not None:
            points["rejected"][0].append(rt)
            points["rejected"][1].append(r)
        if None not in (c, r, ct, rt):
            diffs[0].append(ct - rt)
            diffs[1].append(c - r)
    return points, diffs


def _plot_scores_by_length(ax, points: dict, scorer: str, size: float, alpha: float) -> None:
    """Score against response tokens, chosen and rejected in two colours (Spearman rho in the legend)."""
    import numpy as np

    for label, color in (("chosen", CHOSEN_COLOR), ("rejected", REJECTED_COLOR)):
        xs, ys = points[label]
        if not xs:
            continue
        rho = _spearman(xs, ys)
        rho_text = "" if rho is None else f", Spearman ρ = {rho:+.2f}"
        ax.scatter(xs, ys, s=size, alpha=alpha, color=color, edgecolors="none", label=f"{label} (n={len(xs)}{rho_text})")
    all_x = np.array(points["chosen"][0] + points["rejected"][0])
    if all_x.min() > 0 and np.percentile(all_x, 95) > 30 * np.percentile(all_x, 5):
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")  # lengths spanning orders of magnitude
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("response tokens")
    ax.set_ylabel(f"{scorer} score")
    ax.set_title("Score vs response length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85, markerscale=1.5)


def _plot_pair_differences(ax, diffs: tuple[list, list], size: float, alpha: float) -> None:
    """Per pair, score difference against token-count difference, with the count of pairs in each
    quadrant."""
    import numpy as np

    dx, dy = np.array(diffs[0]), np.array(diffs[1])
    ax.axhline(0, color="#888888", linewidth=1)
    ax.axvline(0, color="#888888", linewidth=1)
    if not dx.size:
        ax.text(0.5, 0.5, "no pair with both scores", transform=ax.transAxes, ha="center", va="center")
        ax.set_title("Per pair: chosen - rejected", fontsize=10)
        return
    follows = (np.sign(dx) == np.sign(dy)) & (dx != 0) & (dy != 0)
    against = (np.sign(dx) == -np.sign(dy)) & (dx != 0) & (dy != 0)
    for mask, color, label in ((follows, "#9467bd", "longer response scored higher"),
                               (against, "#2ca02c", "shorter response scored higher"),
                               (~(follows | against), "#7f7f7f", "equal length or equal score")):
        if mask.any():
            ax.scatter(dx[mask], dy[mask], s=size, alpha=alpha, color=color, edgecolors="none",
                       label=f"{label} ({int(mask.sum())})")
    quadrants = [
        ((dx > 0) & (dy > 0), (0.98, 0.97), "right", "top", "chosen longer, scored higher"),
        ((dx < 0) & (dy > 0), (0.02, 0.97), "left", "top", "chosen shorter, scored higher"),
        ((dx < 0) & (dy < 0), (0.02, 0.03), "left", "bottom", "chosen shorter, scored lower"),
        ((dx > 0) & (dy < 0), (0.98, 0.03), "right", "bottom", "chosen longer, scored lower"),
    ]
    for mask, (qx, qy), ha, va, text in quadrants:
        k = int(mask.sum())
        ax.text(qx, qy, f"{text}\n{k} ({100 * k / dx.size:.0f}%)", transform=ax.transAxes, ha=ha, va=va,
                fontsize=8, bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "alpha": 0.85,
                                  "edgecolor": "#cccccc"})
    decided = int(follows.sum() + against.sum())
    share = f"{100 * follows.sum() / decided:.0f}%" if decided else DASH
    ax.set_title(f"Per pair: chosen - rejected\nlonger response scored higher in {share} of {decided} pairs",
                 fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False, markerscale=2)
    span_x = max(1.0, float(np.abs(dx).max()))
    span_y = float(np.abs(dy).max()) or 1.0
    ax.set_xlim(-1.15 * span_x, 1.15 * span_x)
    ax.set_ylim(-1.35 * span_y, 1.35 * span_y)  # room for the quadrant labels


def plot_score_vs_length(pair_rows: Sequence[PairRow], scorer: str, path) -> Path | None:
    """Left: score against response tokens, chosen and rejected in two colours (Spearman rho in the
    legend). Right: per pair, score difference (chosen - rejected) against token-count difference,
    with the count of pairs in each quadrant: if most pairs sit in the two quadrants where the longer
    response scores higher, the scorer mostly follows length. None without finite scores."""
    points, diffs = _length_points(pair_rows, scorer)
    if not points["chosen"][0] and not points["rejected"][0]:
        return None
    fig = new_figure(12.5, 5.0)
    left, right = fig.subplots(1, 2)
    n_points = len(points["chosen"][0]) + len(points["rejected"][0])
    size, alpha = (14, 0.6) if n_points < 500 else (6, 0.35)
    _plot_scores_by_length(left, points, scorer, size, alpha)
    _plot_pair_differences(right, diffs, size, alpha)
    right.set_xlabel("token difference (chosen - rejected)", labelpad=2)
    right.set_ylabel("score difference (chosen - rejected)")
    right.grid(alpha=0.3)
    fig.suptitle(f"Does {scorer} follow length?")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
# all of it


def write_rewardbench_report(
    output_dir: str | os.PathLike,
    results: Mapping[str, RewardBenchSummary],
    pair_rows: Sequence[PairRow],
    *,
    title: str,
    meta: dict | None = None,
    layer_sweep: Mapping[int, RewardBenchSummary] | None = None,
    scorer_for_plots: str = "stable_rank",
) -> list[Path]:
    """Write the PNGs whose data exist and report.md (linking them) into `output_dir`; return the
    paths written, report.md first."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        ("sections", lambda p: plot_sections(results, p), FIGURES["sections"]),
        ("score_distributions", lambda p: plot_score_distributions(pair_rows, scorer_for_plots, p),
         f"{FIGURES['score_distributions']} of `{scorer_for_plots}`"),
        ("layer_sweep", lambda p: plot_layer_sweep(layer_sweep, p) if layer_sweep else None,
         FIGURES["layer_sweep"]),
        ("score_vs_length", lambda p: plot_score_vs_length(pair_rows, scorer_for_plots, p),
         f"{FIGURES['score_vs_length']} for `{scorer_for_plots}`"),
    ]
    written, figures = [], []
    for name, draw, caption in plots:
        path = output_dir / f"{name}.png"
        if draw(path) is not None:
            written.append(path)
            figures.append((path.name, caption))
        elif path.exists():
            path.unlink()  # a stale plot from an earlier run would contradict this report
    subset_sections = {row.subset: row.section for row in pair_rows}
    report = output_dir / "report.md"
    report.write_text(
        rewardbench_markdown(results, title=title, meta=meta, layer_sweep=layer_sweep, figures=figures,
                             subset_sections=subset_sections),
        encoding="utf-8",
    )
    return [report, *written]


def write_rewardbench_report_from_dir(output_dir: str | os.PathLike, title: str = "RewardBench evaluation",
                                      extra_meta: dict | None = None) -> list[Path]:
    """`write_rewardbench_report` from what `run_rewardbench` wrote into `output_dir` (results.json,
    pairs.jsonl, layer_sweep.json, run.json); returns the paths written, report.md first."""
    output_dir = Path(output_dir)
    results = rewardbench_results_from_json(json.loads((output_dir / "results.json").read_text()))
    rows = [PairRow.from_json(json.loads(line))
            for line in (output_dir / "pairs.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    sweep_file = output_dir / "layer_sweep.json"
    layer_sweep = ({int(k): RewardBenchSummary.from_json(v) for k, v in json.loads(sweep_file.read_text()).items()}
                   if sweep_file.is_file() else None)
    run_file = output_dir / "run.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    scoring = run.get("scoring", {})
    meta = {k: run[k] for k in ("model", "dtype", "data", "protocol", "limit_per_subset") if k in run}
    meta.update({"prompts" if run.get("protocol") == "v2" else "pairs": len(rows), "scorers": ", ".join(results),
                 "span": scoring.get("span"), "layer": scoring.get("layer"), "window": scoring.get("max_length")})
    if scoring.get("min_span_tokens"):
        meta["min_span_tokens (short-span rule)"] = scoring["min_span_tokens"]
    if "versions" in run:
        meta["srgrpo"] = run["versions"].get("srgrpo")
    meta.update(extra_meta or {})
    plot_scorer = "stable_rank" if "stable_rank" in results else next(iter(results))
    return write_rewardbench_report(output_dir, results, rows, title=title, meta=meta, layer_sweep=layer_sweep,
                                    scorer_for_plots=plot_scorer)
