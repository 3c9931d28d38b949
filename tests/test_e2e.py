"""End to end, as a user runs it: the ``newsarchive`` CLI crawls the local news site into
moto's S3 server (and into a local directory), and the archive is read back with boto3."""

from __future__ import annotations

import gzip
import json
import re
import socket
from pathlib import Path

import lxml.html
import pytest

from storage import canonicalize_url
from tests.conftest import local_site_config, write_sites_file
from tests.newssite import NewsSite

# The record contract of ARCHITECTURE.md, spelled out here so the test checks the contract
# rather than whatever our dataclass happens to hold.
CONTRACT_FIELDS = (
    "schema_version", "id", "site", "url", "canonical_url", "aliases", "title", "authors",
    "published", "modified", "language", "fetched_at", "http_status", "content_sha256",
    "near_duplicate_of", "extractor", "raw_key", "text_key", "meta_key",
)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def boilerplate_lines(html: bytes, truth: dict) -> set[str]:
    """Text of the page's navigation, masthead and footer that is not part of the story.

    An article's own ``<header>`` (headline, standfirst, byline) is not boilerplate; the
    site's masthead, outside ``<article>`` and ``<main>``, is."""
    story = {_norm(truth.get("title") or "")}
    body = truth.get("body") or {}
    story |= {_norm(p) for p in body.get("summary", [])}
    for section in body.get("sections", []):
        story |= {_norm(p) for p in section.get("headline", []) + section.get("paragraphs", [])}
    tree = lxml.html.fromstring(html)
    lines = set()
    for el in tree.xpath(
        "//nav | //footer | //header[not(ancestor::article) and not(ancestor::main)]"
        " | //*[@role='navigation'] | //*[@role='contentinfo'] | //*[@role='banner']"
    ):
        for chunk in el.itertext():
            chunk = _norm(chunk)
            if len(chunk) >= 12 and not any(chunk in s for s in story):
                lines.add(chunk)
    return lines


def test_boilerplate_check_catches_navigation(corpus):
    """The navigation check below is not vacuous: a page's full text fails it."""
    caught = 0
    for page in corpus[:20]:
        truth = json.loads(page.truth.read_text(encoding="utf-8"))
        everything = {_norm(t) for t in lxml.html.fromstring(page.html).itertext()}
        caught += bool(everything & boilerplate_lines(page.html, truth))
    assert caught >= 10


