"""Best-of-N report: a Markdown table (greedy, every selector at every N, gains with intervals) and
the accuracy-vs-N plot, both from results.json alone."""

from __future__ import annotations

from pathlib import Path

from srgrpo.reports.rewardbench import markdown_table, new_figure, save_figure

# Plot styles: the method and its two reference points stand out, the other baselines recede.
_STYLE = {
    "stable_rank": dict(color="tab:red", linewidth=2.4, marker="o", zorder=5),
    "random": dict(color="tab:gray", linewidth=1.8, marker="s", linestyle="--", zorder=4),
    "borda_stable_rank": dict(color="tab:orange", linewidth=1.4, marker="^"),
    "self_certainty": dict(color="tab:blue", linewidth=1.1, marker="."),
    "borda_self_certainty": dict(color="tab:cyan", linewidth=1.1, marker="v"),
    "mean_logprob": dict(color="tab:green", linewidth=1.1, marker="."),
    "majority": dict(color="tab:purple", linewidth=1.1, marker="D", markersize=4),
}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _pct_ci(x, ci) -> str:
    return f"{_pct(x)} [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else _pct(x)


def _signed(x) -> str:
    return "–" if x is None else f"{100 * x:+.1f}"


def markdown_report(results: dict) -> str:
    ns = [str(n) for n in results["ns"]]
    run = results.get("run", {})
    sampling = run.get("sampling", {})
    setup = []
    if "model" in run:
        setup.append(f"model {run['model'] or 'embedded SmolLM2-135M-Instruct'} ({run.get('dtype', 'auto')})")
    if sampling:
        setup.append(f"temperature {sampling['temperature']}, top-p {sampling['top_p']}, "
                     f"at most {sampling['max_new_tokens']} new tokens")
    setup.append(f"seed {run.get('seed', 0)}")
    lines = [
        f"# Best-of-N{': ' + run['dataset'] if 'dataset' in run else ''} ({results['n_questions']} questions)",
        "",
        _sentence("; ".join(setup)) + ". Accuracy in %, with 95% bootstrap intervals over questions. "
        "Random = the expected accuracy of a uniform pick among the same N samples.",
        "",
        "## Accuracy",
        "",
    ]
    rows = [["greedy"] + [_pct_ci(results["greedy"], results.get("greedy_interval"))] + [""] * (len(ns) - 1)]
    for name, by_n in results["selectors"].items():
        rows.append([name] + [_pct_ci(by_n[n], results["intervals"][name][n]) for n in ns])
    rows.append(["oracle (any correct)"] + [_pct(results["oracle"][n]) for n in ns])
    lines += markdown_table(["selector"] + [f"N={n}" for n in ns], rows, ["---"] + ["--:"] * len(ns))
    lines += ["", "## Gains (percentage points; relative in parentheses)", ""]
    rows = []
    for name, by_n in results["gains"].items():
        for n in ns[1:] if len(ns) > 1 else ns:  # at the smallest N every selector keeps one sample
            g = by_n[n]
            row = [f"{name}@{n}"]
            for key in ("vs_greedy", "vs_random"):
                if key not in g:
                    row.append("–")
                    continue
                rel = g[key]["relative"]
                ci = g[key]["interval"]
                row.append(f"{_signed(g[key]['absolute'])} ({'–' if rel is None else f'{100 * rel:+.1f}%'}) "
                           f"[{_signed(ci[0])}, {_signed(ci[1])}]")
            rows.append(row)
    lines += markdown_table(["selector@N", "vs greedy", "vs random@N"], rows, ["---", "--:", "--:"])
    lines += [
        "",
        f"Samples: mean {results['mean_tokens']:.0f} tokens; {100 * results['unfinished_fraction']:.0f}% hit the "
        f"token limit; {100 * results['no_answer_fraction']:.0f}% give no extractable answer (graded wrong).",
        "",
        "![accuracy vs N](accuracy_vs_n.png)",
        "",
    ]
    return "\n".join(lines)


def plot_accuracy_vs_n(results: dict, path) -> Path:
    ns = results["ns"]
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    for name, by_n in results["selectors"].items():
        style = _STYLE.get(name, dict(linewidth=1.1, marker=".", alpha=0.8))
        ys = [100 * by_n[str(n)] for n in ns]
        ax.plot(ns, ys, label=name, **style)
        if name in ("stable_rank", "random"):
            lo = [100 * results["intervals"][name][str(n)][0] for n in ns]
            hi = [100 * results["intervals"][name][str(n)][1] for n in ns]
            ax.fill_between(ns, lo, hi, color=style["color"], alpha=0.12, linewidth=0)
    ax.axhline(100 * results["greedy"], color="black", linewidth=1.2, linestyle=":", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("N (samples per question)")
    ax.set_ylabel("accuracy (%)")
    run = results.get("run", {})
    where = f" on {run['dataset']}" if "dataset" in run else ""
    ax.set_title(f"Best-of-N{where} ({results['n_questions']} questions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    return save_figure(fig, path)


def write_report(results: dict, output_dir) -> None:
    output_dir = Path(output_dir)
    plot_accuracy_vs_n(results, output_dir / "accuracy_vs_n.png")
    (output_dir / "report.md").write_text(markdown_report(results), encoding="utf-8")
