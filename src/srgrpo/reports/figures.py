"""Figures for every report, drawn on bare `matplotlib.figure.Figure` objects: no pyplot, no global
backend or state, so a report can be drawn from any thread or inside a training process."""

from __future__ import annotations

from pathlib import Path

DPI = 120


def new_figure(width: float, height: float):
    """A Figure of width x height inches with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig, path, dpi: int = DPI) -> Path:
    """Write `fig` as a PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def percent_axis(ax, axis: str = "y") -> None:
    """Label an axis holding percentages (0..100) as 0%, 10%, ..."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(100, decimals=0))
