"""The web UI's parts without a browser: snippets cut between words, matches marked, the
charts' calendar and ticks, times, and what a search page and a site's overview cost the
archive (counted at the S3 server: a page of results reads the newest days only, an
overview the newest run manifests only)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from browse.catalog import DayCount, WordMatcher, snippet
from browse.charts import articles_chart, date_ticks, health_chart, nice_top, window
from browse.search_page import FACET_BOUND, PAGE_SIZE, marked, search_page
from storage import Archive
from storage.backends import S3Backend, make_s3_client
from storage.catalog import CatalogWriter
from tests.s3counter import S3Counter

# -- snippets and marks ---------------------------------------------------------------------


def test_snippets_are_cut_between_words():
    words = [f"word{n:03d}" for n in range(200)]
    text = " ".join(words[:100] + ["harbour"] + words[100:])
    matcher = WordMatcher(["harbour"])
    cut = snippet(text, matcher)
    assert cut.startswith("…") and cut.endswith("…") and "harbour" in cut
    body = cut[1:-1]
    assert body.split() == [w for w in body.split() if w in words or w == "harbour"]
    assert f" {body} " in f" {text} "  # whole words, from one space to another
    # Before, the cut fell inside a word ("…d045 word046" or "word1…").
    assert 140 <= len(body) <= 160 + 30
    # A text without spaces (Chinese, a URL) is cut where it must be, no further.
    chinese = "港口" * 200
    cut = snippet(f"{chinese}。harbour。{chinese}", matcher)
    assert "harbour" in cut and len(cut) == 162
    # A short text is whole; a word found at the very start keeps it.
    assert snippet("The harbour reopened.", matcher) == "The harbour reopened."
    assert snippet("harbour " + " ".join(words), matcher).startswith("harbour word000")


def test_matches_are_marked_whole_words_as_text():
    matcher = WordMatcher(["elect", "new-york", "york"])
    segments = marked("Elections <b>in</b> new-york: the elector's Yorkshire", matcher)
    assert [(s.text, s.found) for s in segments] == [
        ("Elections", True), (" <b>in</b> ", False), ("new-york", True), (": the ", False),
        ("elector", True), ("'s ", False), ("Yorkshire", True)]
    assert "".join(s.text for s in segments) == "Elections <b>in</b> new-york: the elector's Yorkshire"
    assert [(s.text, s.found) for s in marked("selection", WordMatcher(["elect"]))] == [
        ("selection", False)]


# -- charts ---------------------------------------------------------------------------------


def counts(*days: tuple[date, int, int, int, int]) -> list[DayCount]:
    return [DayCount(site="s", day=d, articles=a, with_date=wd, with_author=wa, with_title=wt)
            for d, a, wd, wa, wt in days]


def test_sparse_days_get_a_readable_calendar():
    last = date(2026, 12, 6)
    sparse = counts((last - timedelta(days=200), 3, 3, 3, 3), (last - timedelta(days=9), 4, 4, 4, 4),
                    (last, 2, 2, 0, 2))
    span = window(sparse)
    # From the first day with articles of the 90 up to the last, at least 14 days, every
    # calendar day in it.
    assert span == [last - timedelta(days=13 - n) for n in range(14)]
    bars = articles_chart(sparse)
    assert [b.value for b in bars.bars] == [0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert min(b.width for b in bars.bars) > 40  # 720 / 14, less a gap
    assert bars.top == 5 and [t.label for t in bars.y_ticks] == ["0", "5"]
    assert [t.label for t in bars.x_ticks] == ["23 Nov 2026", "25 Nov", "27 Nov", "29 Nov",
                                               "1 Dec", "3 Dec", "5 Dec"]
    health = health_chart(sparse)
    author = next(line for line in health.lines if line.label == "with author")
    points = author.points.split()
    # Two days: a segment each, joined; the line ends where the legend says (0%).
    assert len(points) == 4 and points[-1].endswith(",140.0") and author.latest == 0
    assert author.latest_day == last and author.overall == pytest.approx(4 / 6)
    assert {line.label for line in health.lines} == {"with date", "with author", "with title"}
    # One day alone is a level segment as wide as its slot, not a dot.
    (line, *_) = health_chart(counts((last, 1, 1, 1, 1))).lines
    (a, b) = line.points.split()
    assert a.split(",")[1] == b.split(",")[1] == "0.0"
    assert float(b.split(",")[0]) - float(a.split(",")[0]) > 40


def test_ticks_and_scales():
    span = [date(2026, 9, 1) + timedelta(days=n) for n in range(90)]
    ticks = date_ticks(span)
    assert 2 <= len(ticks) <= 8  # every other Monday
    assert all(date.fromisoformat(t.value).weekday() == 0 for t in ticks)
    assert [t.label for t in ticks] == ["14 Sep 2026", "28 Sep", "12 Oct", "26 Oct", "9 Nov",
                                        "23 Nov"]
    assert [t.position for t in ticks] == sorted(t.position for t in ticks)
    months = date_ticks([date(2026, 1, 1) + timedelta(days=n) for n in range(200)])
    assert [t.label for t in months] == ["1 Jan 2026", "1 Feb", "1 Mar", "1 Apr", "1 May",
                                         "1 Jun", "1 Jul"]
    year_end = [date(2026, 12, 20) + timedelta(days=n) for n in range(30)]
    labels = [t.label for t in date_ticks(year_end)]
    assert labels[0].endswith("2026") and any(label.endswith("2027") for label in labels)
    assert [nice_top(v) for v in (0, 1, 2, 3, 6, 11, 99, 101)] == [1, 1, 2, 5, 10, 20, 100, 200]


def test_times_are_local_with_utc_exact(monkeypatch):
    from browse.web import local_time, utc_iso

    at = datetime(2026, 12, 6, 13, 3, 5, 123456, tzinfo=timezone.utc)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert local_time(at) == "6 Dec 2026, 08:03"
        assert utc_iso(at) == "2026-12-06T13:03:05.123456+00:00"
        assert utc_iso(at.astimezone(timezone(timedelta(hours=5)))) == utc_iso(at)
    finally:
        monkeypatch.undo()
        time.tzset()


# -- what pages cost ------------------------------------------------------------------------


@pytest.fixture
def counted(s3_archive, monkeypatch, tmp_path):
    """An archive of 60 days of site ``alpha`` with 8 articles a day that all have the word
    "harbour", and 3 run manifests a day for the 30 days up to today, reached through a
    counter of S3 requests."""
    from tests.test_catalog import catalog_record

    host, port = urlsplit(s3_archive.endpoint).netloc.split(":")
    counter = S3Counter((host, int(port)), s3_archive.bucket, "news").start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", counter.url)
    archive = Archive(S3Backend(s3_archive.bucket, "news", make_s3_client()))
    writer = CatalogWriter(archive.backend, tmp_path / "pending", "counted-run")
    first = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)
    for n in range(60 * 8):
        text = f"Story {n} of the harbour town."
        writer.add(catalog_record(archive, n, site="alpha",
                                  published=first + timedelta(days=n // 8, minutes=n % 8),
                                  text=text), text)
    writer.close()
    now = datetime.now(timezone.utc)
    for day in range(30):
        for hour in (1, 9, 17):
            started = (now - timedelta(days=day)).replace(hour=hour, minute=0)
            archive.put_run_manifest({
                "run_id": f"{started:%Y%m%dT%H%M%SZ}-run", "site": "alpha",
                "started_at": started.isoformat(), "finish_reason": "finished",
                "counts": {"archived": 1, "versions": 0, "duplicates": 2, "errors": 1}})
    try:
        yield archive, counter, f"s3://{s3_archive.bucket}/news"
    finally:
        counter.stop()


def catalog_days_read(counter: S3Counter) -> set[str]:
    return {key.split("/")[2] for method, key in counter.keys
            if method == "GET" and key.startswith("catalog/")}


def test_a_page_of_results_reads_the_newest_days_only(counted):
    _archive, counter, url = counted
    counter.reset()
    page = search_page(url, "harbour")
    # 480 matches: the facets count the newest FACET_BOUND of them, and say there are more.
    assert len(page.results) == PAGE_SIZE and not page.complete and not page.facets_complete
    assert [(f.site, f.count) for f in page.facets] == [("alpha", FACET_BOUND)]
    read = catalog_days_read(counter)
    # 25 days hold FACET_BOUND matches; the days are read newest first, 1, 2, 4, 8 and 16
    # at a time: 31 of the 60, never the oldest.
    assert len(read) <= 31 and "date=2026-06-01" not in read, sorted(read)
    # A page further on reads no more, until its results are beyond the facets' bound.
    counter.reset()
    later = search_page(url, "harbour", page=3)
    assert later.first_number == 2 * PAGE_SIZE + 1 and len(later.results) == PAGE_SIZE
    assert catalog_days_read(counter) <= read
    # A date range reads its days only.
    counter.reset()
    ranged = search_page(url, "harbour", since=date(2026, 6, 10), until=date(2026, 6, 11))
    assert ranged.complete and ranged.total == 16
    assert catalog_days_read(counter) == {"date=2026-06-10", "date=2026-06-11"}


def test_an_overview_reads_the_newest_run_manifests_only(counted):
    from browse.runs import RECENT_DAYS, RECENT_RUNS, recent_runs

    archive, counter, _url = counted
    counter.reset()
    runs = recent_runs(archive, "alpha")
    assert len(runs.runs) == RECENT_RUNS and runs.more
    starts = [r.started_at for r in runs.runs]
    assert starts == sorted(starts, reverse=True)  # newest first
    assert runs.error_rate == pytest.approx(1 / 4) and runs.duplicate_rate == pytest.approx(2 / 4)
    gets = Counter(method for method, key in counter.keys if key.startswith("runs/"))
    # The manifests read are the newest 20 of 90; the folders listed, the last 14 days'.
    assert gets["GET"] == RECENT_RUNS
    assert gets["LIST"] <= RECENT_DAYS + 2
