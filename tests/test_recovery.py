"""Recovery that holds whatever the machine does (issue 17, point 3): a killed crawl's
workspace is finished by the next crawl even under another host name (a recreated
container), a live crawl's workspace is never taken, not even while it is being set up, and
an archive that cannot take pages for a while (a full disk, refused credentials) makes the
crawl keep them, not drop them, and leaves no temporary file behind."""

from __future__ import annotations

import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from spiders.config import SiteConfig
from spiders.workspace import Workspace, WorkspaceBusy
from storage import Archive
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}


def _start_crawl(entry: dict, archive_url: str, data_dir: Path, run_id: str,
                 env: dict) -> subprocess.Popen:
    site = SiteConfig.model_validate(entry)
    return subprocess.Popen(
        [sys.executable, "-m", "spiders.run", "--site-json", site.model_dump_json(),
         "--archive", archive_url, "--run-id", run_id,
         "--stats-file", str(data_dir / "crawls" / f"{run_id}.json"),
         "--data-dir", str(data_dir), "--user-agent", "t", "--log-level", "WARNING"],
        cwd=REPO_ROOT, env=env)


def _wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _records(archive_url: str, site: str = "localnews") -> list:
    return list(Archive.open(archive_url).iter_records(site=site))


def _assert_archived_once(archive_url: str, urls: set[str]) -> None:
    found = _records(archive_url)
    assert {r.url for r in found} == urls
    assert set(Counter(r.canonical_url for r in found).values()) == {1}
    archive = Archive.open(archive_url)
    for record in found:  # whole: every record's objects are there
        assert archive.read_text(record) and archive.read_raw(record)


def _temporary_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name]


# -- ownership by a lock, not a host name ------------------------------------------------

def test_a_workspace_being_set_up_is_not_taken_for_a_dead_one(tmp_path):
    """The owner holds its workspace's lock from the moment the workspace appears: before
    its owner.json exists (Scrapy used to write its job directory first), and whatever host
    name owner.json gives, a second crawl sees it as owned."""
    mine = Workspace.create(tmp_path, "site", "run-a")
    (mine.root / "owner.json").unlink()  # as while it was still being set up
    assert list(Workspace.abandoned(tmp_path, "site")) == []
    (mine.root / "owner.json").write_text(json.dumps({"host": "another-host", "pid": 1}))
    assert list(Workspace.abandoned(tmp_path, "site")) == []
    with pytest.raises(WorkspaceBusy):
        Workspace.create(tmp_path, "site", "run-a")  # the same run, started twice
    assert mine.root.is_dir()

    mine.release()  # as when its process dies: the kernel drops the lock
    first = list(Workspace.abandoned(tmp_path, "site"))
    assert [w.run_id for w in first] == ["run-a"]
    # One recoverer at a time: while the first holds it, nobody else gets it.
    assert list(Workspace.abandoned(tmp_path, "site")) == []
    first[0].release()
    assert [w.run_id for w in Workspace.abandoned(tmp_path, "site")] == ["run-a"]


def test_a_killed_crawl_is_finished_by_the_next_under_another_host_name(corpus, tmp_path):
    """SIGKILL mid-crawl, then the container comes back under a new host name: owner.json
    names a host that no longer exists, and the next crawl still finishes the dead run's
    WARC file, catalog rows and manifest."""
    archive = str(tmp_path / "archive")
    data = tmp_path / "data"
    with NewsSite(corpus[:30], feed_size=0) as site:
        entry = local_site_config(site, feeds=[], concurrent_requests=2)
        urls = {site.url_for(p) for p in site.pages}
        crawl = _start_crawl(entry, archive, data, "run-killed", _env())
        try:
            _wait_for(lambda: len(_records(archive)) >= 5, "five articles")
            site.hold_pages()  # nothing more is archived before the kill
        finally:
            crawl.send_signal(signal.SIGKILL)
            crawl.wait(timeout=60)
            site.release_pages()
        workspace = data / "pending" / "localnews" / "run-killed"
        owner = json.loads((workspace / "owner.json").read_text())
        (workspace / "owner.json").write_text(json.dumps({**owner, "host": "old-container-7f3a"}))

        report = crawl_site_subprocess(entry, archive, _env(), data, "run-next")
    assert report["stats"]["newsarchive/recovered_runs"] == 1
    assert not workspace.exists()
    _assert_archived_once(archive, urls)
    # The killed run's WARC file reached the archive: every record's response is found.
    warcs = {r.warc_key for r in _records(archive)}
    assert all(key and (Path(archive) / key).is_file() for key in warcs)


