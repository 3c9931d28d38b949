"""A site's latest crawls, from its run manifests (``runs/<site>/<YYYY>/<MM>/<DD>/``), for
the web UI's overviews: the last run and its outcome, and error and duplicate rates over
the last few runs.

Every run leaves one manifest (``spiders/run.py``): when it started and finished, why it
finished (Scrapy's ``finish_reason``), its counts (``archived``, ``versions``,
``duplicates``, ``errors``...) and its errors by kind. A site crawled every 30 minutes has
48 a day, so only the date folders of the last :data:`RECENT_DAYS` days are listed, and
only the newest :data:`RECENT_RUNS` of their manifests are read: an overview costs the same
requests whatever the length of the history.

A rate is a share of the runs' outcomes, as ``newsarchive stats`` counts them: every page
a run handled ended as exactly one of archived, a new version, a duplicate or an error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from storage import Archive

RECENT_DAYS = 14
"""UTC days (up to today) whose run folders are listed."""

RECENT_RUNS = 20
"""Most run manifests read per site: the newest of those days."""

_PARALLEL_READS = 8

FINISHED = "finished"
"""The ``finish_reason`` of a crawl that ran to its end."""


@dataclass(frozen=True)
class Run:
    """One crawl of a site, as its manifest tells it."""

    run_id: str
    """The run's id."""
    started_at: datetime | None
    """When it started (UTC), or None if the manifest does not say."""
    finished_at: datetime | None
    """When it finished (UTC), or None."""
    finish_reason: str | None
    """Why it finished (``finished``, ``shutdown``, ``closespider_timeout``...), or None
    when it did not say (it died)."""
    archived: int
    """New articles archived."""
    versions: int
    """New versions of archived articles."""
    duplicates: int
    """Pages whose text was already archived."""
    errors: int
    """Errors of every kind."""
    errors_by_kind: tuple[tuple[str, int], ...]
    """Errors by kind (``http_404``, ``no_article_text``...), most frequent first."""

    @property
    def outcomes(self) -> int:
        """Pages the run handled: archived, versions, duplicates and errors."""
        return self.archived + self.versions + self.duplicates + self.errors

    @property
    def ok(self) -> bool:
        """Whether it ran to its end without an error."""
        return self.finish_reason == FINISHED and self.errors == 0

    @property
    def outcome(self) -> str:
        """In a few words: ``finished``, ``finished with errors``, or why it stopped."""
        if self.finish_reason is None:
            return "did not finish"
        if self.finish_reason == FINISHED:
            return "finished with errors" if self.errors else "finished"
        return f"stopped: {self.finish_reason}"


@dataclass(frozen=True)
class RecentRuns:
    """A site's latest runs, newest first."""

    site: str
    """The site."""
    runs: tuple[Run, ...]
    """The runs read (at most :data:`RECENT_RUNS`), newest first."""
    since: date
    """The first UTC day whose runs were listed."""
    until: date
    """The last one (today, when read)."""
    more: bool
    """Whether those days hold more runs than were read."""

    @property
    def last(self) -> Run | None:
        """The newest run, or None."""
        return self.runs[0] if self.runs else None

    @property
    def outcomes(self) -> int:
        """Pages the runs handled."""
        return sum(r.outcomes for r in self.runs)

    @property
    def errors(self) -> int:
        """Errors of the runs."""
        return sum(r.errors for r in self.runs)

    @property
    def duplicates(self) -> int:
        """Duplicates of the runs."""
        return sum(r.duplicates for r in self.runs)

    @property
    def error_rate(self) -> float | None:
        """Errors as a share (0-1) of the runs' outcomes, or None without any."""
        return self.errors / self.outcomes if self.outcomes else None

    @property
    def duplicate_rate(self) -> float | None:
        """Duplicates as a share (0-1) of the runs' outcomes, or None without any."""
        return self.duplicates / self.outcomes if self.outcomes else None


def recent_runs(archive: Archive, site: str, *, runs: int = RECENT_RUNS,
                days: int = RECENT_DAYS, today: date | None = None) -> RecentRuns:
    """The newest ``runs`` runs of ``site`` started within the ``days`` UTC days up to
    ``today``: those days' folders listed, the newest manifests read."""
    until = today or datetime.now(timezone.utc).date()
    since = until - timedelta(days=days - 1)
    # Keys sort by day folder, then by run id, which starts with the run's start time.
    keys = sorted(archive.run_manifest_keys(site, since, until))
    newest = keys[-runs:] if runs else []
    with ThreadPoolExecutor(max(1, min(_PARALLEL_READS, len(newest))),
                            thread_name_prefix="browse-runs") as pool:
        read = [run for run in pool.map(lambda key: _read(archive, key), newest) if run]
    read.sort(key=lambda r: (r.started_at or datetime.min.replace(tzinfo=timezone.utc),
                             r.run_id), reverse=True)
    return RecentRuns(site=site, runs=tuple(read), since=since, until=until,
                      more=len(keys) > len(newest))


def _read(archive: Archive, key: str) -> Run | None:
    """The run whose manifest is at ``key``; None when it is gone or not a manifest."""
    manifest = archive.read_run_manifest(key)
    if manifest is None:
        return None
    counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
    kinds = manifest.get("errors_by_kind")
    kinds = {k: _count(v) for k, v in kinds.items()} if isinstance(kinds, dict) else {}
    reason = manifest.get("finish_reason")
    return Run(run_id=str(manifest.get("run_id") or key.rsplit("/", 1)[-1][:-len(".json")]),
               started_at=_time(manifest.get("started_at")),
               finished_at=_time(manifest.get("finished_at")),
               finish_reason=reason if isinstance(reason, str) else None,
               archived=_count(counts.get("archived")),
               versions=_count(counts.get("versions")),
               duplicates=_count(counts.get("duplicates")),
               errors=_count(counts.get("errors")),
               errors_by_kind=tuple(sorted(((k, n) for k, n in kinds.items() if n),
                                           key=lambda kn: (-kn[1], kn[0]))))


def _time(value) -> datetime | None:
    """An ISO time of a manifest, in UTC; None when missing or not a time."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(
        timezone.utc)


def _count(value) -> int:
    """A count of a manifest: a non-negative int, else 0 (a manifest is data, not trusted)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
