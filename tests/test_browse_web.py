"""``newsarchive browse``, driven in headless Chromium (Debian's ``chromium``, installed here
when missing) over the DevTools protocol: a user reaches an article from the front page by
following links, and an archived page whose headline, byline, summary and text carry
HTML and script payloads makes no request from any of them when its pages are opened, nor
does any resource hint (``<link rel=preconnect>``...) in it open a connection.

The archive is a real crawl of the local news site (a few corpus pages and the hostile one)
into moto's S3 server; the UI is the real command, ``python -m flows browse --port 0``,
in a subprocess. A canary HTTP server records every request the payloads would make, and a
canary TCP server on another loopback address every connection (a preconnect opens one and
sends nothing); a control test proves that the same payloads, served without the UI's
escaping, sandboxing and rewriting, do reach them.

The UI's answers to hostile requests (a long search, a bad version, a forged ``Host``) are
tested in-process, over a local archive.
"""

from __future__ import annotations

import base64
import html
import http.client
import itertools
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import lxml.html
import pytest
from websockets.sync.client import connect

from browse.original import READING_STYLE, page_for_display
from browse.web import create_app
from storage import Archive, Record
from tests.conftest import AWS_TEST_ENV, REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite

SITE = "localnews"
HOSTILE_PATH = "/news/council-budget-vote-ends-late-story"
HANG_GUARD_SECONDS = 60
"""Longest the test waits for Chromium or a canary to show what it waits for: reached only
when something hangs (or the awaited requests never come, in the control test)."""


# -- Chromium -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    """Debian's Chromium, installed with apt-get when it is missing."""
    found = shutil.which("chromium")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    failure = ""
    # Package lists may be missing or stale on a fresh machine: update them, then retry.
    for steps in ([install], [["apt-get", "update"], install]):
        for step in steps:
            try:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=1200)
            except (OSError, subprocess.TimeoutExpired) as exc:
                failure = f"{' '.join(step)}: {exc}"
                break
            if done.returncode != 0:
                failure = f"{' '.join(step)} exited {done.returncode}: {done.stderr.strip()[-500:]}"
                break
        if shutil.which("chromium"):
            break
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"Chromium is not installed and could not be installed ({failure})")
    return found


