"""A site at a glance, for the web UI's sites page and a site's page: its articles per day
and extraction health (from the catalog, see :func:`browse.catalog.read_day_counts`), its
latest crawls (from its run manifests, see :mod:`browse.runs`) and a sparkline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from browse.catalog import DayCount
from browse.charts import Sparkline, sparkline
from browse.runs import RecentRuns


@dataclass(frozen=True)
class SiteOverview:
    """One site's figures."""

    site: str
    """The site."""
    articles: int
    """Articles archived (each counted once, by its latest row)."""
    days: int
    """Archive dates with articles."""
    first: date
    """The first of them."""
    last: date
    """The last of them."""
    with_date: int
    """Articles with a publication date."""
    with_author: int
    """Articles with at least one author."""
    with_title: int
    """Articles with a title."""
    runs: RecentRuns
    """Its latest crawls."""
    spark: Sparkline
    """Articles per day over the last days."""

    def share(self, part: int) -> float:
        """``part`` as a share (0-1) of the articles."""
        return part / self.articles if self.articles else 0.0


def site_overview(site: str, days: Sequence[DayCount], runs: RecentRuns,
                  spark_until: date) -> SiteOverview:
    """The overview of ``site`` from its per-day counts (oldest first, not empty) and its
    latest runs, with a sparkline of the days up to ``spark_until``."""
    return SiteOverview(
        site=site,
        articles=sum(d.articles for d in days),
        days=len(days),
        first=days[0].day,
        last=days[-1].day,
        with_date=sum(d.with_date for d in days),
        with_author=sum(d.with_author for d in days),
        with_title=sum(d.with_title for d in days),
        runs=runs,
        spark=sparkline(days, spark_until))
