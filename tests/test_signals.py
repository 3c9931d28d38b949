"""Signals and crashes never hold a schedule: `newsarchive serve` stopped by SIGTERM, Ctrl-C
or SIGKILL, and a pool's worker killed with its runs, leave every run in a true final state
and its deployment's concurrency slot free, so the next scheduled crawl of the site runs.

The crawls are held mid-way deterministically: the local site answers no article page
until the test releases them (``NewsSite.hold_pages``). Ticks are the real cron's (every
minute), so one serve-restart chain goes through the three signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectException
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.reclaim import ZOMBIE_AUTOMATION
from flows.server import local_server, stop_leftover_server
from storage import Archive
from tests.conftest import (
    REPO_ROOT,
    free_port,
    local_site_config,
    seed_prefect_database,
    write_sites_file,
)
from tests.newssite import NewsSite
from tests.test_orchestration import wait_for

SITE = "signalled"
UNFINISHED = {StateType.PENDING, StateType.RUNNING, StateType.CANCELLING}


def api(api_url: str, query):
    """``query(client)`` against the Prefect API at ``api_url`` (a fresh client: the server
    restarts with each serve); None while the server does not answer."""
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}), \
                get_client(sync_client=True) as client:
            return query(client)
    except (httpx.HTTPError, PrefectException):  # the server is down, starting, or empty
        return None


def site_runs(client) -> list:
    return sorted(client.read_flow_runs(deployment_filter=DeploymentFilter(
        name=DeploymentFilterName(any_=[f"crawl-{SITE}"]))),
        key=lambda r: r.expected_start_time)


class Serve:
    """``python -m flows serve`` as a user runs it in a terminal (the leader of its own
    process group, which a Ctrl-C reaches whole), one log per start. Each start archives
    into a fresh directory, so that its crawls have every page to fetch again."""

    def __init__(self, tmp_path: Path, site: NewsSite, env: dict[str, str]) -> None:
        self.tmp_path, self.site, self.env = tmp_path, site, env
        self.config = tmp_path / "sites.toml"
        self.starts = 0
        self.process: subprocess.Popen | None = None

    @property
    def archive(self) -> Path:
        return self.tmp_path / f"archive{self.starts}"

    def start(self) -> subprocess.Popen:
        self.starts += 1
        write_sites_file(self.config, str(self.archive), [
            local_site_config(self.site, name=SITE, feeds=[], schedule="* * * * *")])
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flows", "serve", "--config", str(self.config)],
                cwd=self.tmp_path, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self.process

    @property
    def log_path(self) -> Path:
        return self.tmp_path / f"serve{self.starts}.log"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = 240) -> re.Match:
        def seen():
            if self.process.poll() is not None and not re.search(pattern, self.output(), re.MULTILINE):
                raise AssertionError(f"serve exited ({self.process.returncode}) without "
                                     f"{pattern!r}:\n{self.output()[-4000:]}")
            return re.search(pattern, self.output(), re.MULTILINE)
        return wait_for(seen, timeout, f"serve to print {pattern!r}")

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"serve did not stop:\n{self.output()[-4000:]}") from None


def run_in_progress(api_url: str, site: NewsSite, seen: set):
    """The site's run (not one of ``seen``) that is crawling now: Running, with the site
    holding its article requests."""
    def found():
        if not site.article_requests():
            return None
        runs = api(api_url, site_runs) or []
        return next((r for r in runs if r.id not in seen and r.state.is_running()), None)
    return found


def test_serve_stopped_by_sigterm_ctrl_c_or_sigkill_leaves_runs_final_and_the_next_tick_runs(
        corpus, tmp_path, stopped_workers_runs):
    # (stopped_workers_runs: started now, it plays while this test waits for cron ticks.)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    data = tmp_path / "data"
    with NewsSite(corpus[:6], feed_size=0) as site:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(NEWSARCHIVE_DATA_DIR=str(data), NEWSARCHIVE_PREFECT_PORT=str(port),
                   PYTHONPATH=str(REPO_ROOT),
                   # Prefect's dashboard copies its files into each new home: 1.6 CPU s of
                   # each of serve's four server starts, for a UI no one opens here
                   # (test_orchestration's serve keeps it).
                   PREFECT_SERVER_UI_ENABLED="false")
        seed_prefect_database(data / "prefect")  # where serve keeps its Prefect server's state
        serve = Serve(tmp_path, site, env)
        seen: set = set()
        try:
            # 1. SIGTERM (docker stop, service managers): the run in progress may finish,
            # and it does: it is Completed, its pages archived.
            site.hold_pages()
            serve.start()
            serve.wait_for_line(r"^newsarchive: serving ")
            # A run by hand, well clear of the next tick, unless a tick's run is still to
            # start: on a loaded machine this minute's run stays Pending for 20 s and more, and
            # a run made beside it is (rightly) Cancelled by the concurrency limit.
            due = [r for r in api(api_url, site_runs) or () if not r.state.is_final()
                   and r.expected_start_time <= datetime.now(UTC) + timedelta(seconds=40)]
            if _seconds_to_next_minute() > 40 and not due:
                api(api_url, lambda c: c.create_flow_run_from_deployment(
                    c.read_deployment_by_name(f"crawl/crawl-{SITE}").id))
            first = wait_for(run_in_progress(api_url, site, seen), 240, "a crawl in progress")
            seen.add(first.id)
            serve.process.send_signal(signal.SIGTERM)
            serve.wait_for_line(r"^newsarchive: stopping \(SIGTERM\): 1 run in progress has "
                                r"60 s to finish$")
            site.release_pages()
            assert serve.wait() == 0, serve.output()[-4000:]
            assert re.search(r"^newsarchive: stopped$", serve.output(), re.MULTILINE)
            archived = Archive.open(str(serve.archive)).iter_records(site=SITE)
            assert sorted(r.url for r in archived) == sorted(site.url_for(p) for p in corpus[:6])

            # 2. Ctrl-C (the terminal signals serve's whole process group): the next tick's
            # run started; it is stopped at once, Crashed, and serve says so in two lines.
            site.hold_pages()
            site.clear_requests()
            serve.start()
            second = wait_for(run_in_progress(api_url, site, seen), 240, "the next tick's crawl")
            seen.add(second.id)
            signalled_at = len(serve.output())
            os.killpg(serve.process.pid, signal.SIGINT)
            serve.wait_for_line(r"^newsarchive: stopping \(Ctrl-C\)")
            site.release_pages()  # the crawl stores the pages in flight, and stops
            assert serve.wait() == 0, serve.output()[-4000:]
            after = serve.output()[signalled_at:]
            assert "Traceback" not in after, after
            assert re.findall(r"^newsarchive: .*$", after, re.MULTILINE) == [
                ("newsarchive: stopping (Ctrl-C): 1 run in progress stopped, its crawl stores "
                 "what it fetched"),
                "newsarchive: stopped"], after

            # 3. SIGKILL of serve alone: its Prefect server and the run's processes are left
            # behind; the next serve stops both and ends the run.
            site.hold_pages()
            site.clear_requests()
            serve.start()
            third = wait_for(run_in_progress(api_url, site, seen), 240, "the next tick's crawl")
            seen.add(third.id)
            assert third.infrastructure_pid, "serve records the pid of a run's process"
            serve.process.send_signal(signal.SIGKILL)
            assert serve.wait() == -signal.SIGKILL

            serve.start()
            serve.wait_for_line(r"^newsarchive: the Prefect server a killed serve left running "
                                r"\(pid \d+\) was stopped$")
            serve.wait_for_line(
                rf"^newsarchive: run crawl-{SITE}/{re.escape(third.name)} was left Running by a "
                rf"serve that was killed: .*marked Crashed, its concurrency slot freed$")
            site.release_pages()
            fourth = wait_for(lambda: next((r for r in api(api_url, site_runs) or []
                                            if r.id not in seen and r.state.is_completed()),
                                           None), 240, "the next tick's crawl to complete")
            serve.process.send_signal(signal.SIGTERM)
            assert serve.wait() == 0, serve.output()[-4000:]
        finally:
            site.release_pages()
            if serve.process is not None and serve.process.poll() is None:
                os.killpg(serve.process.pid, signal.SIGKILL)
                serve.process.wait()
                stop_leftover_server(data.resolve() / "prefect")  # the test failed: clean up
    logs = "".join((tmp_path / f"serve{n}.log").read_text(errors="replace")
                   for n in range(1, serve.starts + 1))

    # Nothing serve started is left running: not its Prefect server, not a run's processes.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # Once things settle, Prefect's record is true, read from the database serve left.
    with local_server(data.resolve() / "prefect", port) as url:
        runs = api(url, site_runs)
        # When each run took the site's slot: as it left Scheduled (Pending), not as it
        # started running, which can be many seconds later on a loaded machine.
        holds_from = api(url, lambda c: {r.id: min(
            (s.timestamp for s in c.read_flow_run_states(r.id)
             if s.type in (StateType.PENDING, StateType.RUNNING)), default=None) for r in runs})
        limit = api(url, lambda c: c.read_global_concurrency_limit_by_name(
            f"deployment:{c.read_deployment_by_name(f'crawl/crawl-{SITE}').id}"))
        automations = api(url, lambda c: c.read_automations_by_name(ZOMBIE_AUTOMATION))
    state = {r.id: r.state for r in runs}
    assert state[first.id].type == StateType.COMPLETED, state[first.id]
    assert state[second.id].type == StateType.CRASHED, state[second.id]
    assert state[third.id].type == StateType.CRASHED, state[third.id]
    assert state[fourth.id].type == StateType.COMPLETED and fourth.auto_scheduled
    assert second.auto_scheduled and third.auto_scheduled
    assert not [r for r in runs if r.state.type in UNFINISHED], \
        [(r.name, r.state) for r in runs if r.state.type in UNFINISHED]
    for run in runs:
        if run.infrastructure_pid:
            with pytest.raises(ProcessLookupError):
                os.killpg(int(run.infrastructure_pid.rpartition(":")[2]), 0)
    # A run is Cancelled only by the concurrency limit while another run of the site held
    # the slot (Pending or Running: a tick that came during a crawl), never for a slot held
    # by no one.
    for run in runs:
        if run.state.type == StateType.CANCELLED:
            at = run.state.timestamp
            assert any(holds_from[o.id] and holds_from[o.id] <= at <= (o.end_time or at)
                       for o in runs if o.id != run.id), (run.name, run.state, logs[-4000:])
    assert limit.active_slots == 0, limit
    assert len(automations) == 1


@pytest.fixture(scope="module")
def stopped_workers_runs(corpus, tmp_path_factory):
    """Two runs of a pool, each taken by a worker of its own: one worker is killed with
    its run's processes, as when its machine dies; the other gets SIGTERM. Played in the
    background from the first test that asks for it, since it mostly waits for Prefect's
    heartbeat timeout (90 s); yields the future of ``[(run, its deployment's concurrency
    limit), ...]`` (killed, terminated) once both runs are final."""
    with ThreadPoolExecutor(1, thread_name_prefix="stopped-workers") as background:
        yield background.submit(_stop_workers_mid_crawl, corpus[6:10], corpus[10:14],
                                tmp_path_factory.mktemp("stopped-workers"))


def _stop_workers_mid_crawl(pages_a, pages_b, tmp_path: Path) -> list:
    port = free_port()
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    workers: list[subprocess.Popen] = []
    seed_prefect_database(tmp_path / "prefect")
    with NewsSite(pages_a, feed_size=0) as site_a, NewsSite(pages_b, feed_size=0) as site_b, \
            local_server(tmp_path / "prefect", port) as api_url:
        sites = {"worker-killed": site_a, "worker-terminated": site_b}
        config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [
            local_site_config(site, name=name, feeds=[], schedule="0 0 1 1 *")
            for name, site in sites.items()])
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
               "PREFECT_API_URL": api_url, "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data"),
               "PYTHONPATH": str(REPO_ROOT)}
        deployed = subprocess.run(
            [sys.executable, "-m", "flows", "deploy", "--pool", pool, "--config", str(config)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        try:
            runs = []
            for n, (name, site) in enumerate(sites.items()):
                site.hold_pages()
                with open(tmp_path / f"worker{n}.log", "w") as log:
                    # One run each: the second run goes to the second worker.
                    workers.append(subprocess.Popen(
                        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                         "--limit", "1"],
                        cwd=tmp_path, env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                deployment = api(api_url, lambda c, name=name: c.read_deployment_by_name(
                    f"crawl/crawl-{name}"))
                run = api(api_url, lambda c, d=deployment: c.create_flow_run_from_deployment(d.id))
                wait_for(lambda site=site: site.article_requests(), 240, f"{name}'s crawl")
                runs.append(wait_for(lambda run=run: (r := api(api_url, lambda c: c.read_flow_run(
                    run.id))) and r.infrastructure_pid and r, 60, f"{name}'s run's pid"))
            killed, terminated = runs
            assert killed.state.is_running() and terminated.state.is_running()
            os.killpg(workers[0].pid, signal.SIGKILL)
            os.killpg(int(killed.infrastructure_pid), signal.SIGKILL)
            workers[1].send_signal(signal.SIGTERM)
            workers[0].wait(timeout=60)  # killed: gone at once
            # The stopped worker is not waited for: Prefect 3.9's worker, told to stop, was
            # seen to stay after its run had ended (it forwards the SIGTERM to itself as a
            # SIGINT, which can be lost). What this test checks is its runs' states; the
            # `finally` below ends the worker.
            for site in sites.values():
                site.release_pages()
            outcome = []
            for run in runs:
                # Asked every 3 s, not every 0.5: each asking builds Prefect's settings and a
                # client (0.1 CPU s), and the killed worker's run ends only when Prefect
                # misses its heartbeats, 90 s on.
                final = wait_for(lambda run=run: (r := api(api_url, lambda c: c.read_flow_run(
                    run.id))) and r.state.is_final() and r, 300, f"{run.name} to end",
                    interval=3)
                outcome.append((final, api(api_url, lambda c, r=final: (
                    c.read_global_concurrency_limit_by_name(f"deployment:{r.deployment_id}")))))
        finally:
            for site in sites.values():
                site.release_pages()
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
    return outcome


def test_a_pools_runs_end_final_and_free_their_slot_when_their_worker_dies_or_stops(
        stopped_workers_runs):
    """Prefect 3.9's worker reports neither run: each ends Crashed by the automation that
    `deploy` created once its heartbeats stop (the terminated worker's run may also end as
    its own process reports it), which frees its deployment's concurrency slot."""
    (killed, killed_limit), (terminated, terminated_limit) = \
        stopped_workers_runs.result(timeout=900)
    assert killed.state.type == StateType.CRASHED, killed.state
    assert "No heartbeat" in killed.state.message
    assert terminated.state.type in {StateType.CRASHED, StateType.COMPLETED}, terminated.state
    assert killed_limit.active_slots == 0, killed_limit
    assert terminated_limit.active_slots == 0, terminated_limit


def test_deploy_and_serve_with_prefect_unreachable_say_so_in_one_line(tmp_path):
    closed = free_port()  # nothing listens there any more
    config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [{
        "name": "unreached", "allowed_domains": ["example.org"],
        "sitemaps": ["https://example.org/sitemap.xml"]}])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
           "PREFECT_API_URL": f"http://127.0.0.1:{closed}/api",
           "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO_ROOT)}
    for command in (["deploy", "--pool", "nowhere"], ["serve"]):
        done = subprocess.run([sys.executable, "-m", "flows", *command, "--config", str(config)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 1, done.stderr
        assert re.fullmatch(rf"newsarchive: Prefect is not available: cannot reach "
                            rf"http://127\.0\.0\.1:{closed}/api: .+\n", done.stderr), done.stderr
        assert done.stdout == ""


def _seconds_to_next_minute() -> float:
    now = datetime.now(UTC)
    return 60 - now.second - now.microsecond / 1e6
