"""Prefect flows that crawl sites: one Scrapy subprocess per site, judged by its stats file."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from flows.launch import claim, new_run_id, site_crawl_command, spider_command, stats_file_of
from flows.settings import Settings
from spiders.interface import (
    Config,
    ConfigError,
    SiteConfig,
    crawl_counts,
    crawl_log_file,
    load_config,
)
from storage import InvalidArchiveURL, check_archive_url

__all__ = ["CrawlCrashed", "SiteResult", "crawl", "crawl_configured", "crawl_site",
           "load_sites", "new_run_id", "run_site_crawl", "spider_command", "summarize",
           "summary_markdown"]


class CrawlCrashed(RuntimeError):
    """The crawl subprocess ended without writing its stats file."""


@dataclass(frozen=True)
class SiteResult:
    """What one site's crawl did."""

    site: str
    """Site name."""
    run_id: str
    """The run this crawl belongs to."""
    ok: bool
    """False when the crawl crashed, did not finish, or could not write to the archive."""
    reason: str
    """Scrapy's finish reason, or why the crawl failed."""
    counts: dict[str, int] = field(default_factory=dict)
    """discovered, skipped (already archived), fetched, archived (new articles), versions
    (new versions of archived ones), duplicates (same text as an archived article, or being
    archived by another run), near_duplicates (archived, flagged), spooled (kept while the
    archive was unreachable), spool_left (still waiting at the end), errors."""
    errors: list[dict] = field(default_factory=list)
    """The recorded errors (url, kind, reason), as many as the crawl kept."""
    stats_file: str = ""
    """Path of the crawl's stats file."""
    log_file: str = ""
    """Path of the crawl's full log (Scrapy's, at INFO or DEBUG; its console showed only
    progress lines, warnings and errors)."""
    partitions: dict[str, dict[str, int]] = field(default_factory=dict)
    """A backfill batch's counts per day partition (``YYYY-MM-DD`` -> fetched, archived,
    versions, duplicates, errors); each of ``errors`` then names its day (``partition``)
    when one of the day's articles had it. Empty for other crawls."""


def summarize(report: dict) -> SiteResult:
    """Turn a crawl's stats file into a :class:`SiteResult`."""
    stats = report.get("stats", {})
    counts = crawl_counts(stats)
    reason = str(report.get("finish_reason"))
    # Pages lost to a storage failure or to a bug of ours fail the site; bad pages do not.
    storage_errors = stats.get("newsarchive/errors/storage", 0) + stats.get("newsarchive/errors/internal", 0)
    unreachable = counts["discovered"] == 0 and counts["errors"] > 0
    ok = reason == "finished" and not storage_errors and not unreachable and not counts["spool_left"]
    if counts["spool_left"]:
        reason = (f"the archive was unreachable: {counts['spool_left']} fetched pages wait in "
                  f"{report.get('workspace', 'the run workspace')} for the next crawl to store")
    elif storage_errors:
        reason = f"{storage_errors} pages could not be archived (storage or internal errors)"
    elif unreachable:
        reason = "no sitemap, feed or front page could be read"
    return SiteResult(site=report.get("site", "?"), run_id=report.get("run_id", ""), ok=ok,
                      reason=reason, counts=counts, errors=report.get("errors", []),
                      partitions=report.get("partitions") or {})


def run_site_crawl(site: SiteConfig, archive_url: str, run_id: str, settings: Settings, *,
                   entries_file: Path | None = None, partition: str | None = None,
                   full: bool = False) -> SiteResult:
    """Crawl one site in a subprocess and read back its stats file; CrawlCrashed if the
    subprocess left none. With ``entries_file``, fetch exactly those articles (a backfill
    batch, its days named by ``partition``) instead of discovering; ``full``: read every
    sitemap and feed in full."""
    logger = get_run_logger()
    stats_file = stats_file_of(site, run_id, settings)
    process = claim(run_id, site.name) if entries_file is None else None
    if process is not None:
        logger.info("crawling %s into %s (started while Prefect was starting, pid %d)",
                    site.name, archive_url, process.pid)
    else:
        stats_file.unlink(missing_ok=True)
        extra = ["--full"] if full else []
        if entries_file is not None:
            extra = ["--entries-file", str(entries_file), "--partition", partition or ""]
        logger.info("crawling %s into %s", site.name, archive_url)
        process = subprocess.Popen(site_crawl_command(site, archive_url, run_id, settings, *extra))
    returncode = process.wait()
    if not stats_file.exists():
        raise CrawlCrashed(
            f"crawl of {site.name} exited with status {returncode} without a stats file"
        )
    result = summarize(json.loads(stats_file.read_text(encoding="utf-8")))
    log_file = crawl_log_file(stats_file)
    result = SiteResult(**{**asdict(result), "stats_file": str(stats_file),
                           "log_file": str(log_file)})
    # The crawl's console is its stderr, passed through to this process's (a terminal, or
    # the worker's or serve's output); Prefect's log of the run says what it did and where
    # its full log is.
    logger.info("%s: %s; its log: %s", site.name,
                ", ".join(f"{k} {v}" for k, v in result.counts.items()), log_file)
    return result


def _crawl_crashed(task, task_run, state) -> bool:
    """Retry only a crawl that crashed (no stats file): a crawl that ran and found errors
    would find them again, and a config error stays one."""
    try:
        state.result()
    except CrawlCrashed:
        return True
    except Exception:  # noqa: BLE001 - any other failure: not worth a second crawl
        return False
    return False