def test_crawl_into_s3_end_to_end(news_site: NewsSite, s3_archive, run_cli, tmp_path):
    config = write_sites_file(tmp_path / "sites.toml", s3_archive.url,
                              [local_site_config(news_site)])
    news_site.clear_requests()

    first = run_cli("crawl", "--config", str(config), env=s3_archive.env)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "localnews" in first.stdout and "ok" in first.stdout

    listing = s3_archive.archive_listing()
    meta_keys = sorted(k for k in listing if k.endswith("/meta.json"))
    records = [json.loads(s3_archive.get(k)) for k in meta_keys]

    # Every served article archived exactly once.
    expected = {canonicalize_url(news_site.url_for(p)): p for p in news_site.pages}
    by_canonical = {}
    for record in records:
        by_canonical.setdefault(record["canonical_url"], []).append(record)
    assert len(records) == len(news_site.pages)
    assert all(len(v) == 1 for v in by_canonical.values())
    archived_pages = {}
    for record in records:
        page = news_site.page_for_path(re.sub(r"^https?://[^/]+", "", record["url"]).split("?")[0])
        assert page is not None, record["url"]
        archived_pages[page.path] = record
    assert set(archived_pages) == {p.path for p in news_site.pages}
    assert len(expected) == len(news_site.pages)

    for page in news_site.pages:
        record = archived_pages[page.path]
        # Every record field present, the keys pointing at objects under the archive prefix.
        missing = [f for f in CONTRACT_FIELDS if f not in record]
        assert not missing, (page.path, missing)
        assert record["site"] == "localnews" and record["http_status"] == 200
        assert record["meta_key"].startswith(f"{s3_archive.prefix}/articles/localnews/")
        assert record["extractor"]["name"] and record["extractor"]["version"]

        # Raw bytes identical to what the server sent, gzip with the right headers.
        raw = s3_archive.client.get_object(Bucket=s3_archive.bucket, Key=record["raw_key"])
        assert raw["ContentEncoding"] == "gzip"
        assert raw["ContentType"].startswith("text/html; charset=")
        assert gzip.decompress(raw["Body"].read()) == page.html

        # Non-empty text with no navigation or footer lines.
        text = s3_archive.get(record["text_key"]).decode("utf-8")
        assert text.strip(), page.path
        truth = json.loads(page.truth.read_text(encoding="utf-8"))
        leaked = {_norm(line) for line in text.splitlines()} & boilerplate_lines(page.html, truth)
        assert not leaked, (page.path, sorted(leaked)[:3])

    # The article fetches of the first crawl: one per article, none twice.
    fetched = [r.split("?")[0] for r in news_site.article_requests()]
    assert sorted(fetched) == sorted(p.path for p in news_site.pages)

    # A second crawl writes no object (and fetches no article).
    news_site.clear_requests()
    second = run_cli("crawl", "--config", str(config), env=s3_archive.env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert s3_archive.archive_listing() == listing
    assert news_site.article_requests() == []
    # ...but its own run manifest, one per run.
    assert len([k for k in s3_archive.listing() if k.startswith("news/runs/localnews/")]) == 2
    # It read only the sitemap index: every sitemap was unchanged since the first read.
    assert not [t for t in news_site.requests if t.startswith("/sitemaps/")]
    # --full reads every sitemap again (and still fetches no article).
    news_site.clear_requests()
    full = run_cli("crawl", "--full", "--config", str(config), env=s3_archive.env)
    assert full.returncode == 0, full.stderr[-4000:]
    assert {t for t in news_site.requests if t.startswith("/sitemaps/")} == \
        {f"/sitemaps/{month}.xml" for month in news_site.months}
    assert news_site.article_requests() == []

    # ls --json reads the same records back.
    ls = run_cli("ls", "--json", "--config", str(config), env=s3_archive.env)
    assert ls.returncode == 0, ls.stderr[-2000:]
    lines = [json.loads(line) for line in ls.stdout.splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(r["id"] for r in records)
    assert all(set(CONTRACT_FIELDS) <= set(r) for r in lines)


@pytest.fixture(scope="module")
def small_site(corpus):
    site = NewsSite(corpus[:6], feed_size=3)
    site.start()
    yield site
    site.stop()


def test_crawl_into_local_directory_default(small_site: NewsSite, run_cli, tmp_path):
    """The default archive is ./archive, relative to where the command runs."""
    config = write_sites_file(tmp_path / "sites.toml", "./archive", [local_site_config(small_site)])
    result = run_cli("crawl", "--config", str(config))
    assert result.returncode == 0, result.stderr[-4000:]
    # The crawl started before Prefect was up, and the flow adopted it: one crawl, not two.
    assert "(started while Prefect was starting, pid" in result.stdout + result.stderr
    (stats_file,) = (tmp_path / "data" / "crawls").glob("*.json")
    # Requests wait on disk (Scrapy's job directory, in the run's workspace), not in memory:
    # a crawl's memory does not grow with the sitemaps' length. The workspace is gone after.
    stats = json.loads(stats_file.read_text())["stats"]
    assert stats["scheduler/enqueued/disk"] == stats["scheduler/enqueued"] > 6
    assert not list((tmp_path / "data" / "pending").glob("*/*"))
    archive = run_cli.workdir / "archive"
    metas = sorted(archive.glob("articles/localnews/*/*/*/*/meta.json"))
    assert len(metas) == 6
    for meta in metas:
        record = json.loads(meta.read_text(encoding="utf-8"))
        # Local archives record paths from the archive directory.
        assert (archive / record["raw_key"]).is_file() and (archive / record["text_key"]).is_file()
        assert record["meta_key"] == meta.relative_to(archive).as_posix()

    table = run_cli("ls", "--config", str(config))
    assert table.returncode == 0
    assert len(table.stdout.splitlines()) == 1 + 6
    some = json.loads(metas[0].read_text(encoding="utf-8"))
    shown = run_cli("show", some["id"], "--config", str(config))
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == some["id"]
    text = run_cli("cat", some["id"], "--config", str(config))
    assert text.stdout.strip() == (archive / some["text_key"]).read_text(encoding="utf-8").strip()
    raw = run_cli("cat", some["id"], "--raw", "--config", str(config), binary=True)
    page = small_site.page_for_path(re.sub(r"^https?://[^/]+", "", some["url"]).split("?")[0])
    assert raw.stdout == page.html


def test_a_failed_site_fails_the_run_but_not_the_other_sites(small_site: NewsSite, run_cli, tmp_path):
    """Exit 1 when a site's sources cannot be read; the healthy site is archived anyway."""
    broken = local_site_config(small_site, name="broken", feeds=[],
                               sitemaps=[f"{small_site.base_url}/no-such-sitemap.xml"])
    config = write_sites_file(tmp_path / "sites.toml", "./archive",
                              [broken, local_site_config(small_site)])
    # One site at a time: the fan-out honours its limit.
    result = run_cli("crawl", "--config", str(config), env={"NEWSARCHIVE_MAX_PARALLEL_SITES": "1"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert "newsarchive: broken failed: no sitemap, feed or front page could be read" in result.stderr
    reports = [json.loads(p.read_text()) for p in (tmp_path / "data" / "crawls").glob("*.json")]
    spans = sorted((r["started_at"], r["finished_at"]) for r in reports)
    assert len(spans) == 2 and spans[0][1] <= spans[1][0], spans
    assert "http_404" in result.stderr
    archive = run_cli.workdir / "archive"
    assert len(list(archive.glob("articles/localnews/*/*/*/*/meta.json"))) == 6
    assert not (archive / "articles" / "broken").exists()


def test_crawls_started_ahead_stop_when_prefect_does_not_start(small_site: NewsSite, run_cli,
                                                               tmp_path):
    """`newsarchive crawl` starts its first crawl before Prefect; when Prefect then cannot
    be reached, the command says so, exits 1, and stops that crawl gracefully: nothing it
    archived is archived twice, and no crawl process is left behind."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write_sites_file(tmp_path / "sites.toml", "./archive", [local_site_config(small_site)])
    result = run_cli("crawl", "--config", str(config),
                     env={"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert "newsarchive: Prefect is not available" in result.stderr
    (stats_file,) = (tmp_path / "data" / "crawls").glob("*.json")
    report = json.loads(stats_file.read_text())
    # Stopped on its way (SIGTERM: Scrapy's graceful shutdown), or done before Prefect failed.
    assert report["finish_reason"] in ("shutdown", "finished")
    if report["finish_reason"] == "shutdown":
        assert "crawls started ahead of Prefect were stopped" in result.stderr
    metas = list((run_cli.workdir / "archive").glob("articles/localnews/*/*/*/*/meta.json"))
    ids = [json.loads(m.read_text())["id"] for m in metas]
    assert len(ids) == len(set(ids)) <= 6
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if report["run_id"].encode() in cmdline.read_bytes():
                left.append(cmdline.parent.name)
        except OSError:
            pass  # ended meanwhile
    assert left == []


def test_crawl_without_a_prefect_server_runs_on_a_temporary_one_and_records_the_run(
        small_site: NewsSite, run_cli, tmp_path):
    """With no PREFECT_API_URL, `newsarchive crawl` starts a temporary Prefect server of
    its own (API only), runs the flow on it, and stops it: the run is in the database under
    PREFECT_HOME afterwards, as with Prefect's own temporary server, and no server is left."""
    import sqlite3

    home = tmp_path / "prefect-home" / "nested"  # its parents are made too
    config = write_sites_file(tmp_path / "sites.toml", "./archive", [local_site_config(small_site)])
    # Prefect's own temporary server is refused: the run must use ours, and only ours.
    result = run_cli("crawl", "--config", str(config),
                     env={"PREFECT_API_URL": "", "PREFECT_HOME": str(home),
                          "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((run_cli.workdir / "archive").glob("articles/localnews/*/*/*/*/meta.json"))) == 6
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute("SELECT flow_run.state_type FROM flow_run JOIN flow "
                          "ON flow.id = flow_run.flow_id WHERE flow.name = 'crawl'").fetchall()
    assert runs == [("COMPLETED",)]
    log = (tmp_path / "data" / "prefect-server.log").read_text()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", result.stderr + log).group(1))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # stopped
    left = [p for p in Path("/proc").glob("[0-9]*/environ")
            if _readable(p) and str(home).encode() in p.read_bytes()]
    assert left == []


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
        return True
    except OSError:
        return False
