"""Deployments: one per configured site (``crawl/crawl-<site>``, on the site's cron
``schedule``), ``backfill/backfill``, started by hand with ``site``, ``since`` and
``until``, and ``compact/compact``, the catalog's daily compaction.

``newsarchive serve`` runs them in its own process until stopped; ``newsarchive deploy
--pool NAME`` registers the same deployments on a Prefect work pool, so that ``prefect
worker start --pool NAME`` processes on any number of machines share the runs.

The deployments name the flows by module path (``flows.crawl.crawl``), so a worker needs
this package installed, not a copy of any file; and they carry the sites file's path and
the archive URL as parameters: the sites file is read when a run starts, so a changed
site setting takes effect on the next run (a changed schedule on the next ``serve`` or
``deploy``).

Whatever stops them, runs end in a true final state and free their site's concurrency
slot: ``serve`` stops in order on Ctrl-C or SIGTERM (:func:`serve`) and, started again,
ends what a killed one left behind; a worker's runs send heartbeats, and Prefect marks
Crashed those whose heartbeats stop (:mod:`flows.reclaim`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Self

import anyio
import anyio.abc
import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runner import Runner
from prefect.settings import PREFECT_API_URL

from flows import reclaim
from flows.backfill import backfill
from flows.compaction import COMPACT_SCHEDULE, compact_catalog
from flows.crawl import crawl
from flows.shutdown import Shutdown
from spiders.interface import Config

logger = logging.getLogger(__name__)


class PrefectUnavailable(RuntimeError):
    """The Prefect API could not be reached, or failed on its side."""


BACKFILL_DEPLOYMENT = "backfill"
COMPACT_DEPLOYMENT = "compact"


def crawl_deployment_name(site: str) -> str:
    """The name of a site's crawl deployment (its full name is ``crawl/<this>``)."""
    return f"crawl-{site}"


def build_deployments(config: Config, config_path: Path, archive_url: str) -> list[RunnerDeployment]:
    """A crawl deployment per site of ``config``, on its schedule, the backfill one, and
    the catalog's compaction on :data:`flows.compaction.COMPACT_SCHEDULE`."""
    shared = {"config": str(config_path.resolve()), "archive": _absolute(archive_url)}
    deployments = [
        crawl.to_deployment(
            name=crawl_deployment_name(site.name),
            cron=site.schedule,
            parameters={"sites": [site.name], **shared},
            description=f"Crawl {site.name} ({', '.join(site.allowed_domains)}) on its schedule.",
            tags=[reclaim.TAG, f"site:{site.name}"],
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
                    "and until (YYYY-MM-DD); reprocess = none | failed | all; dry_run; "
                    "source = site | ccnews (Common Crawl News: run it several times with "
                    "the same parameters and the runs share the files); slack_days.",
        tags=[reclaim.TAG],
        entrypoint_type=EntrypointType.MODULE_PATH,
    ))
    deployments.append(compact_catalog.to_deployment(
        name=COMPACT_DEPLOYMENT,
        cron=COMPACT_SCHEDULE,
        parameters={"archive": shared["archive"]},
        description="Merge each closed day's catalog files into one per site and day, with "
                    "each article's latest row (daily; as `newsarchive compact`).",
        tags=[reclaim.TAG],
        # Two at once would be safe, and the second one wasted work.
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        entrypoint_type=EntrypointType.MODULE_PATH,
    ))
    return deployments


def _absolute(archive_url: str) -> str:
    # A local archive directory must mean the same place to the flow-run processes, whose
    # working directory is not necessarily this one.
    return archive_url if "://" in archive_url else str(Path(archive_url).resolve())