def test_a_live_crawl_keeps_its_workspace_while_another_crawl_of_the_site_runs(corpus, tmp_path):
    """Crawl A is held mid-crawl; crawl B of the same site and data directory runs whole
    meanwhile and must leave A's workspace alone; then A finishes and loses nothing."""
    archive = str(tmp_path / "archive")
    data = tmp_path / "data"
    with NewsSite(corpus[:12], feed_size=0) as site_a, NewsSite(corpus[12:16], feed_size=0) as site_b:
        entry_a = local_site_config(site_a, feeds=[], concurrent_requests=2)
        site_a.hold_pages()
        crawl = _start_crawl(entry_a, archive, data, "run-a", _env())
        try:
            workspace = data / "pending" / "localnews" / "run-a"
            _wait_for(lambda: site_a.article_requests(), "crawl A to ask for an article")
            # Whatever owner.json says, A holds its lock.
            owner = json.loads((workspace / "owner.json").read_text())
            (workspace / "owner.json").write_text(json.dumps({**owner, "host": "elsewhere"}))
            report_b = crawl_site_subprocess(local_site_config(site_b, feeds=[]), archive,
                                             _env(), data, "run-b")
            assert "newsarchive/recovered_runs" not in report_b["stats"]
            assert (workspace / "owner.lock").is_file() and (workspace / "scheduler").is_dir()
        finally:
            site_a.release_pages()
        assert crawl.wait(timeout=300) == 0
        report_a = json.loads((data / "crawls" / "run-a.json").read_text())
        assert report_a["finish_reason"] == "finished", report_a["errors"]
        _assert_archived_once(archive, {site_a.url_for(p) for p in site_a.pages}
                              | {site_b.url_for(p) for p in site_b.pages})
    assert not (data / "pending" / "localnews").exists() or \
        not any((data / "pending" / "localnews").iterdir())


# -- an archive that cannot take pages for a while -----------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system (tmpfs) for a local archive: it fills up within a crawl. Its
    size can be raised afterwards, as an operator frees space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    mount = tmp_path / "archive"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_keeps_pages_in_the_spool_and_leaves_no_temporary_file(corpus, small_disk,
                                                                            tmp_path):
    archive = str(small_disk)
    data = tmp_path / "data"  # on another file system, with room
    with NewsSite(corpus[:24], feed_size=0) as site:
        entry = local_site_config(site, feeds=[], concurrent_requests=4)
        urls = {site.url_for(p) for p in site.pages}
        full = crawl_site_subprocess(entry, archive, _env(), data, "run-full")
        stats = full["stats"]
        # The disk filled: pages went to the spool, none was dropped as a storage error.
        assert stats.get("newsarchive/archive/spooled", 0) > 0, stats
        assert not [e for e in full["errors"] if e["url"] in urls], full["errors"]
        assert _temporary_files(small_disk) == []
        spool = data / "pending" / "localnews" / "run-full" / "spool"
        assert len(list(spool.glob("*.json"))) == stats["newsarchive/spool/left"] > 0

        # Space is freed; the next crawl stores what waited, and fetches none of it again.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        site.clear_requests()
        after = crawl_site_subprocess(entry, archive, _env(), data, "run-after")
        assert site.article_requests() == []
    assert after["stats"]["newsarchive/recovered_runs"] == 1
    _assert_archived_once(archive, urls)
    assert _temporary_files(small_disk) == []
    assert not (data / "pending" / "localnews" / "run-full").exists()


