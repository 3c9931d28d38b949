"""The ``newsarchive`` command line (also ``python -m flows``).

Exit codes: 0 success; 1 the run finished but a site (or a record being reprocessed)
failed, or the archive could not be read; 2 bad usage or bad config, with a one-line reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from browse.cli import add_commands as add_browse_commands, iso_date as _date
from browse.listing import format_table
from spiders.config import Config, ConfigError, Settings, load_config
from storage import Archive, ArchiveError, InvalidArchiveURL

logger = logging.getLogger("newsarchive")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="sites file (default: sites.toml, or NEWSARCHIVE_CONFIG)")
    common.add_argument("--archive", metavar="URL", help="archive directory or s3://bucket/prefix, overriding the config")

    parser = argparse.ArgumentParser(prog="newsarchive", description="Scheduled news scraping and archival.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crawl = commands.add_parser("crawl", parents=[common], help="crawl the configured sites once, now")
    crawl.add_argument("--site", action="append", default=[], metavar="NAME", help="only this site (repeatable)")
    crawl.set_defaults(func=cmd_crawl)

    add_browse_commands(commands, [common])

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
        if hasattr(args, "browse_func"):
            return args.browse_func(args, _open_archive(args, settings))
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
