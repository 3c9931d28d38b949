"""What discovery listed during a crawl lives on disk (spiders.listings), not in the crawl's
memory; the crawls that use it are in test_dedup_crawl.py (aliases) and test_e2e.py."""

from __future__ import annotations

from spiders.listings import Listings


def test_listings_remember_urls_queueing_and_what_was_reported(tmp_path):
    path = tmp_path / "workspace" / "listings.sqlite"
    listings = Listings(path)
    listings.add("https://a.example/1", "https://a.example/1?utm_source=feed")
    listings.add("https://a.example/1", "https://a.example/1")
    listings.add("https://a.example/1", "https://a.example/1")  # listed twice: one URL
    assert listings.urls("https://a.example/1") == {"https://a.example/1",
                                                    "https://a.example/1?utm_source=feed"}
    assert listings.urls("https://a.example/2") == frozenset()
    assert listings.queue("https://a.example/1") is True
    assert listings.queue("https://a.example/1") is False  # fetched once
    assert listings.is_queued("https://a.example/1") and not listings.is_queued("https://a.example/2")
    # An article fetched first by a followed link (reported, never queued) is queued once.
    listings.reported("https://a.example/3", {"https://a.example/3"})
    assert listings.queue("https://a.example/3") is True
    assert listings.queue("https://a.example/3") is False

    # Told the archive about both URLs: not late. Listed under a third URL afterwards: late.
    listings.reported("https://a.example/1", listings.urls("https://a.example/1"))
    assert list(listings.late()) == []
    listings.add("https://a.example/1", "https://a.example/amp/1")
    listings.add("https://a.example/2", "https://a.example/2")  # never reported: not handled
    assert list(listings.late()) == [("https://a.example/1", frozenset({
        "https://a.example/1", "https://a.example/1?utm_source=feed", "https://a.example/amp/1"}))]
    assert path.is_file()  # on disk, in the run's workspace
    listings.close()


def test_an_article_listed_later_under_its_canonical_url_is_not_late():
    """Fetched at its feed link, then listed by a sitemap under the plain URL: the archive's
    URL index holds the article under that canonical form already, so nothing is looked up
    again at the crawl's end (a race in the crawl's order, seen in CI)."""
    listings = Listings()
    canonical = "https://a.example/1"
    listings.add(canonical, canonical + "?utm_source=feed")
    listings.reported(canonical, listings.urls(canonical))
    listings.add(canonical, canonical)
    assert list(listings.late()) == []
    listings.add(canonical, "https://a.example/amp/1")  # a URL the archive was not told
    assert [c for c, _ in listings.late()] == [canonical]


def test_a_crawl_starts_with_empty_listings(tmp_path):
    path = tmp_path / "listings.sqlite"
    first = Listings(path)
    first.add("https://a.example/1", "https://a.example/1")
    first.queue("https://a.example/1")
    first.close()
    again = Listings(path)
    assert not again.is_queued("https://a.example/1") and again.urls("https://a.example/1") == set()
    again.close()
    in_memory = Listings()  # a backfill plan
    in_memory.add("https://a.example/1", "https://a.example/1")
    assert in_memory.urls("https://a.example/1") == {"https://a.example/1"}
