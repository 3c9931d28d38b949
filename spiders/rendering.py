"""Screenshots of archived pages, "the page as it looked", for sites with ``screenshot =
true``: headless Chromium (the system's, ``chromium`` on the PATH; nothing is downloaded),
driven by Playwright, renders the archived body and captures the whole page as a PNG, which
the archive stores beside ``raw.html.gz``.

**Where it runs.** Playwright's sync API blocks, and cannot run on Scrapy's reactor thread;
a browser must also be bounded in time and memory like extraction. So Chromium runs under
a *renderer process* of its own, fed one page at a time by one thread of the crawl (its
slot), the way an extraction worker is (:mod:`spiders.extraction_pool`): the reactor only
queues pages and gets futures back. The renderer is started by multiprocessing's *spawn*
(a fresh interpreter: a fork of the crawl process would carry its threads' locks mid-use),
in a session of its own (a Ctrl-C at the terminal is the crawl's to handle, as it stops),
and exits the moment the crawl process dies, however it dies; Playwright's driver and
Chromium follow it, their pipe to it closed.

**Bounds.**

- Time: the renderer gives a page ``screenshot_timeout`` seconds, loading and capture
  together; a page not captured by then gets none (``screenshot_timeout``). The slot waits
  that long plus a grace for the renderer's answer; a renderer that does not answer is
  killed with its driver and browser, and a fresh one takes the next page.
- Memory: while a page renders, the slot watches the resident memory of the renderer and
  every process under it (driver, browser, its renderers); beyond
  :data:`MAX_RENDERER_BYTES` they are killed (``screenshot_crashed``), and a renderer found
  beyond three quarters of it after a page is restarted before the next.
- Size: the capture is at most :data:`MAX_WIDTH` by :data:`MAX_HEIGHT` CSS pixels (the page's
  top), at one pixel per CSS pixel; a PNG over :data:`MAX_BYTES` is dropped
  (``screenshot_too_large``). Each page gets a fresh browser context: no cookie, cache or
  storage of the page before.

**What is rendered** is the archived body, never a new fetch of the page: Chromium's request
for the page's URL is answered with the bytes the crawl archived (so that relative URLs
resolve against the page's own), typed ``text/html`` with the charset the site declared.
The page's scripts do not run: a crawl runs Chromium without its sandbox (as root in a
container it can have none), and an archived page's scripts are what a hostile site would
attack it with; a page that builds itself with scripts shows as its HTML and styles.

**Subresources** (stylesheets, images, fonts, frames) load only from the site's
``allowed_domains`` over http(s), GET only, as the crawl itself may fetch; any other request
(third-party ads, trackers, analytics, other CDNs) is blocked, and a navigation away from
the page (a meta refresh) is answered "204 No Content", which leaves the page shown. The
renderer fetches them itself for Chromium, not Chromium: one at a time (a gentler load
than a reader's browser), with the crawl's User-Agent, at
most :data:`MAX_SUBRESOURCES` requests a page and :data:`MAX_SUBRESOURCE_BYTES` each,
every address checked as the crawl's are (:func:`spiders.reach.address_refusal`: no
loopback, private or link-local address unless ``allow_private_hosts`` lists the host) and
connected to as checked, so that a site's DNS cannot point it at the machine's own services
or the cloud's metadata endpoint, whose answers would end up in the picture. They share
the page's time: one still unanswered when it is up makes the page a
``screenshot_timeout``, a page that never finished loading. robots.txt is not asked:
it rules what a crawler may request as pages, and these are what the pages themselves ask
every reader's browser to load.

**Failures** of any kind are warnings (:func:`spiders.stats.record_warning`): the article is
stored without a screenshot, and the crawl goes on.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import queue
import re
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from spiders.hosts import host_matcher
from spiders.processes import when_gone

logger = logging.getLogger(__name__)

VIEWPORT_WIDTH = 1280
"""Width of the page's window, in CSS pixels (a laptop's)."""
VIEWPORT_HEIGHT = 800
"""Height of the page's window: a full-page capture of a longer page is taller."""
MAX_WIDTH = 2 * VIEWPORT_WIDTH
"""Widest capture, in CSS pixels: a page wider than its window shows up to this much."""
MAX_HEIGHT = 16_384
"""Tallest capture, in CSS pixels (Chromium's largest texture side): a longer page shows
its top this long."""
MAX_BYTES = 20 * 1024 * 1024
"""Largest PNG kept; a larger capture is dropped (``screenshot_too_large``)."""
MAX_RENDERER_BYTES = 1536 * 1024 * 1024
"""Most resident memory the renderer, Playwright's driver and Chromium may use together."""
MAX_SUBRESOURCES = 200
"""Most subresource requests a page may make; later ones are blocked."""
MAX_SUBRESOURCE_BYTES = 5 * 1024 * 1024
"""Largest subresource fetched (after decompression); a larger one is blocked."""
CHROMIUM_ARGS = ("--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--no-first-run",
                 "--no-default-browser-check", "--mute-audio")
