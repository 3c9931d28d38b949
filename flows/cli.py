"""The ``newsarchive`` command line (also ``python -m flows``).

Exit codes: 0 success; 1 the run finished but a site (or a record being reprocessed)
failed, or the archive could not be read; 2 bad usage or bad config, with a one-line reason.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

from pydantic import ValidationError

from browse.cli import add_commands as add_browse_commands
from browse.cli import iso_date as _date
from browse.listing import format_table
from flows import launch
from flows.settings import Settings
from spiders.interface import Config, ConfigError, load_config, scrub_secrets_from_logs
from storage import Archive, ArchiveError, InvalidArchiveURL
from storage.catalog import keep_pandas_out

logger = logging.getLogger("newsarchive")

LOG_LEVELS = ("debug", "info", "warning", "error")
"""The console's levels (``--log-level``, ``NEWSARCHIVE_LOG_LEVEL``)."""

# Libraries that log at INFO what an operator does not need: botocore says where it found
# the credentials on every command that reads S3. Shown at --log-level debug.
_CHATTY_AT_INFO = ("botocore", "boto3", "s3transfer", "urllib3", "httpx")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="sites file (default: sites.toml, or NEWSARCHIVE_CONFIG)")
    common.add_argument("--archive", metavar="URL", help="archive directory or s3://bucket/prefix, overriding the config")
    # Global, and accepted after the command too (SUPPRESS: not given there, the global
    # option's value stands).
    common.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=argparse.SUPPRESS,
                        help="what the console shows (default: info; see newsarchive --help)")

    parser = argparse.ArgumentParser(prog="newsarchive", description="Scheduled news scraping and archival.")
    parser.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=None,
                        help="what the console shows (default: info, or NEWSARCHIVE_LOG_LEVEL): "
                             "info, each crawl's progress (a line per site every 5 s at most), "
                             "its warnings and errors in one line each, and the summary, with "
                             "Scrapy's full log in a file per crawl; debug, Scrapy's detail and "
                             "botocore's too; warning and error, less")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crawl = commands.add_parser("crawl", parents=[common], help="crawl the configured sites once, now")
    crawl.add_argument("--site", action="append", default=[], metavar="NAME", help="only this site (repeatable)")
    crawl.add_argument("--full", action="store_true",
                       help="read every sitemap and feed in full, not only those that changed "
                            "since the last crawl")
    crawl.set_defaults(func=cmd_crawl)

    backfill = commands.add_parser(
        "backfill", parents=[common],
        help="archive what a site published in a date range, one day partition at a time")
    backfill.add_argument("--site", required=True, metavar="NAME")
    backfill.add_argument("--since", required=True, type=_date, metavar="YYYY-MM-DD",
                          help="first publication day (UTC), included")
    backfill.add_argument("--until", required=True, type=_date, metavar="YYYY-MM-DD",
                          help="last publication day (UTC), included")
    backfill.add_argument("--dry-run", action="store_true",
                          help="print the plan (articles per day) and write nothing")
    backfill.add_argument("--reprocess", choices=("none", "failed", "all"), default="none",
                          help="run again the partitions that finished in an earlier backfill: "
                               "those that failed, or all (default: none)")
    backfill.add_argument("--source", choices=("site", "ccnews"), default="site",
                          help="where the pages come from: the site's sitemaps and feeds "
                               "(default), or Common Crawl News captures (NEWSARCHIVE_CCNEWS_URL; "
                               "the site is not asked)")
    backfill.add_argument("--slack-days", type=int, default=3, metavar="N",
                          help="with --source ccnews: days after --until whose captures are "
                               "read (a page is captured after it is published; default: 3)")
    backfill.set_defaults(func=cmd_backfill)

    serve = commands.add_parser(
        "serve", parents=[common],
        help="the cron-style service: each site's crawl on its schedule, plus backfills, "
             "until Ctrl-C")
    serve.add_argument("--limit", type=int, metavar="N",
                       help="most flow runs at once in this process (default: no limit)")
    serve.add_argument("--grace", type=float, default=60.0, metavar="SECONDS",
                       help="on SIGTERM, how long runs in progress get to finish before they "
                            "are stopped (default: 60); Ctrl-C stops them at once")
    serve.set_defaults(func=cmd_serve)

    deploy = commands.add_parser(
        "deploy", parents=[common],
        help="register the same deployments on a Prefect work pool, for "
             "`prefect worker start --pool NAME` on any number of machines")
    deploy.add_argument("--pool", required=True, metavar="NAME",
                        help="work pool (created as a process pool if missing)")
    deploy.set_defaults(func=cmd_deploy)

    add_browse_commands(commands, [common])

    reprocess = commands.add_parser(
        "reprocess", parents=[common],
        help="extract text and metadata again from the archived pages, fetching nothing")
    reprocess.add_argument("--site", metavar="NAME")
    reprocess.add_argument("--since", type=_date, metavar="YYYY-MM-DD")
    reprocess.add_argument("--until", type=_date, metavar="YYYY-MM-DD")
    reprocess.set_defaults(func=cmd_reprocess)

    compact = commands.add_parser(
        "compact", parents=[common],
        help="merge each closed day's catalog files (days before today, UTC, once 03:00 has "
             "passed; before yesterday until then) into one per site and day, with each "
             "article's latest row")
    compact.add_argument("--site", metavar="NAME", help="only this site")
    compact.set_defaults(func=cmd_compact)
    return parser


