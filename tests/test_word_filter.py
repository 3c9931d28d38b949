"""The catalog's word filters (storage.word_filter): a search skips the compacted days that
cannot hold a word, and never one that can."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from browse.catalog import WordMatcher, search
from storage import Archive, S3Backend
from storage.backends import make_s3_client
from storage.catalog import CATALOG_ROOT, CatalogWriter, compact_catalog, read_word_filter
from storage.word_filter import WordFilter, query_key, text_keys
from tests.s3counter import S3Counter

# Words with the characters where case-insensitive matching and str.lower() part ways
# (dotless and dotted i, long s, final sigma, Kelvin sign, micro sign), accents composed and
# decomposed, and the separators a word may start after (hyphen, underscore, digits).
PIECES = ["élection", "e\u0301lection", "Election", "ELECTION", "ıstanbul", "İstanbul",
          "istanbul", "ſtraße", "STRASSE", "straße", "λόγος", "ΛΌΓΟΣ", "λόγοσ", "\u212aelvin",
          "kelvin", "\u00b5icro", "μicro", "new-york", "new_york", "york", "2024election",
          "Ärger", "ärger", "x", "Zürich", "zurich", "日本語", "naïve", "naive"]


def test_no_text_a_query_matches_is_ever_ruled_out():
    """For random texts and queries: wherever the search's matcher finds every word, the
    filter of that text alone says the day may hold them (no false "certainly not")."""
    rng = random.Random(20)
    checked = 0
    for _ in range(3000):
        text = " ".join(rng.choice(PIECES) + rng.choice(["", ".", ",", "-", "_"])
                        for _ in range(rng.randint(1, 6)))
        source = rng.choice(PIECES)
        cut = rng.randint(1, len(source))
        query = rng.choice([source[:cut], source[:cut].upper(), source[:cut].lower(),
                            source[:cut].swapcase()])
        if not query.strip():
            continue
        matches = WordMatcher([query]).has_every_word(text)
        key = query_key(query)
        if key is None:
            continue  # such a search reads every day
        day_filter = WordFilter()
        day_filter.add(date(2024, 5, 1), "compacted-x.parquet", text_keys([text]))
        if matches:
            checked += 1
            assert day_filter.may_hold(key), (text, query, key)
    assert checked > 300


def test_a_filter_rules_out_words_it_was_not_given():
    day_filter = WordFilter()
    day_filter.add(date(2024, 5, 1), "compacted-x.parquet",
                   text_keys(["The harbour master counted forty boats."]))
    assert day_filter.may_hold(query_key("Harb"))
    assert day_filter.may_hold(query_key("harbourmaster's"))  # looked up by its 6 first
    assert not day_filter.may_hold(query_key("election"))
    again = WordFilter.from_bytes(day_filter.to_bytes())
    assert again.days == day_filter.days and again.may_hold("harbou")
    assert not again.may_hold("electi")
    assert WordFilter.from_bytes(b"not a filter") is None


def test_a_search_for_a_word_no_article_has_reads_no_compacted_day(s3_archive, monkeypatch,
                                                                    tmp_path):
    from tests.test_catalog import catalog_record

    host, port = urlsplit(s3_archive.endpoint).netloc.split(":")
    counter = S3Counter((host, int(port)), s3_archive.bucket, "news").start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", counter.url)
        archive = Archive(S3Backend(s3_archive.bucket, "news", make_s3_client()))
        first = datetime(2024, 4, 20, 9, tzinfo=timezone.utc)
        writer = CatalogWriter(archive.backend, tmp_path / "pending", "history")
        for n in range(40 * 3):
            text = f"Story {n} of the harbour town, and the ferry {n % 7}."
            writer.add(catalog_record(archive, n, site="alpha",
                                      published=first + timedelta(days=n // 3, minutes=n),
                                      text=text), text)
        writer.close()
        compact_catalog(archive.backend, before=date(2024, 5, 29))
        url = f"s3://{s3_archive.bucket}/news"
        # The two months compacted have their filters, covering every closed day.
        assert len(read_word_filter(archive.backend, "alpha", date(2024, 4, 1)).days) == 11
        assert len(read_word_filter(archive.backend, "alpha", date(2024, 5, 1)).days) == 28

        counter.reset()
        assert search(url, "zeppelin", limit=20) == []
        read = {key for method, key in counter.keys
                if method == "GET" and key.endswith(".parquet")}
        # Only the open days' files: 2024-05-29 and the days after it.
        assert read and all(key.split("/")[2] >= "date=2024-05-29" for key in read), read
        filters = {key for method, key in counter.keys if method == "GET" and "_words-" in key}
        assert filters == {f"{CATALOG_ROOT}/site=alpha/_words-2024-04.bin",
                           f"{CATALOG_ROOT}/site=alpha/_words-2024-05.bin"}

        # A word the compacted days have is found there, by a prefix in another case.
        hits = search(url, "FERR harbour", limit=None)
        assert len(hits) == 120
        # A late run file in a compacted day: that day is read again (it is no longer the
        # one file its filter covers), and its new word found.
        late = catalog_record(archive, 5, site="alpha", published=first + timedelta(days=1),
                              text="A zeppelin over the harbour.")
        writer = CatalogWriter(archive.backend, tmp_path / "pending-late", "late")
        writer.add(late, "A zeppelin over the harbour.")
        writer.close()
        assert [hit.id for hit in search(url, "zeppelin")] == [late.id]
    finally:
        counter.stop()
