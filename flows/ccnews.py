"""Backfills from Common Crawl News: a site's history read from CC-NEWS, the site not asked.

The backfill lists the CC-NEWS files whose captures can hold the range
(:func:`spiders.ccnews.files_for`) and scans each in a Prefect task of its own
(``ccnews-file``, named after the file): every kept capture goes through the page path into
the archive (:class:`spiders.ccnews.Scanner`). Each file's scan is then recorded in the
archive (``_index/sites/<site>/ccnews-<time>-<n>.json``: ``ok``, or ``failed`` when a page
had an error), so a backfill started again, here or on another machine, scans only the files
not yet done, and a repeat writes nothing (``reprocess="failed"`` scans the failed files
again, ``"all"`` every file).

Scale-out: before scanning a file, a run claims it in the archive
(``...-claim.json``, created only if absent). Several runs of the same backfill (the
``backfill`` deployment run N times with the same parameters, picked up by workers on N
machines) share the month: each scans the files that are neither done nor claimed. A claim
expires after ``CLAIM_TTL``, or at once when its process is gone from this machine: a killed
run's file is scanned again by the next. Two runs that both take an expired claim only scan
a file twice; the archive's dedup still archives each article once.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.settings import Settings
from spiders.interface import (
    CCNewsSourceError,
    SiteConfig,
    ccnews_files,
    ccnews_scanner,
    ccnews_source,
)
from storage import Archive, ArchiveError
from storage.keys import site_state_key

if TYPE_CHECKING:
    from spiders.interface import FileScan, Scanner, Source, WarcFile

CLAIM_TTL = timedelta(hours=2)
"""How long a claim on a file holds when its process cannot be checked (another machine):
far longer than a 1 GB file's scan (a minute or two at the measured rate, README)."""
DEFAULT_SLACK_DAYS = 3
"""Days after the range's end whose captures are scanned (a capture follows publication)."""
SCAN_MB_PER_SECOND = 500.0
"""Compressed input a core scans per second, for the dry run's estimate: bench/ccnews.py
measured 701 MB/s on a 1 GB file read from disk, kept records' extraction aside; a little
less is assumed for the kept records and reading over the network."""


@dataclass(frozen=True)
class FileResult:
    """What a backfill did with one CC-NEWS file."""

    file: str
    """The file's path under the source."""
    status: str
    """``ok`` or ``failed`` (scanned now), ``done`` or ``failed earlier`` (skipped: scanned
    in an earlier backfill), ``claimed`` (another run is scanning it), ``to do`` (dry run)."""
    counts: dict[str, int] = field(default_factory=dict)
    """What the scan did: see :attr:`spiders.ccnews.FileScan.counts`."""
    reason: str = ""
    """Why the scan failed, if it did."""
    size: int | None = None
    """The file's size in bytes, when asked (dry run)."""


@dataclass(frozen=True)
class CCNewsReport:
    """A whole CC-NEWS backfill."""

    site: str
    """Site name."""
    run_id: str
    """The backfill's run id (its WARC and catalog files are named after it)."""
    since: date
    """First publication day, included."""
    until: date
    """Last publication day, included."""
    source: str
    """Where CC-NEWS was read from."""
    files: list[FileResult]
    """One per file whose captures can hold the range, in time order."""

    @property
    def ok(self) -> bool:
        """False if a file scanned now failed."""
        return all(f.status != "failed" for f in self.files)

    @property
    def counts(self) -> Counter:
        """The files' counts summed."""
        total: Counter = Counter()
        for result in self.files:
            total.update(result.counts)
        return total


def file_status(archive: Archive, site: str, warc_file: WarcFile) -> str | None:
    """``ok`` or ``failed`` if the file was scanned for ``site`` in an earlier backfill."""
    state = archive.read_site_state(site, warc_file.state_name)
    return state.get("status") if state else None


def record_file(archive: Archive, site: str, warc_file: WarcFile, scan: FileScan | None,
                run_id: str, reason: str = "") -> None:
    """Record a file's scan as finished (what resuming a backfill reads)."""
    status = "ok" if scan is not None and scan.ok and not reason else "failed"
    if scan is not None and not reason and scan.errors:
        first = scan.errors[0]
        reason = f"{first['kind']} at {first['url']}: {first['reason']}" + (
            f" (and {len(scan.errors) - 1} more errors)" if len(scan.errors) > 1 else "")
    archive.write_site_state(site, warc_file.state_name, {
        "status": status, "file": warc_file.path, "reason": reason, "run_id": run_id,
        "counts": dict(scan.counts) if scan is not None else {},
        "finished_at": datetime.now(timezone.utc).isoformat(),
    })


def _claim_key(site: str, warc_file: WarcFile) -> str:
    return site_state_key(site, f"{warc_file.state_name}-claim")


