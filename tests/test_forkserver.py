"""The extraction pool stops multiprocessing's forkserver once every worker runs, through the
one function that touches multiprocessing's private forkserver state
(``spiders.extraction_pool._private_forkserver``). A Python that renames what it uses fails
here, rather than leaving an idle forkserver in every crawl unnoticed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from spiders.extraction_pool import ExtractionPool, _private_forkserver

# Guards against hanging only: how long a page's extraction, or the forkserver's going, may take.
_HANG_GUARD_SECONDS = 120


def _forkservers() -> list[int]:
    """This process's children that are multiprocessing's forkserver."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if stat[0] != b"Z" and int(stat[1]) == os.getpid() \
                and b"multiprocessing.forkserver" in cmdline and b"main(" in cmdline:
            found.append(int(entry))
    return found


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + _HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_this_python_has_the_private_forkserver_members_the_pool_uses():
    server = _private_forkserver()
    assert server is not None, "multiprocessing's forkserver changed: see spiders/extraction_pool.py"


def test_the_forkserver_stops_once_every_worker_runs_and_again_after_a_replacement(corpus):
    page = next(p for p in corpus if len(p.html) < 200_000)
    pool = ExtractionPool(1, timeout=_HANG_GUARD_SECONDS)
    try:
        first = pool.extract(page.html, "utf-8", page.original_url, 200)
        (worker,) = pool.worker_pids()
        _until(lambda: not _forkservers(), "the forkserver to stop")
        # The worker goes on without it; one that dies is replaced from a new forkserver,
        # which is stopped again once the replacement runs.
        assert pool.extract(page.html, "utf-8", page.original_url, 200).article == first.article
        os.kill(worker, signal.SIGKILL)
        assert pool.extract(page.html, "utf-8", page.original_url, 200).article == first.article
        (replacement,) = pool.worker_pids()
        assert replacement != worker
        _until(lambda: not _forkservers(), "the forkserver to stop again")
    finally:
        pool.close()


def test_no_process_starts_until_the_pool_is_started_or_given_a_page():
    idle = ExtractionPool(2, timeout=_HANG_GUARD_SECONDS)
    time.sleep(0.5)  # time enough for a slot that starts eagerly to have forked
    assert (idle.worker_pids(), _forkservers(), idle.started) == ([], [], 0)
    idle.close()
    assert (idle.worker_pids(), _forkservers(), idle.started) == ([], [], 0)

    warmed = ExtractionPool(2, timeout=_HANG_GUARD_SECONDS)
    try:
        warmed.start()  # no page yet: the workers start in the background
        _until(lambda: len(warmed.worker_pids()) == 2, "both workers to start")
        assert warmed.started == 2
    finally:
        warmed.close()


def test_the_workers_check_the_declared_language_against_the_text():
    """A template that declares English over a German article: the extraction workers check
    the declaration with the language model their forkserver loaded, so the crawl process
    needs none of its own."""
    paragraphs = "".join(
        f"<p>Der Stadtrat hat am Dienstagabend nach langer Debatte beschlossen, dass die "
        f"Straßenbahnlinie {n} bis zum Jahr 2030 in den Norden der Stadt verlängert wird. "
        f"Die Anwohner hatten sich seit Jahren für eine bessere Anbindung eingesetzt.</p>"
        for n in range(1, 7))
    html = (f"<html lang='en'><head><title>Straßenbahn wird verlängert</title></head><body>"
            f"<article><h1>Straßenbahn wird verlängert</h1>{paragraphs}</article></body></html>")
    pool = ExtractionPool(1, timeout=_HANG_GUARD_SECONDS)
    try:
        article = pool.extract(html.encode(), "utf-8", "http://127.0.0.1/tram", 200).article
    finally:
        pool.close()
    assert (article.language, article.sources.get("language")) == ("de", "detected")
