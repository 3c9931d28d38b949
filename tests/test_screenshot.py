"""Screenshots of archived pages (``screenshot = true``): real crawls of the local news site
(``python -m spiders.run`` subprocesses) with headless Chromium (Debian's ``chromium``,
installed when missing, as the browser test does), into a local archive; the renderer's
bounds (a renderer that answers nothing, or holds too much memory, is killed with its
browser; a browser that dies is replaced; no Chromium at all is a reason, not a hang); the
archive's storing of screenshots on both backends; and the web UI serving one.

Besides corpus pages, the site serves articles of our own: one whose stylesheet comes from
the site, whose other subresources are third-party (a canary on another loopback address),
on a domain of the site that resolves to a private address, or a meta refresh away from the
page, with a script that never ends; and one whose stylesheet never answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from browse.web import create_app
from spiders import rendering
from spiders.config import SiteConfig
from spiders.rendering import (
    MAX_HEIGHT,
    MAX_WIDTH,
    VIEWPORT_HEIGHT,
    VIEWPORT_WIDTH,
    PageRenderer,
    RenderSettings,
    ScreenshotCrashed,
    ScreenshotFailed,
    ScreenshotTimeout,
)
from storage import Archive, Record, StoreOutcome
from storage.keys import keys_of_meta
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite
from tests.test_browse_web import chromium_binary, fetch, serving  # noqa: F401 (a fixture)
from tests.test_storage import make_record

STYLED_PATH = "/news/2024/05/harbour-ferries-return-after-the-storm"
HANGING_PATH = "/news/2024/05/council-budget-meeting-runs-past-midnight"
GREEN = (0, 128, 0)
"""The styled page's background, from the site's stylesheet."""
SITE_CSS = b"body { background: rgb(0, 128, 0); } p { margin: 0 0 120px; }"
"""The styled page's stylesheet: a background that shows it was applied, and paragraphs far
enough apart that the page is much taller than the window."""


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header, after checking that it is one."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:16]
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def top_left_pixel(png: bytes) -> tuple[int, int, int]:
    """The RGB of a PNG's first pixel (8-bit RGB or RGBA): whatever a row's filter, its
    first pixel is stored as is when it is the first row."""
    bit_depth, colour_type = png[24], png[25]
    assert bit_depth == 8 and colour_type in (2, 6), (bit_depth, colour_type)
    data, offset = b"", 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        if kind == b"IDAT":
            data += png[offset + 8:offset + 8 + length]
        offset += 12 + length
    first_row = zlib.decompressobj().decompress(data, 16)
    return tuple(first_row[1:4])


def article_html(title: str, head: str = "", body: str = "") -> bytes:
    """A news article long enough for extraction, with ``head`` and ``body`` markup added."""
    things = ("ferries", "harbour master", "fishing fleet", "council", "insurers", "dock workers",
              "weather office", "coast guard", "ticket office", "island schools", "mayor",
              "repair crews", "port authority", "tourist board")
    paragraphs = "".join(
        f"<p>{title}: the {thing} said on Tuesday that paragraph {n} of this report should "
        f"be read as an account of how the {thing} coped, what it cost, and what the "
        f"{things[(n + 3) % len(things)]} will do before the next storm reaches the bay.</p>"
        for n, thing in enumerate(things))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"{head}</head><body><article><h1>{title}</h1>{paragraphs}</article>{body}"
            "</body></html>").encode()


class Canary:
    """An HTTP server on 127.0.0.2, standing for every third party: it records what reaches it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                canary.requests.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sitemap(*urls: str) -> bytes:
    entries = "".join(f"<url><loc>{url}</loc></url>" for url in urls)
    return (f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{entries}</urlset>").encode()


@dataclass(frozen=True)
class Crawled:
    """A crawl of the local site with screenshots on, and what it left."""

    site: NewsSite
    archive: Archive
    archive_dir: Path
    report: dict
    records: dict[str, Record]
    canary: Canary


def crawl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    return {**env, "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def site(corpus) -> Iterator[NewsSite]:
    site = NewsSite(corpus[:3], feed_size=0).start()
    never = threading.Event()
    site.add_route("/assets/site.css", SITE_CSS, headers={"Content-Type": "text/css"})
    site.add_route("/assets/never.css", b"body { background: red; }",
                   headers={"Content-Type": "text/css"}, wait_for=never)
    site.add_route(HANGING_PATH, article_html(
        "Council budget meeting runs past midnight",
        head="<link rel='stylesheet' href='/assets/never.css'>"))
    site.add_route("/hanging-sitemap.xml", sitemap(site.base_url + HANGING_PATH),
                   headers={"Content-Type": "application/xml"})
    try:
        yield site
    finally:
        never.set()
        site.stop()


@pytest.fixture(scope="module")
def crawled(site, chromium_binary, tmp_path_factory) -> Iterator[Crawled]:  # noqa: F811
    canary = Canary()
    site.add_route(STYLED_PATH, article_html(
        "Harbour ferries return after the storm",
        head=("<link rel='stylesheet' href='/assets/site.css'>"
              f"<link rel='stylesheet' href='{canary.url}/third-party.css'>"
              f"<link rel='stylesheet' href='http://localhost:{site.port}/private.css'>"
              "<script>for (;;) {}</script>"),
        # Beyond the first 4,096 characters, where the crawl (which follows a refresh it
        # finds there) leaves it to browsers.
        body=(f"<img src='{canary.url}/pixel.gif' alt=''><footer>"
              + "<p>Write to the newsroom at the harbour office.</p>" * 60
              + "</footer><meta http-equiv='refresh' content='0; url=/elsewhere'>")))
    site.add_route("/styled-sitemap.xml", sitemap(site.base_url + STYLED_PATH),
                   headers={"Content-Type": "application/xml"})
    site.clear_requests()
    archive_dir = tmp_path_factory.mktemp("screenshots") / "archive"
    # localhost is the site's too, but only 127.0.0.1 may be reached at a private address.
    entry = local_site_config(site, feeds=[], screenshot=True,
                              allowed_domains=["127.0.0.1", "localhost"],
                              sitemaps=[f"{site.base_url}/robots.txt",
                                        f"{site.base_url}/styled-sitemap.xml"])
    try:
        report = crawl_site_subprocess(entry, str(archive_dir), crawl_env(),
                                       tmp_path_factory.mktemp("screenshot-data"), "run-shots")
        archive = Archive.open(str(archive_dir))
        records = {r.url: r for r in archive.iter_records()}
        yield Crawled(site, archive, archive_dir, report, records, canary)
    finally:
        canary.stop()


# -- the crawl ------------------------------------------------------------------------------


def test_every_article_gets_a_full_page_png_beside_its_raw_page(crawled):
    assert len(crawled.records) == 4, crawled.report["errors"]
    for record in crawled.records.values():
        keys = keys_of_meta(crawled.archive.backend.relative(record.meta_key))
        assert record.screenshot_key == crawled.archive.locate(keys.screenshot)
        assert record.screenshot_key.endswith(f"/{record.id}/screenshot.png")
        png = (crawled.archive_dir / record.screenshot_key).read_bytes()
        assert crawled.archive.read_screenshot(record) == png
        width, height = png_size(png)
        assert VIEWPORT_WIDTH <= width <= MAX_WIDTH and 0 < height <= MAX_HEIGHT
    stats = crawled.report["stats"]
    assert stats["newsarchive/screenshot/stored"] == 4
    assert not any(k.startswith("newsarchive/warnings/") for k in stats), stats
    # The catalog has it too.
    from storage.catalog import read_catalog

    rows = read_catalog(str(crawled.archive_dir), columns=["url", "screenshot_key"]).to_pylist()
    assert {r["url"]: r["screenshot_key"] for r in rows} == {
        url: r.screenshot_key for url, r in crawled.records.items()}


def test_the_screenshot_is_the_archived_page_styled_from_the_site_and_nothing_else(crawled):
    record = crawled.records[crawled.site.base_url + STYLED_PATH]
    png = crawled.archive.read_screenshot(record)
    width, height = png_size(png)
    # The whole page, much taller than the window, in the site's style: its stylesheet
    # loaded, its endless script never ran, its meta refresh went nowhere.
    assert width == VIEWPORT_WIDTH and height > 2 * VIEWPORT_HEIGHT
    assert top_left_pixel(png) == GREEN
    requests = crawled.site.request_log
    # The page itself was fetched once, by the crawl: it was rendered from the archive.
    assert [r.target for r in requests].count(STYLED_PATH) == 1
    (css,) = [r for r in requests if r.target == "/assets/site.css"]
    assert css.headers.get("User-Agent") == "newsarchive-test"
    # Nothing off the site, nothing at a private address the site may not reach, no
    # navigation away.
    assert crawled.canary.requests == []
    assert not {"/private.css", "/elsewhere"} & {r.target for r in requests}


def test_screenshots_are_off_by_default(site, tmp_path):
    site.add_route("/plain-sitemap.xml", sitemap(site.base_url + site.pages[0].path),
                   headers={"Content-Type": "application/xml"})
    archive_dir = tmp_path / "archive"
    entry = local_site_config(site, feeds=[], sitemaps=[f"{site.base_url}/plain-sitemap.xml"])
    assert SiteConfig.model_validate(entry).screenshot is False
    report = crawl_site_subprocess(entry, str(archive_dir), crawl_env(), tmp_path / "data",
                                   "run-plain")
    (record,) = Archive.open(str(archive_dir)).iter_records()
    assert record.screenshot_key is None
    assert list(archive_dir.rglob("*.png")) == []
    assert not any("screenshot" in key for key in report["stats"]), report["stats"]


def test_a_page_that_never_finishes_loading_is_archived_with_a_warning(site, chromium_binary,  # noqa: F811
                                                                        tmp_path):
    archive_dir = tmp_path / "archive"
    entry = local_site_config(site, feeds=[], sitemaps=[f"{site.base_url}/hanging-sitemap.xml"],
                              screenshot=True, screenshot_timeout=5)
    report = crawl_site_subprocess(entry, str(archive_dir), crawl_env(), tmp_path / "data",
                                   "run-hang")
    (record,) = Archive.open(str(archive_dir)).iter_records()
    assert record.url == site.base_url + HANGING_PATH and record.title
    assert record.screenshot_key is None
    assert list(archive_dir.rglob("*.png")) == []
    stats = report["stats"]
    assert stats["newsarchive/archive/written"] == 1
    assert stats["newsarchive/warnings/screenshot_timeout"] == 1
    (warning,) = stats["newsarchive/warning_list"]
    assert warning["url"] == record.url and warning["kind"] == "screenshot_timeout"
    assert "5 s" in warning["reason"]
    # A warning, not an error: the crawl's counts and manifest see a clean page.
    assert report["errors"] == [] and report["finish_reason"] == "finished"
    manifest = json.loads((archive_dir / report["manifest_key"]).read_text())
    assert manifest["counts"]["errors"] == 0 and manifest["counts"]["archived"] == 1


# -- the renderer's bounds -------------------------------------------------------------------

PAGE = article_html("A page to render")
PAGE_URL = "http://127.0.0.1:9/news/a-page-to-render"
"""Where the page was fetched from: nothing is fetched from there, the page is the body."""
HANG_GUARD_SECONDS = 300
"""Longest a test waits for a renderer to start: reached only when something hangs."""


def ready(renderer: PageRenderer) -> int:
    """The process id of ``renderer``'s renderer, once it is up (its browser started)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while renderer.renderer_pid() is None:
        assert time.monotonic() < deadline, "the renderer did not start"
        time.sleep(0.05)
    return renderer.renderer_pid()


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie left to an init that does not reap has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_renderer_whose_chromium_dies_launches_another_for_the_next_page(chromium_binary):  # noqa: F811
    renderer = PageRenderer(RenderSettings(timeout=120, allowed_domains=("127.0.0.1",)))
    try:
        assert png_size(renderer.render(PAGE, PAGE_URL))[1] > VIEWPORT_HEIGHT
        pid = renderer.renderer_pid()
        browsers = [p for p in rendering._process_tree(pid) if command_name(p).startswith("chrom")]
        assert browsers
        for browser in browsers:  # as the OOM killer would
            with contextlib.suppress(ProcessLookupError):  # ended with the one before
                os.kill(browser, signal.SIGKILL)
        assert png_size(renderer.render(PAGE, PAGE_URL))[0] == VIEWPORT_WIDTH
        assert renderer.renderer_pid() == pid and renderer.replaced == 0
    finally:
        renderer.close()


@pytest.mark.parametrize("bound", ["time", "memory"])
def test_a_renderer_beyond_its_bounds_is_killed_with_its_browser_and_replaced(
        chromium_binary, monkeypatch, bound):  # noqa: F811
    # A renderer that answers nothing (stopped) stays within no time bound, and makes the
    # crawl look at its memory: the bounds apply whatever the machine's speed.
    if bound == "time":
        monkeypatch.setattr(rendering, "_ANSWER_GRACE_SECONDS", 0.5)
    # The renderers' temporary directories, short as /tmp is (Chromium's socket path must
    # fit in 108 bytes, and tmp_path is long).
    temporary = tempfile.mkdtemp(prefix="bounds-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", temporary)
    monkeypatch.setattr(tempfile, "tempdir", temporary)
    renderer = PageRenderer(RenderSettings(timeout=1 if bound == "time" else 120,
                                           allowed_domains=("127.0.0.1",)))
    try:
        pid = ready(renderer)
        tree = rendering._process_tree(pid)
        assert len(tree) > 2  # the renderer, Playwright's driver, Chromium and its own
        if bound == "memory":
            monkeypatch.setattr(rendering, "MAX_RENDERER_BYTES", 1)
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(ScreenshotTimeout if bound == "time" else ScreenshotCrashed,
                           match="replaced"):
            renderer.render(PAGE, PAGE_URL)
        assert all(gone(p) for p in tree), [(p, command_name(p)) for p in tree if not gone(p)]
        assert renderer.replaced == 1
        monkeypatch.undo()
        renderer.settings = replace(renderer.settings, timeout=120)
        # The next page has a new renderer.
        assert png_size(renderer.render(PAGE, PAGE_URL))[0] == VIEWPORT_WIDTH
        assert renderer.renderer_pid() not in (None, pid)
    finally:
        renderer.close()
        leftovers = os.listdir(temporary)
        shutil.rmtree(temporary, ignore_errors=True)
    # Neither the killed renderer nor the one closed leaves anything behind: not Chromium's
    # singleton socket directory (a killed Chromium leaves it), not Playwright's profile.
    assert leftovers == []


def test_without_chromium_each_page_fails_saying_why_and_soon_at_once():
    renderer = PageRenderer(RenderSettings(timeout=30, allowed_domains=("127.0.0.1",),
                                           executable="/nonexistent/chromium"))
    try:
        reasons = []
        for _ in range(3):
            with pytest.raises(ScreenshotFailed, match="cannot start the renderer") as failed:
                renderer.render(PAGE, PAGE_URL)
            reasons.append(str(failed.value))
        assert "/nonexistent/chromium" in reasons[0]
        assert "no more renderers are started" in reasons[-1]
        assert renderer.renderer_pid() is None
    finally:
        renderer.close()


# -- the web UI -----------------------------------------------------------------------------


def test_the_ui_serves_the_screenshot_and_links_it(crawled):
    record = crawled.records[crawled.site.base_url + STYLED_PATH]
    with serving(create_app(crawled.archive)) as ui:
        status, headers, body = fetch(f"{ui}/articles/{record.id}/screenshot")
        headers = {k.lower(): v for k, v in headers.items()}
        assert status == 200 and body == crawled.archive.read_screenshot(record)
        assert headers["content-type"] == "image/png"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"].startswith("sandbox;")
        status, _, page = fetch(f"{ui}/articles/{record.id}")
        assert status == 200 and f'href="/articles/{record.id}/screenshot"'.encode() in page
        assert fetch(f"{ui}/articles/{'0' * 24}/screenshot")[0] == 404


def test_the_ui_answers_404_for_an_article_without_a_screenshot(tmp_path):
    archive = Archive.open(str(tmp_path / "archive"))
    record = archive.store(make_record(archive, "https://example.org/news/a-b-c", text=TEXT_1),
                           raw_body=b"<p>x</p>", charset="utf-8", text=TEXT_1).record
    with serving(create_app(archive)) as ui:
        status, _, page = fetch(f"{ui}/articles/{record.id}")
        assert status == 200 and b"/screenshot" not in page
        assert fetch(f"{ui}/articles/{record.id}/screenshot")[0] == 404


# -- storing ----------------------------------------------------------------------------------

PNG_1 = b"\x89PNG\r\n\x1a\n first"
PNG_2 = b"\x89PNG\r\n\x1a\n second"
TEXT_1 = "The harbour reopened after the storm, and the ferries run again."
TEXT_2 = "The harbour reopened after the storm; the ferries run again from Monday."


def test_a_screenshot_is_stored_beside_the_raw_page_and_follows_the_versions(archive):
    url = "https://example.org/news/harbour-reopens-after-storm"
    first = archive.store(make_record(archive, url, text=TEXT_1), raw_body=b"<p>1</p>",
                          charset="utf-8", text=TEXT_1, screenshot=PNG_1)
    assert first.outcome is StoreOutcome.WRITTEN
    keys = keys_of_meta(archive.backend.relative(first.record.meta_key))
    assert first.record.screenshot_key == archive.locate(keys.screenshot)
    assert archive.backend.get(keys.screenshot) == PNG_1
    assert archive.find(url).screenshot_key == first.record.screenshot_key

    # The same text again keeps the screenshot it has.
    again = archive.store(make_record(archive, url, text=TEXT_1), raw_body=b"<p>1</p>",
                          charset="utf-8", text=TEXT_1, refetch=True, screenshot=PNG_2)
    assert again.outcome is StoreOutcome.DUPLICATE
    assert archive.read_screenshot(archive.find(url)) == PNG_1

    # A new version has its own, beside its own raw page; the first stays where it was.
    later = datetime(2024, 5, 4, tzinfo=timezone.utc)
    version = archive.store(make_record(archive, url, text=TEXT_2, fetched_at=later),
                            raw_body=b"<p>2</p>", charset="utf-8", text=TEXT_2, refetch=True,
                            screenshot=PNG_2)
    assert version.outcome is StoreOutcome.VERSION
    stored = archive.find(url)
    assert stored.screenshot_key.endswith("/screenshot.png")
    assert stored.screenshot_key.rsplit("/", 1)[0] == stored.raw_key.rsplit("/", 1)[0]
    assert "/versions/" in stored.screenshot_key
    assert archive.read_screenshot(stored) == PNG_2
    assert archive.backend.get(keys.screenshot) == PNG_1

    # A version without one has none: not the look of an older text.
    third = "The harbour stays open all winter, the council said."
    archive.store(make_record(archive, url, text=third, fetched_at=later), raw_body=b"<p>3</p>",
                  charset="utf-8", text=third, refetch=True)
    assert archive.find(url).screenshot_key is None
    assert archive.read_screenshot(archive.find(url)) is None


def test_only_the_archive_names_the_screenshots_place(archive):
    url = "https://example.org/news/council-meets-tonight-again"
    claimed = replace(make_record(archive, url, text=TEXT_1),
                      screenshot_key="articles/elsewhere/shot.png")
    stored = archive.store(claimed, raw_body=b"<p>x</p>", charset="utf-8", text=TEXT_1).record
    assert stored.screenshot_key is None
    assert archive.read_screenshot(stored) is None
    assert not [k for k in archive.backend.iter_keys("articles/") if k.endswith(".png")]


def test_screenshot_timeout_is_bounded():
    entry = {"name": "x", "allowed_domains": ["example.org"], "feeds": ["https://example.org/f"]}
    assert SiteConfig.model_validate(entry).screenshot_timeout == 30.0
    for bad in (0, -1, 601):
        with pytest.raises(ValueError):
            SiteConfig.model_validate({**entry, "screenshot": True, "screenshot_timeout": bad})
