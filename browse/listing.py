"""Tables, record views and small charts for the command line: plain text when the output
is piped (columns that ``cut`` and ``awk`` can read), rich tables on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from storage import Record

SPARK_CHARS = "▁▂▃▄▅▆▇█"
"""Eight bar heights for sparklines, lowest first."""

SPARK_ZERO = "·"
"""A sparkline's character for zero."""

BAR_CHAR = "█"
"""The character horizontal bars are drawn with."""


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; safe to pipe into ``cut`` or ``awk``."""
    rows = [[one_line(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def format_record(record: Record) -> str:
    """A record as indented JSON, every field shown."""
    return json.dumps(record.to_dict(), ensure_ascii=False, indent=2, sort_keys=True)


def one_line(value: object) -> str:
    """``value`` as a string of printable characters only.

    Archived titles are untrusted: a newline or escape sequence must not forge table rows
    or drive the terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in str(value))


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal, where tables get rich."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
                title: str | None = None, numeric: Sequence[str] = ()) -> None:
    """Print a table: a rich one on a terminal, :func:`format_table` otherwise.

    ``numeric`` names the columns aligned to the right on a terminal."""
    if not is_terminal():
        if title:
            print(one_line(title))
        print(format_table(headers, [[str(c) for c in row] for row in rows]))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(one_line(title)) if title else None, header_style="bold",
                  show_edge=False, pad_edge=False)
    for header in headers:
        table.add_column(header, justify="right" if header in numeric else "left",
                         overflow="fold")
    for row in rows:
        # Text, never a str: rich would read "[red]" in an archived title as markup.
        table.add_row(*(Text(one_line(cell)) for cell in row))
    Console().print(table)


def sparkline(values: Sequence[float]) -> str:
    """One character per value, from ``▁`` to ``█``, scaled to the largest; a zero is
    ``·``, so that days without articles stand out from days with a few."""
    top = max(values, default=0)
    if top <= 0:
        return SPARK_ZERO * len(values)
    out = []
    for value in values:
        if value <= 0:
            out.append(SPARK_ZERO)
        else:
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1,
                                       int(value / top * (len(SPARK_CHARS) - 1) + 0.5))])
    return "".join(out)


def bar(value: float, top: float, width: int = 30) -> str:
    """A horizontal bar of ``value`` out of ``top``, at most ``width`` characters; any
    value above zero gets at least one character."""
    if top <= 0 or value <= 0:
        return ""
    return BAR_CHAR * max(1, round(value / top * width))


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as ``12.5%``, or ``-`` when there is no whole."""
    return f"{100 * part / whole:.1f}%" if whole else "-"
