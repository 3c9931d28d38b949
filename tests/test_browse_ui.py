"""The web UI's pages as a user sees them, in headless Chromium (the DevTools client and
the browser of ``tests/test_browse_web.py``): each page is screenshotted to
``.newsarchive/ui-screenshots/<page>.png`` (the path is printed) and checked for layout
facts, not pixels: numbers right-aligned (computed style and where their text ends), charts
with axes and date ticks on a continuous calendar, lines rather than lone dots, a legend
that says what is drawn, marked search matches cut between words, canonical URLs, paging,
date filters and site facets that count what they list, times in the local zone with their
UTC value on hover, and the original page in a sandboxed frame.

The archive is local and made here, so that every figure is known: three sites, articles
on sparse days, run manifests with errors and duplicates, URLs with tracking parameters, a
publisher's real page (from the corpus) as an original, and a title with markup in it.
The UI runs in-process, in a time zone other than UTC (Europe/Paris).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from browse.web import create_app
from storage import Archive, Extractor, Record, StoreOutcome, article_id, canonicalize_url
from storage.catalog import CatalogWriter
from tests.conftest import REPO_ROOT
from tests.test_browse_web import (  # noqa: F401 - the fixtures, for this module's tests
    DevTools,
    browser,
    chromium_binary,
    fetch,
    links,
    serving,
)

SCREENSHOTS = REPO_ROOT / ".newsarchive" / "ui-screenshots"
"""Where the pages' screenshots go (git ignores ``.newsarchive/``)."""

ZONE = "Europe/Paris"
"""The UI's time zone in these tests: not UTC, so that a time shown in UTC would show."""

BASE_DAY = date(2026, 9, 1)
ALPHA_DAYS = {0: 3, 3: 5, 4: 2, 10: 4, 17: 6, 18: 3, 25: 4, 31: 2, 38: 5, 45: 4, 52: 3, 59: 4}
"""Alpha's articles: days after :data:`BASE_DAY` -> how many (45 on 12 sparse days)."""
BETA_DAYS = {(BASE_DAY + timedelta(days=50)): 8, (BASE_DAY + timedelta(days=59)): 4}
"""Beta's: 12 on two days nine days apart, the last day's without an author."""

HOSTILE_TITLE = "Harbour <script>alert(1)</script> & <mark>fake</mark> notes"
"""A title whose markup must show as text, never as elements."""

FILLER = ("The council met on Tuesday evening to discuss the budget for the coming year "
          "and members argued for hours about roads schools and parks across the city. ")


def tiny_png() -> bytes:
    """A valid 1x1 PNG (the record's screenshot)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (len(data).to_bytes(4, "big") + body
                + zlib.crc32(body).to_bytes(4, "big"))
    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(b"IEND", b""))


@dataclass(frozen=True)
class Made:
    """The archive made for the tests, and what they know of it."""

    ui: str
    """The UI's base URL."""
    records: dict[str, Record]
    """Every record, by id."""
    texts: dict[str, str]
    """Every text, by id."""
    harbour: set[str]
    """Ids of the articles a search for ``harbour`` finds."""
    original: Record
    """The article whose raw page is a publisher's real page (with a screenshot)."""
    runs: dict[str, list[dict]]
    """The run manifests stored, per site."""


def store(archive: Archive, writer: CatalogWriter, *, site: str, n: int, title: str | None,
          text: str, published: datetime | None, fetched_at: datetime,
          authors: tuple[str, ...] = ("Ada Lovelace",), raw: bytes | None = None,
          screenshot: bytes | None = None) -> Record:
    """Archive one article the way a crawl does, found through a link with tracking
    parameters, and add it to the catalog."""
    url = f"https://{site}.example/news/story-{n}?utm_source=rss&utm_medium=feed"
    canonical = canonicalize_url(url)
    aid = article_id(canonical)
    keys = archive.keys_for(site, (published or fetched_at).astimezone(timezone.utc).date(), aid)
    record = Record(
        id=aid, site=site, url=url, canonical_url=canonical, aliases=(url,), title=title,
        authors=authors, published=published, modified=None, language="en",
        fetched_at=fetched_at, http_status=200,
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
        extractor=Extractor(name="newsarchive", version="test"),
        raw_key=archive.locate(keys.raw), text_key=archive.locate(keys.text),
        meta_key=archive.locate(keys.meta))
    page = raw or f"<html><body><h1>{title}</h1><p>{text}</p></body></html>".encode()
    result = archive.store(record, raw_body=page, charset="utf-8", text=text, run_id="ui-run",
                           seen_urls={canonical}, screenshot=screenshot)
    assert result.outcome is StoreOutcome.WRITTEN
    writer.add(result.record, text)
    return result.record


