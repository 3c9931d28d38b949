"""Backfills: archive what a site published in a date range, recorded by day partition.

A backfill first makes a plan: one crawl subprocess reads the site's robots.txt, sitemaps
and feeds (skipping sitemaps of an index whose ``lastmod`` is before the range) and lists
the articles they date inside the range, by ``news:publication_date``, a feed's published
date, or else ``lastmod``; it fetches no article and writes nothing. Undated articles and
section fronts cannot be placed in a range and are left out (and counted).

Each day of the plan is then a partition. The partitions to run are grouped, newest first,
into batches of whole days (at most ``MAX_BATCH_ARTICLES`` articles, unless one day has more),
each a child flow run (``backfill-days``, named ``<site>-<first day>..<last day>``) whose one
crawl subprocess fetches all the batch's articles, skipping those already archived, as any
crawl does, and counts what it did per day. Each day is then recorded in the archive
(``_index/sites/<site>/backfill-<YYYY-MM-DD>.json``): ``failed`` if the crawl failed as a
whole or one of the day's articles had an error, else ``ok``; so a backfill started again,
here or on another machine, skips it: the backfill resumes where it stopped and a repeat
writes nothing. ``reprocess="failed"`` runs the partitions that failed again, ``"all"``
every partition.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.ccnews import DEFAULT_SLACK_DAYS, CCNewsReport, ccnews_backfill
from flows.crawl import (
    SiteResult,
    _artifact_key,
    crawl_site,
    load_sites,
    new_run_id,
    spider_command,
)
from flows.settings import Settings
from spiders.interface import ConfigError, SiteConfig
from storage import Archive

Reprocess = Literal["none", "failed", "all"]
Source = Literal["site", "ccnews"]
MAX_BACKFILL_DAYS = 3660
# Articles a batch of days fetches in one crawl subprocess (a day with more is a batch of its
# own: days are never split). A crawl's start-up costs 7-10 s, paid here once per 500
# articles: a few percent of their fetching at a polite pace, and a year of 2 articles a day
# is two batches. A batch still ends every few minutes, so the Prefect UI shows progress and
# a crash makes little to redo (what it archived is skipped next time). And its articles'
# errors stay well under the 1,000 a crawl records (spiders.stats.MAX_RECORDED_ERRORS), so
# each is told to its day.
MAX_BATCH_ARTICLES = 500


class PlanFailed(RuntimeError):
    """The plan's discovery subprocess crashed or could read no sitemap or feed."""


@dataclass(frozen=True)
class Plan:
    """What a backfill would fetch, by day."""

    site: str
    """Site name."""
    since: date
    """First day of the range (UTC), included."""
    until: date
    """Last day of the range (UTC), included."""
    days: dict[date, list[dict]]
    """Day -> the articles listed as published that day: ``url``, ``published``,
    ``date_hint`` (ISO strings or None) and ``listed_as`` (every URL seen for it)."""
    out_of_range: int = 0
    """Articles listed with a date outside the range (not fetched)."""
    undated: int = 0
    """Articles listed without any date (not fetched: they cannot be placed in the range)."""
    errors: list[dict] = field(default_factory=list)
    """Errors met while reading sitemaps and feeds (url, kind, reason)."""

    @property
    def total(self) -> int:
        """Articles in range."""
        return sum(len(articles) for articles in self.days.values())


@dataclass(frozen=True)
class PartitionResult:
    """What happened to one day of a backfill."""

    day: date
    """The partition's day."""
    planned: int
    """Articles the plan listed for the day."""
    status: str
    """``ok`` or ``failed`` (run now), ``done`` or ``failed earlier`` (skipped: finished
    in an earlier backfill)."""
    counts: dict[str, int] = field(default_factory=dict)
    """What its batch's crawl did to the day's articles: fetched, archived, versions,
    duplicates, errors (see :attr:`flows.crawl.SiteResult.partitions`); empty when skipped
    or when the crawl crashed."""
    reason: str = ""
    """Why the partition failed, if it did."""


@dataclass(frozen=True)
class BackfillReport:
    """A whole backfill."""

    site: str
    """Site name."""
    run_id: str
    """The backfill's run id (each batch's crawl has its own)."""
    plan: Plan
    """The plan the partitions came from."""
    partitions: list[PartitionResult]
    """One per day with planned articles, newest first."""

    @property
    def ok(self) -> bool:
        """False if a partition run now failed."""
        return all(p.status != "failed" for p in self.partitions)


