"""Tables, record views and small charts for the command line: plain text when the output
is piped (columns that ``cut`` and ``awk`` can read), rich tables on a terminal.

Archived strings are someone else's: whatever the output, they never reach the terminal
with a control character (C0, DEL, C1 such as U+009B CSI), a bidi override or isolate, or
another invisible format character. Plain text replaces them with a space; JSON escapes
them (``\\u009b``), so it stays valid and reads back to the same strings."""

from __future__ import annotations

import json
import re
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

UNSAFE_RANGES = (
    (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)
"""Code points JSON output escapes, beyond the C0 controls ``json.dumps`` escapes itself:
Unicode's other controls (Cc: DEL and C1), format characters (Cf: bidi marks, overrides and
isolates, zero-width characters, tags...), surrogates (Cs) and line and paragraph separators
(Zl, Zp). Written out, since reading them from ``unicodedata`` costs every command a tenth
of a second; tests/test_browse_cli.py checks that they cover Python's Unicode database."""

_UNSAFE = re.compile("[" + "".join(
    f"\\U{low:08x}-\\U{high:08x}" for low, high in UNSAFE_RANGES) + "]")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; safe to pipe into ``cut`` or ``awk``."""
    rows = [[one_line(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def tsv_line(cells: Sequence[object]) -> str:
    """One row of whole fields separated by tabs, for ``cut -f`` and ``awk -F'\\t'``: a
    field never holds a tab or a line break (:func:`one_line` makes them spaces), so each
    row is one line and each field one column, however long."""
    return "\t".join(one_line(cell) for cell in cells)


def format_record(record: Record) -> str:
    """A record as indented JSON, every field shown."""
    return to_json(record.to_dict(), indent=2, sort_keys=True)


def to_json(value: object, **options) -> str:
    """``value`` as JSON (``json.dumps`` ``options``), readable (letters as they are) but
    with every character of :data:`UNSAFE_RANGES` escaped: a terminal never gets one."""
    return _UNSAFE.sub(_json_escape, json.dumps(value, ensure_ascii=False, **options))


def _json_escape(match: re.Match) -> str:
    # The escaped characters occur only inside JSON strings (json.dumps writes nothing
    # else that is not ASCII, and escapes C0 itself), where \uXXXX is the same character.
    # Beyond the BMP, JSON spells a character as its UTF-16 surrogate pair.
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def one_line(value: object) -> str:
    """``value`` as a string of printable characters only.

    Archived titles are untrusted: a newline or escape sequence must not forge table rows
    or drive the terminal. Not printable: controls (C0, DEL, C1), format characters (bidi
    overrides and isolates among them), separators other than the space, and unassigned
    code points."""
    return "".join(ch if ch.isprintable() else " " for ch in str(value))


def terminal_text(text: str) -> str:
    """``text`` with its lines and tabs, but no other character :func:`one_line` would
    replace: an article's text as a terminal may show it."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text)


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


def percent(part: int, whole: int, decimals: int = 1) -> str:
    """``part`` of ``whole`` as a percentage with ``decimals`` decimals (``12.5%``; the web
    UI's tables show whole ones, ``12%``), or ``-`` when there is no whole."""
    return f"{100 * part / whole:.{decimals}f}%" if whole else "-"
