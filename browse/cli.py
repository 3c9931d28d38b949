"""The archive-reading commands of ``newsarchive``: ``ls``, ``show``, ``cat`` (and more to come).

``flows.cli`` owns the program: it parses the common options, opens the archive named by
the config or ``--archive`` and calls the command registered here with it. This module
only reads an :class:`storage.Archive`, so browsing never needs Scrapy or Prefect.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timezone

from browse.listing import format_record, format_table
from storage import Archive


def iso_date(value: str) -> date:
    """An argparse type for YYYY-MM-DD."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_commands(commands, parents: list[argparse.ArgumentParser]) -> None:
    """Add the browsing subcommands to ``commands`` (an argparse subparsers object).

    Each sets ``browse_func``: called as ``browse_func(args, archive) -> exit code``.
    """
    ls = commands.add_parser("ls", parents=parents, help="list archived articles")
    ls.add_argument("--site", metavar="NAME")
    ls.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD")
    ls.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD")
    ls.add_argument("--json", action="store_true", help="one record per line, as JSON")
    ls.set_defaults(browse_func=cmd_ls)

    show = commands.add_parser("show", parents=parents, help="one record, by id or URL")
    show.add_argument("ref", metavar="ID|URL")
    show.set_defaults(browse_func=cmd_show)

    cat = commands.add_parser("cat", parents=parents, help="an article's cleaned text, or its raw HTML")
    cat.add_argument("ref", metavar="ID|URL")
    cat.add_argument("--raw", action="store_true", help="the raw HTML as received")
    cat.set_defaults(browse_func=cmd_cat)


def cmd_ls(args, archive: Archive) -> int:
    records = archive.iter_records(site=args.site, since=args.since, until=args.until)
    if args.json:
        for record in records:
            sys.stdout.write(json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    # The archive's date (publication date in UTC, else fetch date), which --since/--until filter on.
    rows = [[r.id, r.site, (r.published or r.fetched_at).astimezone(timezone.utc).date().isoformat(),
             (r.title or "")[:70], r.url]
            for r in records]
    print(format_table(["id", "site", "date", "title", "url"], rows))
    return 0


def _find(archive: Archive, ref: str):
    record = archive.find(ref)
    if record is None:
        print(f"newsarchive: no archived article {ref!r}", file=sys.stderr)
    return record


def cmd_show(args, archive: Archive) -> int:
    record = _find(archive, args.ref)
    if record is None:
        return 1
    print(format_record(record))
    return 0


def cmd_cat(args, archive: Archive) -> int:
    record = _find(archive, args.ref)
    if record is None:
        return 1
    if args.raw:
        sys.stdout.buffer.write(archive.read_raw(record))
    else:
        sys.stdout.write(archive.read_text(record))
        sys.stdout.write("\n")
    return 0