"""Chromium's flags: no sandbox (none can be had as root in a container), /tmp rather than a
container's small /dev/shm, and none of the browser's own traffic (updates, sync)."""

# How long a new renderer may take to be ready (Playwright's driver, then Chromium; a busy
# machine slows both down several times).
_START_TIMEOUT_SECONDS = 120.0
# Beyond the page's own time: for the renderer to close the page and send its answer.
_ANSWER_GRACE_SECONDS = 30.0
# How often the slot looks at the renderer's memory while a page renders.
_WATCH_SECONDS = 0.5
# How long a renderer asked to stop may take before it is killed.
_STOP_GRACE_SECONDS = 10.0
# Renderers that fail to start one after the other before the crawl stops trying (every
# page then fails at once, saying why: Chromium is not installed, say).
_STARTS_BEFORE_GIVING_UP = 2
_READY = "ready"
# A page's failure that came before the page: its browser was gone (tried once more, on a
# new one).
_NO_BROWSER = "no_browser"
# Response headers passed on to Chromium with a subresource: what it needs to use it.
_KEPT_HEADERS = frozenset({"content-type", "location", "access-control-allow-origin",
                           "access-control-allow-credentials"})
_CHARSET = re.compile(r"^[A-Za-z0-9._:-]{1,40}$")


class ScreenshotFailed(Exception):
    """A page's screenshot could not be taken; its ``kind`` is the warning recorded."""

    kind = "screenshot_failed"


class ScreenshotTimeout(ScreenshotFailed):
    """The page did not load and capture within ``screenshot_timeout`` (or its renderer did
    not answer in time, and was killed)."""

    kind = "screenshot_timeout"


class ScreenshotCrashed(ScreenshotFailed):
    """The renderer died on the page, or went beyond its memory bound and was killed."""

    kind = "screenshot_crashed"


class ScreenshotTooLarge(ScreenshotFailed):
    """The capture was larger than :data:`MAX_BYTES`."""

    kind = "screenshot_too_large"


class RendererClosed(ScreenshotFailed):
    """The renderer was closed before the page's turn came."""

    kind = "screenshot_cancelled"


_FAILURES = {cls.kind: cls for cls in (ScreenshotFailed, ScreenshotTimeout, ScreenshotCrashed,
                                       ScreenshotTooLarge, RendererClosed)}


@dataclass(frozen=True)
class RenderSettings:
    """How a site's pages are rendered (the renderer process gets a copy)."""

    timeout: float
    """Seconds one page may take, loading and capture (the site's ``screenshot_timeout``)."""
    allowed_domains: tuple[str, ...]
    """Domains subresources may come from (subdomains included): the site's."""
    allow_private_hosts: tuple[str, ...] = ()
    """Hosts that may be reached at non-public addresses: the site's."""
    user_agent: str = ""
    """The crawl's User-Agent, sent with every subresource request."""
    executable: str | None = None
    """Chromium's path; None: ``chromium`` on the PATH."""


@dataclass(frozen=True)
class _Failure:
    """What the renderer sends back for a page it could not capture."""

    kind: str
    """A :class:`ScreenshotFailed` kind."""
    reason: str
    """Why, in one line."""
    last: bool = False
    """The renderer ends after this answer (it cannot go on): the next page needs another."""


def chromium_executable() -> str:
    """The system's Chromium; ScreenshotFailed if there is none on the PATH."""
    found = shutil.which("chromium")
    if found is None:
        raise ScreenshotFailed("Chromium is not installed (no `chromium` on the PATH)")
    return found


def declared_content_type(headers: list[tuple[str, str]]) -> str:
    """The Content-Type a page is rendered with: HTML, in the charset its response declared
    (else none: Chromium reads the page's ``<meta charset>``, as a reader's browser did)."""
    message = Message()
    for name, value in headers:
        if name.lower() == "content-type":
            message["Content-Type"] = value
            break
    charset = message.get_param("charset")
    if isinstance(charset, str) and _CHARSET.fullmatch(charset):
        return f"text/html; charset={charset}"
    return "text/html"


