"""The training report: curves of an SR-GRPO run from its metrics.jsonl rows (reward, length,
repetition), drawn with the figure helpers every report shares (`srgrpo.reports.figures`).

Which columns each panel shows is the training app's data (`srgrpo.training.plots.PANELS`); the
drawing is here, like every other report's. `srgrpo train` writes training_curves.png after
training; from Python: `write_training_curves(output_dir)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from srgrpo.reports.figures import DPI, new_figure, save_figure
from srgrpo.training.plots import PANELS
from srgrpo.training.watch import read_metrics

CURVES_FILE = "training_curves.png"


def training_curves_figure(rows: Sequence[dict]):
    """A Figure with one panel per PANELS entry: each column's (step, value) points as a line, and a
    red vertical line at every step where the watch warned."""
    fig = new_figure(5 * len(PANELS), 3.6)
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
        if len(lines) > 1:
            ax.legend(fontsize=7)
    return fig


def plot_training_curves(rows: Sequence[dict], path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write the curves of `rows` as a PNG; returns its path."""
    return save_figure(training_curves_figure(rows), path, dpi=dpi)


def write_training_curves(output_dir: str | os.PathLike) -> Path | None:
    """training_curves.png from a run's metrics.jsonl; None when no step was logged."""
    output_dir = Path(output_dir)
    rows = read_metrics(output_dir / "metrics.jsonl")
    return plot_training_curves(rows, output_dir / CURVES_FILE) if rows else None