def _config(args, settings: Settings, *, archive_only: bool) -> Config:
    path = args.config or settings.config
    return load_config(path, archive_only=archive_only)


def _archive_url(args, settings: Settings, config: Config) -> str:
    return args.archive or settings.archive_url or config.archive.url


def _open_archive(args, settings: Settings) -> Archive:
    config = _config(args, settings, archive_only=True)
    return Archive.open(_archive_url(args, settings, config))


def _checked_config(args, settings: Settings) -> tuple[Path, Config, str]:
    """The sites file's path, its validated content (with at least one site) and the
    archive URL, checked before any Prefect or crawl starts: a bad config is exit 2."""
    path = args.config or settings.config
    config = load_config(path)
    if not config.sites:
        raise ConfigError(f"{path}: no [[sites]] configured")
    archive_url = _archive_url(args, settings, config)
    Archive.open(archive_url)  # a malformed archive URL is a config error
    return path, config, archive_url


def _prefect_reports_nothing() -> None:
    """Turn Prefect's usage reports off, unless the user set them: before anything imports
    Prefect (reading a config does, for its cron check), since its client decides at import."""
    # Prefect's server reports usage to the outside unless told not to; an archiver that
    # runs offline and on schedule should not, unless its user opts in.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's client, imported in a terminal for the first time, prints that Prefect
    # "collects anonymous usage data" (three lines on a console of one line per event), and
    # reports milestones to a server that has analytics on. DO_NOT_TRACK, the convention it
    # reads, stops both (DO_NOT_TRACK=0 lets it).
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _prepare_prefect() -> None:
    # Prefect's temporary server sets up its database on first use, which takes longer
    # than Prefect's 20 s default on a small machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if os.environ.get("PREFECT_HOME"):
        # Prefect creates its home but not the home's parents; its database then fails.
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)


def _prefect_unavailable(exc: Exception) -> int:
    logger.debug("Prefect failed", exc_info=exc)
    print(f"newsarchive: Prefect is not available: {exc}", file=sys.stderr)
    return 1