# -- the crawl's side ----------------------------------------------------------------------


class PageRenderer:
    """One renderer process, fed by one thread (a slot) of its own; see the module.

    :meth:`submit` never blocks: pages queue up, and the caller bounds how many it has in
    flight (in the crawl, Scrapy's back-pressure does).
    """

    def __init__(self, settings: RenderSettings, *, start_method: str = "spawn") -> None:
        if not settings.timeout > 0:
            raise ValueError(f"the screenshot time bound must be positive, not {settings.timeout}")
        self.settings = settings
        self._context = multiprocessing.get_context(start_method)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._aborted = False
        self._replaced = 0
        self._failed_starts = 0
        self._unavailable = ""
        self._renderer: _Renderer | None = None
        self._slot = threading.Thread(target=self._serve, daemon=True, name="newsarchive-render")
        self._slot.start()

    def submit(self, body: bytes, url: str, content_type: str = "text/html"
               ) -> concurrent.futures.Future[bytes]:
        """Queue one page (its archived ``body``, fetched from ``url``, rendered as
        ``content_type``); the future gives its PNG, or raises a :class:`ScreenshotFailed`."""
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                future.set_exception(RendererClosed("the renderer is closed"))
                return future
            self._jobs.put((future, (body, url, content_type)))
        return future

    def render(self, body: bytes, url: str, content_type: str = "text/html") -> bytes:
        """Render one page, waiting for its PNG (for threads, never the reactor)."""
        return self.submit(body, url, content_type).result()

    @property
    def replaced(self) -> int:
        """How many renderers were killed (time-outs, memory) or died, or restarted."""
        return self._replaced

    def renderer_pid(self) -> int | None:
        """Process id of the running renderer, if one runs."""
        renderer = self._renderer
        return renderer.process.pid if renderer is not None else None

    def close(self, wait: bool = True) -> None:
        """Finish the pages queued so far, then stop the renderer; or, without ``wait``, fail
        the queued pages (:class:`RendererClosed`) and kill the renderer now. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
            if not wait:
                self._aborted = True
                renderer = self._renderer
        if wait:
            self._slot.join()
        elif renderer is not None:
            renderer.kill()  # the slot sees its pipe close and gives up

    # -- the slot ---------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            # Started before the first page arrives, so that it does not wait for Chromium.
            try:
                self._renderer = self._start()
            except Exception as exc:  # tried again with the first page, which says why
                logger.warning("cannot start the page renderer yet: %s", exc)
            while True:
                item = self._jobs.get()
                if item is None:
                    return
                future, job = item
                if not future.set_running_or_notify_cancel():
                    continue
                if self._aborted:
                    future.set_exception(RendererClosed("the renderer was stopped"))
                    continue
                try:
                    future.set_result(self._run(job))
                except ScreenshotFailed as exc:
                    future.set_exception(exc)
                except Exception as exc:  # a bug of ours: the page's warning says so
                    logger.exception("rendering %s failed", job[1])
                    future.set_exception(ScreenshotFailed(f"{exc.__class__.__name__}: {exc}"))
        finally:
            renderer, self._renderer = self._renderer, None
            if renderer is not None:
                renderer.stop()

    def _start(self) -> _Renderer:
        if self._unavailable:
            raise ScreenshotFailed(self._unavailable)
        renderer = _Renderer(self._context, self.settings)
        try:
            renderer.start()
        except ScreenshotFailed as exc:
            self._failed_starts += 1
            if self._failed_starts >= _STARTS_BEFORE_GIVING_UP:
                self._unavailable = f"{exc} (no more renderers are started in this crawl)"
            raise
        self._failed_starts = 0
        return renderer

    def _run(self, job: tuple[bytes, str, str]) -> bytes:
        """Render one page on the renderer (starting one if needed)."""
        if self._renderer is None:
            self._renderer = self._start()
        renderer = self._renderer
        try:
            renderer.conn.send(job)
            answer = self._answer(renderer, job[1])
        except (EOFError, OSError) as exc:
            self._retire(renderer)
            if self._aborted:
                raise RendererClosed("the renderer was stopped") from None
            raise ScreenshotCrashed(f"the renderer died on this page ({exc.__class__.__name__}); "
                                    "a new one takes the next") from None
        used = renderer.memory()
        if used > MAX_RENDERER_BYTES * 3 // 4:
            # Before it reaches its bound in the middle of a page, which would cost the page.
            logger.info("restarting the page renderer: it holds %d MiB", used >> 20)
            self._retire(renderer, gracefully=True)
        if isinstance(answer, _Failure):
            if answer.last and self._renderer is renderer:
                self._retire(renderer, gracefully=True)
            raise _FAILURES.get(answer.kind, ScreenshotFailed)(answer.reason)
        return answer

    def _answer(self, renderer: _Renderer, url: str):
        """The renderer's answer for the page it was sent, within the page's time and its
        memory bound; the renderer is killed (and the page fails) if it goes beyond either."""
        deadline = time.monotonic() + self.settings.timeout + _ANSWER_GRACE_SECONDS
        while not renderer.conn.poll(_WATCH_SECONDS):
            if self._aborted:
                raise RendererClosed("the renderer was stopped")
            used = renderer.memory()
            if used > MAX_RENDERER_BYTES:
                logger.warning("rendering %s took %d MiB; killing the renderer", url, used >> 20)
                self._retire(renderer)
                raise ScreenshotCrashed(f"the renderer took {used >> 20} MiB, beyond its bound "
                                        f"of {MAX_RENDERER_BYTES >> 20} MiB; it was replaced")
            if time.monotonic() > deadline:
                logger.warning("rendering %s did not end in time; killing the renderer", url)
                self._retire(renderer)
                raise ScreenshotTimeout(f"the renderer did not answer within "
                                        f"{self.settings.timeout + _ANSWER_GRACE_SECONDS:g} s; "
                                        "it was replaced")
        return renderer.conn.recv()

    def _retire(self, renderer: _Renderer, gracefully: bool = False) -> None:
        renderer.stop() if gracefully else renderer.kill()
        self._renderer = None
        self._replaced += 1


class _Renderer:
    """One renderer process and the crawl's end of its pipe."""

    def __init__(self, context, settings: RenderSettings) -> None:
        ours, theirs = context.Pipe(duplex=True)
        # The renderer's temporary directory (its TMPDIR): Chromium leaves a directory for
        # its singleton socket in it when it is killed, as a renderer past its time is, and
        # Playwright its profile; removed with the renderer, so that none piles up in /tmp.
        # A short name: the socket's path must fit in 108 bytes.
        self.temporary = tempfile.mkdtemp(prefix="render-")
        self.process = context.Process(target=_renderer_main,
                                       args=(theirs, os.getpid(), settings, self.temporary),
                                       daemon=True, name="newsarchive-render")
        self.conn = ours
        self._theirs = theirs

    def start(self) -> None:
        """Start the process and wait until its browser is up; ScreenshotFailed if not."""
        try:
            self.process.start()
        except OSError as exc:  # no memory, no processes left
            raise ScreenshotFailed(f"cannot start the renderer: {exc}") from None
        finally:
            self._theirs.close()
        try:
            answer = self.conn.recv() if self.conn.poll(_START_TIMEOUT_SECONDS) else None
        except (EOFError, OSError):
            answer = None
        if answer == _READY:
            return
        self.kill()
        why = answer.reason if isinstance(answer, _Failure) else \
            f"not ready within {_START_TIMEOUT_SECONDS:g} s (exit status {self.process.exitcode})"
        raise ScreenshotFailed(f"cannot start the renderer: {why}")

    def memory(self) -> int:
        """Bytes of memory the renderer and every process under it hold (0 where there is
        no /proc to read them from)."""
        total = 0
        for pid in _process_tree(self.process.pid):
            total += _proportional_memory(pid)
        return total

    def kill(self) -> None:
        """Kill the renderer and everything under it at once, and wait until they have
        ended (their memory is free before another renderer starts). Playwright's driver
        starts Chromium in a process group of its own, so only the process tree finds it;
        each is signalled and waited for through a pidfd, which cannot name another process
        that took its number meanwhile."""
        pidfds = []
        for pid in _process_tree(self.process.pid):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue  # gone already
            except (AttributeError, OSError):  # no pidfds: a plain signal, not waited for
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                continue
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            pidfds.append(pidfd)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for pidfd in pidfds:
            select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
            os.close(pidfd)
        self.process.join(_STOP_GRACE_SECONDS)
        self.conn.close()
        shutil.rmtree(self.temporary, ignore_errors=True)

    def stop(self) -> None:
        """Ask the renderer to stop (it closes its browser); kill it if it does not in time."""
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(_STOP_GRACE_SECONDS)
        if self.process.exitcode is None:
            self.kill()
        else:
            self.conn.close()
            shutil.rmtree(self.temporary, ignore_errors=True)


