"""Extraction in worker processes: the CPU-heavy part of archiving a page, off the crawl's
process, so that on a machine of N cores N extractions run while Scrapy's reactor keeps
downloading and the storage threads keep writing.

Why not ``concurrent.futures.ProcessPoolExecutor``: a page whose extraction exceeds its
time bound must be stopped, and the only way to stop CPU-bound Python is to kill its
process; an executor whose worker is killed breaks as a whole, failing every page in it.
Here each worker is fed by one thread of its own (a *slot*) that sends it a page and waits
for the answer at most ``timeout`` seconds; a worker that overruns is killed and replaced,
and only its page fails (:class:`ExtractionTimeout`).

Workers come from multiprocessing's *forkserver*: a clean process started once, which has
imported and warmed up the extractor (trafilatura, lxml, the language model), and forks each
worker from itself. Forking the crawl process itself would copy Twisted's and boto3's
threads' locks mid-use; spawning a fresh interpreter per worker would cost a second of CPU
per worker, and again for every replacement. Once every worker is up the forkserver is
stopped: its 130 MB would otherwise sit idle for the whole crawl (the workers keep sharing
the pages they were forked with); a replacement worker starts it again, for as long as it
takes. A worker ignores SIGINT (a Ctrl-C reaches the whole process group; the crawl decides
when its workers stop), ends when the crawl's end of its pipe closes, and exits the moment
the crawl process dies, even in the middle of a page (a thread waits on the crawl's pidfd),
so a crawl that is killed leaves no process behind.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import select
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import platformdirs

import normalize
from normalize import Article, PageKind, SoftBlock
from spiders.processes import when_gone

logger = logging.getLogger(__name__)

# Pages with fewer words than this are checked for CAPTCHAs, consent walls and paywalls.
SOFT_BLOCK_CHECK_WORDS = 300
# How long a new worker may take to be ready (a forkserver's first start imports and warms
# up the extractor; a busy machine slows that down several times).
_START_TIMEOUT_SECONDS = 120.0
_READY = "ready"
# How long a worker that is asked to stop may take before it is killed.
_STOP_GRACE_SECONDS = 2.0
# A page whose worker died (the OOM killer, a native crash, a signal from outside) is tried
# once more on a fresh worker; a page that kills two workers is an error.
_ATTEMPTS_PER_PAGE = 2
# A page with an article, so that warming up runs every step of extraction (the lines
# differ: repeated ones would be dropped as boilerplate).
_WARM_UP_HTML = (
    "<html lang='en'><head><title>Warm up</title></head><body><article>"
    + "".join(f"<p>Paragraph {n} of the page the extractor reads once, to load what it needs "
              f"before the crawl begins; it says nothing else of note, line {n}.</p>"
              for n in range(8))
    + "</article></body></html>")


class ExtractionFailed(Exception):
    """A page could not be extracted; its ``kind`` is the error kind recorded for it."""

    kind = "extract_failed"


class ExtractionTimeout(ExtractionFailed):
    """The page's extraction took longer than the time bound; its worker was killed."""

    kind = "extract_timeout"


class ExtractionCrashed(ExtractionFailed):
    """The page's worker died on it twice (a native crash, memory, a signal from outside),
    or no worker could be started."""

    kind = "extract_crashed"


class PoolClosed(ExtractionFailed):
    """The pool was closed before the page's turn came."""

    kind = "extract_cancelled"


class ExtractionBug(ExtractionFailed):
    """Extraction raised (a bug of ours: extraction is meant never to raise)."""

    kind = "internal"


@dataclass(frozen=True)
class PageExtraction:
    """What a worker found on one page."""

    article: Article
    """The extracted article (text not yet stripped of the site's learnt boilerplate)."""
    block: SoftBlock | None
    """The soft-block verdict, for pages that were checked (a status other than 200, or
    fewer than ``SOFT_BLOCK_CHECK_WORDS`` words); None for the long articles that skip it."""
    cpu_seconds: float
    """CPU time the worker spent on the page."""
    charset: str
    """The codec the body was read with (see :func:`normalize.decode_body`): what the
    record's ``charset`` says."""

    @property
    def blocked(self) -> bool:
        """A CAPTCHA or a consent wall: no article at all."""
        return self.block is not None and self.block.blocked

    @property
    def paywalled(self) -> bool:
        """A teaser behind a paywall."""
        return self.block is not None and self.block.kind is PageKind.PAYWALLED