def cmd_crawl(args, settings: Settings) -> int:
    path, config, archive_url = _checked_config(args, settings)
    # An unknown site is a config error, before anything starts.
    sites = [config.site(name) for name in args.site] or list(config.sites)
    # Without a Prefect server to report to, a temporary one, started now. The first sites'
    # crawls start now too, while Prefect is imported and its server starts: the flow adopts
    # them (see flows.launch).
    _prepare_prefect()
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        from flows.server import TemporaryServer

        server = TemporaryServer(settings.data_dir / "prefect-server.log").start()
        # Stopped at exit, after Prefect's own exit handlers (registered later, so run
        # earlier) have sent it the run's last logs and events: stopped any sooner, they
        # would retry against a closed port for a minute.
        atexit.register(server.stop)
    run_id = launch.new_run_id()
    launch.start_ahead(sites, archive_url, run_id, settings, *(["--full"] if args.full else []))
    try:
        if server is not None:
            from flows.server import ServerFailed

            try:
                # For the crawl subprocesses, and for Prefect if it is not imported yet.
                os.environ["PREFECT_API_URL"] = server.wait()
            except ServerFailed as exc:
                return _prefect_unavailable(exc)
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
            temporary_settings,
        )

        from flows.crawl import crawl  # Prefect is heavy; only commands that run flows need it

        # Prefect reads its settings when it is first imported, which may have been before
        # the server was up (loading the config checks cron schedules with Prefect's
        # croniter): without this, its client would start a second server of its own,
        # costing a core's share and 180 MB during the crawl.
        updates = {PREFECT_API_URL: os.environ["PREFECT_API_URL"]}
        if server is not None:
            # Heartbeats tell a long-lived server's automation (serve's, flows.reclaim) that
            # the run is alive; a temporary server has none and ends with the run. Without
            # them the run also ends without waiting for the heartbeat thread, which
            # Prefect joins after its next one-second sleep (half a second per crawl).
            updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
        try:
            with temporary_settings(updates=updates):
                results = crawl(sites=args.site or None, config=str(path), archive=archive_url,
                                run_id=run_id, settings=settings, full=args.full)
        except RuntimeError as exc:  # Prefect reports an unreachable or unstartable API so
            return _prefect_unavailable(exc)
    finally:
        if launch.stop_unclaimed(run_id):
            print("newsarchive: crawls started ahead of Prefect were stopped; what they "
                  "fetched is stored, or kept for the next crawl", file=sys.stderr)
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