def claim_file(archive: Archive, site: str, warc_file: WarcFile, run_id: str) -> bool:
    """Take the file for this run; False if a live run holds it."""
    key = _claim_key(site, warc_file)
    now = datetime.now(timezone.utc)
    claim = json.dumps({"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                        "expires": (now + CLAIM_TTL).isoformat()}).encode()
    if archive.backend.put_if_absent(key, claim, content_type="application/json"):
        return True
    try:
        held = json.loads(archive.backend.get(key))
    except (ArchiveError, ValueError):
        held = {}
    if held and not _claim_lapsed(held, now):
        return False
    archive.backend.delete(key)
    return archive.backend.put_if_absent(key, claim, content_type="application/json")


def _claim_lapsed(held: dict, now: datetime) -> bool:
    try:
        if datetime.fromisoformat(held["expires"]) <= now:
            return True
    except (KeyError, ValueError):
        return True
    if held.get("host") == socket.gethostname():
        try:
            os.kill(int(held["pid"]), 0)
        except ProcessLookupError:
            return True  # its process is gone: killed or crashed
        except (PermissionError, KeyError, ValueError):
            return False
    return False


def release_file(archive: Archive, site: str, warc_file: WarcFile) -> None:
    """Drop this run's claim on a file (after its scan is recorded)."""
    try:
        archive.backend.delete(_claim_key(site, warc_file))
    except ArchiveError:
        pass  # it lapses


@task(name="ccnews-file", cache_policy=NO_CACHE, task_run_name="{warc_file.name}")
def scan_file(scanner: Scanner, source: Source, warc_file: WarcFile, run_id: str) -> FileResult:
    """Scan one file for the site and record it as finished: a task of its own, so the
    Prefect UI shows each file's progress and outcome."""
    logger = get_run_logger()
    archive, site = scanner.archive, scanner.target.site

    def progress(scan: FileScan) -> None:
        logger.info("%s: %.0f MB read, %d records, %d kept, %d archived", warc_file.name,
                    scan.counts["bytes"] / 1e6, scan.counts["records"], scan.counts["kept"],
                    scan.counts["archived"])

    try:
        scan = scanner.scan(source, warc_file, progress)
    except CCNewsSourceError as exc:
        # Not recorded: the file was not read to its end, and is scanned again next time.
        logger.warning("%s", exc)
        release_file(archive, site, warc_file)
        return FileResult(warc_file.path, "failed", reason=str(exc))
    record_file(archive, site, warc_file, scan, run_id)
    release_file(archive, site, warc_file)
    logger.info("%s: %d records, %d kept, %d archived, %d duplicates, %d out of range, "
                "%d undated, %d errors", warc_file.name, scan.counts["records"],
                scan.counts["kept"], scan.counts["archived"], scan.counts["duplicates"],
                scan.counts["out_of_range"], scan.counts["undated"], scan.counts["errors"])
    return FileResult(warc_file.path, "ok" if scan.ok else "failed", dict(scan.counts),
                      "" if scan.ok else f"{len(scan.errors)} pages failed: "
                      f"{scan.errors[0]['kind']} at {scan.errors[0]['url']}")


def plan_files(site: SiteConfig, archive: Archive, source: Source, since: date, until: date,
               slack_days: int, reprocess: str) -> list[tuple[WarcFile, str | None, bool]]:
    """Each file that can hold the range, its earlier status, and whether it runs now."""
    from flows.backfill import should_run

    planned = []
    for warc_file in ccnews_files(source, since, until, timedelta(days=slack_days)):
        previous = file_status(archive, site.name, warc_file)
        planned.append((warc_file, previous, should_run(previous, reprocess)))
    return planned


def ccnews_backfill(site: SiteConfig, archive_url: str, since: date, until: date,
                    settings: Settings, *, run_id: str, reprocess: str = "none",
                    slack_days: int = DEFAULT_SLACK_DAYS,
                    on_file: Callable[[FileResult], None] | None = None) -> CCNewsReport:
    """Scan the CC-NEWS files that can hold ``site``'s articles from ``since`` to ``until``
    (see the module); run inside the ``backfill`` flow."""
    logger = get_run_logger()
    source = ccnews_source(settings.ccnews_url)
    archive = Archive.open(archive_url, run_id=run_id)
    planned = plan_files(site, archive, source, since, until, slack_days, reprocess)
    logger.info("CC-NEWS backfill of %s, %s to %s: %d files from %s, %d to scan", site.name,
                since, until, len(planned), source, sum(run for *_, run in planned))
    results: list[FileResult] = []
    to_scan = [(f, p) for f, p, run in planned if run]
    for warc_file, previous, run in planned:
        if not run:
            results.append(FileResult(warc_file.path, "done" if previous == "ok" else "failed earlier"))
    if to_scan:
        scanner = ccnews_scanner(archive, site, since, until, run_id=run_id,
                                 data_dir=settings.data_dir)
        try:
            for number, (warc_file, _previous) in enumerate(to_scan, start=1):
                if not claim_file(archive, site.name, warc_file, run_id):
                    result = FileResult(warc_file.path, "claimed")
                else:
                    result = scan_file.with_options(
                        task_run_name=f"{warc_file.name} ({number}/{len(to_scan)})")(
                            scanner, source, warc_file, run_id)
                results.append(result)
                if on_file is not None:
                    on_file(result)
        finally:
            scanner.close()
    order = {f.path: n for n, (f, *_rest) in enumerate(planned)}
    results.sort(key=lambda r: order[r.file])
    return CCNewsReport(site.name, run_id, since, until, str(source), results)


def scan_time_note(total_bytes: int, mb_per_second: float = SCAN_MB_PER_SECOND) -> str:
    """A dry run's estimate of the scan's time, from the measured rate per core."""
    seconds = total_bytes / (mb_per_second * 1e6)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return (f"about {_duration(seconds)} of scanning on one core "
            f"({_duration(seconds / cores)} with the {cores} cores here, less on more workers)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
