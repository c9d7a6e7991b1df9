"""What every benchmark shares: repetition summaries and plain-text tables.

The machines this runs on are noisy, so no single timing is reported: each figure is the
median of its repetitions (`Figure`), with the spread and the samples kept for the JSON.
Comparisons (a ratio of two speeds) are computed per repetition from two measurements
taken side by side in that repetition, and the ratio's median is reported: the noise
that hits both halves of a pair cancels.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "MB",
    "MIN_REPETITIONS",
    "Figure",
    "Table",
    "fmt",
    "ratio_figure",
    "timed",
]

MB = 1_000_000
"""A megabyte here is 10**6 bytes (so MB/s = segments/s * payload / 10**6)."""

MIN_REPETITIONS = 5
"""Fewer repetitions than this are allowed (smoke tests) but flagged in the output."""

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """Run `action` once and return its result and the wall time it took, in seconds.

    A full garbage collection runs first, untimed, so that one repetition does not pay
    for the garbage of the one before; the collector stays enabled while timing (a TCP
    stack runs with it).
    """
    gc.collect()
    start = time.perf_counter_ns()
    result = action()
    elapsed = time.perf_counter_ns() - start
    return result, max(elapsed, 1) / 1e9


@dataclass(frozen=True)
class Figure:
    """One reported figure: the median of its samples, with their spread."""

    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Figure:
        if not samples:
            raise ValueError("a figure needs at least one sample")
        return cls(tuple(float(s) for s in samples))

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": list(self.samples),
        }


def ratio_figure(numerators: Sequence[float], denominators: Sequence[float]) -> Figure:
    """Per-repetition ratios of two side-by-side measurements, as one Figure."""
    if len(numerators) != len(denominators):
        raise ValueError("ratios need paired samples")
    return Figure.of([n / d for n, d in zip(numerators, denominators, strict=True)])


def fmt(value: float) -> str:
    """A number for a table: thousands separators, about three significant digits."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


@dataclass
class Table:
    """A titled plain-text table with notes under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)}")
        self.rows.append(list(cells))

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            # The first column is a label (left-aligned); the others are numbers.
            parts = [cells[0].ljust(widths[0])]
            parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join(parts).rstrip()

        rule = "  ".join("-" * w for w in widths)
        out = [self.title, "=" * len(self.title), line(self.columns), rule]
        out += [line(row) for row in self.rows]
        out += [f"  * {note}" for note in self.notes]
        return "\n".join(out)
