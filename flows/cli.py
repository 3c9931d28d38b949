"""The ``newsarchive`` command line (also ``python -m flows``).

Exit codes: 0 success; 1 the run finished but a site (or a record being reprocessed)
failed, or the archive could not be read; 2 bad usage or bad config, with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date, timezone
from pathlib import Path

from pydantic import ValidationError

from browse.listing import format_record, format_table
from spiders.config import Config, ConfigError, Settings, load_config
from storage import Archive, ArchiveError, InvalidArchiveURL

logger = logging.getLogger("newsarchive")


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="sites file (default: sites.toml, or NEWSARCHIVE_CONFIG)")
    common.add_argument("--archive", metavar="URL", help="archive directory or s3://bucket/prefix, overriding the config")

    parser = argparse.ArgumentParser(prog="newsarchive", description="Scheduled news scraping and archival.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crawl = commands.add_parser("crawl", parents=[common], help="crawl the configured sites once, now")
    crawl.add_argument("--site", action="append", default=[], metavar="NAME", help="only this site (repeatable)")
    crawl.set_defaults(func=cmd_crawl)

    ls = commands.add_parser("ls", parents=[common], help="list archived articles")
    ls.add_argument("--site", metavar="NAME")
    ls.add_argument("--since", type=_date, metavar="YYYY-MM-DD")
    ls.add_argument("--until", type=_date, metavar="YYYY-MM-DD")
    ls.add_argument("--json", action="store_true", help="one record per line, as JSON")
    ls.set_defaults(func=cmd_ls)

    show = commands.add_parser("show", parents=[common], help="one record, by id or URL")
    show.add_argument("ref", metavar="ID|URL")
    show.set_defaults(func=cmd_show)

    cat = commands.add_parser("cat", parents=[common], help="an article's cleaned text, or its raw HTML")
    cat.add_argument("ref", metavar="ID|URL")
    cat.add_argument("--raw", action="store_true", help="the raw HTML as received")
    cat.set_defaults(func=cmd_cat)

    reprocess = commands.add_parser(
        "reprocess", parents=[common],
        help="extract text and metadata again from the archived pages, fetching nothing")
    reprocess.add_argument("--site", metavar="NAME")
    reprocess.add_argument("--since", type=_date, metavar="YYYY-MM-DD")
    reprocess.add_argument("--until", type=_date, metavar="YYYY-MM-DD")
    reprocess.set_defaults(func=cmd_reprocess)
    return parser


def _config(args, settings: Settings, *, archive_only: bool) -> Config:
    path = args.config or settings.config
    return load_config(path, archive_only=archive_only)


def _archive_url(args, settings: Settings, config: Config) -> str:
    return args.archive or settings.archive_url or config.archive.url


def _open_archive(args, settings: Settings) -> Archive:
    config = _config(args, settings, archive_only=True)
    return Archive.open(_archive_url(args, settings, config))


def cmd_crawl(args, settings: Settings) -> int:
    config = _config(args, settings, archive_only=False)
    sites = [config.site(name) for name in args.site] if args.site else list(config.sites)
    if not sites:
        raise ConfigError(f"{args.config or settings.config}: no [[sites]] configured")
    archive_url = _archive_url(args, settings, config)
    Archive.open(archive_url)  # a malformed archive URL is a config error, before any crawl

    # Prefect's server reports usage to the outside unless told not to; an archiver that
    # runs offline and on schedule should not, unless its user opts in.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's temporary server sets up its database on first use, which takes longer
    # than Prefect's 20 s default on a small machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if os.environ.get("PREFECT_HOME"):
        # Prefect creates its home but not the home's parents; its database then fails.
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    from flows.crawl import run_crawl  # Prefect is heavy; only crawl needs it

    try:
        results = run_crawl(sites, archive_url, settings)
    except RuntimeError as exc:  # Prefect reports an unreachable or unstartable API so
        logger.debug("Prefect failed", exc_info=True)
        print(f"newsarchive: Prefect is not available: {exc}", file=sys.stderr)
        return 1
    columns = ("discovered", "skipped", "fetched", "archived", "versions", "duplicates", "errors")
    rows = [[r.site, "ok" if r.ok else "FAILED", *(str(r.counts.get(c, "-")) for c in columns)]
            for r in results]
    print(format_table(["site", "status", *columns], rows))
    for result in results:
        if not result.ok:
            print(f"newsarchive: {result.site} failed: {result.reason}", file=sys.stderr)
            for error in result.errors[:3]:
                print(f"  {error['kind']}: {error['url']}: {error['reason']}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


def cmd_ls(args, settings: Settings) -> int:
    archive = _open_archive(args, settings)
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


def cmd_show(args, settings: Settings) -> int:
    archive = _open_archive(args, settings)
    record = _find(archive, args.ref)
    if record is None:
        return 1
    print(format_record(record))
    return 0


def cmd_cat(args, settings: Settings) -> int:
    archive = _open_archive(args, settings)
    record = _find(archive, args.ref)
    if record is None:
        return 1
    if args.raw:
        sys.stdout.buffer.write(archive.read_raw(record))
    else:
        sys.stdout.write(archive.read_text(record))
        sys.stdout.write("\n")
    return 0


def cmd_reprocess(args, settings: Settings) -> int:
    from flows.reprocess import reprocess

    archive = _open_archive(args, settings)

    def progress(report) -> None:
        print(f"  {report.seen} records: {report.rewritten} rewritten, {report.unchanged} "
              f"unchanged, {len(report.errors)} errors", file=sys.stderr)

    report = reprocess(archive, site=args.site, since=args.since, until=args.until,
                       data_dir=settings.data_dir, progress=progress)
    print(format_table(["run", "records", "rewritten", "unchanged", "errors"],
                       [[report.run_id, str(report.seen), str(report.rewritten),
                         str(report.unchanged), str(len(report.errors))]]))
    for error in report.errors[:10]:
        print(f"  {error['id']} {error['url']}: {error['reason']}", file=sys.stderr)
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Prefect's API client logs every HTTP request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        try:
            settings = Settings()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "NEWSARCHIVE_" + "_".join(str(p) for p in first["loc"]).upper()
            raise ConfigError(f"environment: {name}: {first['msg']}") from None
        return args.func(args, settings)
    except ConfigError as exc:
        print(f"newsarchive: {exc}", file=sys.stderr)
        return 2
    except ArchiveError as exc:
        # ValueError: a bad archive URL, or a bad site name or id given on the command line.
        kind = "bad archive URL" if isinstance(exc, InvalidArchiveURL) else (
            "bad argument" if isinstance(exc, ValueError) else "archive error")
        print(f"newsarchive: {kind}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except BrokenPipeError:
        # `newsarchive ls | head`: the reader left; not an error.
        sys.stderr.close()
        return 0
