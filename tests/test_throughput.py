"""The pooled pipeline (issue 10): extraction in worker processes, storing in threads, a
bound on the pages in flight, a time bound per page's extraction, and a crawl that leaves no
process behind however it ends. Real extraction throughout. A page over the time bound is a
page whose worker the test has stopped (SIGSTOP): an extraction that never ends, on any
machine, as one stuck in the extractor would; the bound itself is far above what a real page
takes, so that a busy machine never makes one overrun it. Figures (pages/s, CPU, memory)
live in bench/throughput.py; nothing here looks at the clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from normalize import extract_article
from spiders.config import SiteConfig
from spiders.extraction_pool import ExtractionPool, ExtractionTimeout, default_pool_size
from spiders.settings import SCRAPER_SLOT_MAX_ACTIVE_SIZE, crawl_settings
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import HOLD_LIMIT_SECONDS, NewsSite

# Forty-five times the CPU the slowest corpus page under 1 MB takes (0.33 s): a guard
# against a hang, which a busy machine does not come near. The pages that overrun it are
# given to workers the test has stopped.
EXTRACT_TIMEOUT = 15.0
CONCURRENT_REQUESTS = 4
STUCK_PATH = "/news/the-report-whose-extraction-never-ends"


def stuck_page() -> bytes:
    """A short legal article, for a stopped worker. Short: the crawl hands it over in one
    write, whereas a page larger than the pipe's buffer would wait for the stopped worker to
    read it, before the time bound starts."""
    paragraphs = "".join(f"<p>Paragraph {n} of a report that is never extracted: its worker "
                         f"is stopped before it reads a word of it, line {n}.</p>"
                         for n in range(8))
    return (f"<html><head><title>A report never extracted</title></head><body><article>"
            f"{paragraphs}</article></body></html>").encode()


def processes_marked(marker: str) -> list[int]:
    """Live processes (zombies are dead) whose environment carries ``marker``: everything a
    crawl started with it in its environment started, workers and forkserver included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def extraction_workers(marker: str) -> list[int]:
    """The extraction workers among :func:`processes_marked`: forked from multiprocessing's
    forkserver, as the forkserver itself, but not children of the crawl process as it is."""
    crawls, forked = set(), {}
    for pid in processes_marked(marker):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            parent = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue  # gone meanwhile
        if b"spiders.run" in cmdline:
            crawls.add(pid)
        elif b"multiprocessing.forkserver" in cmdline:
            forked[pid] = parent
    return sorted(pid for pid, parent in forked.items() if parent not in crawls)


def _resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- one crawl, several questions -----------------------------------------------------------


@pytest.fixture(scope="module")
def pooled_crawl(corpus, tmp_path_factory):
    """The corpus pages under 1 MB and the stuck page, crawled once with the extraction time
    bound at EXTRACT_TIMEOUT, into a local archive. The site answers the stuck page once every
    other page is archived and the test has stopped every extraction worker: its extraction
    then overruns the bound, however fast the machine, and no other page's does."""
    tmp = tmp_path_factory.mktemp("pooled")
    pages = [p for p in corpus if len(p.html) < 1_000_000]
    marker = f"NEWSARCHIVE_TEST_CRAWL={uuid.uuid4().hex}"
    workers_stopped = threading.Event()
    with NewsSite(pages, feed_size=0) as site:
        site.add_route(STUCK_PATH, stuck_page(), wait_for=workers_stopped)
        site.add_route("/extra-sitemap.xml", (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{site.base_url}{STUCK_PATH}</loc></url></urlset>").encode(),
            headers={"Content-Type": "application/xml"})
        entry = local_site_config(site, feeds=[], concurrent_requests=CONCURRENT_REQUESTS,
                                  sitemaps=[f"{site.base_url}/robots.txt",
                                            f"{site.base_url}/extra-sitemap.xml"],
                                  extract_timeout=EXTRACT_TIMEOUT,
                                  # The stuck page's request waits as long as the site holds it.
                                  download_timeout=HOLD_LIMIT_SECONDS)
        key, value = marker.split("=")
        (tmp / "tmpdir").mkdir()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), key: value, "TMPDIR": str(tmp / "tmpdir")}
        archive = tmp / "archive"
        stopped: list[int] = []
        with ThreadPoolExecutor(1) as runner:
            crawl = runner.submit(crawl_site_subprocess, entry, str(archive), env, tmp / "data",
                                  "pooled")
            try:
                wait_for(lambda: crawl.done() or (
                    len(list(archive.rglob("meta.json"))) == len(pages)
                    and len(extraction_workers(marker)) == default_pool_size()),
                    300, "every other page to be archived")
                if not crawl.done():  # else it failed: its error is raised below
                    stopped = extraction_workers(marker)
                    for pid in stopped:
                        os.kill(pid, signal.SIGSTOP)
            finally:
                workers_stopped.set()
            try:
                report = crawl.result()
            finally:
                for pid in stopped:  # killed by the crawl; if not (it failed), not left stopped
                    _resume(pid)
        left = processes_marked(marker)
        yield {"report": report, "stats": report["stats"], "pages": pages, "site_url": site.base_url,
               "archive": tmp / "archive", "left": left, "tmpdir": tmp / "tmpdir"}


