"""Markdown tables and the number formats every report shares.

A value that is not defined (None, NaN, inf) is shown as DASH; it never raises.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

DASH = "—"


def finite(value: Any) -> float | None:
    """A finite float, or None for None, NaN, inf, bools and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finite_interval(interval: Sequence[float] | None) -> tuple[float, float] | None:
    """(low, high) when both ends are finite, else None."""
    if interval is None:
        return None
    lo, hi = finite(interval[0]), finite(interval[1])
    return None if lo is None or hi is None else (lo, hi)


def percent(fraction: Any) -> str:
    """0.612 -> "61.2"; no value -> DASH."""
    value = finite(fraction)
    return DASH if value is None else f"{100 * value:.1f}"


def signed_percent(fraction: Any) -> str:
    """0.031 -> "+3.1" (percentage points); no value -> DASH."""
    value = finite(fraction)
    return DASH if value is None else f"{100 * value:+.1f}"


def percent_with_interval(fraction: Any, interval: Sequence[float] | None = None) -> str:
    """0.612, [0.570, 0.651] -> "61.2 [57.0, 65.1]"; no usable interval -> "61.2"; no value -> DASH."""
    value = finite(fraction)
    if value is None:
        return DASH
    bounds = finite_interval(interval)
    if bounds is None:
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> list[str]:
    """The lines of a Markdown table (cells escaped: '|' and newlines cannot break a row)."""
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def meta_value(value: Any) -> str:
    """A run setting for a key/value table: 1,234 / 0.1235 / yes / a, b / k=v."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if isinstance(value, numbers.Real):
        return DASH if finite(value) is None else f"{float(value):.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={meta_value(v)}" for k, v in value.items()) or DASH
    if isinstance(value, (list, tuple, set)):
        return ", ".join(meta_value(v) for v in value) or DASH
    return str(value)
