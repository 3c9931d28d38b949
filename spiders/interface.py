"""What the rest of newsarchive may use of ``spiders``: the one module ``flows`` imports from
it (``tests/test_architecture.py`` checks that it is the only one, and that it loads neither
Scrapy nor Twisted).

Everything here is a contract between the orchestration and the crawls:

- the sites file, which both read (:class:`Config`, :class:`SiteConfig`, :func:`load_config`);
- the crawl subprocess's command line (:func:`crawl_command`: ``python -m spiders.run``,
  one process per crawl, since Twisted's reactor cannot restart), the stats file it
  writes, by which a crawl is judged (:func:`crawl_counts`), and its log file beside it
  (:func:`crawl_log_file`);
- reprocessing (:func:`reprocess`), which fetches nothing and so runs in the caller's
  process;
- CC-NEWS backfills (:func:`ccnews_source`, :func:`ccnews_files`, :func:`ccnews_scanner`),
  which read Common Crawl News instead of the site and so also run in the caller's process
  (see :mod:`spiders.ccnews`);
- the scrubbing of credentials from log records (:func:`scrub_secrets_from_logs`), which
  the command's own logs need as much as the crawls'.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from spiders.config import Config, ConfigError, SiteConfig, load_config
from spiders.redact import install as scrub_secrets_from_logs
from spiders.stats import crawl_counts

if TYPE_CHECKING:
    from datetime import date, timedelta

    # FileScan too: flows annotates with these names, imported from here (the one module
    # of spiders it may import).
    from spiders.ccnews import FileScan, Scanner, Source, WarcFile  # noqa: F401
    from spiders.reprocess import ReprocessReport
    from storage import Archive

__all__ = ["CCNewsSourceError", "Config", "ConfigError", "SiteConfig", "ccnews_files",
           "ccnews_scanner", "ccnews_source", "crawl_command", "crawl_counts", "crawl_log_file",
           "load_config", "reprocess", "scrub_secrets_from_logs"]


class CCNewsSourceError(RuntimeError):
    """The CC-NEWS source cannot be read (one line: what, where)."""


def crawl_command(site: SiteConfig, archive_url: str, *, user_agent: str, log_level: str,
                  options: Sequence[str] = ()) -> list[str]:
    """The command line of a crawl subprocess for ``site`` (``options``: more of
    ``spiders.run``'s options: ``--run-id``, ``--stats-file``, ``--data-dir``,
    ``--entries-file``, ``--plan-file``...)."""
    return [
        sys.executable, "-m", "spiders.run",
        "--site-json", site.model_dump_json(),
        "--archive", archive_url,
        "--user-agent", user_agent,
        "--log-level", log_level,
        *options,
    ]


def crawl_log_file(stats_file: Path) -> Path:
    """Where the crawl whose stats file is ``stats_file`` writes its full log (Scrapy's,
    which its console leaves out: ``spiders.console``): beside it,
    ``<data_dir>/crawls/<run_id>-<site>.log``."""
    return stats_file.with_suffix(".log")


def reprocess(*args, **kwargs) -> ReprocessReport:
    """:func:`spiders.reprocess.reprocess`, imported when called: the extractor is heavy,
    and the ``newsarchive`` command, which imports this module, rarely needs it."""
    from spiders.reprocess import reprocess as run

    return run(*args, **kwargs)


def ccnews_source(url: str) -> Source:
    """Where CC-NEWS is read from (:class:`spiders.ccnews.Source`): an ``http(s)://`` base,
    ``s3://bucket/prefix`` or a local directory. Imported when called, as :func:`reprocess`."""
    from spiders.ccnews import Source

    return Source(url)


def ccnews_files(source: Source, since: date, until: date, slack: timedelta) -> list[WarcFile]:
    """:func:`spiders.ccnews.files_for`: the files whose captures can hold the range."""
    from spiders.ccnews import files_for

    return files_for(source, since, until, slack)


def ccnews_scanner(archive: Archive, site: SiteConfig, since: date, until: date, *,
                   run_id: str, data_dir: Path) -> Scanner:
    """A :class:`spiders.ccnews.Scanner` of ``site``'s articles published from ``since`` to
    ``until`` (its ``close()`` uploads the run's WARC and catalog files)."""
    from spiders.ccnews import Scanner

    return Scanner.open(archive, site, since, until, run_id=run_id, data_dir=data_dir)