def run_manifest(site: str, started: datetime, minutes: int, reason: str | None,
                 archived: int, duplicates: int, errors: dict[str, int]) -> dict:
    """A run manifest as ``spiders/run.py`` writes one."""
    return {
        "run_id": f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", "site": site,
        "started_at": started.isoformat(),
        "finished_at": (started + timedelta(minutes=minutes, seconds=7.25)).isoformat(),
        "finish_reason": reason,
        "counts": {"archived": archived, "versions": 0, "duplicates": duplicates,
                   "errors": sum(errors.values()), "fetched": archived + duplicates},
        "errors_by_kind": errors, "errors": []}


@pytest.fixture(scope="module")
def local_zone() -> Iterator[None]:
    """The process (the UI in it) in :data:`ZONE`, as a user's machine would be."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", ZONE)
        time.tzset()
        yield
    time.tzset()


@pytest.fixture(scope="module")
def made(tmp_path_factory, corpus, local_zone) -> Iterator[Made]:
    root = tmp_path_factory.mktemp("ui")
    archive = Archive.open(str(root / "archive"))
    writer = CatalogWriter(archive.backend, root / "pending", "ui-run")
    records: dict[str, Record] = {}
    n = 0
    for offset, count in ALPHA_DAYS.items():
        day = BASE_DAY + timedelta(days=offset)
        for k in range(count):
            n += 1
            when = datetime(day.year, day.month, day.day, 6 + k, 3, 5, 123456, timezone.utc)
            text = (f"{FILLER}Story {n}: ferries left the old harbour at dawn, and the "
                    f"harbourmaster counted {n} boats. {FILLER * 2}")
            record = store(archive, writer, site="alpha", n=n,
                           title=f"Harbour report {n}" if n % 9 else None, text=text,
                           published=when, fetched_at=when + timedelta(hours=1),
                           authors=("Ada Lovelace",) if n % 3 else ())
            records[record.id] = record
    for day, count in BETA_DAYS.items():
        for k in range(count):
            n += 1
            when = datetime(day.year, day.month, day.day, 9, k, tzinfo=timezone.utc)
            text = f"{FILLER}Beta story {n} about the harbour. {FILLER}"
            record = store(archive, writer, site="beta", n=n, title=f"Beta harbour {n}",
                           text=text, published=when, fetched_at=when,
                           authors=("Grace Hopper",) if day != max(BETA_DAYS) else ())
            records[record.id] = record
    hostile = store(archive, writer, site="beta", n=999, title=HOSTILE_TITLE,
                    text="Nothing but a title with markup, in the harbour.",
                    published=datetime(2026, 10, 30, 12, tzinfo=timezone.utc),
                    fetched_at=datetime(2026, 10, 30, 12, tzinfo=timezone.utc), authors=())
    records[hostile.id] = hostile
    # A publisher's real page, with its menus: the original page shown.
    page = next(p for p in corpus if p.publisher == "ORF")
    original = store(archive, writer, site="gamma", n=1, title=page.title or "ORF story",
                     text="A story of the gamma site, without the word searched for.",
                     published=datetime(2026, 11, 20, 15, 45, 10, tzinfo=timezone.utc),
                     fetched_at=datetime(2026, 11, 20, 16, 0, tzinfo=timezone.utc),
                     raw=page.html, screenshot=tiny_png())
    assert original.screenshot_key
    records[original.id] = original
    writer.close()

    now = datetime.now(timezone.utc).replace(microsecond=0)
    runs = {
        "alpha": [run_manifest("alpha", now - timedelta(hours=5), 12, "finished", 10, 2, {}),
                  run_manifest("alpha", now - timedelta(hours=3), 9, "finished", 5, 5, {}),
                  run_manifest("alpha", now - timedelta(hours=1), 14, "finished", 2, 1,
                               {"http_404": 2, "no_article_text": 1})],
        "beta": [run_manifest("beta", now - timedelta(hours=2), 30, "shutdown", 12, 0, {})],
    }
    for manifests in runs.values():
        for manifest in manifests:
            archive.put_run_manifest(manifest)
    texts = {aid: archive.read_text(r) for aid, r in records.items()}
    harbour = {aid for aid, r in records.items()
               if re.search(r"(?<!\w)harbour", f"{r.title or ''}\n{texts[aid]}", re.I)}
    assert len(harbour) == 45 + 12 + 1
    with serving(create_app(archive)) as ui:
        yield Made(ui=ui, records=records, texts=texts, harbour=harbour, original=original,
                   runs=runs)


@pytest.fixture
def page(browser) -> DevTools:  # noqa: F811 - the imported fixture
    browser.set_viewport(1280, 900)
    return browser


def screenshot(tab: DevTools, name: str) -> Path:
    path = tab.screenshot(SCREENSHOTS / f"{name}.png")
    assert path.stat().st_size > 1000
    print(f"screenshot of the {name} page: {path}")
    return path


# -- checks of a page, in the browser ----------------------------------------------------------


def number_cells(tab: DevTools, selector: str) -> list[dict]:
    """Per cell of ``selector``: its text, computed alignment, and how far its text ends
    from the right of its content box (a right-aligned text ends there)."""
    return tab.evaluate(f"""[...document.querySelectorAll({json.dumps(selector)})].map(td => {{
        const style = getComputedStyle(td), range = document.createRange();
        range.selectNodeContents(td);
        const text = range.getBoundingClientRect(), box = td.getBoundingClientRect();
        const right = box.right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
        const left = box.left + parseFloat(style.paddingLeft) + parseFloat(style.borderLeftWidth);
        return {{text: td.innerText.trim(), align: style.textAlign, gap: right - text.right,
                 room: right - left - text.width}};
    }})""")


def assert_right_aligned(tab: DevTools, selector: str, least: int) -> None:
    cells = number_cells(tab, selector)
    assert len(cells) >= least, (selector, cells)
    for cell in cells:
        assert cell["align"] == "right", cell
        assert abs(cell["gap"]) < 1.5, cell  # the text ends at the cell's right...
    # ...and in cells wider than their text: left-aligned, those would end elsewhere.
    assert any(cell["room"] > 4 for cell in cells), cells


def local_form(iso: str) -> str:
    """How the UI shows the instant ``iso`` in :data:`ZONE`: ``6 Dec 2026, 14:03``."""
    local = datetime.fromisoformat(iso).astimezone(ZoneInfo(ZONE))
    return f"{local.day} {local:%b %Y, %H:%M}"


def assert_times(tab: DevTools, least: int) -> list[dict]:
    """Every ``<time>`` with a title on the page: its title and ``datetime`` are the exact
    instant in UTC (ISO 8601), its text the local form of it."""
    times = tab.evaluate("[...document.querySelectorAll('time[title]')].map(t => "
                             "({text: t.textContent, title: t.title, at: t.dateTime}))")
    assert len(times) >= least, times
    for t in times:
        assert t["title"] == t["at"] and t["title"].endswith("+00:00"), t
        assert datetime.fromisoformat(t["title"]).utcoffset() == timedelta(0), t
        assert t["text"] == local_form(t["title"]), t
    # No raw ISO time left anywhere on the page.
    assert not tab.evaluate("/\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d/"
                                ".test(document.querySelector('main').innerText)")
    return times


def chart(tab: DevTools, selector: str) -> dict:
    """An SVG chart's axes, as drawn: tick labels and positions, and its shapes."""
    return tab.evaluate(f"""(() => {{
        const svg = document.querySelector({json.dumps(selector)});
        const texts = sel => [...svg.querySelectorAll(sel)].map(t => ({{
            label: t.textContent, date: t.dataset.date || null, value: t.dataset.value || null,
            x: t.getBoundingClientRect().x, y: t.getBoundingClientRect().y}}));
        return {{
            x: texts('g.x-axis text'), y: texts('g.y-axis text'),
            x_lines: svg.querySelectorAll('g.x-axis line').length,
            bars: [...svg.querySelectorAll('rect.day')].map(r => ({{
                day: r.dataset.day, value: +r.dataset.value,
                width: r.getBoundingClientRect().width, height: r.getBoundingClientRect().height}})),
            lines: [...svg.querySelectorAll('polyline.series')].map(p => ({{
                label: p.dataset.label, points: p.getAttribute('points'),
                width: p.getBoundingClientRect().width}})),
            top: svg.getBoundingClientRect().y,
        }};
    }})()""")


