"""Orchestration on a real Prefect server: backfills by day partition, `serve` with one
deployment per site on its cron schedule, and a process work pool whose two workers crawl
two sites at once into one bucket."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, timezone
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
)
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.backfill import should_run
from storage import Archive
from tests.conftest import REPO_ROOT, local_site_config, write_sites_file
from tests.newssite import HOLD_LIMIT_SECONDS, NewsSite

SINCE, UNTIL = date(2025, 11, 6), date(2025, 11, 21)


def published_day(page) -> date:
    return page.published.astimezone(timezone.utc).date()


def archived_urls(archive_url: str, site: str) -> list[str]:
    return sorted(r.url for r in Archive.open(archive_url).iter_records(site=site))


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: path -> (size, mtime in ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_partition_runs_again_only_when_asked():
    assert should_run(None, "none") and should_run(None, "failed") and should_run(None, "all")
    assert not should_run("ok", "none") and not should_run("ok", "failed") and should_run("ok", "all")
    assert not should_run("failed", "none") and should_run("failed", "failed")
    assert should_run("failed", "all")


def test_backfill_archives_exactly_the_in_range_articles_once(corpus, run_cli, tmp_path):
    in_range = [p for p in corpus if SINCE <= published_day(p) <= UNTIL]
    days = {published_day(p) for p in in_range}
    assert len(in_range) >= 5 and len(days) >= 3  # the range has several partitions
    archive = tmp_path / "archive"
    with NewsSite(corpus) as site:
        config = write_sites_file(tmp_path / "sites.toml", str(archive),
                                  [local_site_config(site, name="backfilled")])
        expected = sorted(site.url_for(p) for p in in_range)
        args = ("backfill", "--config", str(config), "--site", "backfilled",
                "--since", SINCE.isoformat(), "--until", UNTIL.isoformat())

        # The plan: articles per day, newest first; nothing fetched but listings, nothing written.
        planned = run_cli(*args, "--dry-run")
        assert planned.returncode == 0, planned.stderr[-3000:]
        rows = re.findall(r"^(\d{4}-\d\d-\d\d)\s+(\d+)\s+to do$", planned.stdout, re.M)
        assert rows == [(d.isoformat(), str(sum(published_day(p) == d for p in in_range)))
                        for d in sorted(days, reverse=True)], planned.stdout
        assert not site.article_requests()
        assert not archive.exists() or not any(archive.rglob("*")), "a dry run wrote"
        # Monthly sitemaps whose lastmod is before the range are not even read.
        assert f"/sitemaps/{min(p.published for p in corpus):%Y-%m}.xml" not in site.requests

        done = run_cli(*args)
        assert done.returncode == 0, done.stderr[-3000:]
        assert archived_urls(str(archive), "backfilled") == expected
        # Every in-range article was fetched, and nothing else was.
        fetched = sorted(site.url_for(site.page_for_path(t)) for t in site.article_requests())
        assert fetched == expected
        before = tree(archive)

        # Each day was a child flow run of its own.
        with get_client(sync_client=True) as client:
            children = client.read_flow_runs(flow_filter=FlowFilter(
                name=FlowFilterName(any_=["backfill-day"])))
        names = sorted(r.name for r in children if r.name.startswith("backfilled-"))
        assert names == sorted(f"backfilled-{d.isoformat()}" for d in days)

        # Again: every partition is done, so nothing is fetched or written.
        site.clear_requests()
        again = run_cli(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert re.findall(r"^\d{4}-\d\d-\d\d\s+\d+\s+(\S+)", again.stdout, re.M) == \
            ["done"] * len(days), again.stdout
        assert not site.article_requests()
        assert tree(archive) == before


def test_serve_registers_a_deployment_per_site_and_runs_them(corpus, tmp_path):
    """`newsarchive serve` with no PREFECT_API_URL starts its own Prefect server, registers
    `crawl/crawl-<site>` on each site's cron schedule and `backfill/backfill`, runs what the
    API starts, answers the Dockerfile's health check, and stops both on SIGTERM."""
    first, second = corpus[:4], [p for p in corpus[4:] if SINCE <= published_day(p) <= UNTIL]
    port, runner_port = free_port(), free_port()
    archive = tmp_path / "archive"
    with NewsSite(first, feed_size=0) as site_a, NewsSite(second, feed_size=0) as site_b:
        config = write_sites_file(tmp_path / "sites.toml", str(archive), [
            local_site_config(site_a, name="served-a", feeds=[], schedule="17 3 * * *"),
            local_site_config(site_b, name="served-b", feeds=[], schedule="*/45 * * * 1-5"),
        ])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(NEWSARCHIVE_DATA_DIR=str(tmp_path / "data"),
                   NEWSARCHIVE_PREFECT_PORT=str(port), PYTHONPATH=str(REPO_ROOT),
                   PREFECT_RUNNER_SERVER_ENABLE="true", PREFECT_RUNNER_SERVER_HOST="127.0.0.1",
                   PREFECT_RUNNER_SERVER_PORT=str(runner_port))
        log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
        serve = subprocess.Popen([sys.executable, "-m", "flows", "serve", "--config", str(config)],
                                 cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        api_url = f"http://127.0.0.1:{port}/api"
        try:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                with get_client(sync_client=True) as client:
                    deployments = wait_for(lambda: _deployments(client, serve, tmp_path), 180,
                                           "serve to register its deployments")
                    assert sorted(deployments) == ["backfill/backfill", "crawl/crawl-served-a",
                                                   "crawl/crawl-served-b"]
                    schedules = {name: [s.schedule.cron for s in d.schedules]
                                 for name, d in deployments.items()}
                    assert schedules == {"crawl/crawl-served-a": ["17 3 * * *"],
                                         "crawl/crawl-served-b": ["*/45 * * * 1-5"],
                                         "backfill/backfill": []}
                    assert all(d.schedules[0].active for n, d in deployments.items()
                               if n.startswith("crawl/"))

                    run = client.create_flow_run_from_deployment(
                        deployments["crawl/crawl-served-a"].id)
                    final = wait_for(lambda: _finished(client, run.id), 240, "the crawl run")
                    assert final.state.is_completed(), final.state
                    assert archived_urls(str(archive), "served-a") == \
                        sorted(site_a.url_for(p) for p in first)

                    # A backfill started from Prefect's own command line, as the README says.
                    started = subprocess.run(
                        [sys.executable, "-m", "prefect", "deployment", "run", "backfill/backfill",
                         "-p", "site=served-b", "-p", f"since={SINCE}", "-p", f"until={UNTIL}"],
                        env={**env, "PREFECT_API_URL": api_url}, capture_output=True, text=True,
                        timeout=120)
                    assert started.returncode == 0, started.stdout + started.stderr
                    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)
                    final = wait_for(lambda: _finished(client, run_id), 240, "the backfill run")
                    assert final.state.is_completed(), final.state
                    assert archived_urls(str(archive), "served-b") == \
                        sorted(site_b.url_for(p) for p in second)

            # The Dockerfile's health check, run as written, passes against serve.
            health = _dockerfile_healthcheck().replace("8080", str(runner_port))
            checked = subprocess.run(shlex.split(health), capture_output=True, text=True, timeout=30)
            assert checked.returncode == 0, checked.stderr
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                code = serve.wait(timeout=60)
            finally:
                serve.kill()
                log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output[-3000:]
    assert "newsarchive: stopped" in output
    # The server serve started is gone with it.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _deployments(client, serve: subprocess.Popen, tmp_path: Path) -> dict | None:
    if serve.poll() is not None:
        raise AssertionError("serve exited: " + (tmp_path / "serve.log").read_text()[-3000:])
    try:
        found = client.read_deployments()
    except Exception:  # the server is still starting
        return None
    if len(found) < 3:
        return None
    flows = {f.id: f.name for f in client.read_flows()}
    return {f"{flows[d.flow_id]}/{d.name}": d for d in found}