def test_every_page_is_archived_with_its_extraction(pooled_crawl):
    stats, pages = pooled_crawl["stats"], pooled_crawl["pages"]
    assert stats["newsarchive/archive/written"] == len(pages)
    records = [json.loads(p.read_text()) for p in pooled_crawl["archive"].rglob("meta.json")]
    assert len(records) == len(pages)
    by_path = {r["url"].removeprefix(pooled_crawl["site_url"]).split("?")[0]: r for r in records}
    for page in pages[::4]:
        # What the workers extracted is what the record says: the same as extracting here.
        expected = extract_article(page.html, pooled_crawl["site_url"] + page.path)
        record = by_path[page.path]
        assert record["title"] == expected.title
        assert record["language"] == expected.language
        text = (pooled_crawl["archive"] / record["text_key"]).read_text(encoding="utf-8")
        assert text and set(text.split("\n")) <= set(expected.text.split("\n"))
    # Where the CPU went is measured, per part.
    assert stats["newsarchive/cpu/extract_seconds"] > 0
    assert 0 < stats["newsarchive/cpu/store_seconds"] < stats["newsarchive/cpu/crawl_process_seconds"]


def test_pages_in_flight_stay_within_the_back_pressure_bound(pooled_crawl):
    """Downloading outruns extraction many times over, so without back-pressure every page
    of the site would wait in memory; with it, no more than Scrapy's active-size bound and
    the pages of the requests already handed to the downloader when it was crossed: Scrapy
    gives the downloader up to CONCURRENT_REQUESTS requests at once (16: more than the
    site's 4 at a time, which it queues), and fetches them all. How many pages wait depends
    on how far extraction lags behind, the machine's speed; the bound does not."""
    stats, pages = pooled_crawl["stats"], pooled_crawl["pages"]
    site = SiteConfig.model_validate({"name": "x", "allowed_domains": ["127.0.0.1"],
                                      "sitemaps": ["http://127.0.0.1/s.xml"],
                                      "concurrent_requests": CONCURRENT_REQUESTS})
    handed = crawl_settings(site, archive_url="/a", run_id="r",
                            user_agent="t").getint("CONCURRENT_REQUESTS")
    largest_first = sorted((len(p.html) for p in pages), reverse=True)
    bound = SCRAPER_SLOT_MAX_ACTIVE_SIZE + sum(largest_first[:handed])
    assert sum(len(p.html) for p in pages) > 2 * bound  # the bound is a real limit here
    assert 0 < stats["newsarchive/pipeline/max_bytes_in_flight"] <= bound, bound
    assert stats["newsarchive/pipeline/max_pages_in_flight"] < len(pages)


def test_a_page_over_the_time_bound_is_an_error_and_its_worker_replaced(pooled_crawl):
    report, stats = pooled_crawl["report"], pooled_crawl["stats"]
    timeouts = [e for e in report["errors"] if e["kind"] == "extract_timeout"]
    assert [e["url"] for e in timeouts] == [pooled_crawl["site_url"] + STUCK_PATH]
    assert f"{EXTRACT_TIMEOUT:g} s" in timeouts[0]["reason"]
    assert stats["newsarchive/extract/workers_replaced"] == 1
    assert report["finish_reason"] == "finished"


def test_the_crawl_leaves_no_process_behind(pooled_crawl):
    assert pooled_crawl["left"] == []
    # Nor multiprocessing's temporary directory (the forkserver's socket), one a crawl.
    assert list(pooled_crawl["tmpdir"].iterdir()) == []


def test_extract_timeout_is_validated():
    base = {"name": "x", "allowed_domains": ["example.com"], "sitemaps": ["https://example.com/s.xml"]}
    assert SiteConfig.model_validate(base).extract_timeout == 30.0
    for bad in (0, -1, 601, "soon"):
        with pytest.raises(ValueError):
            SiteConfig.model_validate({**base, "extract_timeout": bad})