def _proportional_memory(pid: int) -> int:
    """Bytes of memory process ``pid`` holds, the pages it shares with others counted in
    shares (its PSS: Chromium's processes share much, which resident sizes would count over
    and over); its resident size where the kernel gives no PSS; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _process_tree(pid: int | None) -> list[int]:
    """``pid`` and every process under it, from /proc (only ``pid`` without it)."""
    if pid is None:
        return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    todo += [int(child) for child in children.read().split()]
            except (OSError, ValueError):
                continue
    return found


# -- the renderer process --------------------------------------------------------------------


def _renderer_main(conn, crawl_pid: int, settings: RenderSettings, temporary: str) -> None:
    """The renderer: start Chromium, then render the pages sent over ``conn`` until it
    closes or sends None, or until the crawl process ``crawl_pid`` is gone; Playwright's
    driver and Chromium keep their temporary files under ``temporary``."""
    os.environ["TMPDIR"] = temporary
    tempfile.tempdir = None  # this process's own, should it ask, from TMPDIR too
    os.setsid()  # no terminal's Ctrl-C: the crawl stops it when it is done
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    when_gone(crawl_pid, lambda: os._exit(0), name="newsarchive-crawl-watch")
    try:
        from playwright.sync_api import sync_playwright

        executable = settings.executable or chromium_executable()
        with sync_playwright() as playwright:
            def launch():
                return playwright.chromium.launch(
                    executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
                    timeout=_START_TIMEOUT_SECONDS * 1000, handle_sigint=False)

            browser = launch()
            conn.send(_READY)
            while True:
                try:
                    job = conn.recv()
                except (EOFError, OSError):
                    return  # the crawl is gone
                if job is None:
                    return
                if not browser.is_connected():
                    browser = launch()
                answer = _render(browser, settings, *job)
                if not browser.is_connected():  # Chromium died: a crash, the OOM killer
                    browser = launch()
                    if isinstance(answer, _Failure) and answer.kind == _NO_BROWSER:
                        # It died before this page, which is not to blame: once more.
                        answer = _render(browser, settings, *job)
                if isinstance(answer, _Failure) and answer.kind == _NO_BROWSER:
                    answer = _Failure(ScreenshotCrashed.kind, answer.reason)
                conn.send(answer)
    except (BrokenPipeError, EOFError):
        return
    except Exception as exc:  # Chromium missing or failing to start
        try:
            conn.send(_Failure(ScreenshotFailed.kind, _one_line(exc), last=True))
        except OSError:
            pass


def _render(browser, settings: RenderSettings, body: bytes, url: str, content_type: str):
    """One page's PNG, or the :class:`_Failure` that says why there is none."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + settings.timeout
    try:
        context = browser.new_context(
            viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
            device_scale_factor=1, java_script_enabled=False, service_workers="block",
            accept_downloads=False, user_agent=settings.user_agent or None)
    except PlaywrightError as exc:
        return _Failure(_NO_BROWSER, f"Chromium is gone: {_one_line(exc)}")
    subresources = _Subresources(settings, deadline)
    served = False

    def route(route) -> None:
        nonlocal served
        request = route.request
        try:
            if not served and request.is_navigation_request():
                served = True  # the page itself: from the archive
                route.fulfill(status=200, headers={"Content-Type": content_type}, body=body)
                return
            if request.is_navigation_request() and request.frame.parent_frame is None:
                # Away from the page (a meta refresh): "204 No Content" leaves the page
                # where it is, where a blocked navigation would show an error page instead.
                route.fulfill(status=204)
                return
            answer = subresources.fetch(request.url, request.method, request.headers)
            if answer is None:
                route.abort("blockedbyclient")
            else:
                status, headers, content = answer
                route.fulfill(status=status, headers=headers, body=content)
        except PlaywrightError:
            pass  # the page is closed already (its time is up)

    try:
        page = context.new_page()
        page.route("**/*", route)
        page.goto(url, wait_until="load", timeout=_milliseconds_left(deadline))
        if subresources.timed_out:
            raise PlaywrightTimeout("a subresource did not answer in time")
        png = page.screenshot(type="png", full_page=True, scale="css", animations="disabled",
                              caret="hide", timeout=_milliseconds_left(deadline),
                              clip={"x": 0, "y": 0, "width": MAX_WIDTH, "height": MAX_HEIGHT})
    except PlaywrightTimeout:
        return _Failure(ScreenshotTimeout.kind,
                        f"the page did not load and render within {settings.timeout:g} s")
    except PlaywrightError as exc:
        kind = ScreenshotFailed.kind if browser.is_connected() else ScreenshotCrashed.kind
        return _Failure(kind, _one_line(exc))
    finally:
        subresources.close()
        try:
            context.close()
        except PlaywrightError:
            pass
    if subresources.timed_out:  # answered meanwhile, but after the page's time was up
        return _Failure(ScreenshotTimeout.kind,
                        f"the page did not load and render within {settings.timeout:g} s")
    if len(png) > MAX_BYTES:
        return _Failure(ScreenshotTooLarge.kind,
                        f"the capture is {len(png)} bytes, more than {MAX_BYTES}")
    return png