def _finished(client, flow_run_id):
    run = client.read_flow_run(flow_run_id)
    return run if run.state and run.state.is_final() else None


def _dockerfile_healthcheck() -> str:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    exec_form = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])\s*$", dockerfile, re.M | re.S).group(1)
    return shlex.join(json.loads(exec_form.replace("\\\n", " ")))


def test_two_workers_of_a_process_pool_crawl_two_sites_at_once(corpus, run_cli, prefect_api_url,
                                                              s3_archive, tmp_path):
    """Each worker takes one run at a time (``--limit 1``): while the first run is in its
    worker, the second can only go to the other. The sites hold their pages until both
    crawls have asked for one, so the first run is still running when the second is taken,
    however slowly either worker starts its run."""
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    pages_a, pages_b = corpus[10:22], corpus[22:34]
    with NewsSite(pages_a, feed_size=0) as site_a, NewsSite(pages_b, feed_size=0) as site_b:
        sites = (site_a, site_b)
        for site in sites:
            site.hold_pages()
        # A held page must not time out while the other run is still being started.
        config = write_sites_file(tmp_path / "sites.toml", s3_archive.url, [
            local_site_config(site_a, name="pooled-a", feeds=[],
                              download_timeout=HOLD_LIMIT_SECONDS),
            local_site_config(site_b, name="pooled-b", feeds=[],
                              download_timeout=HOLD_LIMIT_SECONDS),
        ])
        env = {**s3_archive.env, "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data")}
        deployed = run_cli("deploy", "--pool", pool, "--config", str(config), env=env)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert "crawl/crawl-pooled-a" in deployed.stdout and "backfill/backfill" in deployed.stdout

        worker_env = {**os.environ, **env, "PREFECT_API_URL": prefect_api_url,
                      "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(REPO_ROOT)}
        workers = [subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--limit", "1",
             "--name", f"{pool}-w{n}"], cwd=tmp_path, env=worker_env,
            stdout=open(tmp_path / f"worker{n}.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
            for n in (1, 2)]
        try:
            with get_client(sync_client=True) as client:
                deployments = {d.name: d for d in client.read_deployments(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(
                        any_=["crawl-pooled-a", "crawl-pooled-b"])))}
                assert all(d.work_pool_name == pool for d in deployments.values())
                runs = [client.create_flow_run_from_deployment(d.id) for d in deployments.values()]
                # Both crawls running, each waiting for a page: the two runs are at once.
                wait_for(lambda: all(site.article_requests() for site in sites), 300,
                         "both crawls to ask for a page")
                for site in sites:
                    site.release_pages()
                finals = [wait_for(lambda r=r: _finished(client, r.id), 300, "a pooled run")
                          for r in runs]
                for final in finals:
                    assert final.state.is_completed(), final.state
                # The two ran at once, in two workers.
                a, b = finals
                assert a.start_time < b.end_time and b.start_time < a.end_time, \
                    (a.start_time, a.end_time, b.start_time, b.end_time)
                # A flow run's own output (its "View at .../flow-run/<id>") lands in the log
                # of the worker that started it; both workers may offer to take a run. The
                # worker streams that output into its log when it gets to it, maybe after the
                # run has ended: waited for.
                def logs() -> list[str]:
                    return [(tmp_path / f"worker{n}.log").read_text() for n in (1, 2)]

                wait_for(lambda: all(any(f"flow-run/{f.id}" in log for log in logs())
                                     for f in finals), 120, "each run's output in a worker log")
                ran = [[f"flow-run/{f.id}" in log for f in finals] for log in logs()]
                assert sorted(ran) == [[False, True], [True, False]], ran
                # Both runs came from these deployments, nothing else ran on them.
                assert len(client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(
                        any_=[d.id for d in deployments.values()])))) == 2
        finally:
            for site in sites:
                site.release_pages()
            for worker in workers:
                worker.send_signal(signal.SIGINT)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
        assert archived_urls(s3_archive.url, "pooled-a") == sorted(site_a.url_for(p) for p in pages_a)
        assert archived_urls(s3_archive.url, "pooled-b") == sorted(site_b.url_for(p) for p in pages_b)


def test_a_backfill_with_its_dates_reversed_is_bad_usage(tmp_path, capsys):
    from flows.cli import main

    config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [{
        "name": "reversed", "allowed_domains": ["example.org"],
        "sitemaps": ["https://example.org/sitemap.xml"]}])
    code = main(["backfill", "--config", str(config), "--site", "reversed",
                 "--since", "2025-02-01", "--until", "2025-01-01"])
    assert code == 2
    assert "--since 2025-02-01 is after --until 2025-01-01" in capsys.readouterr().err


def test_a_backfill_whose_site_lists_nothing_says_why(corpus, run_cli, tmp_path):
    with NewsSite(corpus[:2], feed_size=0) as site:
        config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [
            local_site_config(site, name="unlisted", feeds=[],
                              sitemaps=[f"{site.base_url}/no-such-sitemap.xml"])])
        planned = run_cli("backfill", "--config", str(config), "--site", "unlisted",
                          "--since", "2025-01-01", "--until", "2025-01-31", "--dry-run")
    assert planned.returncode == 1
    assert "no sitemap or feed of unlisted could be read (http_404)" in planned.stderr
