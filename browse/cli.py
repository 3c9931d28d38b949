"""The archive-reading commands of ``newsarchive``: ``ls``, ``show``, ``cat``, ``search``,
``stats``, ``export`` and ``browse`` (the web UI).

``flows.cli`` owns the program: it parses the common options, opens the archive named by
the config or ``--archive`` and calls the command registered here with it. This module
only reads an :class:`storage.Archive`, so browsing never needs Scrapy or Prefect.

On a terminal, tables are drawn with rich; piped, they are plain columns (``ls``: whole
fields separated by tabs; ``show`` prints JSON), so scripts read them without surprises.
Either way, no archived string reaches the terminal with a control or bidi character (see
:mod:`browse.listing`).
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import re
import sys
from collections.abc import Iterable
from datetime import date, timedelta

from browse.export import FORMATS as EXPORT_FORMATS
from browse.listing import (
    bar,
    format_record,
    is_terminal,
    one_line,
    percent,
    print_table,
    sparkline,
    terminal_text,
    to_json,
    tsv_line,
)
from browse.records import iter_records
from browse.stats import runs_window, site_run_totals
from storage import Archive

DEFAULT_PORT = 8080
"""Port of ``newsarchive browse`` unless ``--port`` says otherwise."""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Addresses only this machine can reach."""


def iso_date(value: str) -> date:
    """An argparse type for YYYY-MM-DD."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def positive_int(value: str) -> int:
    """An argparse type for a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return number


