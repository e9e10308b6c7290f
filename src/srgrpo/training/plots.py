"""Training curves of an SR-GRPO run from its metrics.jsonl rows: reward, length, repetition.

Drawn with matplotlib's object API (`matplotlib.figure.Figure` and its Agg canvas): no pyplot,
so the caller's pyplot backend and figure list are left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# (panel title, [(metrics.jsonl column, line label)])
PANELS = [
    ("reward", [("reward_mean", "total reward"), ("sr_mean", "mean SR"), ("sr_group_std", "SR std within groups")]),
    ("completion length (tokens)", [("completion_length", "mean length")]),
    ("repetition and diversity", [("repetition", "repeated 3-grams in a completion"),
                                  ("group_diversity", "distinct 2-grams across a group"),
                                  ("zero_spread_frac", "groups with zero SR spread")]),
]


def plot_training_curves(rows: Sequence[dict], path: str | Path, dpi: int = 120) -> Path:
    """Write a three-panel PNG; steps where the watch warned are marked in every panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(PANELS), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS))
    warned = [r["step"] for r in rows if r.get("watch_warning")]
    for ax, (title, lines) in zip(axes, PANELS):
        for column, label in lines:
            points = [(r["step"], r[column]) for r in rows if column in r]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 60 else None, label=label)
        for step in warned:
            ax.axvline(step, color="red", alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(lines) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