def _milliseconds_left(deadline: float) -> float:
    """What is left until ``deadline``, in Playwright's milliseconds (at least 1: 0 would
    mean no time bound at all)."""
    return max(1.0, (deadline - time.monotonic()) * 1000)


def _one_line(exc: BaseException) -> str:
    """An exception as one line (Playwright's messages carry call logs below the first)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{exc.__class__.__name__}: {first}"[:500]


class _Subresources:
    """A page's subresources, fetched by the renderer for Chromium (see the module):
    within the site, checked addresses, the page's time, bounded counts and sizes."""

    def __init__(self, settings: RenderSettings, deadline: float) -> None:
        self._on_site = host_matcher(settings.allowed_domains)
        self.allow_private_hosts = settings.allow_private_hosts
        self.user_agent = settings.user_agent
        self.deadline = deadline
        self.requests = 0
        self.timed_out = False
        """Whether a subresource was still unanswered when the page's time ran out."""
        self._pools: dict[tuple[str, str, int, str], object] = {}

    def fetch(self, url: str, method: str, headers: dict[str, str]
              ) -> tuple[int, dict[str, str], bytes] | None:
        """The response Chromium gets for a request, or None: the request is blocked."""
        import urllib3

        try:
            parts = urlsplit(url)
            host, port = (parts.hostname or "").rstrip("."), parts.port
        except ValueError:
            return None
        if method != "GET" or parts.scheme not in ("http", "https") or not self._on_site(host):
            return None
        if self.requests >= MAX_SUBRESOURCES:
            return None
        self.requests += 1
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            return None
        port = port or (443 if parts.scheme == "https" else 80)
        address = self._checked_address(host, port)
        if address is None:
            return None
        pool = self._pool(parts.scheme, address, port, host)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        name = f"[{host}]" if ":" in host else host
        sent = {"Host": name if parts.port is None else f"{name}:{parts.port}",
                "User-Agent": self.user_agent or headers.get("user-agent", ""),
                "Accept": headers.get("accept", "*/*"), "Accept-Encoding": "gzip, deflate"}
        for header in ("referer", "origin"):
            if header in headers:
                sent[header.title()] = headers[header]
        try:
            response = pool.urlopen("GET", target, headers=sent, redirect=False, retries=False,
                                    preload_content=False, decode_content=True,
                                    assert_same_host=False,
                                    timeout=urllib3.Timeout(connect=left, read=left))
            try:
                content = bytearray()
                for chunk in response.stream(64 * 1024):
                    content += chunk
                    if len(content) > MAX_SUBRESOURCE_BYTES:
                        return None
                    if time.monotonic() > self.deadline:
                        self.timed_out = True
                        return None
            finally:
                response.release_conn()
        except urllib3.exceptions.TimeoutError:
            # Given all the page's time that was left: the page did not load in time.
            self.timed_out = True
            return None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            logger.debug("subresource %s: %s", url, exc)
            return None
        kept = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
        return response.status, kept, bytes(content)

    def _checked_address(self, host: str, port: int) -> str | None:
        """The address to connect to for ``host``, if the crawl may reach it."""
        from spiders.reach import address_refusal

        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        why = address_refusal(host, addresses, self.allow_private_hosts) if addresses else "none"
        if why is not None:
            logger.debug("subresource host %s refused: %s", host, why)
            return None
        return addresses[0]

    def _pool(self, scheme: str, address: str, port: int, host: str):
        """A connection pool to ``address``, reused for the page; TLS names ``host``."""
        import urllib3

        key = (scheme, address, port, host)
        pool = self._pools.get(key)
        if pool is None:
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(address, port, maxsize=1, block=False,
                                                   server_hostname=host, assert_hostname=host)
            else:
                pool = urllib3.HTTPConnectionPool(address, port, maxsize=1, block=False)
            self._pools[key] = pool
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
