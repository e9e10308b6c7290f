"""Reports of policy evaluation: one run's per-task table (`srgrpo evaluate`) and the paper's
Table 2 of several runs with paired differences to the base, and its plot (`srgrpo compare`)."""

from __future__ import annotations

from pathlib import Path

from srgrpo.reports.figures import new_figure, percent_axis, save_figure
from srgrpo.reports.tables import DASH, finite, finite_interval, markdown_table, percent, percent_with_interval, signed_percent
from srgrpo.results import ComparisonSummary, EvaluationSummary

GROUP_LABELS = {"stem": "STEM avg", "math": "Math avg"}
TASK_LABELS = {"gpqa": "GPQA", "mmlu_redux": "MMLU-Redux", "math500": "MATH500", "aime2025": "AIME25",
               "olympiadbench": "OlympiadBench", "amc23": "AMC23", "gsm8k": "GSM8K", "mmlu": "MMLU"}


def label(column: str) -> str:
    return GROUP_LABELS.get(column) or TASK_LABELS.get(column) or column


def evaluation_markdown(summary: EvaluationSummary) -> str:
    """Per-task accuracy with its interval, the STEM/Math averages, and how the answers ended."""
    sampled = summary.samples > 1
    header = ["task", "group", "questions", "accuracy % [95% CI]"]
    if sampled:
        header += [f"pass@{summary.samples}", f"maj@{summary.samples}"]
    header += ["tokens/answer", "hit budget %", "no answer %", "budget"]
    rows = []
    for name, r in summary.tasks.items():
        row = [label(name), r.group or DASH, r.n, percent_with_interval(r.accuracy, r.interval)]
        if sampled:
            row += [percent(r.pass_at_k), percent(r.majority_at_k)]
        row += [f"{r.mean_tokens:.0f}", percent(r.unfinished_fraction), percent(r.no_answer_fraction), r.max_new_tokens]
        rows.append(row)
    lines = [f"# {summary.policy}: {'pass@1 over ' + str(summary.samples) + ' samples' if sampled else 'greedy pass@1'}",
             "", f"model: {summary.model or 'embedded SmolLM2-135M-Instruct'}"
             + (f"; adapter: {summary.adapter}" if summary.adapter else ""), ""]
    lines += markdown_table(header, rows, ["---", "---"] + ["--:"] * (len(header) - 2))
    if summary.groups:
        lines += ["", "Averages as the paper groups them (plain mean of the tasks' accuracies):", ""]
        group_rows = [[label(g), percent_with_interval(a.accuracy, a.interval), ", ".join(label(t) for t in a.tasks),
                       ", ".join(label(t) for t in a.missing) or DASH] for g, a in summary.groups.items()]
        lines += markdown_table(["average", "accuracy % [95% CI]", "tasks", "missing (partial average)"], group_rows,
                                ["---", "--:", "---", "---"])
    return "\n".join(lines) + "\n"


def write_evaluation_report(summary: EvaluationSummary, output_dir) -> Path:
    path = Path(output_dir) / "report.md"
    path.write_text(evaluation_markdown(summary))
    return path


def comparison_markdown(comparison: ComparisonSummary) -> str:
    """Table 2: accuracy per policy and column, then each policy's paired difference to the base."""
    header = ["policy"] + [label(c) for c in comparison.columns]
    align = ["---"] + ["--:"] * len(comparison.columns)
    acc_rows = [[row.policy] + [percent(row.accuracy.get(c)) for c in comparison.columns] for row in comparison.rows]
    lines = ["# Table 2: greedy pass@1 (%)", ""]
    lines += markdown_table(header, acc_rows, align)
    lines += ["", "95% bootstrap intervals over questions:", ""]
    ci_rows = [[row.policy] + [_interval_text(row.intervals.get(c)) for c in comparison.columns] for row in comparison.rows]
    lines += markdown_table(header, ci_rows, align)
    others = comparison.rows[1:]
    if others:
        lines += ["", f"Difference to {comparison.base} (points) on the questions both runs answered, "
                  "paired bootstrap 95% interval; * where the interval excludes 0:", ""]
        diff_rows = []
        for row in others:
            cells = [row.policy]
            for c in comparison.columns:
                d = row.vs_base.get(c)
                if d is None:
                    cells.append(DASH)
                    continue
                bounds = finite_interval(d.interval)
                star = "*" if bounds is not None and (bounds[0] > 0 or bounds[1] < 0) else ""
                cells.append(f"{signed_percent(d.absolute)}{star} {_interval_text(d.interval, signed=True)} (n={d.n})")
            diff_rows.append(cells)
        lines += markdown_table(header, diff_rows, align)
    lines += ["", "Rows: " + "; ".join(f"{r.policy} = `{r.run_dir}`" for r in comparison.rows)]
    return "\n".join(lines) + "\n"


def _interval_text(interval, signed: bool = False) -> str:
    bounds = finite_interval(interval)
    if bounds is None:
        return DASH
    fmt = signed_percent if signed else percent
    return f"[{fmt(bounds[0])}, {fmt(bounds[1])}]"


def plot_comparison(comparison: ComparisonSummary, path) -> Path:
    """Grouped bars: accuracy per column for each policy, with the 95% intervals as error bars."""
    columns = comparison.columns
    fig = new_figure(max(6.0, 1.1 * len(columns) + 2), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(len(comparison.rows), 1)
    top = 10.0  # percent: an axis for all-zero accuracies still reads as one
    for k, row in enumerate(comparison.rows):
        xs, ys, lo, hi = [], [], [], []
        for i, c in enumerate(columns):
            value = finite(row.accuracy.get(c))
            if value is None:
                continue
            bounds = finite_interval(row.intervals.get(c)) or (value, value)
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(100 * value)
            lo.append(100 * (value - bounds[0]))
            hi.append(100 * (bounds[1] - value))
        ax.bar(xs, ys, width=width * 0.95, yerr=[lo, hi], capsize=2, label=row.policy)
        top = max([top] + [y + h for y, h in zip(ys, hi)])
    ax.set_xticks(range(len(columns)), [label(c) for c in columns], rotation=20)
    for i, c in enumerate(columns):
        if c in GROUP_LABELS:
            ax.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0)
    percent_axis(ax)
    ax.set_ylabel("greedy pass@1")
    ax.set_ylim(0, min(100.0, 1.15 * top))
    ax.legend(fontsize=8)
    ax.set_title("Policy evaluation (bars: 95% bootstrap intervals)")
    return save_figure(fig, path)