def assert_date_axis(axis: dict, days: list[str]) -> None:
    """Date ticks: at least two, labelled ``6 Dec`` (with the year on the first), in order,
    on days of the chart."""
    ticks = axis["x"]
    assert len(ticks) >= 2 and axis["x_lines"] == len(ticks), ticks
    assert all(t["date"] in days for t in ticks), ticks
    assert [t["date"] for t in ticks] == sorted(t["date"] for t in ticks)
    assert [t["x"] for t in ticks] == sorted(t["x"] for t in ticks)
    for n, tick in enumerate(ticks):
        d = date.fromisoformat(tick["date"])
        expected = f"{d.day} {d:%b}" + (f" {d.year}" if n == 0 else "")
        assert tick["label"] == expected, tick
    assert len(axis["y"]) >= 2 and axis["y"][0]["label"] in ("0", "0%"), axis["y"]


def archive_day(record: Record) -> date:
    return date(*map(int, record.meta_key.split("/")[-5:-2]))


def calendar(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


# -- the pages -------------------------------------------------------------------------------


def test_sites_overview(made, page):
    page.open(made.ui + "/")
    screenshot(page, "sites")
    assert [name for name, _ in links(page, "a.site")] == ["alpha", "beta", "gamma"]
    # Headers say what a share is of.
    headers = page.evaluate("[...document.querySelectorAll('table.sites thead th')]"
                            ".map(th => th.textContent.trim())")
    assert {"with date", "with author", "with title", "error rate", "duplicate rate",
            "Extraction (share of articles)", "Last crawl", "Recent runs"} <= set(headers)
    assert_right_aligned(page, "table.sites tbody td.num", least=3 * 8)
    rows = page.evaluate("""[...document.querySelectorAll('table.sites tbody tr')].map(tr =>
        [...tr.children].map(td => td.innerText.trim()))""")
    by_site = {row[0]: row for row in rows}
    # alpha: 45 articles on 12 days; its last run had errors; over its 3 runs, 3 errors and
    # 8 duplicates of 28 pages; 40 of 45 with a title, 30 with an author, all with a date.
    alpha = by_site["alpha"]
    assert alpha[1:4] == ["45", "12", (BASE_DAY + timedelta(days=59)).isoformat()]
    assert alpha[5].startswith("finished with errors") and "2 archived" in alpha[5]
    assert alpha[6:12] == ["3", "11%", "29%", "100%", "67%", "89%"]
    beta = by_site["beta"]
    assert beta[5].startswith("stopped: shutdown") and beta[6:9] == ["1", "0%", "0%"]
    gamma = by_site["gamma"]
    assert gamma[4] == "—" and gamma[5] == "no run in the last 14 days"
    assert gamma[6:9] == ["0", "—", "—"]
    # The last crawl: when it finished, in local time, the exact UTC instant on hover.
    times = assert_times(page, least=2)
    last_alpha = made.runs["alpha"][-1]["finished_at"]
    assert times[0]["title"] == datetime.fromisoformat(last_alpha).isoformat()
    # A sparkline per site, of the same 30 days (up to the archive's last), with a bar per
    # day that had articles.
    sparks = page.evaluate("[...document.querySelectorAll('svg.spark')].map(s => "
                           "[s.querySelectorAll('rect').length, s.getAttribute('aria-label')])")
    days_of = {site: {archive_day(r) for r in made.records.values() if r.site == site}
               for site in ("alpha", "beta", "gamma")}
    last = max(max(days) for days in days_of.values())
    first = last - timedelta(days=29)
    for (bars, label), site in zip(sparks, ("alpha", "beta", "gamma"), strict=True):
        assert bars == sum(1 for d in days_of[site] if first <= d <= last), site
        assert label.endswith(f"from {first.day} {first:%b %Y} to {last.day} {last:%b %Y}, "
                              f"at most {1 if site == 'gamma' else 4 if site == 'alpha' else 5}"
                              " a day"), label


def test_site_page_charts(made, page):
    page.open(made.ui + "/sites/alpha")
    screenshot(page, "site")
    assert_right_aligned(page, "table.figures td.num", least=8)
    assert_right_aligned(page, "table.days td.num", least=12 * 4)
    assert_right_aligned(page, "table.runs td.num", least=3 * 4)
    assert_times(page, least=1 + 3 * 2)  # the last crawl, each run's start and end

    bars = chart(page, "svg.bars")
    days = [b["day"] for b in bars["bars"]]
    # A continuous calendar from the first day with articles to the last, zero days in it.
    assert days == calendar(BASE_DAY.isoformat(), (BASE_DAY + timedelta(days=59)).isoformat())
    by_day = {b["day"]: b["value"] for b in bars["bars"]}
    assert by_day == {d: ALPHA_DAYS.get((date.fromisoformat(d) - BASE_DAY).days, 0)
                      for d in days}
    assert sum(1 for b in bars["bars"] if b["value"] == 0) == 60 - 12
    assert all(b["width"] >= 6 for b in bars["bars"])  # bars, not hairlines
    assert_date_axis(bars, days)
    assert [t["label"] for t in bars["y"]] == ["0", "5", "10"]  # the most is 6

    health = chart(page, "svg.lines")
    assert_date_axis(health, days)
    assert [t["label"] for t in health["y"]] == ["0%", "50%", "100%"]
    lines = {line["label"]: line for line in health["lines"]}
    assert set(lines) == {"with date", "with author", "with title"}
    for line in lines.values():
        # One polyline through the 12 days with articles: a level segment per day.
        points = line["points"].split()
        assert len(points) == 2 * 12 and line["width"] > 600, line
    legend = page.evaluate("[...document.querySelectorAll('ul.legend li')].map(li => "
                           "[li.dataset.label, li.querySelector('.latest').textContent, "
                           "li.querySelector('line').getAttribute('stroke')])")
    colours = page.evaluate("Object.fromEntries([...document.querySelectorAll("
                            "'polyline.series')].map(p => [p.dataset.label, p.getAttribute('stroke')]))")
    for label, latest, colour in legend:
        # The legend's "on the last day" is where the line ends, in the line's colour.
        y = float(lines[label]["points"].split()[-1].split(",")[1])
        assert latest == f"{round((140 - y) / 140 * 100)}%", (label, latest, y)
        assert colour == colours[label]


def test_sparse_site_draws_lines_not_dots(made, page):
    """Beta has articles on two days nine days apart, the last without authors: two bars
    on a calendar of 14 days, lines from one day to the other, and an author line that
    ends at 0% where the legend says 0%."""
    page.open(made.ui + "/sites/beta")
    screenshot(page, "site-sparse")
    bars = chart(page, "svg.bars")
    days = [b["day"] for b in bars["bars"]]
    last = max(BETA_DAYS)
    assert days == calendar((last - timedelta(days=13)).isoformat(), last.isoformat())
    assert [b["value"] for b in bars["bars"] if b["value"]] == [8, 5]  # with the hostile one
    assert min(b["width"] for b in bars["bars"]) > 30
    assert_date_axis(bars, days)
    health = chart(page, "svg.lines")
    for line in health["lines"]:
        assert len(line["points"].split()) >= 4 and line["width"] > 300, line  # no lone dot
    author = next(line for line in health["lines"] if line["label"] == "with author")
    assert author["points"].split()[-1].endswith(",140.0")  # 0% on the last day
    shown = page.evaluate("document.querySelector('ul.legend li[data-label=\"with author\"]')"
                          ".textContent")
    assert f"0% on {last.day} {last:%b %Y}" in " ".join(shown.split())


def test_search_results(made, page):
    page.open(made.ui + "/search?q=harbour")
    screenshot(page, "search")
    assert page.evaluate("document.querySelector('p.count').dataset.total") == "58"
    # Facets: every site with matches, counting them all (under the bound).
    facets = page.evaluate("[...document.querySelectorAll('a.facet')].map(a => "
                           "[a.dataset.site, +a.closest('tr').querySelector('.count').dataset.count,"
                           " a.href])")
    assert [(s, c) for s, c, _ in facets] == [("alpha", 45), ("beta", 13)]
    assert_right_aligned(page, "table.facets td.num", least=3)

    # Paging: 20, 20 and 18 results, newest first, each once.
    seen: list[str] = []
    url = made.ui + "/search?q=harbour"
    sizes = []
    while url:
        page.open(url)
        ids = page.evaluate("[...document.querySelectorAll('ol.results a.article')]"
                            ".map(a => a.getAttribute('href').split('/').pop())")
        sizes.append(len(ids))
        seen += ids
        check_results(made, page)
        url = page.evaluate("(document.querySelector('a.next') || {}).href || null")
    assert sizes == [20, 20, 18] and len(set(seen)) == 58 and set(seen) == made.harbour
    page.open(page.evaluate("document.querySelector('a.previous').href"))
    assert page.evaluate("document.querySelector('span.current').textContent") == "2"

    # A facet lists as many results as it counts.
    for site, count, href in facets:
        listed, url = [], href
        while url:
            page.open(url)
            listed += page.evaluate("[...document.querySelectorAll('ol.results .site')]"
                                    ".map(s => s.textContent)")
            url = page.evaluate("(document.querySelector('a.next') || {}).href || null")
        assert listed == [site] * count, site

    # The date filter, through the form: fewer results, all within the dates.
    page.open(made.ui + "/search?q=harbour")
    since, until = BASE_DAY + timedelta(days=10), BASE_DAY + timedelta(days=25)
    page._events.clear()
    page.evaluate(f"""(() => {{ const f = document.querySelector('form.search-full');
        f.since.value = '{since}'; f.until.value = '{until}'; f.submit(); }})()""")
    page.wait_for("Page.loadEventFired")
    assert f"since={since}" in page.evaluate("location.search")
    shown = page.evaluate("[...document.querySelectorAll('ol.results li')].map(li => "
                          "li.querySelector('time').dateTime)")
    expected = sum(ALPHA_DAYS[d] for d in (10, 17, 18, 25))
    assert len(shown) == expected < 58
    assert all(str(since) <= t[:10] <= str(until) for t in shown), shown
    assert page.evaluate("document.querySelector('p.count').dataset.total") == str(expected)
    assert page.evaluate("[...document.querySelectorAll('a.facet')].map(a => a.dataset.site)") \
        == ["alpha"]
    screenshot(page, "search-dates")


def check_results(made: Made, page: DevTools) -> None:
    """The results shown: matches marked, snippets cut between words, canonical URLs."""
    results = page.evaluate("""[...document.querySelectorAll('ol.results li')].map(li => ({
        id: li.querySelector('a.article').getAttribute('href').split('/').pop(),
        title: li.querySelector('a.article').textContent,
        marks: [...li.querySelectorAll('mark')].map(m => m.textContent),
        snippet: li.querySelector('.snippet').textContent,
        url: li.querySelector('.url').textContent}))""")
    assert results
    for r in results:
        record = made.records[r["id"]]
        assert r["marks"] and all(m.lower().startswith("harbour") for m in r["marks"]), r
        # The title, exactly as archived (markup as text), with its words marked.
        assert r["title"] == (record.title or "(no title)"), r
        flat = " ".join(made.texts[r["id"]].split())
        body = r["snippet"].removeprefix("…").removesuffix("…")
        at = flat.find(body)
        assert at >= 0, r
        assert at == 0 or flat[at - 1] == " ", r  # starts at a word...
        assert at + len(body) == len(flat) or flat[at + len(body)] == " ", r  # ...ends at one
        assert r["snippet"].startswith("…") == (at > 0)
        assert r["url"] == record.canonical_url and "utm_" not in r["url"], r
    text = page.evaluate("document.querySelector('main').innerText + "
                         "[...document.querySelectorAll('a')].map(a => a.href).join(' ')")
    assert "utm_" not in text
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    assert_times(page, least=len(results))


def test_search_escapes_what_it_marks(made, page):
    page.open(made.ui + "/search?q=harbour+notes")
    (title,) = page.evaluate("[...document.querySelectorAll('ol.results a.article')]"
                             ".map(a => a.textContent)")
    assert title == HOSTILE_TITLE  # the markup, as text
    marks = page.evaluate("[...document.querySelectorAll('mark')].map(m => m.textContent)")
    assert marks == ["Harbour", "notes", "harbour"]  # not "fake": its <mark> is text
    assert page.evaluate("document.querySelectorAll('main script').length") == 0


def test_article_page(made, page):
    record = made.original
    page.open(f"{made.ui}/articles/{record.id}")
    screenshot(page, "article")
    times = assert_times(page, least=3)  # published, fetched, the version's fetch
    assert times[0]["title"] == record.published.isoformat()
    assert local_form(record.published.isoformat()) == "20 Nov 2026, 16:45"  # CET: UTC+1
    fields = dict(page.evaluate("[...document.querySelectorAll('table.fields tr')].map(tr => "
                                "[tr.querySelector('th').textContent, tr.querySelector('td').textContent])"))
    assert fields["url"] == record.canonical_url and fields["fetched from"] == record.url
    assert page.evaluate("document.querySelector('a.screenshot').getAttribute('href')") == \
        f"/articles/{record.id}/screenshot"
    status, headers, png = fetch(f"{made.ui}/articles/{record.id}/screenshot")
    assert status == 200 and headers["content-type"] == "image/png" and png == tiny_png()
    frame = page.evaluate("document.querySelector('iframe.original').getAttribute('sandbox')")
    assert frame == ""  # sandboxed of everything: no scripts, no same origin
    # An article without a screenshot links to none.
    other = next(r for r in made.records.values() if not r.screenshot_key)
    page.open(f"{made.ui}/articles/{other.id}")
    assert page.evaluate("document.querySelectorAll('a.screenshot').length") == 0


def test_original_page(made, page):
    record = made.original
    page.open(f"{made.ui}/articles/{record.id}/page")
    screenshot(page, "original")
    iframe = page.evaluate("""(() => { const f = document.querySelector('iframe.original');
        return {sandbox: f.getAttribute('sandbox'), src: f.getAttribute('src'),
                height: f.getBoundingClientRect().height}; })()""")
    assert iframe["sandbox"] == "" and iframe["src"].startswith(f"/articles/{record.id}/original")
    assert iframe["height"] > 600
    note = page.evaluate("document.querySelector('p.original-note').textContent")
    assert "not its stylesheets, images or fonts" in " ".join(note.split())
    assert page.evaluate("document.querySelector('a.screenshot').getAttribute('href')") == \
        f"/articles/{record.id}/screenshot"
    with page.frame() as frame:
        # The publisher's menus as rows of links, with the UI's reading style; and no
        # script ran in the frame (it is sandboxed without scripts: nothing may run).
        shown = frame.call("Runtime.evaluate", returnByValue=True, expression="""({
            style: document.head.querySelector('style').textContent.includes('newsarchive') ||
                   document.head.querySelector('style').textContent.includes('flex-wrap'),
            menus: [...document.querySelectorAll('nav ul, header ul')].map(
                u => getComputedStyle(u).display),
            height: document.documentElement.scrollHeight})""")
        value = shown["result"]["value"]
    assert value["style"] and value["menus"] and set(value["menus"]) <= {"flex", "none"}
