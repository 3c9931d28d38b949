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

from storage import Archive, Record, StoreOutcome
from storage.dedup import (
    MIN_DEDUP_WORDS,
    NEAR_DUPLICATE_JACCARD,
    jaccard,
    lsh_bands,
    shingles,
    text_fingerprint,
)
from storage.keys import content_index_key, url_index_key
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
               refetch=False, raw: bytes | None = None):
    record = make_record(archive, canonical, site=site, url=url, aliases=tuple(aliases),
                         text=text, fetched_at=fetched_at)
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
    assert not errors, errors
    stored = Archive(backend).lookup(first.canonical_url)
    assert set(stored.aliases) == {f"https://a.example/shared?via={i}" for i in range(writers)}


def test_index_entries_of_an_unfinished_article_are_not_evidence(archive):
    """A writer that died after claiming a text owns its fingerprint and its LSH buckets but
    has no meta.json: a page with that text elsewhere is archived, not lost as an alias."""
    text = article_text(60)
    dead = make_record(archive, "https://a.example/died-midway", text=text)
    dead = replace(dead, content_sha256=sha256(text), text_fingerprint=text_fingerprint(text))
    # Its claim, as a writer on another machine left it moments ago.
    claim = {"id": dead.id, "meta_key": dead.meta_key, "text_key": dead.text_key,
             "claimed_at": datetime.now(timezone.utc).isoformat(), "host": "elsewhere", "pid": 1}
    assert archive.backend.put_if_absent(content_index_key(dead.text_fingerprint),
                                         json.dumps(claim).encode())
    assert archive._join_buckets(dead, text) is None

    # While the dead writer's claim is fresh, the page is archived in its own right.
    result = store_text(archive, "https://b.example/same-story", text, site="siteb")
    assert result.outcome is StoreOutcome.WRITTEN
    assert result.record.near_duplicate_of is None

    # Once that claim is stale, the next page with the text takes the fingerprint over; the
    # one after it is an alias.
    later = Archive(archive.backend, claim_stale_after=timedelta(0))
    third = store_text(later, "https://c.example/same-story", text, site="siteb")
    assert third.outcome is StoreOutcome.WRITTEN
    assert third.record.near_duplicate_of == result.record.id
    fourth = store_text(later, "https://d.example/same-story", text, site="siteb")
    assert fourth.outcome is StoreOutcome.ALIASED and fourth.record.id == third.record.id