def extract_page(body: bytes, encoding: str | None, url: str, status: int) -> PageExtraction:
    """Decode, extract and (for short or non-200 pages) check one page: everything that
    parses its HTML, in one place, on one decoded copy. ``encoding`` is the charset the
    fetch determined (declared, or guessed), if any; valid UTF-8 is read as UTF-8 whatever
    it says (:func:`normalize.decode_body`)."""
    started = time.process_time()
    # normalize.<function>: the extractor loads in the workers, not in the crawl's process,
    # which only reads what they found (normalize/__init__.py).
    charset, html = normalize.decode_body(body, encoding)
    # The language is checked against the text here too: its model is loaded once, in the
    # forkserver, and shared by the workers forked from it.
    article = normalize.extract_article(html, url)
    block = None
    # CAPTCHAs, consent walls and teasers all come with little text; classifying means a
    # second parse, so long articles (nearly every page) skip it.
    if status != 200 or len(article.text.split()) < SOFT_BLOCK_CHECK_WORDS:
        block = normalize.classify_page(html, article.text, status=status)
    return PageExtraction(article, block, time.process_time() - started, charset)


def warm_up() -> None:
    """Load everything extraction uses, once per process."""
    # The user's cache directory (XDG_CACHE_HOME, else ~/.cache, on Linux) keeps the language
    # model decompressed for the next crawls: 0.6 s of CPU less for each.
    normalize.load_language_detector(Path(platformdirs.user_cache_dir("newsarchive")))
    normalize.extract_article(_WARM_UP_HTML, "http://localhost/warm-up")


def _worker_main(conn: Connection, crawl_pid: int) -> None:
    """A worker: extract pages sent over ``conn`` until it closes or sends None, or until
    the crawl process ``crawl_pid`` is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_crawl(crawl_pid)
    _release_forkserver()
    # trafilatura warns about every page it discards; the crawl's stats record those outcomes.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    warm_up()  # a no-op when forked warm from the forkserver
    try:
        conn.send(_READY)
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the crawl is gone
        if job is None:
            return
        try:
            result = extract_page(*job)
        except Exception as exc:  # a bug of ours: report it with the page, keep the worker
            logger.exception("extraction of %s failed", job[2])
            result = _Raised(f"{exc.__class__.__name__}: {exc}")
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


@dataclass(frozen=True)
class _Raised:
    """What a worker sends back when extraction raised."""

    reason: str
    """The exception, as one line."""


def _die_with_crawl(crawl_pid: int) -> None:
    """Exit the moment the crawl process dies, even in the middle of a page. Not the
    kernel's PR_SET_PDEATHSIG: a worker's parent is the forkserver, which is stopped while
    the workers run."""
    when_gone(crawl_pid, lambda: os._exit(0), name="newsarchive-crawl-watch")


# -- multiprocessing's private forkserver state ------------------------------------------
#
# multiprocessing has no public way to stop its forkserver, and every process forked from it
# inherits the write end of its "alive" pipe, which keeps it running for as long as any of
# them holds it. Stopping it (60 MB or more, idle for the whole crawl) takes two private
# members of ``multiprocessing.forkserver``'s ForkServer: ``_stop()`` in the crawl, and
# ``_forkserver_alive_fd`` in each worker, which closes its copy. Both have been there since
# Python 3.8 (3.11 runs here); Python 3.14 reworks the forkserver (it becomes the default
# start method on Linux, and connections to it are authenticated), and any release may
# rename them. Only _private_forkserver() looks them up, so that the two sides cannot
# disagree: the crawl stopping it while a worker still holds the pipe would block in
# ``waitpid`` until that worker ends. A Python without them makes it return None: the
# forkserver then stays up, nothing else changes, and tests/test_forkserver.py fails to say so.


def _private_forkserver():
    """multiprocessing's ForkServer, when it has the private ``_stop`` and
    ``_forkserver_alive_fd`` that stopping it takes; None on a Python where it has not."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    if not callable(getattr(server, "_stop", None)) or not hasattr(server, "_forkserver_alive_fd"):
        return None
    return server


def _release_forkserver() -> None:
    """Close this worker's copy of the forkserver's "alive" pipe: the forkserver runs until
    every process holding it is gone, and a worker starts no processes of its own."""
    server = _private_forkserver()
    fd = server._forkserver_alive_fd if server is not None else None
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None


