"""Site-level boilerplate through real crawls: a line every page of a site carries is
learnt, kept in the archive, and stripped by the next crawl from its first page on."""

from __future__ import annotations

import json
import re

import pytest

from normalize.boilerplate import SiteBoilerplate, normalize_line
from tests.conftest import local_site_config, write_sites_file
from tests.newssite import NewsSite

PLUG = "Sign up for the Morning Briefing newsletter, delivered to your inbox every day."


def _with_plug(page) -> bytes | None:
    """The page with PLUG as a paragraph right after the story's first paragraph."""
    truth = json.loads(page.truth.read_text(encoding="utf-8"))
    paragraphs = [p for s in truth["body"].get("sections", []) for p in s.get("paragraphs", [])]
    html = page.html.decode("utf-8", errors="strict")
    for paragraph in paragraphs[:3]:
        start = html.find(paragraph[:40])
        end = html.find("</p>", start) if start >= 0 else -1
        if end >= 0:
            return (html[: end + 4] + f"<p>{PLUG}</p>" + html[end + 4:]).encode("utf-8")
    return None


def _site(pages) -> NewsSite:
    site = NewsSite(pages, feed_size=0)
    for page in pages:
        site.add_route(page.path, _with_plug(page), headers={"Content-Type": "text/html; charset=utf-8"})
    return site.start()


@pytest.fixture(scope="module")
def plugged_pages(corpus):
    pages = [p for p in corpus if _with_plug(p) is not None]
    assert len(pages) >= 12
    return pages[:12]


def _texts(archive, site="localnews") -> dict[str, str]:
    out = {}
    for meta in archive.glob(f"articles/{site}/*/*/*/*/meta.json"):
        record = json.loads(meta.read_text(encoding="utf-8"))
        out[record["url"]] = (archive / record["text_key"]).read_text(encoding="utf-8")
    return out


def test_recurring_line_is_learnt_kept_and_stripped(plugged_pages, run_cli, tmp_path):
    config = tmp_path / "sites.toml"
    archive = run_cli.workdir / "archive"

    first = _site(plugged_pages[:8])
    try:
        write_sites_file(config, "./archive", [local_site_config(first, feeds=[])])
        result = run_cli("crawl", "--config", str(config))
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        first.stop()
    assert len(_texts(archive)) == 8
    # The plug survives extraction (so the stripping below is the learner's doing): pages
    # archived before it was learnt still carry it.
    assert any(PLUG in text for text in _texts(archive).values())
    state = json.loads((archive / "_index/sites/localnews/boilerplate.json").read_text("utf-8"))
    assert normalize_line(PLUG) in SiteBoilerplate.from_json(state).learned()

    second = _site(plugged_pages[8:12])
    try:
        write_sites_file(config, "./archive", [local_site_config(second, feeds=[])])
        result = run_cli("crawl", "--config", str(config))
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        second.stop()
    new_texts = {url: text for url, text in _texts(archive).items()
                 if any(p.path in url for p in plugged_pages[8:12])}
    assert len(new_texts) == 4
    for url, text in new_texts.items():
        assert PLUG not in text, url
        assert len(text) > 200 and not re.search(r"newsletter, delivered", text)