def check_range(since: date, until: date) -> None:
    """ConfigError unless ``since <= until`` and the range is not absurdly long."""
    if since > until:
        raise ConfigError(f"--since {since} is after --until {until}")
    if (until - since).days >= MAX_BACKFILL_DAYS:
        raise ConfigError(f"a backfill covers at most {MAX_BACKFILL_DAYS} days")


def make_plan(site: SiteConfig, archive_url: str, since: date, until: date,
              settings: Settings) -> Plan:
    """Discover the in-range articles of ``site`` in a subprocess; fetches no article and
    writes nothing to the archive. PlanFailed if discovery crashed or found no listing."""
    check_range(since, until)
    workdir = Path(tempfile.mkdtemp(prefix="newsarchive-plan-"))
    try:
        plan_file = workdir / "plan.json"
        # The data directory too: the plan's log file goes there (the settings' one, which
        # a caller may have set otherwise than the environment says).
        command = spider_command(site, archive_url, settings, "--plan-file", str(plan_file),
                                 "--since", since.isoformat(), "--until", until.isoformat(),
                                 "--data-dir", str(settings.data_dir.resolve()))
        completed = subprocess.run(command, check=False)
        if not plan_file.exists():
            raise PlanFailed(f"discovery for {site.name} exited with status "
                             f"{completed.returncode} without a plan")
        report = json.loads(plan_file.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    days: dict[date, list[dict]] = {}
    for article in report["articles"].values():
        days.setdefault(date.fromisoformat(article["day"]), []).append(article)
    plan = Plan(site=site.name, since=since, until=until,
                days=dict(sorted(days.items(), reverse=True)),
                out_of_range=report["out_of_range"], undated=report["undated"],
                errors=report["errors"])
    if not report["listed"] and plan.errors:
        kinds = ", ".join(sorted({e["kind"] for e in plan.errors}))
        raise PlanFailed(f"no sitemap or feed of {site.name} could be read ({kinds})")
    return plan


def partition_state_name(day: date) -> str:
    """The name under which a finished partition is recorded in the site's state."""
    return f"backfill-{day.isoformat()}"


def partition_status(archive: Archive, site: str, day: date) -> str | None:
    """``ok`` or ``failed`` if the partition finished in an earlier backfill, else None."""
    state = archive.read_site_state(site, partition_state_name(day))
    return state.get("status") if state else None


def should_run(previous: str | None, reprocess: Reprocess) -> bool:
    """Whether a partition that ended ``previous`` (None: never finished) runs again."""
    return previous is None or reprocess == "all" or (reprocess == "failed" and previous != "ok")


def batches(days: dict[date, list[dict]], limit: int | None = None) -> list[dict[date, list[dict]]]:
    """``days`` (newest first, as a plan lists them) grouped in that order into batches of
    whole days with at most ``limit`` articles (``MAX_BATCH_ARTICLES`` by default) each; a
    day with more is a batch alone."""
    limit = limit or MAX_BATCH_ARTICLES
    grouped: list[dict[date, list[dict]]] = []
    size = 0
    for day, articles in days.items():
        if not grouped or size + len(articles) > limit:
            grouped.append({})
            size = 0
        grouped[-1][day] = articles
        size += len(articles)
    return grouped


def batch_label(days: Iterable[date]) -> str:
    """The days of a batch as its run manifest and flow run name give them: ``YYYY-MM-DD``,
    or ``<first>..<last>``."""
    days = list(days)
    first, last = min(days), max(days)
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


def entries_of(days: dict[date, list[dict]]) -> list[dict]:
    """The crawl's entries file: every URL each article was listed under (so its record
    learns its aliases), with the article's dates and its day partition."""
    return [{"url": url, "published": a["published"], "date_hint": a["date_hint"],
             "partition": day.isoformat()}
            for day, articles in days.items() for a in articles
            for url in (a.get("listed_as") or [a["url"]])]


def day_result(day: date, planned: int, crawl: SiteResult) -> PartitionResult:
    """What a batch's crawl did to one of its days: ``failed`` if the crawl failed as a
    whole, or one of the day's articles had an error (or errors went unrecorded, so that
    none can be ruled out); else ``ok``."""
    partition = day.isoformat()
    counts = crawl.partitions.get(partition, {})
    if not crawl.ok:
        return PartitionResult(day, planned, "failed", counts, crawl.reason)
    unrecorded = crawl.counts.get("errors", 0) - len(crawl.errors)
    if unrecorded > 0:
        return PartitionResult(day, planned, "failed", counts,
                               f"the batch's crawl had {unrecorded} errors more than it "
                               f"recorded: whose they were is unknown")
    errors = [e for e in crawl.errors if e.get("partition") == partition]
    if errors:
        first, more = errors[0], len(errors) - 1
        return PartitionResult(day, planned, "failed", counts,
                               f"{first['kind']} at {first['url']}: {first['reason']}"
                               + (f" (and {more} more errors)" if more else ""))
    return PartitionResult(day, planned, "ok", counts)


def record_partition(archive: Archive, site: str, result: PartitionResult, run_id: str) -> None:
    """Record a partition as finished in the archive (what resuming a backfill reads)."""
    archive.write_site_state(site, partition_state_name(result.day), {
        "status": result.status,
        "reason": result.reason,
        "run_id": run_id,
        "planned": result.planned,
        "counts": result.counts,
        "finished_at": datetime.now(timezone.utc).isoformat(),
    })


@flow(name="backfill-days", log_prints=False)
def backfill_days(site: str, days: dict[date, list[dict]], config: str | None = None,
                  archive: str | None = None,
                  settings: Settings | None = None) -> list[PartitionResult]:
    """Fetch and archive the planned articles of several days of ``site`` (day -> articles)
    in one crawl subprocess, then record each day's partition as finished (``ok`` or
    ``failed``, see :func:`day_result`) in the archive; returns them in ``days``' order.
    ``settings``: the backfill's (built from the environment when this runs alone)."""
    settings = settings or Settings()
    _, (site_config,), archive_url = load_sites(config, [site], archive, settings)
    run_id = new_run_id()
    archive_ = Archive.open(archive_url)
    workdir = Path(tempfile.mkdtemp(prefix="newsarchive-backfill-"))
    entries_file = workdir / "entries.json"
    entries_file.write_text(json.dumps(entries_of(days)), encoding="utf-8")
    try:
        # The crawl task, retried once if it crashes (whatever the first attempt archived
        # is skipped then), as every site's crawl is.
        crawl = crawl_site(site_config, archive_url, run_id, settings,
                           entries_file=entries_file, partition=batch_label(days))
    except Exception as exc:
        # Crashed twice, or could not start: each day says so, then so does this run.
        for day, articles in days.items():
            record_partition(archive_, site, PartitionResult(day, len(articles), "failed",
                                                             reason=str(exc)), run_id)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = [day_result(day, len(articles), crawl) for day, articles in days.items()]
    for result in results:
        record_partition(archive_, site, result, run_id)
    return results


@flow(name="backfill", log_prints=False)
def backfill(site: str, since: date, until: date, config: str | None = None,
             archive: str | None = None, reprocess: Reprocess = "none",
             dry_run: bool = False, settings: Settings | None = None,
             source: Source = "site",
             slack_days: int = DEFAULT_SLACK_DAYS) -> BackfillReport | CCNewsReport:
    """Archive what ``site`` published from ``since`` to ``until`` (UTC days, both included).

    ``source="site"``: plan from the site's sitemaps and feeds, then the days with articles
    in batches (see :func:`batches`), newest first, one child flow run each. Finished
    partitions are skipped unless ``reprocess`` is ``failed`` or ``all``; ``dry_run`` plans
    only. ``source="ccnews"``: read the captures of Common Crawl News instead, one task per
    file (:mod:`flows.ccnews`; ``slack_days``: days after ``until`` whose captures are
    read), the site never asked. ``settings``: the command's (built from the environment
    when Prefect starts the run)."""
    logger = get_run_logger()
    settings = settings or Settings()
    _, (site_config,), archive_url = load_sites(config, [site], archive, settings)
    if source == "ccnews":
        check_range(since, until)
        report = ccnews_backfill(site_config, archive_url, since, until, settings,
                                 run_id=new_run_id(), reprocess=reprocess, slack_days=slack_days)
        create_markdown_artifact(markdown=ccnews_markdown(report),
                                 key=f"backfill-{_artifact_key(site + '-' + report.run_id)}",
                                 description=f"CC-NEWS backfill of {site}, {since} to {until}")
        return report
    plan = make_plan(site_config, archive_url, since, until, settings)
    logger.info("plan for %s, %s to %s: %d articles on %d days (%d out of range, %d undated)",
                site, since, until, plan.total, len(plan.days), plan.out_of_range, plan.undated)
    run_id = new_run_id()
    archive_ = Archive.open(archive_url)
    results: dict[date, PartitionResult] = {}
    to_run: dict[date, list[dict]] = {}
    for day, articles in plan.days.items():
        previous = partition_status(archive_, site, day)
        if dry_run or not should_run(previous, reprocess):
            status = "to do" if should_run(previous, reprocess) else (
                "done" if previous == "ok" else "failed earlier")
            results[day] = PartitionResult(day, len(articles), status)
        else:
            to_run[day] = articles
    grouped = batches(to_run)
    for number, batch in enumerate(grouped, start=1):
        run_batch = backfill_days.with_options(flow_run_name=f"{site}-{batch_label(batch)}")
        try:
            outcomes = run_batch(site, batch, config=config, archive=archive_url,
                                 settings=settings)
        except Exception as exc:  # a batch's crash must not stop the others
            outcomes = [PartitionResult(day, len(articles), "failed", reason=str(exc))
                        for day, articles in batch.items()]
        results.update((outcome.day, outcome) for outcome in outcomes)
        failed = sum(outcome.status == "failed" for outcome in outcomes)
        logger.info("days %s: %d ok, %d failed (batch %d of %d)", batch_label(batch),
                    len(outcomes) - failed, failed, number, len(grouped))
    report = BackfillReport(site=site, run_id=run_id, plan=plan,
                            partitions=[results[day] for day in plan.days])
    if not dry_run:
        create_markdown_artifact(markdown=report_markdown(report),
                                 key=f"backfill-{_artifact_key(site + '-' + run_id)}",
                                 description=f"Backfill of {site}, {since} to {until}")
    return report


PARTITION_COLUMNS = ("fetched", "archived", "duplicates", "errors")


def report_markdown(report: BackfillReport) -> str:
    """The backfill as a markdown table (its Prefect artifact): a row per day."""
    plan = report.plan
    lines = [f"# Backfill of {report.site}, {plan.since} to {plan.until}", "",
             f"{plan.total} articles in range on {len(plan.days)} days; {plan.out_of_range} "
             f"listed outside the range and {plan.undated} undated were not fetched.", "",
             "| day | planned | status | " + " | ".join(PARTITION_COLUMNS) + " |",
             "| --- | ---: | --- | " + " | ".join("---:" for _ in PARTITION_COLUMNS) + " |"]
    for p in report.partitions:
        counts = " | ".join(str(p.counts.get(c, "-")) for c in PARTITION_COLUMNS)
        status = p.status + (": " + p.reason.replace("|", "\\|").replace("\n", " ")
                             if p.reason else "")
        lines.append(f"| {p.day} | {p.planned} | {status} | {counts} |")
    return "\n".join(lines) + "\n"


CCNEWS_COLUMNS = ("records", "kept", "archived", "duplicates", "out_of_range", "undated",
                  "errors")


def ccnews_markdown(report: CCNewsReport) -> str:
    """A CC-NEWS backfill as a markdown table (its Prefect artifact): a row per file."""
    lines = [f"# CC-NEWS backfill of {report.site}, {report.since} to {report.until}", "",
             f"{len(report.files)} files from {report.source}.", "",
             "| file | status | " + " | ".join(CCNEWS_COLUMNS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in CCNEWS_COLUMNS) + " |"]
    for f in report.files:
        counts = " | ".join(str(f.counts.get(c, 0 if f.counts else "-")) for c in CCNEWS_COLUMNS)
        status = f.status + (": " + f.reason.replace("|", "\\|").replace("\n", " ")
                             if f.reason else "")
        lines.append(f"| {f.file.rsplit('/', 1)[-1]} | {status} | {counts} |")
    return "\n".join(lines) + "\n"
