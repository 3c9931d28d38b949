"""Chart geometry for the web UI: the numbers the templates turn into inline SVG.

Charts are drawn on the server, as SVG shapes with presentation attributes, so the UI
needs no script and its Content-Security-Policy can forbid every script. Hand-written
rather than a charting library: those draw with JavaScript in the browser (which the CSP
forbids) or emit SVG with inline styles and scripts of their own, and two charts over at
most 90 days, with their axes, are a page of arithmetic.

Every chart has a continuous calendar axis: one slot per day, days without articles
included (at zero), with date ticks. A window starts at the first day with articles
within the 90 days up to the last one, so a site with a few days of articles is not drawn
as a few lone stripes at the right of 90 empty days; and it spans at least
:data:`MIN_WINDOW` days, so that a slot stays wide enough to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import ClassVar

from browse.catalog import DayCount

CHART_WIDTH = 720
"""Width of a chart's plotting area, in SVG units."""
CHART_HEIGHT = 140
"""Height of a chart's plotting area, in SVG units."""
MARGIN_LEFT = 48
"""Room left of the plotting area, for the y axis's labels."""
MARGIN_RIGHT = 16
"""Room right of the plotting area (the last x label overhangs it)."""
MARGIN_TOP = 10
"""Room above the plotting area (the top y label overhangs it)."""
MARGIN_BOTTOM = 30
"""Room below the plotting area, for the x axis's ticks and labels."""
DEFAULT_WINDOW = 90
"""Most calendar days a site's charts cover, up to the site's last day with articles."""
MIN_WINDOW = 14
"""Fewest calendar days a chart covers."""
MAX_X_TICKS = 8
"""Most date ticks on an x axis."""
SPARK_DAYS = 30
"""Calendar days of a sparkline."""
SPARK_WIDTH = 120
"""Width of a sparkline."""
SPARK_HEIGHT = 24
"""Height of a sparkline."""

HEALTH_SERIES = (("with_date", "with date", "#1f77b4", 7.0),
                 ("with_author", "with author", "#d62728", 4.5),
                 ("with_title", "with title", "#2ca02c", 2.0))
"""The extraction-health lines: field of :class:`DayCount`, label, colour, stroke width.
Narrower on top of wider: where the shares are equal the lines overlap, and each one still
shows as a band of its colour."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


@dataclass(frozen=True)
class Tick:
    """A tick of an axis."""

    position: float
    """Where: x for the date axis, y for the value axis (plotting-area units)."""
    label: str
    """What it says (``6 Dec``, ``50%``)."""
    value: str
    """What it marks, exactly: the ISO date, or the number."""


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
    day: date
    """The day it counts."""
    value: int
    """Its count."""
    label: str
    """Tooltip: the day and its count."""


class _Frame:
    """What the two charts share: the SVG's geometry (the same for every chart, so class
    attributes, not fields) and their window of calendar days."""

    first: date
    last: date
    width: ClassVar[int] = CHART_WIDTH
    """Plotting width."""
    height: ClassVar[int] = CHART_HEIGHT
    """Plotting height."""
    margin_left: ClassVar[int] = MARGIN_LEFT
    """Room for the y labels."""
    margin_top: ClassVar[int] = MARGIN_TOP
    """Room above."""
    outer_width: ClassVar[int] = CHART_WIDTH + MARGIN_LEFT + MARGIN_RIGHT
    """The whole SVG's width."""
    outer_height: ClassVar[int] = CHART_HEIGHT + MARGIN_TOP + MARGIN_BOTTOM
    """The whole SVG's height."""

    @property
    def days(self) -> int:
        """Calendar days of the window."""
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class BarChart(_Frame):
    """Articles per day over a window of calendar days."""

    bars: tuple[Bar, ...]
    """One bar per day, oldest first, days without articles included (zero high)."""
    top: int
    """The value the full height stands for (a round number)."""
    first: date
    """The window's first day."""
    last: date
    """The window's last day."""
    x_ticks: tuple[Tick, ...]
    """Date ticks."""
    y_ticks: tuple[Tick, ...]
    """Count ticks, from 0 to :attr:`top`."""