class DevTools:
    """A page of headless Chromium, driven over the DevTools protocol (a websocket)."""

    def __init__(self, websocket_url: str, port: int) -> None:
        self.ws = connect(websocket_url, max_size=None, open_timeout=20)
        self.port = port
        self._ids = itertools.count(1)
        self._events: list[dict] = []
        self.viewport: tuple[int, int] | None = None

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        number = next(self._ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self._events.append(message)

    def wait_for(self, event: str, timeout: float = HANG_GUARD_SECONDS, **params) -> dict:
        """The first event ``event`` (not yet waited for) whose params include ``params``;
        the events before it stay for later waits."""
        deadline = time.monotonic() + timeout
        while True:
            for n, message in enumerate(self._events):
                if message.get("method") == event and params.items() <= \
                        message.get("params", {}).items():
                    del self._events[n]
                    return message
            self._events.append(json.loads(self.ws.recv(
                timeout=max(0.1, deadline - time.monotonic()))))

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait until Chromium says the page is done: its load event
        (its frames loaded, with every image, stylesheet and script they hold) and then its
        network idle (no request in flight for 0.5 s, counted from the last answer: what the
        page's scripts and error handlers sent while it loaded has been answered, however
        slowly the machine runs them). The browser's own events, not a pause of ours: what
        the page requested has reached its server when this returns."""
        self._events.clear()
        result = self.call("Page.navigate", url=url)
        assert not result.get("errorText"), (url, result)
        self.wait_for("Page.loadEventFired")
        self.wait_for("Page.lifecycleEvent", name="networkIdle", frameId=result["frameId"],
                      loaderId=result["loaderId"])

    def evaluate(self, expression: str):
        """Evaluate ``expression`` in the page (as the test, not as the page) and return its
        JSON value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    @contextmanager
    def frame(self) -> Iterator[DevTools]:
        """The page's one iframe, as a DevTools client of its own. A sandboxed frame has an
        opaque origin, so Chromium runs it in a process (and a DevTools target) of its own."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list",
                                    timeout=10) as response:
            frames = [t for t in json.load(response) if t["type"] == "iframe"]
        assert len(frames) == 1, frames
        frame = DevTools(frames[0]["webSocketDebuggerUrl"], self.port)
        try:
            yield frame
        finally:
            frame.close()

    def frame_html(self) -> str:
        """The HTML of the document in the page's iframe."""
        with self.frame() as frame:
            root = frame.call("DOM.getDocument", depth=-1)["root"]
            return frame.call("DOM.getOuterHTML", nodeId=root["nodeId"])["outerHTML"]

    def set_viewport(self, width: int, height: int) -> None:
        """Lay pages out in a window of ``width`` x ``height`` CSS pixels."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.viewport = (width, height)

    def screenshot(self, path: Path) -> Path:
        """Write a PNG of the whole page to ``path``. The window is made as tall as the
        page first: Chromium does not paint a frame of another process (a sandboxed
        iframe) that is out of the window, even for a screenshot beyond it."""
        assert self.viewport is not None, "set_viewport() first: the window to restore"
        width, height = self.viewport
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        self.set_viewport(width, max(height, int(size["height"])))
        try:
            data = self.call("Page.captureScreenshot", timeout=HANG_GUARD_SECONDS,
                             format="png")["data"]
        finally:
            self.set_viewport(width, height)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def browser(chromium_binary) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile, and its one page."""
    profile = tempfile.mkdtemp(prefix="browse-chromium-")
    proc = subprocess.Popen(
        [chromium_binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"],
        # Its singleton socket's directory goes to TMPDIR, and stays there when Chromium
        # does not close cleanly: in the profile, it goes with it.
        env={**os.environ, "TMPDIR": profile},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        active = Path(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.05)
        port = active.read_text().splitlines()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"], int(port))
        tools.call("Page.enable")
        tools.call("Page.setLifecycleEventsEnabled", enabled=True)  # networkIdle, for open()
        tools.call("DOM.enable")
        yield tools
        tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(condition, timeout: float = HANG_GUARD_SECONDS) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the canary ---------------------------------------------------------------------------------


class Canary:
    """An HTTP server on 127.0.0.1 that records every request it gets: a payload that runs
    (or a resource that loads) shows up here."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CONNECTION_CANARY_HOST = "127.0.0.7"
"""The connection canary's address: a loopback address nothing else in the tests uses, named
by IP, so that a hint to it costs no DNS lookup and shows as a connection."""


class ConnectionCanary:
    """A TCP server that counts the connections it accepts, and answers none: a
    ``<link rel=preconnect>`` opens a connection and sends no request."""

    def __init__(self, host: str = CONNECTION_CANARY_HOST) -> None:
        self.connections = 0
        self._lock = threading.Lock()
        # Local addresses of the test's own connections (see count()), and the events set
        # once they are accepted.
        self._markers: dict[tuple[str, int], threading.Event] = {}
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                marker = self._markers.pop(peer[:2], None)
                if marker is None:
                    self.connections += 1
            if marker is not None:
                marker.set()
            conn.close()

    def count(self) -> int:
        """The connections others opened, counting every one opened before this call: the
        test opens one too and waits until the canary has accepted it. Connections are
        accepted in the order they were made, so none made earlier is still uncounted,
        however late this thread got to run."""
        accepted = threading.Event()
        with socket.socket() as marker:
            marker.bind((CONNECTION_CANARY_HOST, 0))
            with self._lock:
                self._markers[marker.getsockname()[:2]] = accepted
            marker.connect(self.sock.getsockname())
            assert accepted.wait(HANG_GUARD_SECONDS), "the connection canary accepts nothing"
        with self._lock:
            return self.connections

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


def hostile_page(canary: str, connect: str) -> bytes:
    """An article page whose every field carries a payload that would request ``canary``:
    an ``<img onerror>`` in the headline, markup in the byline and summary, a ``<script>``
    in the text, and in the page itself scripts, an image, a stylesheet and a CSS
    background; and resource hints, which no Content-Security-Policy stops: a preconnect
    and a dns-prefetch to ``connect`` (in any case and order of attributes, ``rel`` a list,
    one inside ``<svg><style>``, where a parser that is not a browser's sees text), a
    prefetch, a preload, a prerender and a modulepreload of ``canary``."""
    headline = f"Council budget vote <img src=x onerror=\"fetch('{canary}/headline')\"> ends late"
    text_script = f"<script>fetch('{canary}/text')</script>"
    e = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(headline)}</title>
<meta property="og:title" content="{e(headline)}">
<meta property="og:type" content="article">
<meta name="author" content="{e(f'Eve Mallory <img src={canary}/author>')}">
<meta name="description" content="{e(f'Summary <img src={canary}/description> of the vote')}">
<meta property="article:published_time" content="2024-03-05T10:00:00+00:00">
<link rel="stylesheet" href="{canary}/stylesheet">
<link rel="preconnect" href="{connect}">
<LINK HREF="{connect}/hinted" Rel="DNS-Prefetch  preconnect">
<link href="{canary}/prefetch" rel=prefetch>
<link as="image" rel="preload" href="{canary}/preload">
<link rel="prerender" href="{canary}/prerender">
<link rel="modulepreload" href="{canary}/modulepreload">
<script>fetch('{canary}/script')</script>
</head><body><article>
<h1>{e(headline)}</h1>
<p>The council met on Tuesday to discuss the new budget for the coming year, and members
argued for hours about the cost of roads, schools and parks across the whole city.</p>
<p>One speaker pasted this into the record: {e(text_script)} and the clerk read it aloud
to everyone present in the chamber, which drew some laughter from the public gallery.</p>
<p>In the end the budget passed by a narrow margin, with seven votes in favour and six
against, after a long night of debate that few of those present will forget soon.</p>
<div style="background-image: url('{canary}/background')">&nbsp;</div>
<img src="{canary}/image" alt="">
<script>fetch('{canary}/body-script')</script>
<svg width="0" height="0"><style><p></p><link rel="preconnect" href="{connect}"></style></svg>
</article></body></html>""".encode()


# -- the archive and the UI ------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """The module's archive, its UI and what the test knows from outside the UI."""

    ui: str
    """Base URL of ``newsarchive browse``, without a trailing slash."""
    archive_url: str
    """The archive."""
    records: dict[str, Record]
    """Every archived record, by id (read with ``storage``)."""
    texts: dict[str, str]
    """Every record's text, by id (read with ``storage``)."""
    hostile: Record
    """The hostile page's record."""
    hostile_raw: bytes
    """The hostile page as archived (read with ``storage``)."""
    canary: Canary
    """The canary server."""
    connection_canary: ConnectionCanary
    """The canary of connections (preconnects)."""
    site: NewsSite
    """The local news site (still serving)."""


def start_browse(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start ``python -m flows browse ARGS``; returns the process and the line it printed
    first on stdout (its URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "flows", "browse", *args], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise AssertionError("newsarchive browse printed nothing in 60 s") from None
    if not first:
        raise AssertionError(f"newsarchive browse exited: {proc.stderr.read()[-2000:]}")
    return proc, first.strip()


def stop(proc: subprocess.Popen) -> str:
    """Stop the server as Ctrl-C would; returns what it wrote on stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture(scope="module")
def served(corpus, moto_endpoint, tmp_path_factory) -> Iterator[Served]:
    env = {**os.environ, **AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint,
           "PYTHONPATH": str(REPO_ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("NEWSARCHIVE_")}
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"])
    bucket = f"browse-web-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    archive_url = f"s3://{bucket}/news"
    canary = Canary()
    connection_canary = ConnectionCanary()
    site = NewsSite(corpus[:5], feed_size=0).start()
    proc = None
    try:
        hostile_url = site.base_url + HOSTILE_PATH
        site.add_route(HOSTILE_PATH, hostile_page(canary.url, connection_canary.url))
        site.add_route("/extra-sitemap.xml", (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{hostile_url}</loc></url></urlset>").encode(),
            headers={"Content-Type": "application/xml"})
        entry = local_site_config(site, SITE, feeds=[], sitemaps=[
            f"{site.base_url}/robots.txt", f"{site.base_url}/extra-sitemap.xml"])
        crawl_site_subprocess(entry, archive_url, env, tmp_path_factory.mktemp("web-data"), "run-1")
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                if name.startswith("AWS_"):
                    mp.setenv(name, value)
            archive = Archive.open(archive_url)
            records = {r.id: r for r in archive.iter_records()}
            texts = {aid: archive.read_text(r) for aid, r in records.items()}
            hostile = archive.find(hostile_url)
            hostile_raw = archive.read_raw(hostile)
        assert hostile is not None and len(records) == 6
        assert "<img src=x onerror=" in hostile.title  # the payload reached the archive
        proc, line = start_browse(["--archive", archive_url, "--port", "0"], env)
        assert line.startswith(f"newsarchive: browsing {archive_url}"), line
        ui = line.split(" at ", 1)[1].split()[0].rstrip("/")
        assert ui.startswith("http://127.0.0.1:"), line
        yield Served(ui=ui, archive_url=archive_url, records=records, texts=texts,
                     hostile=hostile, hostile_raw=hostile_raw, canary=canary,
                     connection_canary=connection_canary, site=site)
    finally:
        if proc is not None:
            stop(proc)
        site.stop()
        canary.stop()
        connection_canary.stop()


LINK_TAG = re.compile(rb"<link[\t\n\f\r />]", re.IGNORECASE)
"""A ``<link`` tag start, as an HTML tokenizer reads one anywhere."""


def link_elements(page: bytes) -> list:
    """The ``<link>`` elements lxml finds in ``page``."""
    return lxml.html.document_fromstring(page).xpath("//link")


def html_text(page: bytes, encoding: str | None = None) -> list[str]:
    """The words of the text ``page`` shows (its scripts and styles left out), read in
    ``encoding``, else the one the page declares."""
    parser = lxml.html.HTMLParser(encoding=encoding)
    return " ".join(lxml.html.document_fromstring(page, parser=parser).xpath(
        "//body//text()[not(ancestor::script) and not(ancestor::style)]")).split()


def shown_text(page: bytes) -> list[str]:
    """:func:`html_text` of a page the UI served (in UTF-8, as its response says)."""
    return html_text(page, "utf-8")


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# -- a user's way to an article --------------------------------------------------------------------


def links(browser: DevTools, selector: str) -> list[tuple[str, str]]:
    """(text, href) of the links ``selector`` finds in the page."""
    return [tuple(pair) for pair in browser.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})]"
        ".map(a => [a.textContent, a.href])")]


def archive_day(record: Record) -> str:
    return "-".join(record.meta_key.split("/")[-5:-2])


def test_front_page_leads_to_an_article(served, browser):
    target = next(r for r in served.records.values() if r.id != served.hostile.id and r.title)
    browser.open(served.ui + "/")
    sites = links(browser, "a.site")
    assert [name for name, _ in sites] == [SITE]

    browser.open(sites[0][1])
    days = dict(links(browser, "a.day"))
    assert set(days) == {archive_day(r) for r in served.records.values()}
    # One bar per calendar day of the chart, days without articles included.
    bars = browser.evaluate("[...document.querySelectorAll('svg.bars rect.day')]"
                            ".map(r => [r.dataset.day, +r.dataset.value])")
    assert 14 <= len(bars) <= 90
    shown = [day for day, _ in bars]
    assert shown == sorted(shown) and len(set(shown)) == len(shown)
    assert sum(v for _, v in bars) == sum(
        1 for r in served.records.values() if archive_day(r) >= shown[0])
    assert browser.evaluate("document.querySelectorAll('svg.lines polyline.series').length") == 3

    browser.open(days[archive_day(target)])
    articles = dict(links(browser, "a.article"))
    assert target.title in articles
    browser.open(articles[target.title])

    assert browser.evaluate("document.querySelector('h1.title').textContent") == target.title
    assert browser.evaluate("document.title").startswith(target.title)
    shown = browser.evaluate("document.querySelector('div.text').innerText")
    paragraphs = [p.strip() for p in served.texts[target.id].split("\n") if p.strip()]
    assert len(paragraphs) >= 2 and all(p in shown for p in paragraphs)
    # The original page renders, inside a frame sandboxed of everything.
    assert browser.evaluate(
        "document.querySelector('iframe.original').getAttribute('sandbox')") == ""
    frame = browser.frame_html()
    assert len(frame) > 1000
    assert any(p[:40] in html.unescape(frame) for p in paragraphs), frame[:500]


# -- archived payloads -----------------------------------------------------------------------------

PAYLOAD_PATHS = {"/headline", "/text", "/author", "/description", "/script", "/body-script",
                 "/image", "/stylesheet", "/background", "/prefetch", "/preload", "/prerender",
                 "/modulepreload"}


def test_archived_payloads_trigger_no_request(served, browser):
    hostile = served.hostile
    article = f"{served.ui}/articles/{hostile.id}"
    pages = [
        served.ui + "/",
        f"{served.ui}/sites/{SITE}",
        f"{served.ui}/sites/{SITE}/{archive_day(hostile)}",
        article,
        article + "/original",  # the original page opened on its own, not in the frame
        f"{served.ui}/search?q=council+budget",
        f"{served.ui}/search?q=onerror",
    ]
    served.canary.hits.clear()
    connections = served.connection_canary.count()
    for url in pages:
        browser.open(url)  # loaded, and its network idle: what it sent has been answered
        # Nothing the archive holds became an element of the UI...
        if "/original" not in url:
            assert browser.evaluate(
                "document.querySelectorAll('img, script, link:not([rel=stylesheet]),"
                " iframe:not(.original), object, embed').length") == 0, url
    # ...and no payload made a request, nor a resource hint a connection.
    assert served.canary.hits == []
    assert served.connection_canary.count() == connections

    # The payloads were on the pages, as text.
    browser.open(article)
    title = browser.evaluate("document.querySelector('h1.title').textContent")
    assert title == hostile.title and "<img src=x onerror=" in title
    shown = browser.evaluate("document.querySelector('div.text').innerText")
    assert "<script>fetch(" in shown
    frame = browser.frame_html()  # the frame holds the page as archived, inert
    assert f"fetch('{served.canary.url}/body-script')" in frame
    browser.open(f"{served.ui}/search?q=council+budget")
    assert [a for a, _ in links(browser, "a.article")] == [hostile.title]
    assert served.canary.hits == []
    assert served.connection_canary.count() == connections


def test_the_canary_sees_payloads_served_without_protection(served, browser):
    """The control: the same payloads in a page that neither escapes nor sandboxes them do
    reach the canary, so the test above could fail."""
    hostile = served.hostile
    text = served.texts[hostile.id]
    naive = (f"<!doctype html><html><head><title>naive</title></head><body>"
             f"<h1>{hostile.title}</h1><p>{', '.join(hostile.authors)}</p>"
             f"<p>{hostile.description}</p>"
             + "".join(f"<p>{p}</p>" for p in text.split("\n")) + "</body></html>").encode()
    served.site.add_route("/control/naive", naive)
    served.site.add_route("/control/raw", served.hostile_raw)
    served.canary.hits.clear()
    connections = served.connection_canary.count()
    browser.open(served.site.base_url + "/control/naive")
    browser.open(served.site.base_url + "/control/raw")
    expected = {"/headline", "/text", "/script", "/body-script", "/image", "/stylesheet",
                "/background"}
    # Waited for, not slept on: the requests reach the canary when the machine lets them.
    assert wait_until(lambda: expected <= set(served.canary.hits)), served.canary.hits
    assert set(served.canary.hits) <= PAYLOAD_PATHS
    # The page's preconnects opened connections: no request, so only a TCP server sees them.
    assert wait_until(lambda: served.connection_canary.connections > connections)


# -- headers and routes ----------------------------------------------------------------------------


def test_security_headers_and_routes(served):
    hostile = served.hostile
    for path in ("/", f"/sites/{SITE}", f"/sites/{SITE}/{archive_day(hostile)}",
                 f"/articles/{hostile.id}", "/search?q=council", "/static/style.css"):
        status, headers, body = fetch(served.ui + path)
        assert status == 200, path
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, (path, csp)
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = fetch(f"{served.ui}/articles/{hostile.id}")
    assert b'<iframe class="original" sandbox src="/articles/' in body
    assert b"<img" not in body and b"<script" not in body
    assert b"Council budget vote &lt;img src=x onerror=&#34;fetch(" in body

    status, headers, body = fetch(f"{served.ui}/articles/{hostile.id}/original")
    # The page as archived, but for its <link> elements, and with the UI's reading style;
    # the stored raw page keeps them.
    assert status == 200 and body == page_for_display(served.hostile_raw, hostile.charset,
                                                      style=READING_STYLE)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert link_elements(body) == [] and not LINK_TAG.search(body)
    assert len(link_elements(served.hostile_raw)) == 7
    assert b'rel="preconnect"' in served.hostile_raw
    assert shown_text(body) == html_text(served.hostile_raw, served.hostile.charset)
    csp = [d.strip() for d in headers["content-security-policy"].split(";")]
    assert csp[0] == "sandbox" and "default-src 'none'" in csp
    assert "allow-scripts" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-type"].startswith("text/html")

    for path in ("/articles/not-an-id", "/articles/" + "0" * 24, "/sites/No_Such",
                 f"/sites/{SITE}/2001-01-01", f"/sites/{SITE}/not-a-day",
                 f"/articles/{hostile.id}?version=9", f"/articles/{hostile.id}/original?version=0",
                 "/nowhere"):
        status, headers, body = fetch(served.ui + path)
        assert status == 404, path
        assert "default-src 'none'" in headers["content-security-policy"]


def test_browse_warns_when_bound_beyond_this_machine(tmp_path, capsys):
    from flows.cli import main

    # The port is taken, so the command stops right after its warning, with a clear error.
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code = main(["browse", "--archive", str(tmp_path), "--host", "0.0.0.0", "--port", port])
        out, err = capsys.readouterr()
        assert code == 1 and out == ""
        lines = err.strip().splitlines()
        assert lines[0] == ("newsarchive: warning: serving on 0.0.0.0: anyone who can reach "
                            "this address can read the archive")
        assert lines[1].startswith(f"newsarchive: cannot serve on 0.0.0.0:{port}: ")
        # The default address: no warning (and the port is taken there too).
        code = main(["browse", "--archive", str(tmp_path), "--port", port])
        out, err = capsys.readouterr()
        assert code == 1 and out == ""
        assert err.startswith(f"newsarchive: cannot serve on 127.0.0.1:{port}: ")
        assert "warning" not in err


# -- a local archive, in-process -------------------------------------------------------------------


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn in a thread, on a free port of 127.0.0.1; yields its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def get(url: str) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = fetch(url)
    assert status == 200, (url, status)
    return body.decode("utf-8", "replace"), {k.lower(): v for k, v in headers.items()}, body


def test_the_ui_over_a_local_archive(tmp_path):
    from storage.catalog import CatalogWriter
    from tests.test_cli import store_article

    archive = Archive.open(str(tmp_path / "archive"))
    with serving(create_app(archive)) as ui:
        assert "catalog has no articles yet" in get(ui + "/")[0]

    writer = CatalogWriter(archive.backend, tmp_path / "pending", "local-run")
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    stored = []
    for n, (title, text) in enumerate([
            ("Harbour reopens", "The harbour reopened after the storm.\nFerries run again."),
            ("Storm damage counted", "Insurers counted the storm damage."),
            (None, "A page without a title or a date.")]):
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/story-{n}",
                               title=title, published=when if n < 2 else None,
                               fetched_at=when + timedelta(days=2), text=text,
                               raw=f"<html><body><p>{text}</p></body></html>".encode())
        writer.add(record, text)
        stored.append(record)
    writer.close()
    with serving(create_app(archive)) as ui:
        front = get(ui + "/")[0]
        assert 'href="/sites/alpha"' in front and '<td class="num articles">3</td>' in front
        site_page = get(ui + "/sites/alpha")[0]
        assert 'href="/sites/alpha/2024-05-01"' in site_page
        assert 'href="/sites/alpha/2024-05-03"' in site_page
        # 3 articles on 2 days, 2 on the first: a full bar and a half one, on a chart of
        # the 14 days up to the last (its least), the 12 others empty.
        heights = sorted(float(h) for h in re.findall(
            r'<rect class="day" [^>]*height="([\d.]+)"', site_page))
        assert heights[-2:] == [70.0, 140.0] and heights.count(0.0) == 12
        day = get(ui + "/sites/alpha/2024-05-01")[0]
        assert day.count('class="article"') == 2
        assert f'href="/articles/{stored[0].id}">Harbour reopens</a>' in day

        page = get(f"{ui}/articles/{stored[0].id}")[0]
        assert '<h1 class="title">Harbour reopens</h1>' in page
        assert "<p>The harbour reopened after the storm.</p>" in page
        assert "<p>Ferries run again.</p>" in page
        _, headers, raw = get(f"{ui}/articles/{stored[0].id}/original")
        assert raw == (b"<html><head><style>" + READING_STYLE.encode() + b"</style></head>"
                       b"<body><p>The harbour reopened after the storm.\n"
                       b"Ferries run again.</p></body></html>")
        assert headers["content-security-policy"].startswith("sandbox;")
        found = get(f"{ui}/search?q=FERRIES+harb&site=alpha")[0]
        assert found.count('class="article"') == 1 and stored[0].id in found
        assert get(f"{ui}/search?q=ferries+insurers")[0].count('class="article"') == 0


# -- hostile requests and pages, in-process --------------------------------------------------------

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "x-dns-prefetch-control": "off"}


def request(ui: str, path: str, *, host: str | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """``method path`` to the UI at ``ui``, with the ``Host`` header ``host`` (by default
    the one a browser sends for ``ui``)."""
    address = urlsplit(ui)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", address.netloc if host is None else host)
        conn.endheaders()
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        conn.close()


def assert_security_headers(headers: dict[str, str], what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (what, name, headers)
    assert "default-src 'none'" in headers.get("content-security-policy", ""), (what, headers)


HINTS_PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="windows-1252"><title>Hints</title>
<link rel="preconnect" href="https://publisher.example">
<LINK HREF="https://cdn.publisher.example" REL="DNS-PREFETCH">
<link href="https://publisher.example/next" rel="prefetch">
<link rel="dns-prefetch preconnect" href="//tracker.example">
<link as="script" href="https://publisher.example/app.js" rel=preload>
<link rel=prerender href=https://publisher.example/next>
<LiNk rel=modulepreload href=https://publisher.example/m.js/>
<link
 rel="stylesheet" href="https://publisher.example/site.css">
</head><body><h1>Caf\xe9 prices rise</h1>
<p>The price of coffee rose again.<link rel=preconnect href=https://in-body.example>Twice.</p>
<!-- a comment --!><link rel="preconnect" href="https://after-comment.example"> -->
<noscript><link rel="preconnect" href="https://noscript.example"></noscript>
<svg><style><p></p><link rel="preconnect" href="https://svg-style.example"></style></svg>
<template><link rel="preconnect" href="https://template.example"></template>
<textarea><link rel="preconnect" href="https://textarea.example"></textarea>
<script>var a = "<link rel=preconnect href=https://script.example>";</script>
</body></html>"""
"""A page with resource hints in every spelling, and in places where a parser that is not
a browser's may see text: after a comment closed by ``--!>``, in ``<noscript>`` (markup
when scripts are off, as in the sandbox), in ``<svg><style>``, in a ``<template>``."""


def test_page_for_display_has_no_link_elements():
    shown = page_for_display(HINTS_PAGE, "windows-1252")
    assert link_elements(HINTS_PAGE)  # the page had some...
    assert link_elements(shown) == []  # ...and has none left, as lxml reads it...
    assert not LINK_TAG.search(shown)  # ...nor as any HTML tokenizer may
    text = shown_text(shown)
    assert "Café" in text and "again.Twice." in text  # decoded; the text after a link kept
    assert shown.startswith(b"<!DOCTYPE html>\n<html>")
    # A page without <link> comes out as it went in.
    plain = b"<html><body><p>Nothing to remove.\nReally.</p></body></html>"
    assert page_for_display(plain, "utf-8") == plain
    # Encodings: a byte order mark wins, then the charset it was fetched with, then UTF-8,
    # then the page's own declaration; the result is UTF-8.
    assert "Ünïcode" in shown_text(page_for_display(
        "\ufeff<p>Ünïcode</p>".encode("utf-16-le"), "windows-1252"))
    assert "Ünïcode" in shown_text(page_for_display("<p>Ünïcode</p>".encode(), None))
    assert "Ünïcode" in shown_text(page_for_display(
        '<meta charset="iso-8859-1"><p>Ünïcode</p>'.encode("iso-8859-1"), None))
    assert "x" in shown_text(page_for_display(
        b'<?xml version="1.0" encoding="utf-8"?><html><body><p>x</p></body></html>', "utf-8"))
    assert page_for_display(b"", None) == b"" and page_for_display(b" \n ", "utf-8") == b""


def local_archive(tmp_path, articles: list[tuple[str, str, bytes]]) -> tuple[Archive, list]:
    """A local archive of ``articles`` (title, text, raw page) of site ``alpha``, with their
    catalog rows."""
    from storage.catalog import CatalogWriter
    from tests.test_cli import store_article

    archive = Archive.open(str(tmp_path / "archive"))
    writer = CatalogWriter(archive.backend, tmp_path / "pending", "local-run")
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    stored = []
    for n, (title, text, raw) in enumerate(articles):
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/story-{n}",
                               title=title, published=when, fetched_at=when, text=text, raw=raw,
                               charset="windows-1252")
        writer.add(record, text)
        stored.append(record)
    writer.close()
    return archive, stored


def test_the_original_is_served_without_link_elements(tmp_path):
    archive, (record,) = local_archive(tmp_path, [
        ("Café prices rise", "The price of coffee rose again. Twice.", HINTS_PAGE)])
    with serving(create_app(archive)) as ui:
        status, headers, body = request(ui, f"/articles/{record.id}/original")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"].startswith("sandbox;")
    assert link_elements(body) == [] and not LINK_TAG.search(body)
    assert "Café" in shown_text(body)
    assert archive.read_raw(record) == HINTS_PAGE  # the stored page is as received


def test_a_search_beyond_the_bounds_is_refused(tmp_path):
    from browse import catalog

    archive, (record,) = local_archive(tmp_path, [
        ("Harbour reopens", "The harbour reopened after the storm.", b"<p>x</p>")])
    words = "The harbour reopened after the storm".split()
    with serving(create_app(archive)) as ui:
        # 7,000 one-letter words: refused, with the reason, before any catalog is read.
        query = "+".join("abcdefghijklmnopqrstuvwxyz"[n % 26] for n in range(7000))
        status, headers, body = request(ui, f"/search?q={query}")
        page = body.decode()
        assert status == 400
        assert_security_headers(headers, "refused search")
        MAX_QUERY_WORDS, MAX_QUERY_CHARS = catalog.MAX_QUERY_WORDS, catalog.MAX_QUERY_CHARS
        assert (f"Not searched: a search takes at most {MAX_QUERY_WORDS} words and "
                f"{MAX_QUERY_CHARS} characters; this one has 7000 words and 13999 "
                "characters.") in page
        assert 'class="article"' not in page
        # The form keeps what fits in a query, for the user to shorten.
        kept = re.search(r'<input type="search" name="q" value="([^"]*)" aria-label="words">',
                         page).group(1)
        assert len(kept) == MAX_QUERY_CHARS and query.replace("+", " ").startswith(kept)
        # One word more than allowed, or one character more: refused too.
        status, _, body = request(ui, "/search?q=" + "+".join(["harbour"] * (MAX_QUERY_WORDS + 1)))
        assert status == 400 and b"this one has 33 words" in body
        status, _, body = request(ui, "/search?q=" + "h" * (MAX_QUERY_CHARS + 1))
        assert status == 400 and b"this one has 1 words and 501 characters" in body
        # As many words as allowed: searched.
        most = (words * 6)[:MAX_QUERY_WORDS]
        status, _, body = request(ui, "/search?q=" + "+".join(most))
        assert status == 200 and body.decode().count('class="article"') == 1
        assert record.id in body.decode()


def test_every_response_carries_the_security_headers(tmp_path):
    archive, (record,) = local_archive(tmp_path, [
        ("Harbour reopens", "The harbour reopened after the storm.", b"<p>x</p>")])
    with serving(create_app(archive)) as ui:
        # A version that str.isdigit() takes for a number and int() does not: a 400.
        status, headers, body = request(ui, f"/articles/{record.id}?version=%C2%B2")
        assert status == 400 and b"a version is a whole number" in body
        assert_security_headers(headers, "version=²")
        for path, expected in [
            (f"/articles/{record.id}?version=abc", 400),
            (f"/articles/{record.id}/original?version=%C2%B2", 400),
            (f"/articles/{record.id}?version=" + "1" * 5000, 404),  # int() refuses 5,000 digits
            (f"/articles/{record.id}?version=99999", 404),
            (f"/articles/{record.id}?version=1", 200),
            (f"/articles/{record.id}?version=", 200),
            ("/nowhere", 404),
            ("/static/nothing.css", 404),
            ("/sites/alpha/2024-13-01", 404),
        ]:
            status, headers, _ = request(ui, path)
            assert status == expected, (path, status)
            assert_security_headers(headers, path)
        status, headers, _ = request(ui, "/", method="POST")  # Starlette's own 405
        assert status == 405
        assert_security_headers(headers, "POST /")
        status, headers, body = request(ui, "/", host="attacker.example")  # Starlette's 400
        assert status == 400 and body == b"Invalid host header"
        assert_security_headers(headers, "forged Host")

        # An index entry that is not JSON (a write cut short): an error the UI does not
        # expect, a 500, with the headers.
        (marker,) = (tmp_path / "archive" / "_index" / "urls" / record.id[:2]).iterdir()
        marker.write_bytes(b'{"meta_key": ')
        status, headers, body = request(ui, f"/articles/{record.id}")
        assert status == 500 and b"Internal error" in body
        assert_security_headers(headers, "500")


def test_only_requests_for_the_bound_host_are_answered(tmp_path):
    archive = Archive.open(str(tmp_path / "archive"))
    with serving(create_app(archive)) as ui:
        port = urlsplit(ui).port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert request(ui, "/", host=host)[0] == 200, host
        # DNS rebinding: a page of attacker.example, its name now resolving to 127.0.0.1.
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.example",
                     "[::2]", "localhost.", ""):
            status, headers, body = request(ui, "/", host=host)
            assert status == 400 and b"archive" not in body, host

    from browse.web import allowed_host_names

    assert allowed_host_names("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_host_names("::1") == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_host_names("0.0.0.0", ["News.Internal"]) == [
        "127.0.0.1", "localhost", "[::1]", "news.internal"]
    assert allowed_host_names("192.0.2.10") == ["192.0.2.10"]
    assert allowed_host_names("2001:db8::1", ["news.example"]) == ["[2001:db8::1]",
                                                                   "news.example"]


def test_browse_on_another_address_answers_for_it_and_the_allowed_names(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    archive = str(tmp_path / "archive")
    Archive.open(archive)
    proc, line = start_browse(["--archive", archive, "--host", "127.0.0.2", "--port", "0",
                               "--allowed-host", "news.internal",
                               "--allowed-host", "*.proxy.example"], env)
    try:
        ui = line.split(" at ", 1)[1].split()[0].rstrip("/")
        assert ui.startswith("http://127.0.0.2:"), line
        port = urlsplit(ui).port
        for host in (f"127.0.0.2:{port}", "news.internal", "news.internal:443",
                     "a.proxy.example"):
            assert request(ui, "/", host=host)[0] == 200, host
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "attacker.example",
                     "proxy.example.attacker.example"):
            status, headers, _ = request(ui, "/", host=host)
            assert status == 400, host
            assert_security_headers(headers, host)
    finally:
        err = stop(proc)
    assert "warning: serving on 127.0.0.2" in err
