"""The Best-of-N report: a Markdown table (greedy, every selector at every N, gains with intervals)
and the accuracy-vs-N plot, both functions of a `BestOfNSummary` (srgrpo.results) alone."""

from __future__ import annotations

from pathlib import Path

from srgrpo.reports.figures import new_figure, save_figure
from srgrpo.reports.tables import DASH, markdown_table, percent, percent_with_interval, signed_percent
from srgrpo.results import BestOfNSummary, Comparison

# Plot styles: the method and its two reference points stand out, the other baselines recede.
# Keyed by selector name (a test checks every key is in srgrpo.bon.selectors.SELECTORS); a selector
# without a style gets a thin default line.
SELECTOR_STYLES = {
    "stable_rank": dict(color="tab:red", linewidth=2.4, marker="o", zorder=5),
    "random": dict(color="tab:gray", linewidth=1.8, marker="s", linestyle="--", zorder=4),
    "borda_stable_rank": dict(color="tab:orange", linewidth=1.4, marker="^"),
    "self_certainty": dict(color="tab:blue", linewidth=1.1, marker="."),
    "borda_self_certainty": dict(color="tab:cyan", linewidth=1.1, marker="v"),
    "mean_logprob": dict(color="tab:green", linewidth=1.1, marker="."),
    "majority": dict(color="tab:purple", linewidth=1.1, marker="D", markersize=4),
}
DEFAULT_STYLE = dict(linewidth=1.1, marker=".", alpha=0.8)
BANDS = ("stable_rank", "random")  # selectors drawn with their 95% interval band


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _comparison(c: Comparison | None) -> str:
    if c is None:
        return DASH
    relative = DASH if c.relative is None else f"{100 * c.relative:+.1f}%"
    return f"{signed_percent(c.absolute)} ({relative}) [{signed_percent(c.interval[0])}, {signed_percent(c.interval[1])}]"


def best_of_n_markdown(summary: BestOfNSummary) -> str:
    """The Best-of-N report as Markdown: setup, accuracy per selector and N, gains over greedy and
    over random, sample statistics and the plot's link."""
    ns = [str(n) for n in summary.ns]
    run = summary.run  # the pinned run arguments: what a caller of run_bon passed, so any may be missing
    sampling = run.get("sampling", {})
    setup = []
    if "model" in run:
        setup.append(f"model {run['model'] or 'embedded SmolLM2-135M-Instruct'} ({run.get('dtype', 'auto')})")
    if sampling:
        setup.append(f"temperature {sampling['temperature']}, top-p {sampling['top_p']}, "
                     f"at most {sampling['max_new_tokens']} new tokens")
    setup.append(f"seed {run.get('seed', 0)}")
    lines = [
        f"# Best-of-N{': ' + run['dataset'] if 'dataset' in run else ''} ({summary.n_questions} questions)",
        "",
        _sentence("; ".join(setup)) + ". Accuracy in %, with 95% bootstrap intervals over questions. "
        "Random = the expected accuracy of a uniform pick among the same N samples.",
        "",
        "## Accuracy",
        "",
    ]
    rows = [["greedy"] + [percent_with_interval(summary.greedy, summary.greedy_interval)] + [""] * (len(ns) - 1)]
    for name, by_n in summary.selectors.items():
        rows.append([name] + [percent_with_interval(by_n[n], summary.intervals[name][n]) for n in ns])
    rows.append(["oracle (any correct)"] + [percent(summary.oracle[n]) for n in ns])
    lines += markdown_table(["selector"] + [f"N={n}" for n in ns], rows, ["---"] + ["--:"] * len(ns))
    lines += ["", "## Gains (percentage points; relative in parentheses)", ""]
    rows = []
    for name, by_n in summary.gains.items():
        for n in ns[1:] if len(ns) > 1 else ns:  # at the smallest N every selector keeps one sample
            gain = by_n[n]
            rows.append([f"{name}@{n}", _comparison(gain.vs_greedy), _comparison(gain.vs_random)])
    lines += markdown_table(["selector@N", "vs greedy", "vs random@N"], rows, ["---", "--:", "--:"])
    lines += [
        "",
        f"Samples: mean {summary.mean_tokens:.0f} tokens; {100 * summary.unfinished_fraction:.0f}% hit the "
        f"token limit; {100 * summary.no_answer_fraction:.0f}% give no extractable answer (graded wrong).",
        "",
        "![accuracy vs N](accuracy_vs_n.png)",
        "",
    ]
    return "\n".join(lines)


def accuracy_vs_n_figure(summary: BestOfNSummary):
    """Accuracy against N (log2 axis), one line per selector, greedy as a dotted line; the Figure."""
    ns = summary.ns
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    for name, by_n in summary.selectors.items():
        style = SELECTOR_STYLES.get(name, DEFAULT_STYLE)
        ax.plot(ns, [100 * by_n[str(n)] for n in ns], label=name, **style)
        if name in BANDS:
            lo = [100 * summary.intervals[name][str(n)][0] for n in ns]
            hi = [100 * summary.intervals[name][str(n)][1] for n in ns]
            ax.fill_between(ns, lo, hi, color=style["color"], alpha=0.12, linewidth=0)
    ax.axhline(100 * summary.greedy, color="black", linewidth=1.2, linestyle=":", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N (samples per question)")
    ax.set_ylabel("accuracy (%)")
    where = f" on {summary.run['dataset']}" if "dataset" in summary.run else ""
    ax.set_title(f"Best-of-N{where} ({summary.n_questions} questions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    return fig


def plot_accuracy_vs_n(summary: BestOfNSummary, path) -> Path:
    return save_figure(accuracy_vs_n_figure(summary), path)


def write_best_of_n_report(summary: BestOfNSummary, output_dir) -> None:
    output_dir = Path(output_dir)
    plot_accuracy_vs_n(summary, output_dir / "accuracy_vs_n.png")
    (output_dir / "report.md").write_text(best_of_n_markdown(summary), encoding="utf-8")