@dataclass(frozen=True)
class Line:
    """One series of the health chart: a polyline through every day with articles, each day
    a level segment as wide as its slot (one day alone is a segment, not a dot), days
    without articles bridged (a share of no articles is no value)."""

    label: str
    """What the line measures (``with date``)."""
    colour: str
    """Its colour."""
    stroke_width: float
    """Its width."""
    points: str
    """The ``points`` attribute of its polyline (``x,y x,y ...``); empty without data."""
    latest: float | None
    """Share (0-1) on the last day with articles (the line's right end), or None."""
    latest_day: date | None
    """That day."""
    overall: float | None
    """Share (0-1) over all the window's articles, or None."""


@dataclass(frozen=True)
class LineChart(_Frame):
    """Shares (0-100 %) per day over a window of calendar days."""

    lines: tuple[Line, ...]
    """The series, drawn in this order (the last on top)."""
    first: date
    """The window's first day."""
    last: date
    """The window's last day."""
    x_ticks: tuple[Tick, ...]
    """Date ticks."""
    y_ticks: tuple[Tick, ...]
    """0%, 50% and 100%."""
    days_with_data: int
    """Days of the window with articles (the points of each line)."""


@dataclass(frozen=True)
class Sparkline:
    """Articles per day as a tiny bar chart (a table cell's worth)."""

    bars: tuple[Bar, ...]
    """One per day, oldest first; a day with articles is at least one unit high."""
    first: date
    """The first day."""
    last: date
    """The last day."""
    most: int
    """The highest count (the full height)."""
    total: int
    """Articles over the days."""
    width: int = SPARK_WIDTH
    """Width."""
    height: int = SPARK_HEIGHT
    """Height."""

    @property
    def title(self) -> str:
        """What it shows, in words (its tooltip)."""
        return (f"{self.total} article{_s(self.total)} from {day_label(self.first, True)} to "
                f"{day_label(self.last, True)}, at most {self.most} a day")


def day_label(day: date, year: bool = False) -> str:
    """``6 Dec`` (``6 Dec 2026`` with ``year``), whatever the locale."""
    return f"{day.day} {_MONTHS[day.month - 1]}" + (f" {day.year}" if year else "")


def window(counts: Sequence[DayCount], days: int = DEFAULT_WINDOW,
           minimum: int = MIN_WINDOW) -> list[date]:
    """The calendar days a site's charts cover (none if ``counts`` is empty): up to its
    last day with articles, from its first day with articles within the ``days`` days
    before, widened to ``minimum`` days."""
    with_articles = [c.day for c in counts if c.articles]
    if not with_articles:
        return []
    last = max(with_articles)
    earliest = last - timedelta(days=days - 1)
    first = min(d for d in with_articles if d >= earliest)
    first = min(first, last - timedelta(days=max(minimum, 1) - 1))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def date_ticks(span: Sequence[date], width: float = CHART_WIDTH,
               most: int = MAX_X_TICKS) -> tuple[Tick, ...]:
    """Ticks at the middle of some days' slots: every day, every other day, Mondays, every
    other Monday or the first of each month, whichever is the first to need at most
    ``most`` ticks. A label names the year on the first tick and where the year changes."""
    if not span:
        return ()
    step = width / len(span)
    index = {d: n for n, d in enumerate(span)}
    choices = (
        lambda n, d: True,
        lambda n, d: n % 2 == 0,
        lambda n, d: d.weekday() == 0,
        lambda n, d: d.weekday() == 0 and d.isocalendar()[1] % 2 == 0,
        lambda n, d: d.day == 1,
        lambda n, d: d.day == 1 and d.month in (1, 4, 7, 10),
    )
    chosen: list[date] = []
    for keep in choices:
        chosen = [d for n, d in enumerate(span) if keep(n, d)]
        if len(chosen) <= most:
            break
    if not chosen:  # a window of a few days with no first of the month in it
        chosen = [span[0]]
    ticks = []
    previous_year = None
    for d in chosen:
        ticks.append(Tick(position=round(index[d] * step + step / 2, 1),
                          label=day_label(d, year=d.year != previous_year),
                          value=d.isoformat()))
        previous_year = d.year
    return tuple(ticks)


