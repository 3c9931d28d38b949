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
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
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

from flows.backfill import batch_label, batches, partition_state_name, should_run
from storage import Archive
from storage.catalog import default_compaction_cutoff
from tests.conftest import (
    REPO_ROOT,
    free_port,
    local_site_config,
    seed_prefect_database,
    write_sites_file,
)
from tests.newssite import HOLD_LIMIT_SECONDS, NewsSite

SINCE, UNTIL = date(2025, 11, 6), date(2025, 11, 21)


def published_day(page) -> date:
    return page.published.astimezone(timezone.utc).date()


def archived_urls(archive_url: str, site: str) -> list[str]:
    return sorted(r.url for r in Archive.open(archive_url).iter_records(site=site))


def partition_state(archive_url: str, site: str, day: date) -> dict | None:
    """A backfill partition's record, as a resumed backfill reads it."""
    return Archive.open(archive_url).read_site_state(site, partition_state_name(day))


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: path -> (size, mtime in ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


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

        # The days, well under a batch's articles, were one child flow run naming them, and
        # one crawl subprocess (one run manifest); each day still has its partition record.
        first, last = min(days).isoformat(), max(days).isoformat()
        with get_client(sync_client=True) as client:
            children = client.read_flow_runs(flow_filter=FlowFilter(
                name=FlowFilterName(any_=["backfill-days"])))
        names = sorted(r.name for r in children if r.name.startswith("backfilled-"))
        assert names == [f"backfilled-{first}..{last}"]
        manifests = list(Archive.open(str(archive)).iter_run_manifests("backfilled"))
        assert [m["backfill_partition"] for m in manifests] == [f"{first}..{last}"]
        per_day = {d: sum(published_day(p) == d for p in in_range) for d in days}
        for day, planned in per_day.items():
            state = partition_state(str(archive), "backfilled", day)
            assert state["status"] == "ok" and state["planned"] == planned, (day, state)
            assert state["run_id"] == manifests[0]["run_id"]
            assert {k: state["counts"][k] for k in ("fetched", "archived", "errors")} == \
                {"fetched": planned, "archived": planned, "errors": 0}, (day, state)
        assert manifests[0]["partitions"] == {d.isoformat(): partition_state(
            str(archive), "backfilled", d)["counts"] for d in days}

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
    `crawl/crawl-<site>` on each site's cron schedule, `backfill/backfill` and the catalog's
    daily `compact/compact`, runs what the API starts (the compaction too: it compacts),
    answers the Dockerfile's health check, and stops both on SIGTERM."""
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
        seed_prefect_database(tmp_path / "data" / "prefect")  # where serve keeps its server's
        log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
        serve = subprocess.Popen([sys.executable, "-m", "flows", "serve", "--config", str(config)],
                                 cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        api_url = f"http://127.0.0.1:{port}/api"
        try:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                with get_client(sync_client=True) as client:
                    deployments = wait_for(lambda: _deployments(client, serve, tmp_path), 180,
                                           "serve to register its deployments")
                    assert sorted(deployments) == ["backfill/backfill", "compact/compact",
                                                   "crawl/crawl-served-a", "crawl/crawl-served-b"]
                    schedules = {name: [s.schedule.cron for s in d.schedules]
                                 for name, d in deployments.items()}
                    assert schedules == {"crawl/crawl-served-a": ["17 3 * * *"],
                                         "crawl/crawl-served-b": ["*/45 * * * 1-5"],
                                         "backfill/backfill": [], "compact/compact": ["15 3 * * *"]}
                    assert all(d.schedules[0].active for n, d in deployments.items()
                               if n.startswith(("crawl/", "compact/")))
                    assert deployments["compact/compact"].parameters == {"archive": str(archive)}

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

                    # The catalog's daily compaction, run now: each closed day becomes one
                    # file, with the same latest rows (a later run's row included).
                    _write_a_later_row(archive, tmp_path)
                    rows = _catalog_rows(archive)
                    run = client.create_flow_run_from_deployment(
                        deployments["compact/compact"].id)
                    final = wait_for(lambda: _finished(client, run.id), 240, "the compaction")
                    assert final.state.is_completed(), final.state
                    closed = {day: names for day, names in _catalog_files(archive).items()
                              if date.fromisoformat(day.split("date=")[1])
                              < default_compaction_cutoff()}
                    assert closed and all(len(names) == 1 and names[0].startswith("compacted-")
                                          for names in closed.values()), closed
                    assert _catalog_rows(archive) == rows

            # The Dockerfile's health check, run as written (asking this serve's runner
            # port instead of the image's), passes against serve.
            health = _dockerfile_healthcheck().replace(f":{_dockerfile_runner_port()}/",
                                                       f":{runner_port}/")
            assert str(runner_port) in health, health
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


def _write_a_later_row(archive: Path, tmp_path: Path) -> None:
    """A later run's catalog row for one archived article (one more version), in the
    article's (closed) day: that day then has two files."""
    from storage.catalog import CatalogWriter
    from storage.record import Version

    store = Archive.open(str(archive))
    record = next(store.iter_records(site="served-a"))
    fetched = record.fetched_at + timedelta(days=1)
    later = replace(record, fetched_at=fetched,
                    versions=(*record.all_versions, replace(Version.of(record), fetched_at=fetched)))
    writer = CatalogWriter(store.backend, tmp_path / "later-run", "20991231T000000Z-later")
    writer.add(later, "The later version's text.")
    writer.close()


def _catalog_files(archive: Path) -> dict[str, list[str]]:
    """The catalog's file names per partition folder (site=…/date=…)."""
    out: dict[str, list[str]] = {}
    for path in sorted((archive / "catalog").glob("site=*/date=*/*.parquet")):
        out.setdefault(f"{path.parent.parent.name}/{path.parent.name}", []).append(path.name)
    return out


def _catalog_rows(archive: Path) -> list[dict]:
    from storage.catalog import read_catalog

    return sorted(read_catalog(str(archive)).to_pylist(), key=lambda row: row["id"])


def _deployments(client, serve: subprocess.Popen, tmp_path: Path) -> dict | None:
    if serve.poll() is not None:
        raise AssertionError("serve exited: " + (tmp_path / "serve.log").read_text()[-3000:])
    try:
        found = client.read_deployments()
    except Exception:  # the server is still starting
        return None
    if len(found) < 4:
        return None
    flows = {f.id: f.name for f in client.read_flows()}
    return {f"{flows[d.flow_id]}/{d.name}": d for d in found}


def _finished(client, flow_run_id):
    run = client.read_flow_run(flow_run_id)
    return run if run.state and run.state.is_final() else None


def _dockerfile_runner_port() -> int:
    """The port the image runs Prefect's runner webserver on."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    return int(re.search(r"PREFECT_RUNNER_SERVER_PORT=(\d+)", dockerfile).group(1))


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


def test_days_are_batched_newest_first_in_whole_days():
    def day(n: int) -> date:
        return date(2026, 1, n)

    # Newest first, as a plan lists them: articles per day 2, 1, 3, 6, 1.
    days = {day(n): [{"url": f"https://example.org/{n}/{i}"} for i in range(size)]
            for n, size in ((9, 2), (8, 1), (7, 3), (5, 6), (4, 1))}
    grouped = batches(days, limit=4)
    assert [list(b) for b in grouped] == [[day(9), day(8)], [day(7)], [day(5)], [day(4)]]
    assert [batch_label(b) for b in grouped] == [
        "2026-01-08..2026-01-09", "2026-01-07", "2026-01-05", "2026-01-04"]
    # A year of two articles a day: two crawls, not 365.
    year = {date(2025, 12, 31) - timedelta(days=n): [{}, {}] for n in range(365)}
    assert [len(b) for b in batches(year)] == [250, 115]


def test_a_batch_crawl_tells_each_outcome_to_its_day_by_any_url_of_the_article():
    """The per-day tally of a batch's crawl finds an article's day under every URL its
    errors and pages may name: as listed (aliases too), canonical, or where it redirected."""
    from scrapy import Request
    from scrapy.http import HtmlResponse

    from spiders.items import FetchedPage
    from spiders.pipelines import PageNotStored
    from spiders.stats import PartitionTally

    tally = PartitionTally({"https://example.org/a": "2026-01-02",
                            "https://example.org/a-alias": "2026-01-02",
                            "https://example.org/b?x=1": "2026-01-01"})
    # b redirects to c: the next request, and then the page, are b's.
    redirected = Request("https://example.org/c",
                         meta={"redirect_urls": ["https://example.org/b?x=1"]})
    tally.request_scheduled(redirected)
    tally.fetched(HtmlResponse("https://example.org/c", body=b"<html></html>", request=redirected))
    page = FetchedPage(site="s", url="https://example.org/c",
                       request_url="https://example.org/b?x=1", status=200, body=b"",
                       encoding="utf-8", fetched_at=datetime.now(timezone.utc), discovered_via="backfill")
    tally.item_scraped(page, response=None)
    listed = Request("https://example.org/a")
    tally.fetched(HtmlResponse("https://example.org/a", body=b"<html></html>", request=listed))
    a_page = replace(page, url="https://example.org/a", request_url="https://example.org/a")
    tally.item_dropped(a_page, response=None, exception=PageNotStored("duplicate", a_page.url))
    errors = [{"url": "https://example.org/c", "kind": "no_article_text", "reason": "r"},
              {"url": "https://example.org/a-alias?utm_source=rss", "kind": "http_404",
               "reason": "r"},
              {"url": "https://example.org/robots.txt", "kind": "http_500", "reason": "r"}]
    counts = tally.finish(errors)
    assert counts == {
        "2026-01-01": {"fetched": 1, "archived": 1, "versions": 0, "duplicates": 0, "errors": 1},
        "2026-01-02": {"fetched": 1, "archived": 0, "versions": 0, "duplicates": 1, "errors": 1}}
    assert [e.get("partition") for e in errors] == ["2026-01-01", "2026-01-02", None]


def test_a_batch_records_each_day_and_a_failed_day_alone_runs_again(
        corpus, prefect_api_url, tmp_path, monkeypatch):
    """Days run in batches, one crawl each; a day whose article failed is recorded failed
    while the other days of its batch are ok, and ``reprocess="failed"`` runs it alone."""
    import flows.backfill
    from flows.settings import Settings

    since, until = date(2025, 10, 20), date(2025, 11, 21)
    in_range = [p for p in corpus if since <= published_day(p) <= until]
    per_day = {d: [p for p in in_range if published_day(p) == d]
               for d in sorted({published_day(p) for p in in_range}, reverse=True)}
    assert [len(pages) for pages in per_day.values()] == [1, 1, 5, 2, 1, 1]
    # Batches of at most 4 articles: 11-21 and 11-07; 11-06 (5) alone; 10-23, 10-21, 10-20.
    monkeypatch.setattr(flows.backfill, "MAX_BATCH_ARTICLES", 4)
    batch_names = ["batched-2025-11-07..2025-11-21", "batched-2025-11-06",
                   "batched-2025-10-20..2025-10-23"]
    failing_day = date(2025, 10, 23)
    failing = per_day[failing_day][0]
    archive = str(tmp_path / "archive")
    with NewsSite(corpus) as site:
        config = write_sites_file(tmp_path / "sites.toml", archive,
                                  [local_site_config(site, name="batched")])
        settings = Settings(config=config, data_dir=tmp_path / "data")
        site.add_route(failing.path, b"gone", status=404)

        report = flows.backfill.backfill(site="batched", since=since, until=until,
                                         settings=settings)
        assert not report.ok
        statuses = {p.day: p.status for p in report.partitions}
        assert statuses == {d: "failed" if d == failing_day else "ok" for d in per_day}
        manifests = list(Archive.open(archive).iter_run_manifests("batched"))
        assert sorted(m["backfill_partition"] for m in manifests) == \
            sorted(name.removeprefix("batched-") for name in batch_names)
        assert sorted(children_named(batch_names)) == sorted(batch_names)
        # The failed day says why, and counts per day stay per day.
        state = partition_state(archive, "batched", failing_day)
        assert state["status"] == "failed"
        assert "http_404" in state["reason"] and site.url_for(failing) in state["reason"]
        assert {k: state["counts"][k] for k in ("fetched", "archived", "errors")} == \
            {"fetched": 1, "archived": 1, "errors": 1}
        for day in (date(2025, 10, 21), date(2025, 10, 20)):  # its batch-mates
            state = partition_state(archive, "batched", day)
            assert state["status"] == "ok" and state["reason"] == "", state
            assert state["counts"]["fetched"] == state["counts"]["archived"] == 1
            assert state["counts"]["errors"] == 0
        assert archived_urls(archive, "batched") == sorted(
            site.url_for(p) for p in in_range if p is not failing)

        # The page is back: only the failed day runs again, and fetches only what it lacks.
        site.remove_route(failing.path)
        site.clear_requests()
        again = flows.backfill.backfill(site="batched", since=since, until=until,
                                        reprocess="failed", settings=settings)
        assert again.ok
        assert {p.day: p.status for p in again.partitions} == {
            d: "ok" if d == failing_day else "done" for d in per_day}
        assert [site.page_for_path(t) for t in site.article_requests()] == [failing]
        assert len(list(Archive.open(archive).iter_run_manifests("batched"))) == 4
        assert children_named(["batched-2025-10-23"]) == ["batched-2025-10-23"]
        assert partition_state(archive, "batched", failing_day)["status"] == "ok"
        assert archived_urls(archive, "batched") == sorted(site.url_for(p) for p in in_range)


def children_named(names: list[str]) -> list[str]:
    """The names of the backfill batches' flow runs with one of ``names``."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(
            name=FlowFilterName(any_=["backfill-days"])))
    return [r.name for r in runs if r.name in names]


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