def _stop_forkserver() -> None:
    """Stop multiprocessing's forkserver, once every worker has released it (the next
    worker start starts it again)."""
    server = _private_forkserver()
    if server is None:
        return
    try:
        server._stop()
    except OSError as exc:
        logger.debug("could not stop the forkserver: %s", exc)


class _Worker:
    """One worker process and the crawl's end of its pipe.

    The process is signalled and waited for through a pidfd of its own, not through
    multiprocessing's handle: that handle learns the exit from the forkserver, which is
    stopped while the workers run (its handle would then report every worker dead)."""

    def __init__(self, context) -> None:
        ours, theirs = context.Pipe(duplex=True)
        self.process = context.Process(target=_worker_main, args=(theirs, os.getpid()),
                                       daemon=True, name="newsarchive-extract")
        self.conn = ours
        self._theirs = theirs
        self._pidfd: int | None = None

    def start(self) -> None:
        """Start the process and wait until it is ready for pages."""
        self.process.start()
        self._theirs.close()
        try:
            self._pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):  # no pidfds: multiprocessing's handle it is
            self._pidfd = None
        try:
            ready = self.conn.poll(_START_TIMEOUT_SECONDS) and self.conn.recv() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            reason = _exit_reason(self.process.exitcode)  # the forkserver still runs
            self.kill()
            raise OSError(f"the worker did not start ({reason})")

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        """Stop at once (a worker stuck on a page gets no say)."""
        self._kill()
        self._wait(_STOP_GRACE_SECONDS)
        self._close()

    def stop(self) -> None:
        """Ask to stop; kill if it does not within the grace period."""
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        if not self._wait(_STOP_GRACE_SECONDS):
            self._kill()
            self._wait(_STOP_GRACE_SECONDS)
        self._close()

    def _kill(self) -> None:
        if self._pidfd is None:
            self.process.kill()
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # gone already

    def _wait(self, timeout: float) -> bool:
        """Wait until the process has ended, at most ``timeout`` seconds; whether it has."""
        if self._pidfd is None:
            self.process.join(timeout)
            return not self.process.is_alive()
        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def _close(self) -> None:
        self.conn.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def default_pool_size() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ExtractionPool:
    """``size`` extraction workers, each fed by a thread (a slot) of its own.

    :meth:`submit` never blocks: pages queue up, and the caller bounds how many it has in
    flight (in the crawl, Scrapy's back-pressure does). A page whose extraction exceeds
    ``timeout`` seconds fails with :class:`ExtractionTimeout`; its worker is killed and the
    slot starts a fresh one for the next page.

    No process starts until :meth:`start` or the first :meth:`submit`: a crawl that finds
    nothing new to fetch, as most scheduled runs of an unchanged site, never pays for the
    forkserver (0.85 s of CPU, 40% of such a crawl, README "Throughput"). The crawl calls
    :meth:`start` when it asks for its first article, so that the workers are ready by the
    time the page arrives.
    """

    def __init__(self, size: int, timeout: float, *, start_method: str = "forkserver") -> None:
        if size < 1:
            raise ValueError(f"an extraction pool needs at least one worker, not {size}")
        if not timeout > 0:
            raise ValueError(f"the extraction time bound must be positive, not {timeout}")
        self.size = size
        self.timeout = float(timeout)
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # multiprocessing also re-runs the main module in each worker (as __mp_main__):
            # a module that starts workers keeps its own imports light (spiders.run does).
            self._context.set_forkserver_preload(["spiders.extraction_warmup"])
        self._stops_forkserver = start_method == "forkserver"
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Held while a worker starts, and while the forkserver is stopped: never both at once.
        self._starting = threading.Lock()
        self._workers: dict[int, _Worker] = {}
        self._wanted = threading.Event()  # set by start(), submit() and close()
        self._closed = False
        self._aborted = False
        self._replaced = 0
        self._started = 0
        self._slots = [threading.Thread(target=self._serve, args=(slot,), daemon=True,
                                        name=f"newsarchive-extract-{slot}")
                       for slot in range(size)]
        for thread in self._slots:
            thread.start()

    # -- the caller's side ----------------------------------------------------------------

    def start(self) -> None:
        """Start the workers now, in the background, rather than with the first page.
        Idempotent."""
        self._wanted.set()

    def submit(self, body: bytes, encoding: str, url: str,
               status: int) -> concurrent.futures.Future[PageExtraction]:
        """Queue one page; the future gives its :class:`PageExtraction`, or raises an
        :class:`ExtractionFailed`."""
        future: concurrent.futures.Future[PageExtraction] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                future.set_exception(PoolClosed("the extraction pool is closed"))
                return future
            self._jobs.put((future, (body, encoding, url, status)))
        self._wanted.set()
        return future

    def extract(self, body: bytes, encoding: str, url: str, status: int) -> PageExtraction:
        """Extract one page, waiting for the result (for threads, never the reactor)."""
        return self.submit(body, encoding, url, status).result()

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers."""
        with self._lock:
            return [w.pid for w in self._workers.values() if w.pid is not None]

    @property
    def started(self) -> int:
        """How many workers were started (0 until the pool is first needed)."""
        return self._started

    @property
    def replaced(self) -> int:
        """How many workers were killed (time-outs) or died, and were replaced."""
        return self._replaced

    def close(self, wait: bool = True) -> None:
        """Finish the pages queued so far, then stop every worker; or, without ``wait``,
        fail the queued pages (:class:`PoolClosed`) and kill the workers now. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._slots:
                    self._jobs.put(None)
                self._wanted.set()  # the slots wake, and start no worker for nothing
            if not wait:
                self._aborted = True
                workers = list(self._workers.values())
        if wait:
            for thread in self._slots:
                thread.join()
            return
        for worker in workers:
            worker.process.kill()  # its slot sees the pipe close and gives up

    # -- the slots ------------------------------------------------------------------------

    def _serve(self, slot: int) -> None:
        worker: _Worker | None = None
        try:
            self._wanted.wait()
            # Started ahead of the pages, so that they do not wait; once closed, a page
            # still queued starts its worker itself (_run).
            if not self._closed:
                try:
                    worker = self._start_worker(slot)
                except Exception as exc:  # tried again with the first page
                    logger.warning("cannot start extraction worker %d yet: %s", slot, exc)
            while True:
                item = self._jobs.get()
                if item is None:
                    return
                future, job = item
                if not future.set_running_or_notify_cancel():
                    continue
                if self._aborted:
                    future.set_exception(PoolClosed("the extraction pool was stopped"))
                    continue
                worker = self._run(slot, worker, future, job)
        finally:
            with self._lock:
                self._workers.pop(slot, None)
            if worker is not None:
                worker.stop()

    def _run(self, slot: int, worker: _Worker | None, future, job) -> _Worker | None:
        """Extract one page on the slot's worker (starting one if needed); returns the
        worker to use for the next page (None after it was killed)."""
        url = job[2]
        for attempt in range(1, _ATTEMPTS_PER_PAGE + 1):
            if worker is None:
                try:
                    worker = self._start_worker(slot)
                except Exception as exc:  # fork failed: no memory, no processes left
                    future.set_exception(ExtractionCrashed(f"cannot start a worker: {exc}"))
                    return None
            try:
                worker.conn.send(job)
                if not worker.conn.poll(self.timeout):
                    logger.warning("extraction of %s took longer than %g s; stopping worker %s",
                                   url, self.timeout, worker.pid)
                    self._retire(slot, worker)
                    future.set_exception(ExtractionTimeout(
                        f"extraction took longer than {self.timeout:g} s"))
                    return None
                result = worker.conn.recv()
            except (EOFError, OSError) as exc:
                self._retire(slot, worker)
                # Its exit status is the forkserver's to know, and the forkserver is stopped.
                why = f"its pipe broke: {exc.__class__.__name__}"
                worker = None
                if self._aborted:
                    future.set_exception(PoolClosed("the extraction pool was stopped"))
                    return None
                logger.warning("extraction worker died on %s (%s), attempt %d", url, why, attempt)
                if attempt == _ATTEMPTS_PER_PAGE:
                    future.set_exception(ExtractionCrashed(
                        f"the extraction worker died on this page twice ({why})"))
                continue
            if isinstance(result, _Raised):
                future.set_exception(ExtractionBug(result.reason))
            else:
                future.set_result(result)
            return worker
        return None

    def _start_worker(self, slot: int) -> _Worker:
        with self._starting:
            worker = _Worker(self._context)
            worker.start()  # (re)starts the forkserver if it is not running
            with self._lock:
                self._workers[slot] = worker
                self._started += 1
                every_slot_has_one = len(self._workers) == self.size
            if every_slot_has_one and self._stops_forkserver:
                _stop_forkserver()
        return worker

    def _retire(self, slot: int, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._workers.pop(slot, None)
            self._replaced += 1


def _exit_reason(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
