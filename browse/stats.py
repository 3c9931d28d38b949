"""What the crawls did, from the run manifests under ``runs/<site>/<YYYY>/<MM>/<DD>/``:
duplicate and error rates per site.

Each run leaves one manifest, so a site's whole history is 17,520 of them a year at a
30-minute schedule: ``stats`` adds up the runs of a window of days (:func:`runs_window`),
each site's listed by its date folders (:meth:`storage.Archive.iter_run_manifests`), so
its requests grow with the window asked for, never with the archive's history.

A rate is a share of the crawls' outcomes: every page a crawl handled ended as exactly one
of archived (a new article), a new version, a duplicate (same text as an archived article,
at its own URL or another) or an error (HTTP errors, pages without article text, storage
failures, bad sitemaps or feeds...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from storage import Archive


@dataclass(frozen=True)
class RunTotals:
    """The run manifests of one site, added up."""

    site: str
    """The site."""
    runs: int = 0
    """Run manifests read."""
    archived: int = 0
    """New articles archived."""
    versions: int = 0
    """New versions of archived articles."""
    duplicates: int = 0
    """Pages whose text was already archived."""
    errors: int = 0
    """Errors of every kind."""
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    """Errors by kind (``http_404``, ``no_article_text``, ...)."""

    @property
    def outcomes(self) -> int:
        """Pages the runs handled: archived, versions, duplicates and errors."""
        return self.archived + self.versions + self.duplicates + self.errors


def runs_window(days: int, since: date | None = None, until: date | None = None,
                today: date | None = None) -> tuple[date, date]:
    """The UTC days whose runs ``stats`` adds up: [since, until] when both are given; else
    the ``days`` days up to ``until`` (by default today), or the days from ``since`` to today.
    Always a closed range, so that the manifests are listed by their date folders."""
    today = today or datetime.now(timezone.utc).date()
    if since is not None and until is not None:
        return since, until
    if since is not None:
        return since, today
    end = until or today
    return end - timedelta(days=days - 1), end


def site_run_totals(archive: Archive, sites: Iterable[str], since: date,
                    until: date) -> dict[str, RunTotals]:
    """Per site of ``sites``, its run manifests of runs started within [since, until],
    added up: one site and one closed range at a time, so only their date folders are
    listed and only their manifests read."""
    totals: dict[str, RunTotals] = {}
    for site in sorted(set(sites)):
        totals.update(run_totals(archive, site=site, since=since, until=until))
    return totals


def run_totals(archive: Archive, site: str | None = None, since: date | None = None,
               until: date | None = None) -> dict[str, RunTotals]:
    """Per site, the run manifests of runs started within [since, until], added up."""
    totals: dict[str, dict] = {}
    for manifest in archive.iter_run_manifests(site, since, until):
        if not isinstance(manifest.get("site"), str):
            continue
        counts = manifest.get("counts") or {}
        entry = totals.setdefault(manifest["site"], {
            "runs": 0, "archived": 0, "versions": 0, "duplicates": 0, "errors": 0,
            "errors_by_kind": {}})
        entry["runs"] += 1
        for name in ("archived", "versions", "duplicates", "errors"):
            entry[name] += _count(counts.get(name))
        for kind, number in (manifest.get("errors_by_kind") or {}).items():
            by_kind = entry["errors_by_kind"]
            by_kind[kind] = by_kind.get(kind, 0) + _count(number)
    return {name: RunTotals(site=name, **entry) for name, entry in sorted(totals.items())}


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
