"""Content dedup and versions in the archive, on a local directory and on moto S3:
exact duplicates become aliases, near duplicates are flagged, changed text is a new
version, and record updates are compare-and-swap so that concurrent writers lose nothing."""

from __future__ import annotations

import gzip
import json
import random
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from storage import Archive, LocalBackend, Record, StoreOutcome
from storage.dedup import (
    LSH_BANDS,
    MIN_DEDUP_WORDS,
    NEAR_DUPLICATE_JACCARD,
    jaccard,
    lsh_bands,
    shingles,
    text_fingerprint,
)
from storage.errors import ArchiveUnavailable
from storage.keys import content_index_key, url_index_key
from storage.near_index import NearIndex, recover_journal
from tests.test_storage import FETCHED, make_record, meta_keys, sha256

_VOCABULARY = (
    "minister council harbour election budget river festival court police school energy "
    "hospital market village railway museum storm farmers union report vote tax bridge "
    "league player coach season studio album theatre tenant housing climate coast"
).split()


def article_text(seed: int, words: int = 240) -> str:
    """A deterministic article-length text, different for each seed."""
    rng = random.Random(seed)
    sentences, sentence = [], []
    for _ in range(words):
        sentence.append(rng.choice(_VOCABULARY))
        if len(sentence) == 12:
            sentences.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    return "\n".join(" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4))


def store_text(archive: Archive, canonical: str, text: str, *, site: str = "example",
               url: str | None = None, aliases=(), fetched_at=FETCHED, run_id="run-1",
               refetch=False, raw: bytes | None = None, published: datetime | None = None):
    record = make_record(archive, canonical, site=site, url=url, aliases=tuple(aliases),
                         text=text, fetched_at=fetched_at, published=published)
    record = replace(record, content_sha256=sha256(text))
    return archive.store(record, raw_body=raw or text.encode(), charset="utf-8", text=text,
                         run_id=run_id, seen_urls={canonical}, refetch=refetch)


def test_dedup_primitives():
    text = article_text(1)
    assert text_fingerprint(text) == text_fingerprint("  " + text.upper().replace("\n", "  "))
    assert text_fingerprint(text) != text_fingerprint(article_text(2))
    assert lsh_bands(text) == lsh_bands(text)  # the same buckets on every call and machine
    assert len(text.split()) >= MIN_DEDUP_WORDS
    assert jaccard(shingles(text), shingles(text)) == 1.0
    assert jaccard(shingles(text), shingles(article_text(2))) < 0.1


def test_lsh_buckets_never_change():
    """Bucket names are shared by every writer, on every machine and in every release: a
    change would make a new crawl blind to every near duplicate archived before it."""
    import hashlib

    text = " ".join(f"word{i % 97} token{i % 89} Grüße{i % 13}" for i in range(120))
    bands = lsh_bands(text)
    assert bands[0] == (0, "1eac6ab0a7bb21f5d8f8bfdccd1bd94f")
    assert bands[9] == (9, "fc72619c4ea78e5d9a1d349dc722b920")
    assert hashlib.sha256(repr(bands).encode()).hexdigest() == \
        "ef9682d2f29bb26e3bf2cb79fa96d49a3f5a906226252852b606f5874f893720"


def test_same_text_under_another_url_becomes_an_alias(archive, raw_state):
    text = article_text(10)
    first = store_text(archive, "https://a.example/story", text)
    assert first.outcome is StoreOutcome.WRITTEN
    before = set(raw_state())

    # The print view: another canonical URL, same text up to spacing.
    second = store_text(archive, "https://a.example/print/story", text.replace("\n", "\n\n"),
                        url="https://a.example/print/story?utm_source=x",
                        aliases=("https://a.example/print/story?utm_source=x",))
    assert second.outcome is StoreOutcome.ALIASED
    assert second.record.id == first.record.id
    assert set(second.record.aliases) == {"https://a.example/print/story",
                                          "https://a.example/print/story?utm_source=x"}
    # No second copy: only the record and the new URL's marker changed or appeared.
    assert meta_keys(archive.backend) == [archive.backend.relative(first.record.meta_key)]
    # (The local backend's compare-and-swap lock file is hidden and never listed.)
    added = {k.removeprefix("news/") for k in set(raw_state()) - before} - {".newsarchive.lock"}
    assert added == {url_index_key("https://a.example/print/story")}
    assert archive.lookup("https://a.example/print/story") == second.record

    # Storing it again changes nothing.
    state = raw_state()
    assert store_text(archive, "https://a.example/print/story", text).outcome is StoreOutcome.DUPLICATE
    assert raw_state() == state


def test_an_alias_claims_its_url_once(tmp_path):
    """Same text under another URL: the URL is claimed, then pointed at the article that
    has the text, and not claimed a second time (on S3, a request answered 412)."""
    class ClaimCounting(LocalBackend):
        def __init__(self, root) -> None:
            super().__init__(root)
            self.claims: dict[str, int] = {}

        def put_if_absent(self, key, data, *, content_type=None) -> bool:
            self.claims[key] = self.claims.get(key, 0) + 1
            return super().put_if_absent(key, data, content_type=content_type)

    backend = ClaimCounting(tmp_path / "archive")
    archive = Archive(backend, run_id="run-1")
    text = article_text(10)
    store_text(archive, "https://a.example/story", text)
    second = store_text(archive, "https://a.example/print/story", text)
    assert second.outcome is StoreOutcome.ALIASED
    assert backend.claims[url_index_key("https://a.example/print/story")] == 1
    assert archive.lookup("https://a.example/print/story") == second.record


def test_short_texts_are_not_deduplicated_by_content(archive):
    short = "Watch: the mayor opens the bridge."
    assert store_text(archive, "https://a.example/v1", short).outcome is StoreOutcome.WRITTEN
    assert store_text(archive, "https://a.example/v2", short).outcome is StoreOutcome.WRITTEN


def test_near_duplicate_on_another_site_is_flagged(archive):
    original = article_text(20)
    lines = original.splitlines()
    # The syndicated copy: the wire's dateline added, the last sentence cut.
    copy = "\n".join(["LONDON (Wire) -", *lines[:-1], lines[-1].rsplit(".", 2)[0] + "."])
    similarity = jaccard(shingles(original), shingles(copy))
    assert NEAR_DUPLICATE_JACCARD <= similarity < 1.0

    first = store_text(archive, "https://a.example/wire-story", original, site="sitea")
    second = store_text(archive, "https://b.example/world/wire-story", copy, site="siteb")
    assert second.outcome is StoreOutcome.WRITTEN
    assert second.record.near_duplicate_of == first.record.id
    assert first.record.near_duplicate_of is None
    assert archive.lookup("https://b.example/world/wire-story").near_duplicate_of == first.record.id

    # A copy of the copy points at the original, and unrelated text is flagged as nothing.
    third = store_text(archive, "https://c.example/wire-story", copy + "\nMore.", site="siteb")
    assert third.record.near_duplicate_of == first.record.id
    other = store_text(archive, "https://a.example/other", article_text(21), site="sitea")
    assert other.record.near_duplicate_of is None


def test_texts_below_the_threshold_are_not_near_duplicates(archive):
    original = article_text(30)
    lines = original.splitlines()
    half = "\n".join(lines[: len(lines) // 2] + article_text(31).splitlines()[len(lines) // 2:])
    assert jaccard(shingles(original), shingles(half)) < NEAR_DUPLICATE_JACCARD
    store_text(archive, "https://a.example/one", original)
    assert store_text(archive, "https://a.example/two", half).record.near_duplicate_of is None


def test_changed_text_becomes_a_new_version(archive, raw_state):
    backend = archive.backend
    canonical = "https://a.example/developing"
    v1_text, v2_text = article_text(40), article_text(40) + "\nUpdate: the council voted."
    first = store_text(archive, canonical, v1_text, raw=b"<html>v1</html>")
    assert first.outcome is StoreOutcome.WRITTEN
    assert len(first.record.versions) == 1

    later = FETCHED + timedelta(hours=5)
    second = store_text(archive, canonical, v2_text, fetched_at=later, raw=b"<html>v2</html>",
                        refetch=True)
    assert second.outcome is StoreOutcome.VERSION
    record = second.record
    assert record.id == first.record.id and record.meta_key == first.record.meta_key
    assert [v.content_sha256 for v in record.versions] == [sha256(v1_text), sha256(v2_text)]
    assert [v.fetched_at for v in record.versions] == [FETCHED, later]
    assert record.fetched_at == later and record.content_sha256 == sha256(v2_text)
    assert "/versions/" in record.raw_key and "/versions/" in record.text_key
    # The first version is kept; the record's keys lead to the new one.
    v1 = record.versions[0]
    assert backend.get(backend.relative(v1.text_key)).decode() == v1_text
    assert gzip.decompress(backend.get(backend.relative(v1.raw_key))) == b"<html>v1</html>"
    assert archive.read_text(record) == v2_text
    assert archive.read_raw(record) == b"<html>v2</html>"
    assert meta_keys(backend) == [backend.relative(record.meta_key)]
    assert Record.from_json(backend.get(backend.relative(record.meta_key))) == record

    # The same update seen again is no new version and writes nothing; a re-check that
    # finds it unchanged is recorded once.
    state = raw_state()
    again = store_text(archive, canonical, v2_text, fetched_at=later + timedelta(hours=1))
    assert again.outcome is StoreOutcome.DUPLICATE and raw_state() == state
    checked = store_text(archive, canonical, v2_text, fetched_at=later + timedelta(hours=2),
                         refetch=True)
    assert checked.outcome is StoreOutcome.DUPLICATE
    assert checked.record.checked_at == later + timedelta(hours=2)
    assert checked.record.last_seen == later + timedelta(hours=2)
    assert len(checked.record.versions) == 2


def test_put_if_match_loses_to_a_newer_write(backend):
    backend.put("state.json", b"one")
    data, tag = backend.get_tagged("state.json")
    assert data == b"one"
    backend.put("state.json", b"two")
    assert not backend.put_if_match("state.json", b"three", tag)
    assert backend.get("state.json") == b"two"
    data, tag = backend.get_tagged("state.json")
    assert backend.put_if_match("state.json", b"three", tag)
    assert backend.get("state.json") == b"three"
    assert not backend.put_if_match("missing.json", b"x", tag)


def test_concurrent_alias_updates_lose_nothing(backend):
    """Writers in separate Archive objects (as separate processes would be) add aliases to
    one record at once; compare-and-swap keeps every one of them."""
    writers = 8
    first = store_text(Archive(backend), "https://a.example/shared", article_text(50)).record
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            Archive(backend).add_aliases(first, {f"https://a.example/shared?via={i}"})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    stored = Archive(backend).lookup(first.canonical_url)
    assert set(stored.aliases) == {f"https://a.example/shared?via={i}" for i in range(writers)}


def test_index_entries_of_an_unfinished_article_are_not_evidence(archive):
    """A writer that died after claiming a text owns its fingerprint but has no meta.json
    (and no entry in the near-duplicate index, written only for complete articles): a page
    with that text elsewhere is archived, not lost as an alias."""
    text = article_text(60)
    dead = make_record(archive, "https://a.example/died-midway", text=text)
    dead = replace(dead, content_sha256=sha256(text), text_fingerprint=text_fingerprint(text))
    # Its claim, as a writer on another machine left it moments ago.
    claim = {"id": dead.id, "meta_key": dead.meta_key, "text_key": dead.text_key,
             "claimed_at": datetime.now(timezone.utc).isoformat(), "host": "elsewhere", "pid": 1}
    assert archive.backend.put_if_absent(content_index_key(dead.text_fingerprint),
                                         json.dumps(claim).encode())

    # While the dead writer's claim is fresh, the page is archived in its own right.
    result = store_text(archive, "https://b.example/same-story", text, site="siteb")
    assert result.outcome is StoreOutcome.WRITTEN
    assert result.record.near_duplicate_of is None

    # Once that claim is stale, the next page with the text takes the fingerprint over; the
    # one after it is an alias. (Another writer: it sees what the first wrote to the
    # near-duplicate index once that one flushed.)
    archive.flush()
    later = Archive(archive.backend, claim_stale_after=timedelta(0))
    third = store_text(later, "https://c.example/same-story", text, site="siteb")
    assert third.outcome is StoreOutcome.WRITTEN
    assert third.record.near_duplicate_of == result.record.id
    fourth = store_text(later, "https://d.example/same-story", text, site="siteb")
    assert fourth.outcome is StoreOutcome.ALIASED and fourth.record.id == third.record.id


def _wire_copy(text: str) -> str:
    """The syndicated copy of ``text``: the wire's dateline added, the last sentence cut."""
    lines = text.splitlines()
    copy = "\n".join(["LONDON (Wire) -", *lines[:-1], lines[-1].rsplit(".", 2)[0] + "."])
    assert NEAR_DUPLICATE_JACCARD <= jaccard(shingles(text), shingles(copy)) < 1.0
    return copy


@pytest.mark.parametrize("kind", ["exact", "near"])
@pytest.mark.parametrize("order", ["original first", "copy first"])
def test_a_copy_on_another_site_points_to_the_earlier_published_in_either_order(
        backend, order, kind):
    """Each site keeps its own article; the copy published later points to the one published
    first, whichever was archived first: a later-archived original corrects the copy's link.
    Each crawl is an archive of its own (a process), seeing the other's near-duplicate index
    once it was flushed."""
    text = article_text(70)
    copy_text = text if kind == "exact" else _wire_copy(text)
    link = "duplicate_of" if kind == "exact" else "near_duplicate_of"
    published = datetime(2024, 5, 2, 9, 0, tzinfo=timezone.utc)
    stores = {
        "original": lambda archive: store_text(archive, "https://origin.example/story", text,
                                               site="origin", published=published),
        "copy": lambda archive: store_text(archive, "https://partner.example/wire/story",
                                           copy_text, site="partner",
                                           published=published + timedelta(hours=3)),
    }
    first, second = ("original", "copy") if order == "original first" else ("copy", "original")
    crawl_one = Archive(backend, run_id="crawl-1")
    results = {first: stores[first](crawl_one)}
    crawl_one.flush()
    results[second] = stores[second](Archive(backend, run_id="crawl-2"))
    assert {r.outcome for r in results.values()} == {StoreOutcome.WRITTEN}

    reader = Archive(backend)
    original = reader.lookup("https://origin.example/story")
    copy = reader.lookup("https://partner.example/wire/story")
    # Archived under each site, in its own place.
    assert (original.site, copy.site) == ("origin", "partner")
    assert original.id != copy.id and original.meta_key != copy.meta_key
    assert getattr(copy, link) == original.id
    assert getattr(original, link) is None
    assert original.duplicate_of is None and original.near_duplicate_of is None

    # A third site's copy (of the copy, for near copies), archived later, points to the
    # original too.
    reader.flush()
    third_text = copy_text if kind == "exact" else copy_text + "\nMore."
    third = store_text(Archive(backend, run_id="crawl-3"), "https://third.example/story",
                       third_text, site="third", published=published + timedelta(days=1))
    assert third.outcome is StoreOutcome.WRITTEN
    assert (third.record.duplicate_of or third.record.near_duplicate_of) == original.id


def test_the_same_text_twice_on_one_site_stays_one_article_when_another_site_has_it(archive):
    """Within a site, same text under another URL is an alias, also when another site's copy
    owns the text's claim."""
    text = article_text(80)
    store_text(archive, "https://origin.example/story", text, site="origin")
    copy = store_text(archive, "https://partner.example/story", text, site="partner")
    assert copy.outcome is StoreOutcome.WRITTEN
    again = store_text(archive, "https://partner.example/print/story", text, site="partner")
    assert again.outcome is StoreOutcome.ALIASED and again.record.id == copy.record.id
    assert "https://partner.example/print/story" in again.record.aliases
    assert archive.lookup("https://partner.example/print/story").id == copy.record.id


def test_near_duplicates_are_found_across_writers_and_months(backend):
    """The index is read back by another writer, for texts dated within its window, and
    not for texts dated far from it (a crawl reads the months around its articles, not the
    archive's history)."""
    text = article_text(90)
    day = datetime(2024, 1, 30, 12, tzinfo=timezone.utc)
    writer = Archive(backend, run_id="writer")
    store_text(writer, "https://a.example/story", text, site="sitea", published=day)
    writer.flush()
    near = store_text(Archive(backend, run_id="r2"), "https://b.example/story", _wire_copy(text),
                      site="siteb", published=day + timedelta(days=20))
    assert near.record.near_duplicate_of is not None
    far = store_text(Archive(backend, run_id="r3"), "https://c.example/story", _wire_copy(text),
                     site="sitec", published=day + timedelta(days=90))
    assert far.record.near_duplicate_of is None
    keys = list(backend.iter_keys("_index/near/"))
    assert keys and all(k.startswith(("_index/near/2024-01/", "_index/near/2024-02/"))
                        for k in keys)


def test_a_writer_that_dies_before_its_flush_leaves_its_entries_to_the_next(backend, tmp_path):
    """A writer's entries wait in memory for its next flush, and in its journal: a writer
    that dies first (no flush) leaves them there, and recover_journal writes them as its
    run's segments, found by every writer after; the journal is then empty."""
    text = article_text(95)
    day = datetime(2024, 5, 6, 12, tzinfo=timezone.utc)
    journal = tmp_path / "workspace" / "near"
    writer = Archive(backend, run_id="killed")
    writer.near.keep_journal(journal)
    stored = store_text(writer, "https://a.example/story", text, site="sitea", published=day)
    del writer  # dies here, before any flush
    assert not list(backend.iter_keys("_index/near/"))
    assert not NearIndex(backend, "reader").candidates(day.date(), lsh_bands(text))

    assert recover_journal(backend, journal, "killed") == 1
    assert not list(journal.iterdir())
    keys = list(backend.iter_keys("_index/near/"))
    assert keys and all(k.startswith("_index/near/2024-05/killed-") for k in keys)
    hits = NearIndex(backend, "reader").candidates(day.date(), lsh_bands(text))
    assert [(entry.id, shared) for entry, shared in hits] == [(stored.record.id, LSH_BANDS)]
    # A near copy stored later is flagged against it, as if the writer had flushed.
    copy = store_text(Archive(backend, run_id="next"), "https://b.example/story",
                      _wire_copy(text), site="siteb", published=day + timedelta(days=2))
    assert copy.record.near_duplicate_of == stored.record.id


class _PutsFail(LocalBackend):
    """A local archive whose PUTs of the keys ``failing`` picks fail, as an unreachable
    archive's would."""

    @staticmethod
    def failing(key: str) -> bool:
        return False

    def put(self, key, data, **kwargs):
        if self.failing(key):
            raise ArchiveUnavailable("the archive is unreachable")
        return super().put(key, data, **kwargs)

    def put_if_match(self, key, data, etag, **kwargs):
        if self.failing(key):
            raise ArchiveUnavailable("the archive is unreachable")
        return super().put_if_match(key, data, etag, **kwargs)


class _Killed(BaseException):
    """The crawl process killed at this point (nothing after it runs)."""


def test_a_writer_killed_between_a_record_and_its_entry_leaves_the_entry(tmp_path):
    """An article is journalled as being stored before its meta.json is written: a writer
    killed after the record and before its index entry leaves it in the journal, kept
    there across the writer's flushes of other entries, and recovery writes it because its
    record exists. An article whose record was never written is not entered."""

    backend = _PutsFail(tmp_path / "archive")
    journal = tmp_path / "workspace" / "near"
    day = datetime(2024, 9, 2, tzinfo=timezone.utc)
    writer = Archive(backend, run_id="killed")
    writer.near.keep_journal(journal)
    backend.failing = lambda key: key.endswith("meta.json")
    with pytest.raises(ArchiveUnavailable):
        store_text(writer, "https://a.example/never", article_text(130), site="sitea",
                   published=day)
    backend.failing = _PutsFail.failing

    def killed(entry, bands):
        raise _Killed
    adding, writer.near.add = writer.near.add, killed
    with pytest.raises(_Killed):
        store_text(writer, "https://a.example/cut", article_text(131), site="sitea",
                   published=day)
    writer.near.add = adding
    other = store_text(writer, "https://a.example/whole", article_text(132), site="sitea",
                       published=day)
    writer.flush()  # writes the whole article's entry and deletes the files that held it
    assert list(journal.iterdir())  # the cut article's, journalled again after the flush
    del writer  # dies with the cut article between its record and its entry
    cut = Archive(backend, run_id="reader").lookup("https://a.example/cut")
    assert cut is not None and Archive(backend, run_id="reader").lookup(
        "https://a.example/never") is None

    assert recover_journal(backend, journal, "killed") == 1
    assert not list(journal.iterdir())
    index = NearIndex(backend, "reader")
    for record, seed in ((cut, 131), (other.record, 132)):
        hits = index.candidates(day.date(), lsh_bands(article_text(seed)))
        assert [entry.id for entry, shared in hits if shared == LSH_BANDS] == [record.id]
    assert not index.candidates(day.date(), lsh_bands(article_text(130)))


def test_a_writer_that_corrects_links_and_ends_cleanly_leaves_no_journal(tmp_path):
    journal = tmp_path / "workspace" / "near"
    text = article_text(141)
    published = datetime(2024, 5, 2, 9, 0, tzinfo=timezone.utc)
    writer = Archive(LocalBackend(tmp_path / "archive"), run_id="crawl-1")
    writer.keep_journal(journal)
    copy = store_text(writer, "https://partner.example/wire/story", _wire_copy(text),
                      site="partner", published=published + timedelta(hours=3)).record
    original = store_text(writer, "https://origin.example/story", text, site="origin",
                          published=published).record
    assert (journal / "links.jsonl").is_file()  # written before the original's record
    writer.flush()
    assert not list(journal.iterdir())
    assert writer.lookup(copy.canonical_url).near_duplicate_of == original.id


@pytest.mark.parametrize("fault", ["killed", "unreachable"])
def test_links_an_original_was_to_correct_are_corrected_after_a_crash(tmp_path, fault):
    """An original archived after its copy on another site corrects the copy's link: the
    correction is journalled before the original's record is written, so a writer killed
    after the record (or whose correction failed, the archive unreachable) leaves it to the
    next crawl's recovery, which makes it; a clean end leaves no journal."""
    backend = _PutsFail(tmp_path / "archive")
    journal = tmp_path / "workspace" / "near"
    text = article_text(140)
    published = datetime(2024, 5, 2, 9, 0, tzinfo=timezone.utc)
    crawl_one = Archive(backend, run_id="crawl-1")
    crawl_one.keep_journal(journal)
    copy = store_text(crawl_one, "https://partner.example/wire/story", _wire_copy(text),
                      site="partner", published=published + timedelta(hours=3)).record
    crawl_one.flush()
    assert not list(journal.iterdir())  # nothing to correct, nothing journalled

    crawl_two = Archive(backend, run_id="crawl-2")
    crawl_two.keep_journal(journal)
    if fault == "killed":
        def killed(meta_key, link, original, when):
            raise _Killed
        crawl_two._point_to = killed
        with pytest.raises(_Killed):
            store_text(crawl_two, "https://origin.example/story", text, site="origin",
                       published=published)
    else:
        backend.failing = lambda key: copy.id in key and key.endswith("meta.json")
        store_text(crawl_two, "https://origin.example/story", text, site="origin",
                   published=published)
        backend.failing = _PutsFail.failing
        crawl_two.flush()  # a correction failed: the journal stays
    original = Archive(backend).lookup("https://origin.example/story")
    assert original is not None
    assert Archive(backend).lookup("https://partner.example/wire/story").near_duplicate_of is None

    Archive(backend, run_id="crawl-3").recover_journal(journal, "crawl-2")
    assert Archive(backend).lookup(
        "https://partner.example/wire/story").near_duplicate_of == original.id
    assert not list(journal.iterdir())


def test_a_correction_made_late_keeps_a_link_to_an_earlier_original(tmp_path):
    """A crawl's journalled correction (copy -> its original) made only after a crash, when
    another crawl has meanwhile archived an article published earlier still and pointed the
    copy to it, leaves the copy pointing to the earliest."""
    backend = _PutsFail(tmp_path / "archive")
    journal = tmp_path / "workspace" / "near"
    text = article_text(142)
    earliest = "PARIS (Agency) -\n" + text
    assert NEAR_DUPLICATE_JACCARD <= jaccard(shingles(earliest), shingles(_wire_copy(text)))
    published = datetime(2024, 5, 2, 9, 0, tzinfo=timezone.utc)
    first = Archive(backend, run_id="crawl-1")
    copy = store_text(first, "https://partner.example/wire/story", _wire_copy(text),
                      site="partner", published=published + timedelta(hours=3)).record
    first.flush()

    # Crawl 2 archives an earlier original; its correction of the copy fails: journalled.
    second = Archive(backend, run_id="crawl-2")
    second.keep_journal(journal)
    backend.failing = lambda key: copy.id in key and key.endswith("meta.json")
    late = store_text(second, "https://origin.example/story", text, site="origin",
                      published=published + timedelta(hours=1)).record
    backend.failing = _PutsFail.failing
    second.flush()
    assert (journal / "links.jsonl").is_file()

    # Crawl 3 archives the earliest, and points both to it.
    third = Archive(backend, run_id="crawl-3")
    first_of_all = store_text(third, "https://first.example/story", earliest, site="first",
                              published=published).record
    third.flush()
    reader = Archive(backend)
    assert reader.lookup(copy.canonical_url).near_duplicate_of == first_of_all.id
    assert reader.lookup(late.canonical_url).near_duplicate_of == first_of_all.id

    Archive(backend, run_id="crawl-4").recover_journal(journal, "crawl-2")
    assert Archive(backend).lookup(copy.canonical_url).near_duplicate_of == first_of_all.id
    assert not list(journal.iterdir())  # nothing left to do


def test_the_journal_keeps_what_a_failed_flush_did_not_write(tmp_path):
    """A flush that writes everything empties the journal; one that fails (the archive
    unreachable) keeps it, and the entries are written from it later, once each."""

    backend = _PutsFail(tmp_path / "archive")
    journal = tmp_path / "workspace" / "near"
    day = datetime(2024, 7, 1, tzinfo=timezone.utc)
    writer = Archive(backend, run_id="run-1")
    writer.near.keep_journal(journal)
    first = store_text(writer, "https://a.example/1", article_text(120), site="sitea",
                       published=day)
    writer.flush()
    assert not list(journal.iterdir())  # written: nothing journalled any more

    backend.failing = lambda key: key.startswith("_index/near/")
    second = store_text(writer, "https://a.example/2", article_text(121), site="sitea",
                        published=day)
    with pytest.raises(ArchiveUnavailable):
        writer.flush()
    assert list(journal.iterdir())  # kept for the next crawl
    backend.failing = _PutsFail.failing
    assert recover_journal(backend, journal, "run-1") == 1
    assert not list(journal.iterdir())
    index = NearIndex(backend, "reader")
    for stored, seed in ((first, 120), (second, 121)):
        hits = index.candidates(day.date(), lsh_bands(article_text(seed)))
        assert [entry.id for entry, shared in hits if shared == LSH_BANDS] == [stored.record.id]


def test_a_month_of_many_segments_is_folded_into_one(backend, monkeypatch):
    """Every writer adds a segment; past FOLD_OVER the writer folds the month into one file,
    and nothing is lost."""
    from storage import near_index

    monkeypatch.setattr(near_index, "FOLD_OVER", 3)
    day = datetime(2024, 3, 5, tzinfo=timezone.utc)
    ids = []
    for n in range(5):
        writer = Archive(backend, run_id=f"run-{n}")
        ids.append(store_text(writer, f"https://a.example/s{n}", article_text(100 + n),
                              site="sitea", published=day).record.id)
        writer.flush()
    keys = list(backend.iter_keys("_index/near/2024-03/"))
    assert len(keys) <= 3
    index = near_index.NearIndex(backend)
    for n, article in enumerate(ids):
        hits = index.candidates(day.date(), lsh_bands(article_text(100 + n)))
        assert [entry.id for entry, shared in hits if shared == 10] == [article]


def test_near_copies_stored_at_once_by_one_writer_are_flagged(tmp_path):
    """Two storage threads of one crawl store two near copies of one story at the same
    moment: the one stored second is a near copy of the first, however their steps
    interleave (here: the first pauses between its search for an original and its entry
    into the index, the moment the second searches)."""
    original = article_text(20)
    copy = _wire_copy(original)
    searched, second_stored = threading.Event(), threading.Event()

    class PausingIndex(NearIndex):
        def candidates(self, *args, **kwargs):
            found = super().candidates(*args, **kwargs)
            if threading.current_thread().name == "first" and not searched.is_set():
                searched.set()
                second_stored.wait(5)  # a guard only: with the fix, the second waits for us
            return found

    backend = LocalBackend(tmp_path / "archive")
    archive = Archive(backend)
    archive.near = PausingIndex(backend, "adhoc")
    stored = {}
    first = threading.Thread(name="first", target=lambda: stored.setdefault(
        "first", store_text(archive, "https://a.example/wire-story", original)))
    first.start()
    assert searched.wait(60)
    second = store_text(archive, "https://a.example/world/wire-story", copy)
    second_stored.set()
    first.join(60)
    assert stored["first"].record.near_duplicate_of is None
    assert second.record.near_duplicate_of == stored["first"].record.id


class _GatedBackend(LocalBackend):
    """A local archive whose listings (or writes) under one prefix wait for a gate: a
    request on S3 takes tens of milliseconds, here as long as the test wants."""

    def __init__(self, root, prefix: str, *, writes: bool = False) -> None:
        super().__init__(root)
        self.gated_prefix, self.gate_writes = prefix, writes
        self.waiting, self.gate = threading.Event(), threading.Event()

    def _wait(self, key: str) -> None:
        if key.startswith(self.gated_prefix):
            self.waiting.set()
            assert self.gate.wait(60), "the gate was never opened"

    def iter_keys(self, prefix=""):
        if not self.gate_writes:
            self._wait(prefix)
        return super().iter_keys(prefix)

    def put(self, key, data, **kwargs):
        if self.gate_writes:
            self._wait(key)
        return super().put(key, data, **kwargs)


def _in_thread(function, *args):
    """Run ``function`` in a thread; returns (thread, the list its result goes into)."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    return thread, result


def test_a_month_being_read_holds_up_no_search_in_other_months(tmp_path):
    """On S3 a month's listing is a round trip: a crawl's storing threads searching months
    read already must not queue behind it (they held the index's lock, all of them)."""
    from datetime import date

    backend = _GatedBackend(tmp_path / "archive", "_index/near/2024-06/")
    text = article_text(31)
    writer = Archive(backend, run_id="run-1")
    store_text(writer, "https://a.example/jan", text,
               published=datetime(2024, 1, 15, tzinfo=timezone.utc))
    writer.flush()
    index = NearIndex(backend, "run-2")
    assert index.candidates(date(2024, 1, 16), lsh_bands(text))  # January read
    june, _ = _in_thread(index.candidates, date(2024, 6, 15), lsh_bands(text))
    assert backend.waiting.wait(60)  # June's listing is under way, and stays so
    january, found = _in_thread(index.candidates, date(2024, 1, 17), lsh_bands(text))
    january.join(60)  # a hang guard: the search needs no request
    finished_first = not january.is_alive()
    backend.gate.set()
    june.join(60)
    assert finished_first, "a search of a month read waited for another month's listing"
    assert [entry.site for entry, _ in found[0]] == ["example"]


def test_a_flush_being_written_holds_up_no_search_and_loses_no_entry(tmp_path):
    """A flush writes the pending entries outside the search lock, and they are found
    throughout: before the write, while it is under way, and after it."""
    from datetime import date

    backend = _GatedBackend(tmp_path / "archive", "_index/near/", writes=True)
    archive = Archive(backend, run_id="run-1")
    backend.gate.set()
    text = article_text(32)
    stored = store_text(archive, "https://a.example/one", text,
                        published=datetime(2024, 3, 5, tzinfo=timezone.utc)).record
    backend.gate.clear()
    flushing, _ = _in_thread(archive.near.flush)
    assert backend.waiting.wait(60)  # the segment's write is under way
    searching, found = _in_thread(archive.near.candidates, date(2024, 3, 6), lsh_bands(text))
    searching.join(60)  # a hang guard: the search needs no request
    finished_first = not searching.is_alive()
    backend.gate.set()
    flushing.join(60)
    assert finished_first, "a search waited for a flush's write"
    assert [entry.id for entry, _ in found[0]] == [stored.id]
    after = archive.near.candidates(date(2024, 3, 6), lsh_bands(text))
    assert [entry.id for entry, _ in after] == [stored.id]
    assert not archive.near._pending
    assert len(list(backend.iter_keys("_index/near/2024-03/"))) == 1


class _CountingBackend(LocalBackend):
    """A local archive that counts the objects read, by the key's file name."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: dict[str, int] = {}

    def get(self, key):
        name = key.rsplit("/", 1)[-1]
        self.reads[name] = self.reads.get(name, 0) + 1
        return super().get(key)


def test_a_url_learnt_right_after_storing_costs_no_look_up(tmp_path):
    """A crawl that stored an article and then finds it listed under one more URL (its feed
    read after its sitemap) starts from the record it wrote (stored_lately): no URL marker
    read, only the compare-and-swap's read of the record; the URL is added."""
    backend = _CountingBackend(tmp_path / "archive")
    archive = Archive(backend, run_id="run-1")
    url = "https://a.example/story"
    stored = store_text(archive, url, article_text(130), site="sitea")
    assert archive.stored_lately(url) == stored.record
    assert archive.stored_lately("https://a.example/other") is None
    backend.reads.clear()
    feed_url = url + "?utm_source=feed"
    updated = archive.add_aliases(archive.stored_lately(url), {feed_url})
    assert feed_url in updated.aliases
    assert backend.reads == {"meta.json": 1}  # the compare-and-swap's read; no marker
    assert feed_url in Archive(backend).lookup(url).aliases


def test_near_copies_of_a_story_read_its_texts_and_its_original_once(tmp_path):
    """A writer keeps the texts it compared (as shingle hashes) and the original's record
    it read: the near copies of one story, coming together among hundreds of other
    articles, are compared without reading the earlier copies' texts or the original's
    record again (on S3, two round trips per near copy)."""
    backend = _CountingBackend(tmp_path / "archive")
    archive = Archive(backend, run_id="run-1")
    original = article_text(40)
    first = store_text(archive, "https://a.example/story", original).record
    for n in range(300):  # more than a small cache holds
        store_text(archive, f"https://a.example/other-{n}", article_text(1000 + n))
    backend.reads.clear()
    copies = []
    for n in range(5):
        lines = original.splitlines()
        lines[n] = lines[n].rsplit(" ", 1)[0] + f" wire{n}."
        copy = store_text(archive, f"https://b.example/copy-{n}", "\n".join(lines),
                          site="other", fetched_at=FETCHED + timedelta(hours=1 + n)).record
        copies.append(copy.near_duplicate_of)
    assert copies == [first.id] * 5
    assert backend.reads.get("text.txt", 0) == 0, backend.reads
    assert backend.reads.get("meta.json", 0) <= 1, backend.reads


def test_a_flush_writes_the_months_it_holds_at_once(tmp_path):
    """A backfill's flush holds entries of many months, a segment each: on S3 every write
    is a round trip, so they overlap (two writes must be under way together, or neither
    ends), and every entry is then found."""
    from datetime import date

    together = threading.Barrier(2, timeout=30)  # a hang guard: one write at a time breaks it

    class MeetingBackend(LocalBackend):
        def put(self, key, data, **kwargs):
            if key.startswith("_index/near/"):
                together.wait()
            return super().put(key, data, **kwargs)

    backend = MeetingBackend(tmp_path / "archive")
    archive = Archive(backend, run_id="run-1")
    days = [datetime(2024, 3, 5, tzinfo=timezone.utc), datetime(2024, 9, 5, tzinfo=timezone.utc)]
    texts = [article_text(50 + n) for n in range(2)]
    for n, (day, text) in enumerate(zip(days, texts)):
        store_text(archive, f"https://a.example/{n}", text, published=day)
    assert archive.near.flush() == 2  # raises BrokenBarrierError when written one by one
    assert len(list(backend.iter_keys("_index/near/"))) == 2
    reader = NearIndex(LocalBackend(tmp_path / "archive"), "run-2")
    for day, text in zip(days, texts):
        assert len(reader.candidates(date(day.year, day.month, 6), lsh_bands(text))) == 1
