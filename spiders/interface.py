"""What the rest of newsarchive may use of ``spiders``: the one module ``flows`` imports from
it (``tests/test_architecture.py`` checks that it is the only one, and that it loads neither
Scrapy nor Twisted).

Everything here is a contract between the orchestration and the crawls:

- the sites file, which both read (:class:`Config`, :class:`SiteConfig`, :func:`load_config`);
- the crawl subprocess's command line (:func:`crawl_command`: ``python -m spiders.run``,
  one process per crawl, since Twisted's reactor cannot restart) and the stats file it
  writes, by which a crawl is judged (:func:`crawl_counts`);
- reprocessing (:func:`reprocess`), which fetches nothing and so runs in the caller's
  process.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spiders.config import Config, ConfigError, SiteConfig, load_config
from spiders.stats import crawl_counts

if TYPE_CHECKING:
    from spiders.reprocess import ReprocessReport

__all__ = ["Config", "ConfigError", "SiteConfig", "crawl_command", "crawl_counts",
           "load_config", "reprocess"]


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


def reprocess(*args, **kwargs) -> ReprocessReport:
    """:func:`spiders.reprocess.reprocess`, imported when called: the extractor is heavy,
    and the ``newsarchive`` command, which imports this module, rarely needs it."""
    from spiders.reprocess import reprocess as run

    return run(*args, **kwargs)