def serve(deployments: list[RunnerDeployment], shutdown: Shutdown,
          say: Callable[[str], None], limit: int | None = None) -> None:
    """Register ``deployments`` and run their flow runs in this process until
    ``shutdown`` is requested, then stop in order (see :class:`_Runner`): take no more
    runs; let those in progress finish for ``shutdown.grace`` seconds (none when
    ``shutdown.now``); stop the rest, whose crawls store what they fetched and whose runs
    end Crashed; pause the schedules. Runs that a killed ``serve`` left unfinished are
    ended first, and any still unfinished at the end last (:mod:`flows.reclaim`); ``say``
    prints a line about each, and about serving and stopping. PrefectUnavailable if the
    Prefect API cannot be reached."""
    runner = _Runner(shutdown, limit=limit, heartbeat_seconds=reclaim.HEARTBEAT_SECONDS,
                     pause_on_shutdown=True)
    with _prefect_errors():
        ids = {runner.add_deployment(d): d.name for d in deployments}
        with get_client(sync_client=True) as client:
            reclaim.ensure_zombie_automation(client)
            _report(reclaim.reclaim_runs(client, ids, _KILLED), _KILLED, say)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    say(f"serving {names} on {PREFECT_API_URL.value()}; Ctrl-C stops")
    # In a thread of its own, Prefect's runner leaves the signals to us: in the main
    # thread it would take SIGTERM, and asyncio Ctrl-C, to cancel every run at once. The
    # thread runs in this context, which holds Prefect's settings (the API URL).
    with ThreadPoolExecutor(1, thread_name_prefix="prefect-runner") as thread:
        running = thread.submit(contextvars.copy_context().run, asyncio.run, runner.start())
        while not running.done() and not shutdown.requested.wait(0.5):
            pass
        while not running.done() and not runner.started:  # a stop during its start
            time.sleep(0.1)
        if not running.done():
            _wind_down(runner, shutdown, say)
        failure = running.exception()
    if failure is not None:
        with _prefect_errors():
            raise failure
    with _prefect_errors(), get_client(sync_client=True) as client:
        _report(reclaim.reclaim_runs(client, ids, _STOPPED), _STOPPED, say)


def deploy(deployments: list[RunnerDeployment], pool: str) -> list[str]:
    """Register ``deployments`` on the work pool ``pool`` (a ``process`` pool is created
    if there is none by that name), their runs sending heartbeats, and the automation that
    marks Crashed a run whose heartbeats stop (:mod:`flows.reclaim`); returns the
    deployments' full names. PrefectUnavailable if Prefect cannot be reached."""
    from prefect import deploy as prefect_deploy
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    for deployment in deployments:
        # A worker's flow-run processes read their settings from the environment.
        deployment.job_variables = {**deployment.job_variables, "env": {
            **deployment.job_variables.get("env", {}),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(reclaim.HEARTBEAT_SECONDS)}}
    with _prefect_errors():
        with get_client(sync_client=True) as client:
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                logger.info("creating work pool %r (type process)", pool)
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            reclaim.ensure_zombie_automation(client)
        prefect_deploy(*deployments, work_pool_name=pool, build=False, push=False,
                       print_next_steps_message=False)
    return [f"{d.flow_name}/{d.name}" for d in deployments]


class _Runner(Runner):
    """Prefect's runner, with each flow run's process in a process group of its own, as
    Prefect's process worker has it, its pid recorded on the run, and a stop in order.

    The process group: a run is stopped by signalling its group, which reaches the crawl
    subprocess too (Scrapy then stops fetching and stores the pages in flight); stopping
    only the run's process would leave its crawl running with nobody to report it. And a
    Ctrl-C in a terminal then reaches ``serve`` alone, which stops the runs in order. The
    pid: a ``serve`` started after this one was killed finds and stops the runs' process
    groups by it (:func:`flows.reclaim.reclaim_runs`).

    Written against Prefect 3.9's runner (pinned in the lock files), which has no option
    for any of these: this class, and no other code of ours, reaches into its private
    parts (the poller's starter resolver and stop flag, the process manager, and the
    engine starter's own process-group option, which Prefect's process worker sets).
    """

    def __init__(self, shutdown: Shutdown, **options) -> None:
        super().__init__(**options)
        self._shutdown = shutdown

    async def __aenter__(self) -> Self:
        from prefect.runner._starter_engine import EngineCommandStarter

        await super().__aenter__()
        poller = self._scheduled_run_poller
        # Asked to stop while starting: take no run at all (wind_down follows).
        poller.stopping = self._shutdown.requested.is_set()
        resolve = poller._resolve_starter

        def resolve_in_own_group(flow_run):
            starter = resolve(flow_run)
            if isinstance(starter, EngineCommandStarter):
                starter._isolate_process_group = True
            return _PidRecordingStarter(starter, self._client)

        poller._resolve_starter = resolve_in_own_group
        return self

    async def in_progress(self) -> int:
        """How many flow runs have a process running."""
        return self._process_manager.flow_run_count()

    async def wind_down(self, shutdown: Shutdown) -> int:
        """Take no more runs, let those in progress finish for ``shutdown.grace`` seconds
        (or until ``shutdown.now``), stop the rest (their process groups get SIGTERM, and
        SIGKILL :data:`flows.reclaim.STOP_GRACE_SECONDS` later), then stop the runner;
        returns how many runs had to be stopped."""
        self._scheduled_run_poller.stopping = True
        processes = self._process_manager
        deadline = time.monotonic() + shutdown.grace
        while (processes.flow_run_count() and not shutdown.now.is_set()
               and time.monotonic() < deadline):
            await anyio.sleep(0.25)
        stopped: set = set()
        # Again while any is left: a run the runner was starting meanwhile has a process now.
        deadline = time.monotonic() + 3 * reclaim.STOP_GRACE_SECONDS
        while processes.flow_run_count() and time.monotonic() < deadline:
            unfinished = processes.flow_run_ids()
            stopped |= unfinished
            async with anyio.create_task_group() as group:
                for flow_run_id in unfinished:
                    group.start_soon(partial(processes.kill, flow_run_id,
                                             grace_seconds=reclaim.STOP_GRACE_SECONDS))
            # Each run's executor records its outcome (a run whose process exited without
            # reporting one is Crashed) and forgets the process once it is gone.
            with anyio.move_on_after(reclaim.STOP_GRACE_SECONDS):
                while processes.flow_run_ids() & unfinished:
                    await anyio.sleep(0.1)
        await self.astop()
        return len(stopped)


class _PidRecordingStarter:
    """Starts a flow run's process with ``starter`` and records its pid on the run (as
    ``infrastructure_pid``, as Prefect's workers do)."""

    def __init__(self, starter, client) -> None:
        self._starter = starter
        self._client = client

    async def start(self, flow_run, task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED):
        async with anyio.create_task_group() as group:
            handle = await group.start(self._starter.start, flow_run)
            task_status.started(handle)
            try:
                await self._client.update_flow_run(
                    flow_run.id, infrastructure_pid=reclaim.process_id(handle.pid))
            except Exception:  # the run goes on; only its recovery after a kill needs it
                logger.warning("could not record the pid of flow run %s", flow_run.id,
                               exc_info=True)


def _wind_down(runner: _Runner, shutdown: Shutdown, say: Callable[[str], None]) -> None:
    """Stop ``runner`` as ``shutdown`` asks (:meth:`_Runner.wind_down`), saying so."""
    running = runner.execute_in_background(runner.in_progress).result()
    waits = bool(running) and not shutdown.now.is_set() and shutdown.grace > 0
    if waits:
        say(f"stopping ({shutdown.reason}): {_runs(running)} in progress "
            f"{'has' if running == 1 else 'have'} {shutdown.grace:.0f} s to finish")
    else:
        say(f"stopping ({shutdown.reason})" + (
            f": {_runs(running)} in progress stopped, {_stored(running)}" if running else ""))
    stopped = runner.execute_in_background(runner.wind_down, shutdown).result()
    if stopped and waits:
        say(f"{_runs(stopped)} did not finish in time: stopped, {_stored(stopped)}")


def _runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


def _stored(count: int) -> str:
    return ("its crawl stores what it fetched" if count == 1
            else "their crawls store what they fetched")


_KILLED = "by a serve that was killed"
_STOPPED = "when serve stopped"


def _report(reclaimed: list[reclaim.ReclaimedRun], why: str, say: Callable[[str], None]) -> None:
    for run in reclaimed:
        stopped = (f"its processes (group {run.stopped_pid}) stopped, " if run.stopped_pid
                   else "")
        say(f"run {run.name} was left {run.was} {why}: {stopped}marked {run.now}, its "
            f"concurrency slot freed")


@contextmanager
def _prefect_errors() -> Iterator[None]:
    """Turns the errors of an unreachable or failing Prefect API into PrefectUnavailable."""
    try:
        yield
    except httpx.TransportError as exc:
        raise PrefectUnavailable(f"cannot reach {PREFECT_API_URL.value()}: {exc}") from exc
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code < 500:
            raise
        raise PrefectUnavailable(f"{PREFECT_API_URL.value()} answered "
                                 f"{exc.response.status_code}") from exc
