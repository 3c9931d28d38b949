"""Reprocess: extract text and metadata again from the archived raw pages, with the current
extractor, without fetching anything.

Each record whose extraction changes gets a new version naming the extractor that made it
(see :meth:`storage.Archive.add_extraction`); its raw page stays where it is. A page takes
the path a crawled page takes (:mod:`spiders.page`): the same extraction and soft-block check
(:func:`spiders.extraction_pool.extract_page`), and the site's learnt boilerplate stripped
(not learnt from: a reprocess sees no new pages). Updated records go to the catalog as a run
of their own. No Scrapy: nothing is fetched.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path

from normalize.boilerplate import SiteBoilerplate
from spiders.extraction_pool import extract_page
from spiders.page import BOILERPLATE_STATE, EXTRACTOR, Problem, article_fields, settle
from storage import Archive, ArchiveError, Record, StoreOutcome
from storage.catalog import CatalogWriter

logger = logging.getLogger(__name__)


@dataclass
class ReprocessReport:
    """What a reprocess run did."""

    run_id: str
    """The run's id (its catalog files are named after it)."""
    seen: int = 0
    """Records read."""
    rewritten: int = 0
    """Records that got a new version."""
    unchanged: int = 0
    """Records whose extraction came out the same."""
    errors: list[dict] = field(default_factory=list)
    """Records that could not be reprocessed: id, url, reason."""


def reprocess(archive: Archive, *, site: str | None = None, since: date | None = None,
              until: date | None = None, data_dir: Path = Path(".newsarchive"),
              progress: Callable[[ReprocessReport], None] | None = None) -> ReprocessReport:
    """Re-extract every record (of ``site``, dated within [since, until]); see the module."""
    run_id = f"reprocess-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    report = ReprocessReport(run_id=run_id)
    boilerplate: dict[str, SiteBoilerplate] = {}
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix="reprocess-") as pending:
        catalog = CatalogWriter(archive.backend, Path(pending), run_id)
        for record in archive.iter_records(site=site, since=since, until=until):
            report.seen += 1
            try:
                if record.site not in boilerplate:
                    state = archive.read_site_state(record.site, BOILERPLATE_STATE)
                    boilerplate[record.site] = (SiteBoilerplate.from_json(state) if state
                                                else SiteBoilerplate())
                outcome, stored, text = _reprocess_one(archive, record, boilerplate[record.site])
            except ArchiveError as exc:
                report.errors.append({"id": record.id, "url": record.url, "reason": str(exc)})
                continue
            if isinstance(outcome, Problem):
                report.errors.append({"id": record.id, "url": record.url,
                                      "reason": outcome.reason})
            elif outcome is StoreOutcome.VERSION:
                report.rewritten += 1
                catalog.add(stored, text)
            else:
                report.unchanged += 1
            if progress is not None and report.seen % 100 == 0:
                progress(report)
        catalog.close()
        archive.flush()
    return report


def _reprocess_one(archive: Archive, record: Record, boilerplate: SiteBoilerplate):
    raw = archive.read_raw(record)
    # The charset the crawl decoded with, when the record says; else the extractor sniffs.
    extraction = extract_page(raw, record.charset if _known(record.charset) else None,
                              record.url, record.http_status)
    settled = settle(extraction, boilerplate, learn=False)
    if isinstance(settled, Problem):
        return settled, record, ""
    article, text = settled
    updated = replace(record, **article_fields(article), extractor=EXTRACTOR,
                      charset=extraction.charset)
    result = archive.add_extraction(record, updated, text)
    return result.outcome, result.record, text


def _known(charset: str | None) -> bool:
    if not charset:
        return False
    try:
        "".encode(charset)
    except LookupError:
        return False
    return True
