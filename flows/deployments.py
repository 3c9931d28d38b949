"""Deployments: one per configured site (``crawl/crawl-<site>``, on the site's cron
``schedule``) plus ``backfill/backfill``, started by hand with ``site``, ``since`` and
``until``.

``newsarchive serve`` runs them in its own process until stopped; ``newsarchive deploy
--pool NAME`` registers the same deployments on a Prefect work pool, so that ``prefect
worker start --pool NAME`` processes on any number of machines share the runs.

The deployments name the flows by module path (``flows.crawl.crawl``), so a worker needs
this package installed, not a copy of any file; and they carry the sites file's path and
the archive URL as parameters: the sites file is read when a run starts, so a changed
site setting takes effect on the next run (a changed schedule on the next ``serve`` or
``deploy``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from flows.backfill import backfill
from flows.crawl import crawl
from spiders.config import Config

logger = logging.getLogger(__name__)

BACKFILL_DEPLOYMENT = "backfill"


def crawl_deployment_name(site: str) -> str:
    """The name of a site's crawl deployment (its full name is ``crawl/<this>``)."""
    return f"crawl-{site}"


def build_deployments(config: Config, config_path: Path, archive_url: str) -> list[RunnerDeployment]:
    """A crawl deployment per site of ``config``, on its schedule, and the backfill one."""
    shared = {"config": str(config_path.resolve()), "archive": _absolute(archive_url)}
    deployments = [
        crawl.to_deployment(
            name=crawl_deployment_name(site.name),
            cron=site.schedule,
            parameters={"sites": [site.name], **shared},
            description=f"Crawl {site.name} ({', '.join(site.allowed_domains)}) on its schedule.",
            tags=["newsarchive", f"site:{site.name}"],
            # A crawl still running when the next one is due: skip the new one rather than
            # queue crawls behind a slow site.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for site in config.sites
    ]
    deployments.append(backfill.to_deployment(
        name=BACKFILL_DEPLOYMENT,
        parameters=shared,
        description="Archive what a site published in a date range: run with site, since "
                    "and until (YYYY-MM-DD); reprocess = none | failed | all; dry_run.",
        tags=["newsarchive"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    ))
    return deployments


def _absolute(archive_url: str) -> str:
    # A local archive directory must mean the same place to the flow-run processes, whose
    # working directory is not necessarily this one.
    return archive_url if "://" in archive_url else str(Path(archive_url).resolve())


def serve(deployments: list[RunnerDeployment], limit: int | None = None) -> None:
    """Register ``deployments`` and run their flow runs in this process until interrupted;
    their schedules are paused again on the way out."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, limit=limit, print_starting_message=False)


def deploy(deployments: list[RunnerDeployment], pool: str) -> list[str]:
    """Register ``deployments`` on the work pool ``pool`` (a ``process`` pool is created
    if there is none by that name); returns the deployments' full names."""
    from prefect import deploy as prefect_deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            logger.info("creating work pool %r (type process)", pool)
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    prefect_deploy(*deployments, work_pool_name=pool, build=False, push=False,
                   print_next_steps_message=False)
    return [f"{d.flow_name}/{d.name}" for d in deployments]
