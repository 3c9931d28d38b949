"""Entry point of one crawl subprocess: ``python -m spiders.run --site-json ... --archive ...``.

Each crawl gets its own process because Twisted's reactor cannot be restarted. The outcome
is reported through a JSON stats file, not the exit code, so the caller can tell a crawl
that finished with page errors from one that crashed.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from scrapy.crawler import CrawlerProcess

from spiders.config import SiteConfig
from spiders.news import NewsSpider
from spiders.settings import crawl_settings
from spiders.stats import ERROR_LIST_KEY, crawl_counts, errors_by_kind
from spiders.workspace import Workspace, workspace_root
from storage import Archive, ArchiveError

logger = logging.getLogger(__name__)


def _jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


def run_crawl(site: SiteConfig, *, archive_url: str, run_id: str, stats_file: Path,
              user_agent: str, log_level: str = "INFO", data_dir: Path = Path(".newsarchive")) -> dict:
    """Crawl ``site`` once (blocking; once per process), store its run manifest in the
    archive and write its stats file."""
    # trafilatura warns about every page it discards; our stats record those outcomes.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    settings = crawl_settings(site, archive_url=archive_url, run_id=run_id,
                              user_agent=user_agent, log_level=log_level, data_dir=str(data_dir))
    started = datetime.now(timezone.utc)
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(NewsSpider)
    process.crawl(crawler, site=site, archive_url=archive_url)
    process.start()
    stats = dict(crawler.stats.get_stats())
    errors = stats.pop(ERROR_LIST_KEY, [])
    finished = datetime.now(timezone.utc)
    workspace = Workspace(workspace_root(data_dir, site.name, run_id))
    report = {
        "site": site.name,
        "run_id": run_id,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "finish_reason": stats.get("finish_reason"),
        "workspace": str(workspace.root),
        "stats": stats,
        "errors": errors,
    }
    report["manifest_key"] = _store_manifest(archive_url, workspace, {
        "run_id": run_id,
        "site": site.name,
        "parameters": site.model_dump(mode="json"),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "finish_reason": stats.get("finish_reason"),
        "counts": crawl_counts(stats),
        "errors_by_kind": errors_by_kind(stats),
        "errors": errors,
        "errors_truncated": sum(errors_by_kind(stats).values()) > len(errors),
    })
    workspace.remove_if_done()
    stats_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = stats_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, default=_jsonable, indent=1), encoding="utf-8")
    tmp.replace(stats_file)
    return report


def _store_manifest(archive_url: str, workspace: Workspace, manifest: dict) -> str | None:
    """Put the run manifest in the archive; if it is unreachable, keep it in the workspace
    for the next crawl. Returns the manifest's key, or None when kept."""
    try:
        return Archive.open(archive_url).put_run_manifest(manifest)
    except ArchiveError as exc:
        logger.warning("archive unreachable, run manifest kept in %s: %s", workspace.root, exc)
        workspace.root.mkdir(parents=True, exist_ok=True)
        workspace.keep_manifest(manifest)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiders.run", description=__doc__)
    parser.add_argument("--site-json", required=True, help="the site's config as JSON")
    parser.add_argument("--archive", required=True, help="archive URL")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--stats-file", required=True, type=Path)
    parser.add_argument("--user-agent", required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--data-dir", type=Path, default=Path(".newsarchive"),
                        help="where the run keeps what the archive has not taken yet")
    args = parser.parse_args(argv)
    site = SiteConfig.model_validate_json(args.site_json)
    run_crawl(site, archive_url=args.archive, run_id=args.run_id, stats_file=args.stats_file,
              user_agent=args.user_agent, log_level=args.log_level, data_dir=args.data_dir)
    return 0


if __name__ == "__main__":
    # A native crash (one was seen once: "double free or corruption") then leaves a Python
    # traceback on stderr for the flow's log.
    faulthandler.enable()
    code = main()
    # Everything the crawl did is on disk or in the archive by now. Leave without the
    # interpreter's teardown, where Twisted's threads and the destructors of several native
    # libraries (lxml, numpy, pyarrow, OpenSSL) meet for nothing but risk.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