def port_number(value: str) -> int:
    """An argparse type for a TCP port (0: any free one)."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {value!r}")
    return number


_HOST_NAME = re.compile(r"(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def host_name(value: str) -> str:
    """An argparse type for a name a ``Host`` header may give: a host name (``*.`` first
    for any of its subdomains) or an IP address."""
    bracketed = value.startswith("[") and value.endswith("]")
    try:
        ipaddress.ip_address(value[1:-1] if bracketed else value)
        return value
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"not a host name or IP address (e.g. news.example.org, *.example.org): {value!r}")
    return value


def add_commands(commands, parents: list[argparse.ArgumentParser]) -> None:
    """Add the browsing subcommands to ``commands`` (an argparse subparsers object).

    Each sets ``browse_func``: called as ``browse_func(args, archive) -> exit code``.
    """
    ls = commands.add_parser("ls", parents=parents, help="list archived articles")
    ls.add_argument("--site", metavar="NAME")
    ls.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD")
    ls.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD")
    ls.add_argument("--lang", metavar="CODE", help="only articles in this language (ISO 639-1)")
    ls.add_argument("--json", action="store_true", help="one record per line, as JSON")
    ls.set_defaults(browse_func=needs_archive(cmd_ls))

    show = commands.add_parser("show", parents=parents,
                               help="one record, with its versions and aliases, by id or URL")
    show.add_argument("ref", metavar="ID|URL")
    show.add_argument("--json", action="store_true",
                      help="the record as JSON (the default when not on a terminal)")
    show.set_defaults(browse_func=needs_archive(cmd_show))

    cat = commands.add_parser("cat", parents=parents,
                              help="an article's cleaned text, or its raw HTML")
    cat.add_argument("ref", metavar="ID|URL")
    cat.add_argument("--raw", action="store_true", help="the raw HTML as received")
    cat.set_defaults(browse_func=needs_archive(cmd_cat))

    find = commands.add_parser("search", parents=parents,
                               help="articles whose title or text has every word (catalog)")
    find.add_argument("words", nargs="+", metavar="WORDS",
                      help="words an article must all have")
    find.add_argument("--site", metavar="NAME")
    find.add_argument("--limit", type=positive_int, default=20, metavar="N",
                      help="at most N results, newest first (default 20)")
    find.add_argument("--json", action="store_true", help="one result per line, as JSON")
    find.set_defaults(browse_func=needs_archive(cmd_search))

    stats = commands.add_parser("stats", parents=parents,
                                help="articles per site and day, extraction health, "
                                     "duplicate and error rates")
    stats.add_argument("--site", metavar="NAME")
    stats.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD")
    stats.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD")
    stats.add_argument("--days", type=positive_int, default=14, metavar="N",
                       help="the days up to today (or --until), UTC, charted per day for "
                            "each site and whose runs are added up (default 14)")
    stats.add_argument("--json", action="store_true", help="the figures as one JSON object")
    stats.set_defaults(browse_func=needs_archive(cmd_stats))

    export = commands.add_parser(
        "export", parents=parents,
        help="each article's latest version as JSON Lines, CSV or Parquet (from the catalog)")
    export.add_argument("--format", choices=EXPORT_FORMATS,
                        help="default: from the --output file's suffix (.jsonl, .csv, "
                             ".parquet), else jsonl")
    export.add_argument("--output", "-o", metavar="FILE",
                        help="write to FILE (default: standard output; Parquet needs a file)")
    export.add_argument("--site", action="append", default=[], metavar="NAME",
                        help="only this site (repeatable)")
    export.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD",
                        help="only articles dated from this day (UTC: publication date, else "
                             "fetch date)")
    export.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD",
                        help="only articles dated up to this day, included")
    export.add_argument("--language", "--lang", metavar="CODE", dest="language",
                        help="only articles in this language (ISO 639-1)")
    export.add_argument("--text", action="store_true",
                        help="add the cleaned text (the text column)")
    export.set_defaults(browse_func=needs_archive(cmd_export))

    web = commands.add_parser("browse", parents=parents, help="web UI over the archive")
    web.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                     help=f"port to serve on (default {DEFAULT_PORT}; 0: any free port)")
    web.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default 127.0.0.1: this machine only)")
    web.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                     dest="allowed_hosts", type=host_name,
                     help="a host name the UI answers to besides the address it is bound to "
                          "(e.g. the name of a proxy in front of it); repeatable")
    web.set_defaults(browse_func=cmd_browse)


def needs_archive(command):
    """``command`` (a ``cmd_*``), run only where there is an archive: elsewhere (no config
    and no archive in this directory, a mistyped ``--archive``) one line says where none
    was found, and the exit code is 1, rather than an empty answer that looks like one."""
    @functools.wraps(command)
    def run(args, archive: Archive) -> int:
        # One listing request: an archive holds some object as soon as anything is stored.
        if next(iter(archive.backend.iter_keys("")), None) is None:
            print(f"newsarchive: no archive found at {archive.url} (nothing is stored there): "
                  "give --archive URL, or --config FILE whose [archive] url names it",
                  file=sys.stderr)
            return 1
        return command(args, archive)

    return run


# The catalog's modules load pyarrow, which commands that do not read it (crawl, show, cat)
# should not pay for at start-up: they are imported where they are used.


def cmd_ls(args, archive: Archive) -> int:
    if args.since is None or args.until is None:
        from storage.catalog import Catalog

        catalog = Catalog(archive.url, site=args.site)
        if catalog.partitions():
            return _ls_from_catalog(args, catalog)
        # No catalog (an archive written before it existed, or a site without one): the
        # records themselves, as for a closed range.
    # A closed range: its day folders are listed, and their records read (a few hundred
    # GETs a day), as fresh as the archive, runs still in progress included.
    from storage.catalog import archive_date

    records = iter_records(archive, site=args.site, since=args.since, until=args.until,
                           language=args.lang)
    if args.json:
        for record in records:
            sys.stdout.write(to_json(record.to_dict(), sort_keys=True) + "\n")
        return 0
    # The archive's date (the article's folder: publication date in UTC, else fetch
    # date), which --since/--until filter on.
    print_articles([r.id, r.site, archive_date(r, archive.backend).isoformat(), r.title or "",
                    r.url] for r in records)
    return 0


TERMINAL_TITLE_CHARS = 70
"""Characters of a title an ``ls`` table shows on a terminal (piped, titles are whole)."""


def print_articles(rows: Iterable[list[str]]) -> None:
    """``ls``'s rows (:data:`browse.catalog.LIST_COLUMNS`): on a terminal a table, titles
    cut to fit; piped, a header line then one line per article, whole fields separated by
    tabs (for ``cut -f`` and ``awk -F'\t'``), written as they come."""
    from browse.catalog import LIST_COLUMNS

    if is_terminal():
        print_table(list(LIST_COLUMNS), [[*row[:3], row[3][:TERMINAL_TITLE_CHARS], *row[4:]]
                                         for row in rows])
        return
    sys.stdout.write(tsv_line(LIST_COLUMNS) + "\n")
    for row in rows:
        sys.stdout.write(tsv_line(row) + "\n")


def _ls_from_catalog(args, catalog) -> int:
    """``ls`` without a closed date range: from the catalog (a
    :class:`storage.catalog.Catalog`), whose requests grow with its files (one per site and
    closed day), not with the articles (a GET per ``meta.json``, 50,000 at 50,000
    articles). It holds every record field: ``--json`` prints the same records. Articles of
    a crawl still running reach it when the run ends."""
    from browse.catalog import LIST_COLUMNS, iter_listing
    from storage.catalog import record_columns, record_from_row

    tables = iter_listing(catalog, since=args.since, until=args.until, language=args.lang,
                          columns=record_columns() if args.json else LIST_COLUMNS)
    if args.json:
        for table in tables:
            for row in table.to_pylist():
                sys.stdout.write(to_json(record_from_row(row).to_dict(), sort_keys=True) + "\n")
        return 0
    print_articles([r["id"], r["site"], r["date"].isoformat(), r["title"] or "", r["url"]]
                   for table in tables for r in table.to_pylist())
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
    if args.json or not is_terminal():
        print(format_record(record))
        return 0
    fields = [
        ("id", record.id), ("site", record.site), ("title", record.title or ""),
        ("url", record.url),
        ("canonical url", record.canonical_url if record.canonical_url != record.url else ""),
        ("published", _when(record.published)), ("modified", _when(record.modified)),
        ("authors", ", ".join(record.authors)), ("language", record.language or ""),
        ("section", record.section or ""), ("tags", ", ".join(record.tags)),
        ("description", record.description or ""),
        ("fetched", _when(record.fetched_at)), ("checked", _when(record.checked_at)),
        ("http status", record.http_status),
        ("extractor", f"{record.extractor.name}/{record.extractor.version}"),
        ("copy of", record.duplicate_of or ""),
        ("near duplicate of", record.near_duplicate_of or ""),
        ("paywalled", "yes: only the teaser was archived" if record.paywalled else ""),
        ("text", record.text_key), ("raw", record.raw_key), ("meta", record.meta_key),
    ]
    print_table(["field", "value"], [[k, v] for k, v in fields if v != ""], title=record.title)
    versions = record.all_versions
    print_table(["#", "fetched", "sha256", "extractor", "url"],
                [[n, _when(v.fetched_at), v.content_sha256[:16], v.extractor, v.url]
                 for n, v in enumerate(versions, 1)],
                title=f"{len(versions)} version(s)", numeric=["#"])
    print_table(["alias"], [[a] for a in record.aliases], title=f"{len(record.aliases)} alias(es)")
    return 0


def _when(value) -> str:
    return value.isoformat() if value is not None else ""


def cmd_cat(args, archive: Archive) -> int:
    record = _find(archive, args.ref)
    if record is None:
        return 1
    if args.raw:
        sys.stdout.buffer.write(archive.read_raw(record))
    else:
        text = archive.read_text(record)
        # Piped, the text as archived; on a terminal, without its control characters.
        sys.stdout.write(terminal_text(text) if is_terminal() else text)
        sys.stdout.write("\n")
    return 0


def cmd_search(args, archive: Archive) -> int:
    from browse.catalog import QueryTooLong, search

    query = " ".join(args.words)
    try:
        hits = search(archive.url, query, site=args.site, limit=args.limit)
    except QueryTooLong as exc:
        print(f"newsarchive: search: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for hit in hits:
            sys.stdout.write(to_json({
                "id": hit.id, "site": hit.site, "date": hit.day.isoformat(), "title": hit.title,
                "url": hit.url, "published": _when(hit.published) or None,
                "snippet": hit.snippet}) + "\n")
        return 0
    columns = ["id", "site", "date", "title", "url", "snippet"]
    rows = [[h.id, h.site, h.day.isoformat(), h.title or "", h.url, h.snippet] for h in hits]
    if is_terminal():
        print_table(columns, [[*row[:3], row[3][:TERMINAL_TITLE_CHARS], *row[4:]]
                              for row in rows])
        return 0
    # Piped: whole fields separated by tabs, as `ls` writes them, for `cut -f` and awk.
    sys.stdout.write(tsv_line(columns) + "\n")
    for row in rows:
        sys.stdout.write(tsv_line(row) + "\n")
    return 0


def cmd_stats(args, archive: Archive) -> int:
    from browse.catalog import read_day_counts

    counts = read_day_counts(archive.url, site=args.site, since=args.since, until=args.until)
    per_site: dict[str, list] = {}
    for count in counts:
        per_site.setdefault(count.site, []).append(count)
    # The runs of a window of days, not of the whole history: one manifest per run adds up
    # to thousands a year per site, one GET each. The sites are those with articles (and
    # the one asked for): listing runs/ to find others would list every manifest.
    runs_since, runs_until = runs_window(args.days, args.since, args.until)
    runs = site_run_totals(archive, set(per_site) | ({args.site} if args.site else set()),
                           runs_since, runs_until)
    sites = sorted(set(per_site) | set(runs))
    summaries = [_site_summary(name, per_site.get(name, []), runs.get(name)) for name in sites]

    if args.json:
        print(to_json({"sites": summaries, "runs_since": runs_since.isoformat(),
                       "runs_until": runs_until.isoformat()}, indent=1, default=str))
        return 0
    # The per-day chart: the --days calendar days (UTC) up to --until or today, a day
    # without articles counted as 0, so that a site that stopped shows it.
    chart_since, chart_until = runs_window(args.days, None, args.until)
    chart_days = [(chart_since + timedelta(days=n)).isoformat() for n in range(args.days)]
    rows = []
    for s in summaries:
        rows.append([s["site"], s["articles"], s["days"], s["first"] or "-", s["last"] or "-",
                     percent(s["with_date"], s["articles"]),
                     percent(s["with_author"], s["articles"]),
                     percent(s["with_title"], s["articles"]), s["runs"],
                     percent(s["duplicates"], s["outcomes"]), percent(s["errors"], s["outcomes"]),
                     sparkline([d["articles"] for d in _days_of(s["per_day"], chart_days)])])
    print_table(["site", "articles", "days", "first", "last", "date", "author", "title", "runs",
                 "duplicates", "errors", f"per day {chart_since}..{chart_until}"], rows,
                numeric=["articles", "days", "date", "author", "title", "runs", "duplicates",
                         "errors"])
    print(f"runs, duplicates and errors: runs started {runs_since} to {runs_until} (UTC)")
    for s in summaries:
        if s["errors_by_kind"]:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["errors_by_kind"].items(),
                                                             key=lambda kv: (-kv[1], kv[0])))
            print(f"{s['site']}: errors: {one_line(kinds)}")
    for s in summaries:
        days = _days_of(s["per_day"], chart_days)
        print()
        top = max(d["articles"] for d in days)
        print_table(["day", "articles", "", "date", "author", "title"],
                    [[d["day"], d["articles"], bar(d["articles"], top, 30),
                      percent(d["with_date"], d["articles"]),
                      percent(d["with_author"], d["articles"]),
                      percent(d["with_title"], d["articles"])] for d in days],
                    title=f"{s['site']}: articles per day, {chart_since} to {chart_until} (UTC)",
                    numeric=["articles", "date", "author", "title"])
    return 0


def _days_of(per_day: list[dict], days: list[str]) -> list[dict]:
    """The entries of ``per_day`` (a site summary's) for each of ``days`` (ISO dates), in
    that order; a day without articles has an entry of zeros."""
    by_day = {d["day"]: d for d in per_day}
    return [by_day.get(day) or {"day": day, "articles": 0, "with_date": 0, "with_author": 0,
                                "with_title": 0} for day in days]


def _site_summary(site: str, days: list, runs) -> dict:
    """The figures ``stats`` shows for one site, JSON-ready."""
    articles = sum(d.articles for d in days)
    out = {
        "site": site,
        "articles": articles,
        "days": len(days),
        "first": days[0].day.isoformat() if days else None,
        "last": days[-1].day.isoformat() if days else None,
        "with_date": sum(d.with_date for d in days),
        "with_author": sum(d.with_author for d in days),
        "with_title": sum(d.with_title for d in days),
        "runs": runs.runs if runs else 0,
        "archived": runs.archived if runs else 0,
        "versions": runs.versions if runs else 0,
        "duplicates": runs.duplicates if runs else 0,
        "errors": runs.errors if runs else 0,
        "outcomes": runs.outcomes if runs else 0,
        "errors_by_kind": dict(runs.errors_by_kind) if runs else {},
        "per_day": [{"day": d.day.isoformat(), "articles": d.articles, "with_date": d.with_date,
                     "with_author": d.with_author, "with_title": d.with_title} for d in days],
    }
    out["duplicate_rate"] = out["duplicates"] / out["outcomes"] if out["outcomes"] else None
    out["error_rate"] = out["errors"] / out["outcomes"] if out["outcomes"] else None
    return out


def cmd_export(args, archive: Archive) -> int:
    from browse import export

    to_file = args.output not in (None, "-")
    try:
        format_ = export.output_format(args.format, args.output)
        if args.since and args.until and args.since > args.until:
            raise export.ExportUsageError(f"--since {args.since} is after --until {args.until}")
        chosen = export.sources(archive, args.site)
    except export.ExportUsageError as exc:
        print(f"newsarchive: export: {exc}", file=sys.stderr)
        return 2
    without = [source.site for source in chosen if source.catalog is None]
    if without:
        what = (f"{archive.url} has no catalog" if without == [None] else
                f"no catalog of {', '.join(without)} in {archive.url}")
        print(f"newsarchive: export: {what}: reading each article's meta.json instead "
              "(a request each)", file=sys.stderr)
    schema = export.export_schema(args.text)
    try:
        with export.open_writer(format_, args.output, schema,
                                terminal=not to_file and is_terminal()) as writer:
            count = export.export(archive, chosen, writer.write, schema=schema,
                                  since=args.since, until=args.until, language=args.language,
                                  progress=export.ProgressLines(sys.stderr))
    except OSError as exc:
        if not to_file or isinstance(exc, BrokenPipeError):
            raise  # standard output's reader left: flows.cli's to handle
        print(f"newsarchive: export: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    where = args.output if to_file else "standard output"
    print(f"newsarchive: exported {count:,} articles to {where}", file=sys.stderr)
    return 0


def cmd_browse(args, archive: Archive) -> int:
    from browse.web import serve  # the web stack loads only for this command

    if args.host not in LOCAL_HOSTS:
        print(f"newsarchive: warning: serving on {args.host}: anyone who can reach this "
              "address can read the archive", file=sys.stderr)
    return serve(archive, host=args.host, port=args.port, allowed_hosts=args.allowed_hosts)
