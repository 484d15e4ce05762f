"""The contract between `bench.run` and the suites, plus small shared helpers.

A suite is a module `bench/suite_<name>.py` with `def run(ctx: BenchContext) -> SuiteResult`.
It measures, reports progress through `ctx.progress`, writes its PNG plots under
`ctx.plot_dir` (with `bench.framework.plot_path`) and returns tables; `bench.run` turns the
results of all suites into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Cell = str | float | int | None


@dataclass(frozen=True)
class Table:
    """One Markdown table: a title, column headers, rows of cells and an optional note.

    Floats are printed with `fmt_float`; None prints as "-". `note` is a paragraph printed
    under the table (how it was measured, what a reader should know).
    """

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    note: str = ""


@dataclass
class SuiteResult:
    """What a suite returns: a section title, its tables, PNG plot paths and free notes."""

    title: str
    tables: list[Table] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchContext:
    """What the runner gives a suite.

    quick: smoke mode (few trials, short windows); suites must still exercise every path.
    trials: trials per measured case (the runner derives it from --quick/--trials).
    workdir: a private scratch directory for this suite (removed by the runner afterwards).
    plot_dir: where PNG plots go (docs/bench/ beside the output Markdown).
    progress: prints one progress line on stderr, e.g. "nonstop crash 3/10: 1.92 s";
        the runner prefixes the suite name.
    """

    quick: bool
    trials: int
    workdir: Path
    plot_dir: Path
    progress: Callable[[str], None]


def plot_path(ctx: BenchContext, name: str) -> Path:
    """Path of a plot named `name` (without extension) in the plot directory, created."""
    ctx.plot_dir.mkdir(parents=True, exist_ok=True)
    return ctx.plot_dir / f"{name}.png"


def fmt_float(value: float) -> str:
    """Numbers as a reader wants them: 3 significant decimals below 10, fewer above."""
    if value != value:  # NaN: a measurement that did not happen
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def spread(values: Sequence[float], unit: str = "") -> str:
    """'min / median / max unit' of a sample ("-" when empty; a single value alone)."""
    if not values:
        return "-"
    suffix = f" {unit}" if unit else ""
    if len(values) == 1:
        return f"{fmt_float(values[0])}{suffix}"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{fmt_float(low)} / {fmt_float(mid)} / {fmt_float(high)}{suffix}"


def median(values: Sequence[float]) -> float:
    """Median, NaN for an empty sample (printed as "-")."""
    return statistics.median(values) if values else float("nan")


def ratio(ours: Sequence[float], reference: Sequence[float]) -> str:
    """'nonstop / reference' of the medians, e.g. '0.41×'; '-' when either is missing."""
    if not ours or not reference:
        return "-"
    ref = statistics.median(reference)
    if ref == 0:
        return "-"
    value = statistics.median(ours) / ref
    # Two significant digits for tiny ratios (a 16 s outage against 0.02 s is not "0.00×").
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.2g}×"


def render_cell(cell: Cell) -> str:
    """A table cell as Markdown text."""
    if cell is None:
        return "-"
    if isinstance(cell, float):
        return fmt_float(cell)
    return str(cell).replace("|", "\\|").replace("\n", " ")


def render_table(table: Table) -> str:
    """A Table as Markdown (title line, header, rows, note)."""
    lines = [f"#### {table.title}", ""]
    lines.append("| " + " | ".join(render_cell(c) for c in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for row in table.rows:
        lines.append("| " + " | ".join(render_cell(c) for c in row) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"
