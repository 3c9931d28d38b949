"""Chart geometry for the web UI: the numbers the templates turn into inline SVG.

Charts are drawn on the server, as SVG shapes with presentation attributes, so the UI
needs no script and its Content-Security-Policy can forbid every script. Hand-written
rather than a charting library: those draw with JavaScript in the browser (which the CSP
forbids) or emit SVG with inline styles and scripts of their own, and two bar charts over
at most 90 days are a page of arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from browse.catalog import DayCount

CHART_WIDTH = 720
"""Width of a chart's plotting area, in SVG units."""
CHART_HEIGHT = 140
"""Height of a chart's plotting area, in SVG units."""
DEFAULT_WINDOW = 90
"""Calendar days a site's charts cover, up to the site's last day with articles."""

HEALTH_SERIES = (("with_date", "date", "#1f77b4"), ("with_author", "author", "#d62728"),
                 ("with_title", "title", "#2ca02c"))
"""The extraction-health lines: field of :class:`DayCount`, label, colour."""


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart."""

    x: float
    """Left edge."""
    y: float
    """Top edge."""
    width: float
    """Width."""
    height: float
    """Height (zero for a day without articles)."""
    label: str
    """Tooltip: the day and its count."""


@dataclass(frozen=True)
class BarChart:
    """Articles per day over a window of calendar days."""

    bars: tuple[Bar, ...]
    """One bar per day, oldest first."""
    top: int
    """The value the full height stands for."""
    first: date
    """The window's first day."""
    last: date
    """The window's last day."""
    width: int = CHART_WIDTH
    """Plotting width."""
    height: int = CHART_HEIGHT
    """Plotting height."""


@dataclass(frozen=True)
class Line:
    """One series of a line chart: SVG ``points`` runs, broken where a day has no data."""

    label: str
    """What the line measures."""
    colour: str
    """Its colour."""
    runs: tuple[str, ...]
    """``points`` attributes of polylines (``x,y x,y ...``); a lone point is one ``x,y``."""
    latest: float | None
    """Share on the last day with data (0-1), or None."""


@dataclass(frozen=True)
class LineChart:
    """Shares (0-100 %) per day over a window of calendar days."""

    lines: tuple[Line, ...]
    """The series."""
    first: date
    """The window's first day."""
    last: date
    """The window's last day."""
    width: int = CHART_WIDTH
    """Plotting width."""
    height: int = CHART_HEIGHT
    """Plotting height."""


def window(counts: Sequence[DayCount], days: int = DEFAULT_WINDOW) -> list[date]:
    """The ``days`` calendar days up to the last day of ``counts`` (none if it is empty)."""
    if not counts:
        return []
    last = max(c.day for c in counts)
    return [last - timedelta(days=n) for n in range(days - 1, -1, -1)]


def articles_chart(counts: Sequence[DayCount], days: int = DEFAULT_WINDOW) -> BarChart | None:
    """Bars of articles per day for one site's ``counts``."""
    span = window(counts, days)
    if not span:
        return None
    by_day = {c.day: c.articles for c in counts}
    top = max(by_day.get(d, 0) for d in span) or 1
    step = CHART_WIDTH / len(span)
    bars = []
    for n, day in enumerate(span):
        value = by_day.get(day, 0)
        height = round(value / top * CHART_HEIGHT, 1)
        bars.append(Bar(x=round(n * step, 1), y=round(CHART_HEIGHT - height, 1),
                        width=round(max(step - 1, 0.5), 1), height=height,
                        label=f"{day.isoformat()}: {value} article{'s' if value != 1 else ''}"))
    return BarChart(bars=tuple(bars), top=top, first=span[0], last=span[-1])


def health_chart(counts: Sequence[DayCount], days: int = DEFAULT_WINDOW) -> LineChart | None:
    """Lines of the share of articles with a date, an author and a title, per day: a line
    that drops is a site whose layout changed under the extractor."""
    span = window(counts, days)
    if not span:
        return None
    by_day = {c.day: c for c in counts}
    step = CHART_WIDTH / len(span)
    lines = []
    for attribute, label, colour in HEALTH_SERIES:
        runs: list[str] = []
        current: list[str] = []
        latest = None
        for n, day in enumerate(span):
            count = by_day.get(day)
            if count is None or count.articles == 0:
                if current:
                    runs.append(" ".join(current))
                    current = []
                continue
            share = getattr(count, attribute) / count.articles
            latest = share
            x = round(n * step + step / 2, 1)
            y = round(CHART_HEIGHT - share * CHART_HEIGHT, 1)
            current.append(f"{x},{y}")
        if current:
            runs.append(" ".join(current))
        lines.append(Line(label=label, colour=colour, runs=tuple(runs), latest=latest))
    return LineChart(lines=tuple(lines), first=span[0], last=span[-1])