def nice_top(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that is at least ``value``."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude  # not reached


def articles_chart(counts: Sequence[DayCount], days: int = DEFAULT_WINDOW) -> BarChart | None:
    """Bars of articles per day for one site's ``counts``, on its :func:`window`."""
    span = window(counts, days)
    if not span:
        return None
    by_day = {c.day: c.articles for c in counts}
    top = nice_top(max(by_day.get(d, 0) for d in span))
    step = CHART_WIDTH / len(span)
    gap = min(step * 0.2, 4.0)  # bars apart, and still wide
    bars = []
    for n, day in enumerate(span):
        value = by_day.get(day, 0)
        height = round(value / top * CHART_HEIGHT, 1)
        bars.append(Bar(x=round(n * step + gap / 2, 1), y=round(CHART_HEIGHT - height, 1),
                        width=round(max(step - gap, 0.5), 1), height=height, day=day,
                        value=value, label=f"{day_label(day, True)}: {value} article{_s(value)}"))
    halves = (0, top // 2, top) if top % 2 == 0 else (0, top)
    y_ticks = tuple(Tick(position=round(CHART_HEIGHT - v / top * CHART_HEIGHT, 1),
                         label=str(v), value=str(v)) for v in halves)
    return BarChart(bars=tuple(bars), top=top, first=span[0], last=span[-1],
                    x_ticks=date_ticks(span), y_ticks=y_ticks)


def health_chart(counts: Sequence[DayCount], days: int = DEFAULT_WINDOW) -> LineChart | None:
    """Lines of the share of articles with a date, an author and a title, per day, on the
    site's :func:`window`: a line that drops is a site whose layout changed under the
    extractor."""
    span = window(counts, days)
    if not span:
        return None
    by_day = {c.day: c for c in counts if c.articles}
    step = CHART_WIDTH / len(span)
    with_data = [(n, by_day[d]) for n, d in enumerate(span) if d in by_day]
    lines = []
    for attribute, label, colour, stroke in HEALTH_SERIES:
        points = []
        for n, count in with_data:
            y = _y(getattr(count, attribute) / count.articles)
            # The day's level across its slot (inset by half the stroke, so that days side
            # by side still join).
            points += [f"{round(n * step + min(step / 4, 2), 1)},{y}",
                       f"{round((n + 1) * step - min(step / 4, 2), 1)},{y}"]
        articles = sum(c.articles for _, c in with_data)
        latest = with_data[-1][1] if with_data else None
        lines.append(Line(
            label=label, colour=colour, stroke_width=stroke, points=" ".join(points),
            latest=getattr(latest, attribute) / latest.articles if latest else None,
            latest_day=latest.day if latest else None,
            overall=(sum(getattr(c, attribute) for _, c in with_data) / articles
                     if articles else None)))
    y_ticks = tuple(Tick(position=_y(share), label=f"{round(share * 100)}%", value=str(share))
                    for share in (0.0, 0.5, 1.0))
    return LineChart(lines=tuple(lines), first=span[0], last=span[-1],
                     x_ticks=date_ticks(span), y_ticks=y_ticks, days_with_data=len(with_data))


def sparkline(counts: Sequence[DayCount], last: date, days: int = SPARK_DAYS) -> Sparkline:
    """Articles per day of ``counts`` over the ``days`` days up to ``last`` (the same end
    for every site of a table, so that their sparklines line up)."""
    span = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    by_day = {c.day: c.articles for c in counts}
    most = max((by_day.get(d, 0) for d in span), default=0)
    step = SPARK_WIDTH / len(span)
    bars = []
    for n, day in enumerate(span):
        value = by_day.get(day, 0)
        height = 0.0 if not value else max(1.0, round(value / most * SPARK_HEIGHT, 1))
        bars.append(Bar(x=round(n * step, 2), y=round(SPARK_HEIGHT - height, 1),
                        width=round(max(step - 1, 0.5), 2), height=height, day=day,
                        value=value, label=f"{day_label(day, True)}: {value} article{_s(value)}"))
    return Sparkline(bars=tuple(bars), first=span[0], last=span[-1], most=most,
                     total=sum(b.value for b in bars))


def _y(share: float) -> float:
    return round(CHART_HEIGHT - share * CHART_HEIGHT, 1)


def _s(number: int) -> str:
    return "" if number == 1 else "s"
