"""The catalog's daily compaction as a Prefect flow: ``serve`` (and ``deploy``) register it
as ``compact/compact`` on :data:`COMPACT_SCHEDULE`, and ``newsarchive compact`` does the same
work from the command line.

Each closed day's catalog files become one file per site and day holding each article's
latest row (:func:`storage.catalog.compact_catalog`): idempotent, safe while crawls write
and if killed, so a run that overlaps a crawl, or a missed day, needs nothing special.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from storage import open_backend
from storage.catalog import SiteCompaction
from storage.catalog import compact_catalog as compact_closed_days

COMPACT_SCHEDULE = "15 3 * * *"
"""When ``serve`` compacts the catalog: daily at 03:15 UTC, once yesterday has been over
for the three hours that make it closed (:func:`storage.catalog.default_compaction_cutoff`):
every day but today is then one file per site."""

SUMMARY_COLUMNS = ("closed_days", "days_compacted", "files_before", "files_after")


@flow(name="compact", log_prints=False)
def compact_catalog(archive: str) -> list[dict]:
    """Compact the closed days of every site's catalog in the archive at ``archive`` (a
    directory or ``s3://bucket/prefix``); returns, per site, its closed days, the days
    compacted now, and its files before and after. The same table is the run's markdown
    artifact."""
    logger = get_run_logger()

    def progress(site: str, done: int, total: int) -> None:
        if done == total:
            logger.info("%s: %d closed day(s) compacted", site, total)

    sites = compact_closed_days(open_backend(archive), progress=progress)
    for site in sites:
        logger.info("%s: %d closed days, %d compacted, files %d -> %d", site.site,
                    site.closed_days, site.days_compacted, site.files_before, site.files_after)
    create_markdown_artifact(markdown=summary_markdown(sites), key="compact",
                             description="The catalog's files per site, before and after")
    return [asdict(site) for site in sites]


def summary_markdown(sites: list[SiteCompaction]) -> str:
    """The compaction's table, as markdown."""
    lines = ["| site | " + " | ".join(c.replace("_", " ") for c in SUMMARY_COLUMNS) + " |",
             "| --- |" + " ---: |" * len(SUMMARY_COLUMNS)]
    lines += [f"| {s.site} | " + " | ".join(str(getattr(s, c)) for c in SUMMARY_COLUMNS) + " |"
              for s in sites]
    return "\n".join(lines) if sites else "No catalog files to compact."
