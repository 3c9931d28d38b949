"""Plain-text tables and record views for the command line."""

from __future__ import annotations

import json
from collections.abc import Sequence

from storage import Record


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; safe to pipe into ``cut`` or ``awk``."""
    rows = [[_one_line(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def format_record(record: Record) -> str:
    """A record as indented JSON, every field shown."""
    return json.dumps(record.to_dict(), ensure_ascii=False, indent=2, sort_keys=True)


def _one_line(value: str) -> str:
    # Archived titles are untrusted: a newline or escape sequence must not forge table rows.
    return "".join(ch if ch.isprintable() else " " for ch in str(value))