class _RefusingS3Proxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy in front of moto's S3 server that, while ``refusing`` is set, answers
    every request as S3 does when the credentials have expired (HTTP 400, ExpiredToken) or
    are refused (403); otherwise it forwards the request."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refusing = threading.Event()
        self.refused = 0
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    method, target, _ = line.decode("latin-1").split(" ", 2)
                    headers = {}
                    while (h := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                        name, value = h.decode("latin-1").split(":", 1)
                        headers[name.strip()] = value.strip()
                    expects = headers.get("Expect", "").lower() == "100-continue"
                    if proxy.refusing.is_set():
                        proxy.refused += 1
                        if not expects:
                            self._body(headers)
                        error = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
                                 b"ExpiredToken</Code><Message>The provided token has expired."
                                 b"</Message></Error>")
                        self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: "
                                         b"application/xml\r\nContent-Length: "
                                         + str(len(error)).encode() + b"\r\n\r\n" + error)
                        if expects:
                            return  # its body was never sent: the connection cannot go on
                        continue
                    if expects:
                        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self._forward(method, target, headers, self._body(headers))

            def _body(self, headers: dict) -> bytes:
                if "chunked" in headers.get("Transfer-Encoding", "").lower():
                    return self._chunked()
                return self.rfile.read(int(headers.get("Content-Length") or 0))

            def _chunked(self) -> bytes:
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()

            def _forward(self, method: str, target: str, headers: dict, body: bytes) -> None:
                headers = {k: v for k, v in headers.items()
                           if k.lower() not in ("transfer-encoding", "expect", "connection")}
                if body or method in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                request = urllib.request.Request(proxy.upstream + target, data=body or None,
                                                 method=method, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, reason = response.status, response.reason
                        answer_headers, payload = response.getheaders(), response.read()
                except urllib.error.HTTPError as error:
                    status, reason = error.code, error.reason
                    answer_headers, payload = error.headers.items(), error.read()
                self.wfile.write(f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1"))
                for name, value in answer_headers:
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.wfile.write(f"{name}: {value}\r\n".encode("latin-1"))
                self.wfile.write(f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def test_refused_credentials_keep_pages_in_the_spool(corpus, s3_archive, moto_endpoint, tmp_path):
    """The credentials expire: S3 refuses every request. The crawl keeps what it fetched
    (no page is dropped as an error), and once the credentials work again the next crawl
    stores it all without fetching any of it again."""
    proxy = _RefusingS3Proxy(moto_endpoint)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    data = tmp_path / "data"
    env = _env(**{**s3_archive.env, "AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1"})
    try:
        with NewsSite(corpus[:8], feed_size=0) as site:
            entry = local_site_config(site, feeds=[])
            urls = {site.url_for(p) for p in site.pages}
            proxy.refusing.set()
            refused = crawl_site_subprocess(entry, s3_archive.url, env, data, "run-refused")
            stats = refused["stats"]
            assert proxy.refused > 0
            assert stats["newsarchive/spool/left"] == len(urls), (stats, refused["errors"])
            assert not [e for e in refused["errors"] if e["url"] in urls], refused["errors"]
            assert not s3_archive.listing()

            proxy.refusing.clear()
            site.clear_requests()
            after = crawl_site_subprocess(entry, s3_archive.url, env, data, "run-renewed")
            assert after["stats"]["newsarchive/recovered_runs"] == 1
            assert site.article_requests() == []  # stored from the spool, not fetched again
            found = [json.loads(s3_archive.get(k)) for k in s3_archive.listing()
                     if k.endswith("/meta.json")]
            assert {r["url"] for r in found} == urls
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert not (data / "pending" / "localnews" / "run-refused").exists()


def test_when_the_workspace_cannot_keep_pages_either_the_crawl_stops_and_the_next_fetches_them(
        corpus, small_disk, tmp_path):
    """The archive's disk and the data directory's are both full: a page that can be kept
    nowhere is recorded, and the crawl stops (every page it fetched after would be lost too;
    how many it fetched before depends on the machine's speed, so that is not counted), and
    the next crawl, with room again, archives every page."""
    archive = str(small_disk / "archive")
    data = small_disk / "data"
    with NewsSite(corpus[:24], feed_size=0) as site:
        entry = local_site_config(site, feeds=[], concurrent_requests=2)
        urls = {site.url_for(p) for p in site.pages}
        crawl = _start_crawl(entry, archive, data, "run-nowhere", _env())
        assert crawl.wait(timeout=300) in (0, 1)
        stats_file = data / "crawls" / "run-nowhere.json"
        if stats_file.exists():  # the stats file fitted: it says why the crawl stopped
            stopped = json.loads(stats_file.read_text())
            assert stopped["finish_reason"] == "archive_unavailable", stopped["finish_reason"]
            assert [e for e in stopped["errors"] if "cannot be kept" in e["reason"]]
        else:  # it did not: the crawl exits 1 and says so, and the flow reports a crash
            assert crawl.returncode == 1

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        crawl_site_subprocess(entry, archive, _env(), data, "run-room")
    _assert_archived_once(archive, urls)
    assert _temporary_files(small_disk) == []


def test_a_crawl_whose_parent_dies_stops_and_keeps_what_it_fetched(corpus, tmp_path):
    """The process that started a crawl (a flow run) is killed, as when its worker dies:
    the crawl does not go on for nobody. It stops gracefully, writes its stats file, and
    the next crawl archives every page."""
    archive = str(tmp_path / "archive")
    data = tmp_path / "data"
    with NewsSite(corpus[:12], feed_size=0) as site:
        # One request at a time, held ones timing out after 5 s: the stopping crawl waits for
        # the one in flight (15 s at most, with its retries), where on its own it would not
        # finish before the nine held pages had each timed out three times (over two
        # minutes), so "shutdown" can only mean it was stopped.
        entry = local_site_config(site, feeds=[], concurrent_requests=1, download_timeout=5)
        urls = {site.url_for(p) for p in site.pages}
        site.hold_pages(after=3)  # the crawl is certainly under way when its parent dies
        command = [sys.executable, "-m", "spiders.run", "--site-json",
                   SiteConfig.model_validate(entry).model_dump_json(), "--archive", archive,
                   "--run-id", "run-orphan", "--stats-file",
                   str(data / "crawls" / "run-orphan.json"), "--data-dir", str(data),
                   "--user-agent", "t", "--log-level", "WARNING"]
        parent = subprocess.Popen(
            [sys.executable, "-c", "import subprocess, sys, time; "
             f"p = subprocess.Popen({command!r}, cwd={str(REPO_ROOT)!r}); "
             "print(p.pid, flush=True); time.sleep(3600)"],
            env=_env(), stdout=subprocess.PIPE, text=True)
        crawl_pid = int(parent.stdout.readline())
        try:
            _wait_for(lambda: len(site.article_requests()) > 3, "the crawl to wait on a page")
            parent.kill()
            parent.wait(timeout=30)
            # The orphan notices and stops by itself (a hang guard, not a time bound).
            _wait_for(lambda: not Path(f"/proc/{crawl_pid}").exists()
                      or Path(f"/proc/{crawl_pid}/stat").read_text().split()[2] == "Z",
                      "the orphaned crawl to stop")
        finally:
            site.release_pages()
            if Path(f"/proc/{crawl_pid}").exists():
                os.kill(crawl_pid, signal.SIGKILL)
        # It stopped (as on SIGTERM: Scrapy's graceful shutdown), not died, and not finished
        # on its own as it would have, each held page timing out.
        report = json.loads((data / "crawls" / "run-orphan.json").read_text())
        assert report["finish_reason"] == "shutdown", report["finish_reason"]
        crawl_site_subprocess(entry, archive, _env(), data, "run-after-orphan")
    _assert_archived_once(archive, urls)


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_a_crawl_told_to_stop_while_it_starts_stops_and_says_so(corpus, tmp_path):
    """SIGTERM to a crawl that is still starting (importing Scrapy, claiming its workspace),
    as `newsarchive crawl` sends when Prefect cannot be reached: the crawl stops gracefully
    and writes its stats file, instead of dying unrecorded by the signal's default action."""
    data = tmp_path / "data"
    with NewsSite(corpus[:2], feed_size=0) as site:
        entry = local_site_config(site, feeds=[])
        crawl = _start_crawl(entry, str(tmp_path / "archive"), data, "run-early", _env())
        try:
            # The signal comes once the crawl notes it, and before Scrapy runs.
            _wait_for(lambda: crawl.poll() is not None or _catches(crawl.pid, signal.SIGTERM),
                      "the crawl to handle SIGTERM")
            crawl.send_signal(signal.SIGTERM)
            assert crawl.wait(timeout=120) == 0
        finally:
            crawl.kill()
    report = json.loads((data / "crawls" / "run-early.json").read_text())
    assert report["finish_reason"] == "shutdown", report["finish_reason"]


# Runs a crawl as `python -m spiders.run` does, with one addition: the crawl sends itself a
# SIGTERM as its spider opens, the moment between Scrapy's handler being installed (as the
# reactor starts) and the engine running, which a signal from outside hits only by chance.
_TERM_AS_THE_SPIDER_OPENS = """
import os, runpy, signal, sys
from scrapy import signals
from scrapy.crawler import CrawlerProcess

create_crawler = CrawlerProcess.create_crawler

def create_and_hook(self, *args, **kwargs):
    crawler = create_crawler(self, *args, **kwargs)
    crawler.signals.connect(lambda: os.kill(os.getpid(), signal.SIGTERM),
                            signal=signals.spider_opened, weak=False)
    return crawler

CrawlerProcess.create_crawler = create_and_hook
sys.argv[0] = "spiders.run"
runpy.run_module("spiders.run", run_name="__main__")
"""


def test_a_crawl_told_to_stop_as_its_spider_opens_stops_gracefully(corpus, tmp_path):
    """SIGTERM while the spider is opening (the reactor runs, the engine does not yet): the
    crawl stops gracefully once its engine runs, and says why in its stats file; not, as
    Scrapy alone does, stop the reactor with the spider never closed and no finish reason."""
    data = tmp_path / "data"
    with NewsSite(corpus[:2], feed_size=0) as site:
        entry = local_site_config(site, feeds=[])
        done = subprocess.run(
            [sys.executable, "-c", _TERM_AS_THE_SPIDER_OPENS, "--site-json",
             SiteConfig.model_validate(entry).model_dump_json(), "--archive",
             str(tmp_path / "archive"), "--run-id", "run-opening", "--stats-file",
             str(data / "crawls" / "run-opening.json"), "--data-dir", str(data),
             "--user-agent", "t", "--log-level", "WARNING"],
            cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((data / "crawls" / "run-opening.json").read_text())
    assert report["finish_reason"] == "shutdown", (report["finish_reason"], done.stderr[-3000:])
    assert "asked to stop while starting" in done.stderr
    # Closed, not abandoned: the spider's close ran (its counts are the closed crawl's).
    assert report["stats"].get("finish_time"), report["stats"]