@task(name="crawl-site", retries=1, retry_delay_seconds=5, retry_condition_fn=_crawl_crashed,
      cache_policy=NO_CACHE, task_run_name="crawl-{site.name}")
def crawl_site(site: SiteConfig, archive_url: str, run_id: str, settings: Settings, *,
               entries_file: Path | None = None, partition: str | None = None,
               full: bool = False) -> SiteResult:
    """Crawl one site in a subprocess and read back its stats file (retried once if the
    subprocess crashes); with ``entries_file``, a backfill batch (see
    :func:`run_site_crawl`)."""
    return run_site_crawl(site, archive_url, run_id, settings, entries_file=entries_file,
                          partition=partition, full=full)


def load_sites(config: str | None, names: list[str] | None, archive: str | None,
               settings: Settings) -> tuple[Config, list[SiteConfig], str]:
    """The config, the chosen sites (all when ``names`` is empty) and the archive URL: the
    ``archive`` argument, else NEWSARCHIVE_ARCHIVE_URL, else the config's. ConfigError
    for a missing or invalid config or an unknown site."""
    loaded = load_config(Path(config) if config else settings.config)
    sites = [loaded.site(name) for name in names] if names else list(loaded.sites)
    archive_url = archive or settings.archive_url or loaded.archive.url
    try:
        # A run started by hand in Prefect passes its own ``archive``: checked here as the
        # command line's is, before it reaches a crawl's argv or a log.
        check_archive_url(archive_url)
    except InvalidArchiveURL as exc:
        raise ConfigError(f"archive: {exc}") from None
    return loaded, sites, archive_url


@flow(name="crawl", log_prints=False)
def crawl(sites: list[str] | None = None, config: str | None = None,
          archive: str | None = None, run_id: str | None = None,
          settings: Settings | None = None, full: bool = False) -> list[SiteResult]:
    """Crawl the named sites of the sites file once (all of them when none is named), up to
    ``NEWSARCHIVE_MAX_PARALLEL_SITES`` at a time, each in its own Scrapy subprocess.

    This is the flow behind ``newsarchive crawl`` and behind each site's deployment.
    ``run_id`` names the run (a new one by default): ``newsarchive crawl`` gives the one its
    crawls started ahead belong to (see :mod:`flows.launch`), and its ``settings``.
    ``full`` reads every sitemap and feed in full, whatever the sites' discovery state (see
    the README's "How a crawl decides what to fetch").
    """
    settings = settings or Settings()  # the command's, or (a scheduled run) the environment's
    _, chosen, archive_url = load_sites(config, sites, archive, settings)
    return crawl_configured(chosen, archive_url, settings, run_id, full)


def crawl_configured(sites: list[SiteConfig], archive_url: str, settings: Settings,
                     run_id: str | None = None, full: bool = False) -> list[SiteResult]:
    """Inside a flow: crawl ``sites`` with at most ``settings.max_parallel_sites`` at once,
    publish the run's summary artifact, and return one result per site, in order."""
    logger = get_run_logger()
    run_id = run_id or new_run_id()
    # A bounded loop of our own rather than a task runner sized to the limit: Prefect fixes a
    # flow's task runner where the flow is defined, and the limit is a setting read at run
    # time (NEWSARCHIVE_MAX_PARALLEL_SITES).
    waiting = list(sites)
    running: dict = {}
    done: dict[str, SiteResult] = {}
    while waiting or running:
        while waiting and len(running) < settings.max_parallel_sites:
            site = waiting.pop(0)
            running[crawl_site.submit(site, archive_url, run_id, settings, full=full)] = site
        future = next(as_completed(list(running)))
        site = running.pop(future)
        try:
            done[site.name] = future.result()
        except Exception as exc:  # one site's crash must not hide the others' results
            done[site.name] = SiteResult(site=site.name, run_id=run_id, ok=False, reason=str(exc))
        logger.info("%d of %d sites done", len(done), len(sites))
    results = [done[site.name] for site in sites]
    create_markdown_artifact(
        markdown=summary_markdown(run_id, results),
        key=f"crawl-{_artifact_key(run_id)}",
        description=f"What crawl run {run_id} did, per site",
    )
    return results


SUMMARY_COLUMNS = ("discovered", "skipped", "fetched", "archived", "versions", "duplicates",
                   "errors")


def summary_markdown(run_id: str, results: list[SiteResult]) -> str:
    """The run as a markdown table (the run's Prefect artifact): a row per site."""
    def cell(value) -> str:
        # Site names are validated; reasons come from crawls of untrusted pages.
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [f"# Crawl run {run_id}", "",
             "| site | status | " + " | ".join(SUMMARY_COLUMNS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in SUMMARY_COLUMNS) + " |"]
    for r in results:
        counts = " | ".join(str(r.counts.get(c, "-")) for c in SUMMARY_COLUMNS)
        lines.append(f"| {cell(r.site)} | {'ok' if r.ok else 'FAILED: ' + cell(r.reason)} | {counts} |")
    return "\n".join(lines) + "\n"


def _artifact_key(run_id: str) -> str:
    # Prefect artifact keys allow lowercase letters, digits and dashes only.
    return re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")


