"""Starting a site's crawl subprocess, without Prefect.

``newsarchive crawl`` starts its first sites' crawls the moment the configuration is
checked, before it imports Prefect and before Prefect's temporary server is up: those take
about ten seconds, which a crawl of a few thousand pages would otherwise spend waiting. The
crawl flow's task for such a site then *adopts* the running subprocess instead of starting
another (:func:`claim`); everything after that (waiting, the stats file, the retry of a
crashed crawl) is as for a crawl the task started itself. The crawls started ahead are the
ones the flow would start first, no more than ``NEWSARCHIVE_MAX_PARALLEL_SITES``, so the
limit holds. Kept free of Prefect imports, so that the command can use it before them.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from flows.settings import Settings
from spiders.interface import SiteConfig, crawl_command

logger = logging.getLogger(__name__)

# How long a crawl that was started ahead and never adopted (Prefect did not start) has to
# finish what it holds after SIGTERM (Scrapy's graceful stop: pages in flight are stored or
# spooled) before it is killed.
_STOP_GRACE_SECONDS = 60

# The crawls started ahead, by (run id, site), until their task adopts them. Module state, on
# purpose: the flow runs in this very process (``newsarchive crawl`` calls it), and Prefect's
# parameters cannot carry a process. The gain it buys was measured (README, Throughput:
# about ten seconds of a short crawl's wall time); its cost is this one locked table, which
# only start_ahead, claim and stop_unclaimed touch.
_lock = threading.Lock()
_started: dict[tuple[str, str], subprocess.Popen] = {}


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def spider_command(site: SiteConfig, archive_url: str, settings: Settings, *args: str) -> list[str]:
    """The command line of a crawl subprocess for ``site``, with this process's settings."""
    return crawl_command(site, archive_url, user_agent=settings.user_agent,
                         log_level=settings.log_level, options=args)


def stats_file_of(site: SiteConfig, run_id: str, settings: Settings) -> Path:
    """Where the crawl of ``site`` in run ``run_id`` writes its stats."""
    return (settings.data_dir / "crawls" / f"{run_id}-{site.name}.json").resolve()


def site_crawl_command(site: SiteConfig, archive_url: str, run_id: str, settings: Settings,
                       *args: str) -> list[str]:
    """The command line of ``site``'s crawl in run ``run_id`` (``args``: more options)."""
    return spider_command(
        site, archive_url, settings, "--run-id", run_id,
        "--stats-file", str(stats_file_of(site, run_id, settings)),
        "--data-dir", str(settings.data_dir.resolve()), *args)


def start_ahead(sites: list[SiteConfig], archive_url: str, run_id: str,
                settings: Settings, *args: str) -> list[str]:
    """Start the crawls of the first sites the crawl flow will run (at most
    ``settings.max_parallel_sites``); returns their names. Each is adopted by the flow's
    task for its site (:func:`claim`); :func:`stop_unclaimed` ends those never adopted.
    ``args``: more options, as the flow's task would give them."""
    names = []
    for site in sites[:max(0, settings.max_parallel_sites)]:
        stats_file_of(site, run_id, settings).unlink(missing_ok=True)
        process = subprocess.Popen(site_crawl_command(site, archive_url, run_id, settings, *args))
        with _lock:
            _started[(run_id, site.name)] = process
        names.append(site.name)
    return names


def claim(run_id: str, site: str) -> subprocess.Popen | None:
    """The crawl of ``site`` in run ``run_id`` started ahead, if there is one; each is
    handed out once (a retry starts a fresh crawl)."""
    with _lock:
        return _started.pop((run_id, site), None)


def stop_unclaimed(run_id: str) -> int:
    """Stop the crawls of run ``run_id`` started ahead that no task adopted (Prefect did
    not start): gracefully, so what they fetched is stored or kept. Returns how many."""
    with _lock:
        mine = [key for key in _started if key[0] == run_id]
        processes = [_started.pop(key) for key in mine]
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("crawl %s did not stop in %d s: killed", process.pid,
                           _STOP_GRACE_SECONDS)
            process.kill()
            process.wait()
    return len(processes)
