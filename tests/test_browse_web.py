"""``newsarchive browse``, driven in headless Chromium (Debian's ``chromium``, installed here
when missing) over the DevTools protocol: a user reaches an article from the front page by
following links, and an archived page whose headline, byline, summary and text carry
HTML and script payloads makes no request from any of them when its pages are opened.

The archive is a real crawl of the local news site (a few corpus pages and the hostile one)
into moto's S3 server; the UI is the real command, ``python -m flows browse --port 0``,
in a subprocess. A canary HTTP server records every request the payloads would make; a
control test proves that the same payloads, served without the UI's escaping and
sandboxing, do reach it.
"""

from __future__ import annotations

import html
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

import boto3
import pytest
from websockets.sync.client import connect

from storage import Archive, Record
from tests.conftest import AWS_TEST_ENV, REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite

SITE = "localnews"
HOSTILE_PATH = "/news/council-budget-vote-ends-late-story"
# How long a page gets, after its load event, for a payload's request to leave.
SETTLE_SECONDS = 0.3


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

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for n, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: n + 1]
                    return message
            self._events.append(json.loads(self.ws.recv(
                timeout=max(0.1, deadline - time.monotonic()))))

    def open(self, url: str) -> None:
        """Navigate to ``url``, wait for its load event (frames included), then a moment
        more for anything a script would send."""
        self._events.clear()
        result = self.call("Page.navigate", url=url)
        assert not result.get("errorText"), (url, result)
        self.wait_for("Page.loadEventFired")
        time.sleep(SETTLE_SECONDS)

    def evaluate(self, expression: str):
        """Evaluate ``expression`` in the page (as the test, not as the page) and return its
        JSON value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def frame_html(self) -> str:
        """The HTML of the document in the page's iframe. A sandboxed frame has an opaque
        origin, so Chromium runs it in a process (and a DevTools target) of its own."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list",
                                    timeout=10) as response:
            frames = [t for t in json.load(response) if t["type"] == "iframe"]
        assert len(frames) == 1, frames
        frame = DevTools(frames[0]["webSocketDebuggerUrl"], self.port)
        try:
            root = frame.call("DOM.getDocument", depth=-1)["root"]
            return frame.call("DOM.getOuterHTML", nodeId=root["nodeId"])["outerHTML"]
        finally:
            frame.close()

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


def hostile_page(canary: str) -> bytes:
    """An article page whose every field carries a payload that would request ``canary``:
    an ``<img onerror>`` in the headline, markup in the byline and summary, a ``<script>``
    in the text, and in the page itself scripts, an image, a stylesheet and a CSS
    background."""
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
    site = NewsSite(corpus[:5], feed_size=0).start()
    proc = None
    try:
        hostile_url = site.base_url + HOSTILE_PATH
        site.add_route(HOSTILE_PATH, hostile_page(canary.url))
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
                     hostile=hostile, hostile_raw=hostile_raw, canary=canary, site=site)
    finally:
        if proc is not None:
            stop(proc)
        site.stop()
        canary.stop()


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
    assert browser.evaluate("document.querySelectorAll('svg.bars rect').length") == 90
    assert browser.evaluate(
        "document.querySelectorAll('svg.lines polyline, svg.lines circle').length") >= 3

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
                 "/image", "/stylesheet", "/background"}


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
    for url in pages:
        browser.open(url)
        # Nothing the archive holds became an element of the UI...
        if "/original" not in url:
            assert browser.evaluate(
                "document.querySelectorAll('img, script, link:not([rel=stylesheet]),"
                " iframe:not(.original), object, embed').length") == 0, url
    time.sleep(1.0)
    # ...and no payload made a request.
    assert served.canary.hits == []

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
    browser.open(served.site.base_url + "/control/naive")
    browser.open(served.site.base_url + "/control/raw")
    time.sleep(1.0)
    hits = set(served.canary.hits)
    assert {"/headline", "/text", "/script", "/body-script", "/image", "/stylesheet",
            "/background"} <= hits, hits
    assert hits <= PAYLOAD_PATHS


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
    assert status == 200 and body == served.hostile_raw
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
    from browse.web import create_app
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
        assert 'href="/sites/alpha"' in front and '<td class="num">3</td>' in front
        site_page = get(ui + "/sites/alpha")[0]
        assert 'href="/sites/alpha/2024-05-01"' in site_page
        assert 'href="/sites/alpha/2024-05-03"' in site_page
        # 3 articles on 2 of the 90 days charted, 2 on the first: a full bar and a half one.
        heights = sorted(float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', site_page))
        assert heights[-2:] == [70.0, 140.0] and heights.count(0.0) == 88
        day = get(ui + "/sites/alpha/2024-05-01")[0]
        assert day.count('class="article"') == 2
        assert f'href="/articles/{stored[0].id}">Harbour reopens</a>' in day

        page = get(f"{ui}/articles/{stored[0].id}")[0]
        assert '<h1 class="title">Harbour reopens</h1>' in page
        assert "<p>The harbour reopened after the storm.</p>" in page
        assert "<p>Ferries run again.</p>" in page
        _, headers, raw = get(f"{ui}/articles/{stored[0].id}/original")
        assert raw == (b"<html><body><p>The harbour reopened after the storm.\n"
                       b"Ferries run again.</p></body></html>")
        assert headers["content-security-policy"].startswith("sandbox;")
        found = get(f"{ui}/search?q=FERRIES+harb&site=alpha")[0]
        assert found.count('class="article"') == 1 and stored[0].id in found
        assert get(f"{ui}/search?q=ferries+insurers")[0].count('class="article"') == 0