def cmd_backfill(args, settings: Settings) -> int:
    path, config, archive_url = _checked_config(args, settings)
    site = config.site(args.site)
    _prepare_prefect()
    from flows.backfill import (
        PlanFailed,
        backfill,
        check_range,
        make_plan,
        partition_status,
        should_run,
    )

    check_range(args.since, args.until)
    if args.source == "ccnews":
        return _backfill_ccnews(args, settings, path, site, archive_url)
    if args.dry_run:
        # No flow run: a dry run needs no Prefect server and leaves no trace anywhere.
        try:
            plan = make_plan(site, archive_url, args.since, args.until, settings)
        except PlanFailed as exc:
            print(f"newsarchive: {exc}", file=sys.stderr)
            return 1
        archive = Archive.open(archive_url)
        rows = []
        for day, articles in plan.days.items():
            previous = partition_status(archive, site.name, day)
            status = "to do" if should_run(previous, args.reprocess) else (
                "done" if previous == "ok" else "failed earlier")
            rows.append([day.isoformat(), str(len(articles)), status])
        print(format_table(["day", "articles", "partition"], rows))
        print(f"{plan.total} articles on {len(plan.days)} days from {plan.since} to {plan.until}; "
              f"not fetched: {plan.out_of_range} listed outside the range, {plan.undated} undated. "
              f"Dry run: nothing was fetched or written.")
        return 0
    try:
        report = backfill(site=site.name, since=args.since, until=args.until, config=str(path),
                          archive=archive_url, reprocess=args.reprocess, settings=settings)
    except PlanFailed as exc:
        print(f"newsarchive: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        return _prefect_unavailable(exc)
    columns = ("fetched", "archived", "duplicates", "errors")
    print(format_table(["day", "planned", "status", *columns],
                       [[p.day.isoformat(), str(p.planned), p.status,
                         *(str(p.counts.get(c, "-")) for c in columns)]
                        for p in report.partitions]))
    plan = report.plan
    print(f"{plan.total} articles on {len(plan.days)} days; not fetched: {plan.out_of_range} "
          f"listed outside the range, {plan.undated} undated.")
    for partition in report.partitions:
        if partition.status == "failed":
            print(f"newsarchive: partition {partition.day} failed: {partition.reason}",
                  file=sys.stderr)
    skipped_failed = [p for p in report.partitions if p.status == "failed earlier"]
    if skipped_failed:
        print(f"newsarchive: {len(skipped_failed)} partitions failed in an earlier backfill; "
              f"run again with --reprocess failed", file=sys.stderr)
    return 0 if report.ok else 1


def _backfill_ccnews(args, settings: Settings, path: Path, site, archive_url: str) -> int:
    from flows.backfill import backfill
    from flows.ccnews import plan_files, scan_time_note
    from spiders.interface import CCNewsSourceError, ccnews_source

    if args.slack_days < 0:
        print("newsarchive: --slack-days cannot be negative", file=sys.stderr)
        return 2
    try:
        if args.dry_run:
            # No flow run and nothing written: the listings and each file's size are read.
            source = ccnews_source(settings.ccnews_url)
            archive = Archive.open(archive_url)
            planned = plan_files(site, archive, source, args.since, args.until,
                                 args.slack_days, args.reprocess)
            rows, total = [], 0
            for warc_file, previous, run in planned:
                size = source.size(warc_file.path)
                if run and size:
                    total += size
                status = "to do" if run else ("done" if previous == "ok" else "failed earlier")
                rows.append([warc_file.name, _megabytes(size), status])
            print(format_table(["file", "size", "status"], rows))
            to_do = sum(run for *_, run in planned)
            print(f"{len(planned)} CC-NEWS files from {source} can hold {site.name}'s articles "
                  f"of {args.since} to {args.until} (captures up to {args.slack_days} days "
                  f"later); {to_do} to scan, {total / 1e9:.2f} GB: "
                  f"{scan_time_note(total)}. Dry run: nothing was "
                  f"read from the files or written.")
            return 0
        report = backfill(site=site.name, since=args.since, until=args.until, config=str(path),
                          archive=archive_url, reprocess=args.reprocess, settings=settings,
                          source="ccnews", slack_days=args.slack_days)
    except CCNewsSourceError as exc:
        print(f"newsarchive: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        return _prefect_unavailable(exc)
    from flows.backfill import CCNEWS_COLUMNS

    print(format_table(["file", "status", *CCNEWS_COLUMNS],
                       [[f.file.rsplit("/", 1)[-1], f.status,
                         *(str(f.counts.get(c, 0 if f.counts else "-")) for c in CCNEWS_COLUMNS)]
                        for f in report.files]))
    counts = report.counts
    print(f"{len(report.files)} CC-NEWS files; {counts['archived']} articles archived, "
          f"{counts['duplicates']} already archived, {counts['out_of_range']} dated outside "
          f"the range, {counts['undated']} undated.")
    for result in report.files:
        if result.status == "failed":
            print(f"newsarchive: {result.file} failed: {result.reason}", file=sys.stderr)
    return 0 if report.ok else 1


def _megabytes(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


def _deployments(args, settings: Settings):
    path, config, archive_url = _checked_config(args, settings)
    _prepare_prefect()
    from flows.deployments import build_deployments

    return build_deployments(config, Path(path), archive_url)


def cmd_serve(args, settings: Settings) -> int:
    from flows.shutdown import Shutdown

    # Ctrl-C stops the runs in progress at once; SIGTERM (docker stop, service managers)
    # lets them finish for --grace seconds first, and a second signal stops them at once.
    # Either way the handlers only note the request: serve stops in order, and no
    # KeyboardInterrupt lands in the middle of Prefect.
    shutdown = Shutdown(grace=args.grace)

    def on_signal(signum, _frame) -> None:
        shutdown.request("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name,
                         now=signum == signal.SIGINT or shutdown.requested.is_set())

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    deployments = _deployments(args, settings)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import PrefectUnavailable, serve
    from flows.server import ServerFailed, StartAborted, local_server, stop_leftover_server

    own_server = not os.environ.get("PREFECT_API_URL")
    try:
        if own_server:
            home = settings.data_dir.resolve() / "prefect"
            leftover = stop_leftover_server(home)
            if leftover:
                _say(f"the Prefect server a killed serve left running (pid {leftover}) was "
                     f"stopped")
            server = local_server(home, settings.prefect_port, aborted=shutdown.requested.is_set)
        else:
            server = nullcontext(os.environ["PREFECT_API_URL"])
        with server as api_url:
            # Prefect read its settings when it was imported; the flow-run processes that
            # serve starts read them from the environment.
            os.environ["PREFECT_API_URL"] = api_url
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                serve(deployments, shutdown, _say, limit=args.limit)
    except StartAborted:
        pass
    except ServerFailed as exc:
        print(f"newsarchive: {exc}", file=sys.stderr)
        return 1
    except (PrefectUnavailable, RuntimeError) as exc:
        return _prefect_unavailable(exc)
    _say("stopped")
    return 0


def _say(line: str) -> None:
    """One line of ``serve`` on its console."""
    print(f"newsarchive: {line}", file=sys.stderr, flush=True)


def cmd_deploy(args, settings: Settings) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("deploy needs a Prefect server: set PREFECT_API_URL "
                          "(workers on other machines must reach it too)")
    deployments = _deployments(args, settings)
    from flows.deployments import PrefectUnavailable, deploy

    try:
        names = deploy(deployments, args.pool)
    except (PrefectUnavailable, RuntimeError, ValueError) as exc:
        return _prefect_unavailable(exc)
    print(format_table(["deployment", "pool"], [[name, args.pool] for name in names]))
    print(f"Start workers with: prefect worker start --pool {args.pool}", file=sys.stderr)
    return 0


def cmd_reprocess(args, settings: Settings) -> int:
    from spiders.interface import reprocess

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


COMPACT_PROGRESS_EVERY = 50
"""Days compacted between two progress lines of ``compact`` (a year of a site is 365)."""


def cmd_compact(args, settings: Settings) -> int:
    from storage.catalog import compact_catalog

    archive = _open_archive(args, settings)

    def progress(site: str, done: int, total: int) -> None:
        if done % COMPACT_PROGRESS_EVERY == 0 or done == total:
            print(f"  {site}: {done}/{total} days", file=sys.stderr, flush=True)

    sites = compact_catalog(archive.backend, site=args.site, progress=progress)
    if not sites:
        print("newsarchive: no catalog files to compact", file=sys.stderr)
        return 0
    print(format_table(["site", "closed days", "compacted", "files before", "files after"],
                       [[s.site, str(s.closed_days), str(s.days_compacted),
                         str(s.files_before), str(s.files_after)] for s in sites]))
    return 0


def run() -> int:
    """The ``newsarchive`` command (and ``python -m flows``): :func:`main` in a process of
    its own, which does not need pandas (:func:`storage.catalog.keep_pandas_out`)."""
    keep_pandas_out()
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _prefect_reports_nothing()
    try:
        try:
            settings = Settings()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "NEWSARCHIVE_" + "_".join(str(p) for p in first["loc"]).upper()
            raise ConfigError(f"environment: {name}: {first['msg']}") from None
        settings = _set_up_logging(args, settings)
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


def _set_up_logging(args, settings: Settings) -> Settings:
    """The console at ``--log-level`` (else ``NEWSARCHIVE_LOG_LEVEL``), for this process and
    the crawls it starts; returns the settings with that level."""
    level = (args.log_level or settings.log_level).strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"environment: NEWSARCHIVE_LOG_LEVEL: {settings.log_level!r} is not "
                          f"one of {', '.join(LOG_LEVELS)}")
    if args.log_level:
        # The flow-run processes `serve` starts read their settings from the environment.
        os.environ["NEWSARCHIVE_LOG_LEVEL"] = level.upper()
    # The handler's level too: Prefect's loggers set their own (INFO), and would reach the
    # console through it at any level of the root logger.
    console = logging.StreamHandler()
    console.setLevel(level.upper())
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[console])
    if level != "debug":
        for name in _CHATTY_AT_INFO:
            logging.getLogger(name).setLevel(logging.WARNING)
    # At any level, no credential reaches the console: botocore's debug log shows the
    # access key id of every request it signs.
    scrub_secrets_from_logs()
    return settings.model_copy(update={"log_level": level.upper()})