# -- the pool itself -------------------------------------------------------------------------


def test_the_pool_kills_an_overrunning_worker_and_goes_on_with_a_fresh_one(corpus):
    page = next(p for p in corpus if len(p.html) < 200_000)
    pool = ExtractionPool(1, timeout=EXTRACT_TIMEOUT)
    try:
        first = pool.extract(page.html, "utf-8", page.original_url, 200)
        assert first.article.text
        (stuck,) = pool.worker_pids()
        os.kill(stuck, signal.SIGSTOP)  # its next extraction never ends
        try:
            with pytest.raises(ExtractionTimeout):
                pool.extract(stuck_page(), "utf-8", "http://127.0.0.1" + STUCK_PATH, 200)
        finally:
            _resume(stuck)  # if it was not killed
        assert not _alive(stuck)  # killed, not leaked
        again = pool.extract(page.html, "utf-8", page.original_url, 200)
        assert again.article == first.article
        (fresh,) = pool.worker_pids()
        assert fresh != stuck and pool.replaced == 1
        # A worker that dies between pages (the OOM killer, say) is replaced too, and the
        # page it was given is extracted by its successor.
        os.kill(fresh, signal.SIGKILL)
        wait_for(lambda: not _alive(fresh), 10, "the worker to die")
        assert pool.extract(page.html, "utf-8", page.original_url, 200).article == first.article
    finally:
        pool.close()
    assert pool.worker_pids() == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


# -- shutdown -------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_crawl_stopped_by_a_signal_leaves_no_process_behind(corpus, tmp_path, sig):
    """SIGTERM: Scrapy's graceful stop closes the pool; SIGKILL: the workers see their pipe
    close and the kernel kills them with their parent (PR_SET_PDEATHSIG). The site answers
    two pages and holds the rest until the signal is sent: the crawl is in the middle when
    it is stopped, however fast the machine."""
    marker = f"NEWSARCHIVE_TEST_CRAWL={uuid.uuid4().hex}"
    key, value = marker.split("=")
    archive = tmp_path / "archive"
    with NewsSite(corpus[:30], feed_size=0) as site:
        site.hold_pages(after=2)
        entry = local_site_config(site, feeds=[], concurrent_requests=1,
                                  download_timeout=HOLD_LIMIT_SECONDS)
        stats_file = tmp_path / "stats.json"
        crawl = subprocess.Popen(
            [sys.executable, "-m", "spiders.run", "--site-json",
             SiteConfig.model_validate(entry).model_dump_json(), "--archive",
             str(archive), "--run-id", "stopped", "--stats-file", str(stats_file),
             "--data-dir", str(tmp_path / "data"), "--user-agent", "t", "--log-level", "WARNING"],
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), key: value})
        try:
            # Every extraction worker under way, and the two pages archived.
            wait_for(lambda: len(extraction_workers(marker)) == default_pool_size(), 120,
                     "the extraction workers")
            wait_for(lambda: len(list(archive.rglob("meta.json"))) == 2, 120,
                     "the first articles")
            crawl.send_signal(sig)
            # Answered after the signal: stopping gracefully, the crawl finishes the requests
            # it has handed to its downloader (16 at most, Scrapy's CONCURRENT_REQUESTS) and
            # sends no other, so it stops short of the 30 pages.
            site.release_pages()
            crawl.wait(timeout=120)
        finally:
            site.release_pages()
            crawl.kill()
        wait_for(lambda: not processes_marked(marker), 60, "every process of the crawl to end")
        if sig == signal.SIGTERM:
            report = json.loads(stats_file.read_text())
            assert report["finish_reason"] == "shutdown"
            archived = report["stats"].get("newsarchive/archive/written", 0)
            assert 2 <= archived < 30
            assert archived == len(list(archive.rglob("meta.json")))


# -- what each process loads ------------------------------------------------------------------


@pytest.mark.parametrize("entry, kept_out", [
    # The command (and `serve`) runs for as long as its crawls, beside them: Scrapy and Twisted (50 MB),
    # numpy (16 MB) and pyarrow (90 MB) stay in the crawl process, which needs them.
    ("import flows.cli, flows.crawl, flows.backfill, flows.deployments, flows.server",
     ("scrapy", "twisted", "numpy", "pyarrow")),
    # The crawl process writes the catalog at the end of its run, after its workers stopped.
    ("import spiders.run, spiders.pipelines, spiders.news", ("pyarrow",)),
])
def test_heavy_libraries_stay_out_of_processes_that_do_not_need_them(entry, kept_out):
    probe = f"import sys; {entry}; print([m for m in {kept_out!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []
