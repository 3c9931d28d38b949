"""Flow runs that no process executes any more, ended truthfully so their slots come back.

A crawl run holds its site deployment's concurrency slot (limit 1: a crawl still running
when the next is due makes Prefect cancel the new one) from Pending until it reaches a
final state. Prefect 3.9 frees the slot on that transition, or when the slot's lease
expires unrenewed; but a Prefect server started by ``serve`` keeps leases in memory, so
after ``serve`` and its server are killed, a run left Running holds its slot forever and
every later run of the site is cancelled. Two things end such runs:

- ``serve`` itself, at start and on its way out (:func:`reclaim_runs`): each run of its
  deployments still Pending, Running or Cancelling whose process (recorded on the run) is
  gone from this machine is marked Crashed (Cancelled if it was being cancelled), which
  frees its slot. A run whose processes still run here (a killed ``serve`` leaves its runs'
  process groups behind) is stopped first: its crawl stores what it fetched.
- Prefect, for runs on a work pool's workers, whose processes may be on other machines
  (:func:`ensure_zombie_automation`): every flow run sends a heartbeat event each
  :data:`HEARTBEAT_SECONDS`, and an automation marks Crashed a run of ours that has sent
  none for :data:`ZOMBIE_AFTER`, Prefect's own zombie detection ("How to detect and
  respond to zombie flows" in Prefect's documentation).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Cancelled, Crashed

from flows.server import process_group_alive, stop_process_group
from storage.index import process_alive

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30
"""How often a flow run of ours sends Prefect a heartbeat event (Prefect's minimum)."""

ZOMBIE_AFTER = timedelta(seconds=3 * HEARTBEAT_SECONDS)
"""A run of ours that sent no heartbeat for this long is marked Crashed: three missed
heartbeats, as Prefect's documentation suggests, so that a busy machine is not taken for
a dead one."""

ZOMBIE_AUTOMATION = "newsarchive: crash runs whose heartbeats stopped"
"""Name of the automation :func:`ensure_zombie_automation` keeps on the Prefect server."""

TAG = "newsarchive"
"""The tag every deployment of ours carries, and so every run of them."""

STOP_GRACE_SECONDS = 30.0
"""How long a run's process group has, after SIGTERM, before it is killed: the crawl's
Scrapy stops fetching and stores the pages in flight (each bounded by the site's
``download_timeout``, 30 s by default)."""

UNFINISHED = (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)
"""States of a run that some process is (or was) executing."""


@dataclass(frozen=True)
class ReclaimedRun:
    """A run that was left unfinished, and what became of it."""

    name: str
    """``<deployment>/<flow run name>``, e.g. ``crawl-foo/brave-otter``."""
    was: str
    """The state it was left in: ``Pending``, ``Running`` or ``Cancelling``."""
    now: str
    """Its final state now: ``Crashed``, ``Cancelled``, or whatever its own process
    reported when stopped."""
    stopped_pid: int | None
    """The process group that still ran it on this machine and was stopped, if any."""


def process_id(pid: int) -> str:
    """What a run of ``serve`` records as its ``infrastructure_pid``: this machine's name
    and the pid of the run's process (the leader of its process group)."""
    return f"{socket.gethostname()}:{pid}"


def reclaim_runs(client, deployments: dict[UUID, str], why: str) -> list[ReclaimedRun]:
    """End the runs of ``deployments`` (id -> deployment name) that a ``serve`` of this
    machine left unfinished: stop the processes of each that still run here, then mark
    Crashed each still unfinished (Cancelled if it was being cancelled). Runs taken by a
    work pool's workers, and runs whose process was on another machine, are left to
    :func:`ensure_zombie_automation`: only their heartbeats tell whether they still run.
    ``why`` says how they were left ("by a serve that was killed")."""
    if not deployments:
        return []
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=list(deployments)),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(UNFINISHED)))))
    reclaimed = []
    for run in runs:
        host = (run.infrastructure_pid or "").rpartition(":")[0]
        if run.work_queue_id is not None or host not in ("", socket.gethostname()):
            continue  # a worker's, or another machine's: still running, maybe
        pid = _local_group(run)
        if pid is not None:
            logger.info("stopping process group %d, left running flow run %s", pid, run.id)
            stop_process_group(pid, STOP_GRACE_SECONDS)
        current = client.read_flow_run(run.id)
        if current.state is not None and current.state.type in UNFINISHED:
            state = (Cancelled if current.state.type == StateType.CANCELLING else Crashed)(
                message=f"Left {current.state.name} {why}; its process is gone.")
            client.set_flow_run_state(run.id, state, force=True)
            current = client.read_flow_run(run.id)
        reclaimed.append(ReclaimedRun(
            name=f"{deployments[run.deployment_id]}/{run.name}", was=run.state.name,
            now=current.state.name if current.state else "?", stopped_pid=pid))
    return reclaimed


def ensure_zombie_automation(client) -> None:
    """Create (or bring up to date) the automation that marks Crashed a run of our
    deployments whose heartbeats stopped for :data:`ZOMBIE_AFTER`: a run whose machine
    died, or whose worker and processes were killed together. Marking it Crashed frees
    its deployment's concurrency slot. A server that refuses it gets a warning logged."""
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    final = [f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")]
    automation = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=f"Marks Crashed a flow run tagged {TAG!r} that stopped sending "
                    f"heartbeats: its process is gone, and it would hold its deployment's "
                    f"concurrency slot forever.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *final},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification({"prefect.resource.role": "tag",
                                                 "prefect.resource.id": f"prefect.tag.{TAG}"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=ZOMBIE_AFTER,
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {ZOMBIE_AFTER.total_seconds():.0f} s: the run's "
                    f"process is gone (its machine, or its worker and processes, stopped).")],
    )
    try:
        existing = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        if not existing:
            client.create_automation(automation)
            return
        client.update_automation(existing[0].id, automation)
        for duplicate in existing[1:]:  # two commands raced to create it
            client.delete_automation(duplicate.id)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code >= 500:
            raise
        # A server without automations still runs flows; only the recovery from a dead
        # worker is lost.
        logger.warning("the Prefect server refused the automation %r (%s): the runs of a "
                       "worker that dies will stay Running", ZOMBIE_AUTOMATION, exc)


def _local_group(run: FlowRun) -> int | None:
    """The process group that runs ``run`` on this machine (its engine process, the crawl
    it started, the crawl's workers), if any of it still runs."""
    host, _, pid = (run.infrastructure_pid or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    pgid = int(pid)  # the run's engine process leads a process group of its own
    if not process_group_alive(pgid):
        return None
    # A live leader may be another process with a reused pid (after a reboot, or in a
    # restarted container): it must be a flow run's engine. A group whose leader is gone
    # is taken for the run's crawl, left behind.
    cmdline = Path(f"/proc/{pgid}/cmdline")
    if process_alive(pgid) and cmdline.exists() and b"prefect.engine" not in cmdline.read_bytes():
        return None
    return pgid
