"""The storage package: both backends (a local directory and a real moto S3 server reached
over HTTP), the key layout, the record schema, the archive's write protocol and its readers.

Shared behaviour runs against both backends through the ``backend`` fixture; nothing here
mocks boto3 or HTTP.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import socket
import threading
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from storage import (
    RECORD_FIELDS,
    SCHEMA_VERSION,
    Archive,
    ArchiveError,
    ArchiveUnavailable,
    Extractor,
    InvalidArchiveURL,
    InvalidKey,
    LocalBackend,
    ObjectNotFound,
    Record,
    S3Backend,
    StoreOutcome,
    article_id,
    article_keys,
    canonicalize_url,
    open_backend,
    validate_site_name,
)
from storage.backends import check_key, make_s3_client
from storage.dedup import text_fingerprint
from storage.keys import url_index_key
from storage.record import Version

# The record contract of ARCHITECTURE.md, spelled out so the test checks the contract
# rather than whatever the dataclass happens to hold.
CONTRACT_FIELDS = (
    "schema_version", "id", "site", "url", "canonical_url", "aliases", "title", "authors",
    "published", "modified", "language", "fetched_at", "http_status", "content_sha256",
    "near_duplicate_of", "extractor", "raw_key", "text_key", "meta_key",
)

EXTRACTOR = Extractor(name="test", version="1")
FETCHED = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=timezone.utc)
RAW = b"<html><head><meta charset='iso-8859-1'></head><body>Caf\xe9 \x00\xff\x80</body></html>"
TEXT = "Caf\u00e9 \u2014 the cleaned text of the article.\nSecond paragraph."

BAD_KEYS = [
    "../x", "a/../../x", "a/..", "/abs", "/", "a//b", "a/./b", "./a", "a/", "",
    "a\\b", "..\\x", "a\x00b", "\x00",
]

TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# -- fixtures and helpers --------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_record(
    archive: Archive,
    canonical_url: str,
    *,
    site: str = "example",
    published: datetime | None = None,
    fetched_at: datetime = FETCHED,
    url: str | None = None,
    aliases: tuple[str, ...] = (),
    text: str = TEXT,
    title: str | None = "A headline",
) -> Record:
    """A record as a crawl builds one (spiders/page.py page_record)."""
    aid = article_id(canonical_url)
    when = published or fetched_at
    keys = archive.keys_for(site, when.astimezone(timezone.utc).date(), aid)
    return Record(
        id=aid,
        site=site,
        url=url or canonical_url,
        canonical_url=canonical_url,
        aliases=tuple(aliases),
        title=title,
        authors=("Ann Author", "Bo Writer"),
        published=published,
        modified=None,
        language="en",
        fetched_at=fetched_at,
        http_status=200,
        content_sha256=sha256(text),
        extractor=EXTRACTOR,
        raw_key=archive.locate(keys.raw),
        text_key=archive.locate(keys.text),
        meta_key=archive.locate(keys.meta),
    )


def store(archive: Archive, record: Record, *, raw: bytes = RAW, text: str = TEXT,
          charset: str = "iso-8859-1", seen_urls=(), run_id: str = "run-1"):
    return archive.store(record, raw_body=raw, charset=charset, text=text, run_id=run_id,
                         seen_urls=seen_urls)


def meta_keys(backend) -> list[str]:
    return sorted(k for k in backend.iter_keys("articles/") if k.endswith("/meta.json"))


def closed_port() -> int:
    """A local TCP port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- backends: basic operations ----------------------------------------------------------


def test_put_get_exists_round_trip(backend):
    data = bytes(range(256)) * 3
    assert not backend.exists("a/b/c.bin")
    backend.put("a/b/c.bin", data, content_type="application/octet-stream")
    assert backend.exists("a/b/c.bin")
    assert backend.get("a/b/c.bin") == data
    backend.put("a/b/c.bin", b"replaced")
    assert backend.get("a/b/c.bin") == b"replaced"
    backend.put("empty", b"")
    assert backend.exists("empty") and backend.get("empty") == b""
    # A "directory" is not an object.
    assert not backend.exists("a/b")
    assert not backend.exists("a")


def test_get_missing_raises_object_not_found(backend):
    backend.put("a/b/c.bin", b"x")
    for key in ["missing.json", "a/b/missing", "a/b", "a/b/c.bin/d"]:
        with pytest.raises(ObjectNotFound) as excinfo:
            backend.get(key)
        assert isinstance(excinfo.value, KeyError)  # ObjectNotFound is also a KeyError
        assert key in str(excinfo.value)


def test_iter_keys_is_a_string_prefix(backend):
    keys = [
        "_index/urls/ab/abcdef.json",
        "_index/urls/ab/abzzzz.json",
        "_index/urls/ac/abc000.json",
        "_index/urlsx/ab/abc.json",
        "articles/site/2024/01/02/0123/meta.json",
        "abc",
        "abd/x",
    ]
    for key in keys:
        backend.put(key, key.encode())

    def ls(prefix=""):
        return sorted(backend.iter_keys(prefix))

    assert ls() == sorted(keys)
    # A prefix ending mid-name finds the names that start with it, nothing else.
    assert ls("_index/urls/ab/abc") == ["_index/urls/ab/abcdef.json"]
    assert ls("_index/urls/ab/ab") == ["_index/urls/ab/abcdef.json", "_index/urls/ab/abzzzz.json"]
    assert ls("_index/urls/ab/") == ["_index/urls/ab/abcdef.json", "_index/urls/ab/abzzzz.json"]
    # Not a directory: "_index/urls" also matches "_index/urlsx/...", as S3's Prefix does.
    assert ls("_index/urls") == [k for k in sorted(keys) if k.startswith("_index/urls")]
    assert "_index/urlsx/ab/abc.json" in ls("_index/urls")
    assert ls("_index/urls/") == [k for k in sorted(keys) if k.startswith("_index/urls/")]
    assert ls("ab") == ["abc", "abd/x"]
    assert ls("abc") == ["abc"]
    assert ls("articles/site/2024/01/02/0123/meta.json") == [
        "articles/site/2024/01/02/0123/meta.json"]
    assert ls("articles/site/2024/01/03") == []
    assert ls("nothing/here/") == []
    assert ls("_index/urls/ab/abcdef.json.more") == []


def test_iter_keys_on_an_empty_archive(backend):
    assert list(backend.iter_keys()) == []
    assert list(backend.iter_keys("articles/")) == []


def test_temp_files_never_listed(backend, raw_state):
    backend.put("d/one.txt", b"1")
    backend.put("d/one.txt", b"1 again")
    assert backend.put_if_absent("d/two.json", b"2")
    assert not backend.put_if_absent("d/two.json", b"lost")
    expected = ["d/one.txt", "d/two.json"]
    assert sorted(backend.iter_keys()) == expected
    assert sorted(backend.iter_keys("d/")) == expected
    # Physically, nothing but the two objects: no temp file outlives a write.
    assert sorted(raw_state()) == [backend.locate(k) for k in expected]
    if isinstance(backend, LocalBackend):
        # A write in progress (or a crashed one) leaves a dot-named temp file: never a key.
        (backend.root / "d" / ".three.json.tmp-0123abcd").write_bytes(b"partial")
        (backend.root / ".top.tmp-0123abcd").write_bytes(b"partial")
        assert sorted(backend.iter_keys()) == expected
        assert sorted(backend.iter_keys("d/")) == expected
        assert sorted(backend.iter_keys("d/.")) == []


# -- backends: create-if-absent ------------------------------------------------------


def test_put_if_absent(backend, raw_state):
    assert backend.put_if_absent("_index/urls/ab/k.json", b"first", content_type="application/json")
    before = raw_state()
    assert not backend.put_if_absent("_index/urls/ab/k.json", b"second")
    assert backend.get("_index/urls/ab/k.json") == b"first"
    assert raw_state() == before
    # put() still overwrites unconditionally, after which put_if_absent still refuses.
    backend.put("_index/urls/ab/k.json", b"third")
    assert not backend.put_if_absent("_index/urls/ab/k.json", b"fourth")
    assert backend.get("_index/urls/ab/k.json") == b"third"


def test_put_if_absent_race_has_one_winner(backend):
    threads_n = 16
    # Local rounds are cheap, and a check-then-write claim loses only some of them.
    rounds = 40 if isinstance(backend, LocalBackend) else 4
    for round_ in range(rounds):
        key = f"_index/urls/ra/race-{round_}.json"
        barrier = threading.Barrier(threads_n)
        results: dict[int, bool] = {}
        errors: list[BaseException] = []

        def claim(i: int, barrier=barrier, results=results, errors=errors, key=key) -> None:
            try:
                barrier.wait(timeout=10)
                results[i] = backend.put_if_absent(key, f"writer-{i}".encode() * 50)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors
        assert len(results) == threads_n
        winners = [i for i, won in results.items() if won]
        assert len(winners) == 1, winners
        assert backend.get(key) == f"writer-{winners[0]}".encode() * 50


# -- key safety --------------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
def test_check_key_rejects(key):
    with pytest.raises(InvalidKey):
        check_key(key)


@pytest.mark.parametrize("key", ["a", "a/b.json", "_index/urls/ab/abc.json", "a/..b/c..", "a.b/c"])
def test_check_key_accepts(key):
    assert check_key(key) == key


def test_backend_ops_reject_bad_keys(backend, raw_state):
    for key in BAD_KEYS:
        with pytest.raises(InvalidKey):
            backend.put(key, b"x")
        with pytest.raises(InvalidKey):
            backend.put_if_absent(key, b"x")
        with pytest.raises(InvalidKey):
            backend.get(key)
        with pytest.raises(InvalidKey):
            backend.exists(key)
    assert raw_state() == {}


def test_invalid_key_is_a_value_error():
    with pytest.raises(ValueError):
        check_key("../x")
    assert issubclass(InvalidKey, ArchiveError)


def test_validate_site_name():
    with pytest.raises(InvalidKey) as excinfo:
        validate_site_name("../../etc")
    message = str(excinfo.value)
    assert "'../../etc'" in message
    assert "site name" in message and "a-z" in message
    for bad in ["", "A", "a/b", "a b", "a.b", "a" * 65, "é", "a\x00"]:
        with pytest.raises(InvalidKey):
            validate_site_name(bad)
    for good in ["globeandmail", "a", "a-b_c9", "a" * 64]:
        assert validate_site_name(good) == good


def test_article_keys_validate_their_parts(tmp_path):
    aid = article_id("https://example.com/a")
    keys = article_keys("example", date(2024, 5, 7), aid)
    assert keys.prefix == f"articles/example/2024/05/07/{aid}/"
    assert (keys.raw, keys.text, keys.meta) == (
        keys.prefix + "raw.html.gz", keys.prefix + "text.txt", keys.prefix + "meta.json")
    with pytest.raises(InvalidKey):
        article_keys("../../etc", date(2024, 5, 7), aid)
    with pytest.raises(InvalidKey):
        article_keys("example", date(2024, 5, 7), "../" + aid[3:])
    with pytest.raises(InvalidKey):
        Archive(LocalBackend(tmp_path)).keys_for("../x", date(2024, 5, 7), aid)


def test_local_symlink_pointing_outside_is_refused(tmp_path):
    root = tmp_path / "archive"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (outside / "target.json").write_bytes(b"original")
    (root / "evil").symlink_to(outside, target_is_directory=True)
    (root / "link.json").symlink_to(outside / "target.json")
    backend = LocalBackend(root)

    for key in ["evil/new.txt", "evil/secret.txt", "link.json"]:
        with pytest.raises(InvalidKey):
            backend.put(key, b"pwned")
        with pytest.raises(InvalidKey):
            backend.put_if_absent(key, b"pwned")
        with pytest.raises(InvalidKey):
            backend.get(key)
    with pytest.raises(InvalidKey):
        Archive(backend).store(
            replace(make_record(Archive(backend), "https://example.com/x"),
                    raw_key="evil/raw.html.gz"),
            raw_body=b"x", charset="utf-8", text="x")

    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt", "target.json"]
    assert (outside / "target.json").read_bytes() == b"original"
    # A symlink that stays inside the archive is fine.
    (root / "inner").mkdir()
    (root / "alias").symlink_to(root / "inner", target_is_directory=True)
    backend.put("alias/ok.txt", b"ok")
    assert (root / "inner" / "ok.txt").read_bytes() == b"ok"


def test_local_backend_forgets_checked_directories_past_its_bound_and_checks_them_again(
        tmp_path, monkeypatch):
    """Each article has a directory of its own: the set of directories a local backend has
    checked is bounded (a long crawl's memory must not grow with it), and a directory it has
    forgotten is checked again, so a symlink planted there meanwhile is still refused."""
    import storage.backends

    monkeypatch.setattr(storage.backends, "_MAX_CHECKED_DIRS", 3)
    root, outside = tmp_path / "archive", tmp_path / "outside"
    outside.mkdir()
    backend = LocalBackend(root)
    for n in range(10):
        backend.put(f"articles/{n}/text.txt", b"x")
        assert len(backend._checked_dirs) <= 3
    assert sorted(p.name for p in (root / "articles").iterdir()) == [str(n) for n in range(10)]
    # Directory 0 was checked, then forgotten; it becomes a symlink out of the archive.
    shutil.rmtree(root / "articles" / "0")
    (root / "articles" / "0").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        backend.put("articles/0/text.txt", b"pwned")
    assert list(outside.iterdir()) == []


# -- open_backend -------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch):
    """Credentials and a region, so an S3 client can be built (no request is made)."""
    for key, value in TEST_AWS_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket/prefix", "bucket", "prefix/"),
        ("s3://bucket/prefix/", "bucket", "prefix/"),
        ("s3://bucket/a/b", "bucket", "a/b/"),
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
    ],
)
def test_open_backend_s3(aws_env, url, bucket, prefix):
    backend = open_backend(url)
    assert isinstance(backend, S3Backend)
    assert backend.bucket == bucket
    assert backend.prefix == prefix
    assert backend.url == f"s3://{bucket}/{prefix}"
    assert backend.locate("articles/x") == prefix + "articles/x"
    assert backend.relative(prefix + "articles/x") == "articles/x"


def test_open_backend_local(tmp_path, monkeypatch):
    target = tmp_path / "arch"
    for url in [str(target), f"file://{target}", target.as_uri()]:
        backend = open_backend(url)
        assert isinstance(backend, LocalBackend), url
        assert backend.root == target.resolve()
    monkeypatch.chdir(tmp_path)
    relative = open_backend("./archive")
    assert isinstance(relative, LocalBackend)
    assert relative.root == (tmp_path / "archive").resolve()
    assert isinstance(Archive.open("archive").backend, LocalBackend)


@pytest.mark.parametrize(
    "url", ["ftp://x", "ftp://x/y", "http://example.com/a", "s3://", "s3:///prefix", ""])
def test_open_backend_rejects(aws_env, url):
    with pytest.raises(InvalidArchiveURL):
        open_backend(url)
    with pytest.raises(ValueError):
        Archive.open(url)


def test_open_backend_rejects_escaping_s3_prefix(aws_env):
    with pytest.raises(ArchiveError):
        open_backend("s3://bucket/a/../b")


# -- S3 specifics ---------------------------------------------------------------------


def test_s3_raw_object_headers_and_body(s3_archive):
    archive = Archive.open(s3_archive.url)
    assert archive.url == f"s3://{s3_archive.bucket}/news/"
    record = make_record(archive, "https://example.com/news/cafe")
    result = store(archive, record, raw=RAW, charset="iso-8859-1")
    assert result.outcome is StoreOutcome.WRITTEN

    aid = record.id
    folder = f"news/articles/example/2024/05/17/{aid}/"
    assert result.record.raw_key == folder + "raw.html.gz"
    assert result.record.text_key == folder + "text.txt"
    assert result.record.meta_key == folder + "meta.json"

    head = s3_archive.client.head_object(Bucket=s3_archive.bucket, Key=folder + "raw.html.gz")
    assert head["ContentEncoding"] == "gzip"
    assert head["ContentType"] == "text/html; charset=iso-8859-1"
    stored = s3_archive.get(folder + "raw.html.gz")
    assert stored[:2] == b"\x1f\x8b"
    assert gzip.decompress(stored) == RAW

    text_head = s3_archive.client.head_object(Bucket=s3_archive.bucket, Key=folder + "text.txt")
    assert text_head["ContentType"] == "text/plain; charset=utf-8"
    assert s3_archive.get(folder + "text.txt") == TEXT.encode("utf-8")

    meta = json.loads(s3_archive.get(folder + "meta.json"))
    assert meta["raw_key"] == folder + "raw.html.gz"
    assert meta["meta_key"] == folder + "meta.json"
    marker = json.loads(s3_archive.get("news/" + url_index_key(record.canonical_url)))
    assert marker["meta_key"] == folder + "meta.json"
    # Everything lives under the prefix.
    assert all(key.startswith("news/") for key in s3_archive.listing())


def test_raw_gzip_is_deterministic(archive):
    first = store(archive, make_record(archive, "https://example.com/one")).record
    second = store(archive, make_record(archive, "https://example.com/two",
                                        fetched_at=FETCHED + timedelta(days=3))).record
    rel = archive.backend.relative
    one, two = archive.backend.get(rel(first.raw_key)), archive.backend.get(rel(second.raw_key))
    assert one == two
    assert one[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME: no timestamp in the bytes
    assert gzip.decompress(one) == RAW
    # The body is compressed once, at gzip's default level, for raw.html.gz and the WARC.
    assert len(one) <= len(gzip.compress(RAW, compresslevel=6, mtime=0)) + 8


def test_s3_prefix_isolation(s3_archive):
    s3_archive.client.put_object(Bucket=s3_archive.bucket, Key="outside/x", Body=b"o")
    s3_archive.client.put_object(Bucket=s3_archive.bucket, Key="newsletter/x", Body=b"o")
    s3_archive.client.put_object(Bucket=s3_archive.bucket, Key="news", Body=b"o")
    backend = S3Backend(s3_archive.bucket, s3_archive.prefix)
    backend.put("inside/y", b"i")
    assert list(backend.iter_keys()) == ["inside/y"]
    assert list(backend.iter_keys("x")) == []
    assert s3_archive.get("news/inside/y") == b"i"
    with pytest.raises(ObjectNotFound):
        backend.get("outside/x")
    with pytest.raises(InvalidKey):
        backend.relative("outside/x")
    with pytest.raises(InvalidKey):
        backend.relative("news/../outside/x")


# -- Archive.store --------------------------------------------------------------------


def test_store_first_time_writes_everything(archive):
    backend = archive.backend
    record = make_record(archive, "https://example.com/a", url="https://example.com/a?utm=x",
                         aliases=("https://example.com/a?utm=x",))
    assert not archive.is_archived(record.canonical_url)

    result = store(archive, record)
    assert result.outcome is StoreOutcome.WRITTEN
    assert result.completed_claim is False
    record = replace(record, text_fingerprint=text_fingerprint(TEXT), charset="iso-8859-1",
                     versions=(Version(FETCHED, sha256(TEXT), record.raw_key, record.text_key,
                                       record.url, "test/1"),))
    assert result.record == record

    rel = backend.relative
    index_key = url_index_key(record.canonical_url)
    # (A text this short is not deduplicated by content, so it has no content index entry.)
    assert sorted(backend.iter_keys()) == sorted(
        [index_key, rel(record.raw_key), rel(record.text_key), rel(record.meta_key)])
    assert index_key.startswith("_index/urls/")
    marker = json.loads(backend.get(index_key))
    assert marker["id"] == record.id
    assert marker["canonical_url"] == record.canonical_url
    assert (marker["raw_key"], marker["text_key"], marker["meta_key"]) == (
        record.raw_key, record.text_key, record.meta_key)
    assert marker["run_id"] == "run-1"

    stored = Record.from_json(backend.get(rel(record.meta_key)))
    assert stored == record
    assert stored.fetched_at.utcoffset() == timedelta(0)
    assert backend.get(rel(record.text_key)) == TEXT.encode("utf-8")
    assert gzip.decompress(backend.get(rel(record.raw_key))) == RAW
    assert archive.is_archived(record.canonical_url)
    assert not archive.is_archived("https://example.com/other")


def test_store_duplicate_writes_nothing(archive, raw_state):
    first = make_record(archive, "https://example.com/dup")
    assert store(archive, first).outcome is StoreOutcome.WRITTEN
    before = raw_state()

    # Same canonical URL and text (up to case and spacing), fetched again three days later
    # from another response.
    again = make_record(archive, "https://example.com/dup", fetched_at=FETCHED + timedelta(days=3))
    assert again.meta_key != first.meta_key
    result = store(archive, again, raw=b"<html>other</html>", text="  " + TEXT.upper(),
                   run_id="run-2")
    assert result.outcome is StoreOutcome.DUPLICATE
    assert result.completed_claim is False
    assert raw_state() == before
    assert meta_keys(archive.backend) == [archive.backend.relative(first.meta_key)]
    assert archive.is_archived(first.canonical_url)
    assert archive.read_text(first) == TEXT


def test_store_completes_a_crashed_claim(archive):
    backend = archive.backend
    record = make_record(archive, "https://example.com/crashed")  # dated 2024-05-17
    claim_keys = archive.keys_for("example", date(2020, 1, 2), record.id)
    claim = {
        "id": record.id,
        "canonical_url": record.canonical_url,
        "raw_key": archive.locate(claim_keys.raw),
        "text_key": archive.locate(claim_keys.text),
        "meta_key": archive.locate(claim_keys.meta),
        "run_id": "crashed-run",
        "claimed_at": "2020-01-02T03:04:05+00:00",
    }
    index_key = url_index_key(record.canonical_url)
    assert backend.put_if_absent(index_key, json.dumps(claim).encode())
    assert not archive.is_archived(record.canonical_url)  # claimed, not complete

    result = store(archive, record, run_id="run-2")
    assert result.outcome is StoreOutcome.WRITTEN
    assert result.completed_claim is True
    assert (result.record.raw_key, result.record.text_key, result.record.meta_key) == (
        claim["raw_key"], claim["text_key"], claim["meta_key"])

    rel = backend.relative
    # Written where the claim says, not in the writer's own date folder.
    assert sorted(backend.iter_keys("articles/")) == sorted(
        [claim_keys.raw, claim_keys.text, claim_keys.meta])
    assert not backend.exists(rel(record.meta_key))
    stored = Record.from_json(backend.get(claim_keys.meta))
    assert stored == result.record
    assert stored.meta_key == claim["meta_key"]
    assert gzip.decompress(backend.get(claim_keys.raw)) == RAW
    assert backend.get(claim_keys.text) == TEXT.encode("utf-8")
    assert json.loads(backend.get(index_key)) == claim  # the claim keeps its owner
    assert archive.is_archived(record.canonical_url)
    assert archive.record_by_id(record.id) == result.record

    # Completed now: the next writer skips it.
    assert store(archive, record, run_id="run-3").outcome is StoreOutcome.DUPLICATE
    assert meta_keys(backend) == [claim_keys.meta]


def test_store_marks_seen_urls(archive, raw_state):
    canonical = "https://example.com/story"
    seen = {canonical, "https://example.com/story?ref=feed", "https://example.com/amp/story"}
    record = make_record(archive, canonical, url="https://example.com/amp/story")
    result = store(archive, record, seen_urls=seen)
    assert result.outcome is StoreOutcome.WRITTEN

    backend = archive.backend
    for alias in seen - {canonical}:
        assert archive.is_archived(alias)
        marker = json.loads(backend.get(url_index_key(alias)))
        assert marker["alias"] == alias
        assert marker["meta_key"] == record.meta_key
        assert archive.record_by_url(alias) == result.record
    assert "alias" not in json.loads(backend.get(url_index_key(canonical)))
    assert len(list(backend.iter_keys("_index/urls/"))) == 3
    assert not archive.is_archived("https://example.com/story?ref=other")

    before = raw_state()
    again = make_record(archive, canonical, fetched_at=FETCHED + timedelta(days=1))
    result = store(archive, again, seen_urls=set(seen), run_id="run-2")
    assert result.outcome is StoreOutcome.DUPLICATE
    assert raw_state() == before

    # An alias seen later on a duplicate fetch gets its marker too.
    result = store(archive, again, seen_urls={"https://example.com/story?ref=mail"})
    assert result.outcome is StoreOutcome.DUPLICATE
    assert archive.is_archived("https://example.com/story?ref=mail")


def test_alias_keeps_its_first_owner(archive):
    shared = "https://example.com/latest"
    first = make_record(archive, "https://example.com/first")
    second = make_record(archive, "https://example.com/second")
    first = store(archive, first, seen_urls={shared}).record
    result = store(archive, second, seen_urls={shared})
    assert result.outcome is StoreOutcome.WRITTEN
    assert archive.record_by_url(shared) == first
    assert archive.record_by_url(second.canonical_url) == result.record


def test_concurrent_store_of_one_url(archive):
    """8 threads store records of the same canonical URL at once into one archive."""
    workers = 8
    canonical = "https://example.com/breaking"
    # Each worker dates the article differently, so a worker that wrote into its own
    # folder instead of the claim's would leave a second meta.json behind.
    records = [make_record(archive, canonical, fetched_at=FETCHED + timedelta(days=i))
               for i in range(workers)]
    assert len({r.meta_key for r in records}) == workers
    barrier = threading.Barrier(workers)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = store(archive, records[i], run_id=f"worker-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == workers

    # Exactly one writer writes; the others find the article archived, or being archived
    # by a live claim, and write nothing.
    written = [r for r in results.values() if r.outcome is StoreOutcome.WRITTEN]
    assert len(written) == 1 and not written[0].completed_claim
    winner = written[0].record
    assert all(r.outcome in (StoreOutcome.DUPLICATE, StoreOutcome.IN_PROGRESS)
               for r in results.values() if r is not written[0])

    backend = archive.backend
    assert meta_keys(backend) == [backend.relative(winner.meta_key)]
    assert sorted(backend.iter_keys("articles/")) == sorted(
        backend.relative(k) for k in (winner.raw_key, winner.text_key, winner.meta_key))
    assert list(backend.iter_keys("_index/urls/")) == [url_index_key(canonical)]
    assert json.loads(backend.get(url_index_key(canonical)))["meta_key"] == winner.meta_key
    stored = Record.from_json(backend.get(backend.relative(winner.meta_key)))
    assert stored.meta_key == winner.meta_key
    assert gzip.decompress(backend.get(backend.relative(winner.raw_key))) == RAW


# -- readers ----------------------------------------------------------------------------


@pytest.fixture
def populated(archive):
    """Four complete articles over two sites and three dates, plus an unfinished one."""
    tz_minus5 = timezone(timedelta(hours=-5))
    records = {
        "a1": make_record(archive, "https://a.example/1", site="sitea",
                          published=datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc)),
        # 23:30 at -05:00 is already 2024-01-16 in UTC: the folder follows UTC.
        "a2": make_record(archive, "https://a.example/2", site="sitea",
                          published=datetime(2024, 1, 15, 23, 30, tzinfo=tz_minus5),
                          url="https://a.example/2?from=rss",
                          aliases=("https://a.example/2?from=rss", "https://a.example/amp/2")),
        "a3": make_record(archive, "https://a.example/3", site="sitea",
                          published=datetime(2024, 2, 1, 12, 0, tzinfo=timezone.utc)),
        "b1": make_record(archive, "https://b.example/1", site="siteb",
                          published=datetime(2024, 1, 16, 1, 0, tzinfo=timezone.utc)),
    }
    texts = {name: f"Text of {name} \u2013 \u00fcnicode." for name in records}
    for name, record in records.items():
        record = replace(record, content_sha256=sha256(texts[name]))
        # As a crawl stores a page: every URL it was seen at, canonicalised, is marked.
        result = store(archive, record, raw=f"<html>{name}</html>".encode(), text=texts[name],
                       charset="utf-8",
                       seen_urls={canonicalize_url(u) for u in (record.url, *record.aliases)})
        assert result.outcome is StoreOutcome.WRITTEN
        records[name] = result.record
    # An article whose writer died after the raw object: listed nowhere.
    unfinished = make_record(archive, "https://a.example/unfinished", site="sitea",
                             published=datetime(2024, 1, 16, tzinfo=timezone.utc))
    marker = {"id": unfinished.id, "canonical_url": unfinished.canonical_url,
              "raw_key": unfinished.raw_key, "text_key": unfinished.text_key,
              "meta_key": unfinished.meta_key, "run_id": "dead", "claimed_at": ""}
    archive.backend.put_if_absent(url_index_key(unfinished.canonical_url),
                                  json.dumps(marker).encode())
    archive.backend.put(archive.backend.relative(unfinished.raw_key), gzip.compress(b"x"))
    return records, texts, unfinished


def test_iter_records_filters(archive, populated):
    records, _texts, _unfinished = populated

    def ids(**kw):
        return sorted(r.id for r in archive.iter_records(**kw))

    def want(*names):
        return sorted(records[n].id for n in names)

    assert ids() == want("a1", "a2", "a3", "b1")
    assert ids(site="sitea") == want("a1", "a2", "a3")
    assert ids(site="siteb") == want("b1")
    assert ids(site="nosuchsite") == []
    assert ids(since=date(2024, 1, 16)) == want("a2", "a3", "b1")
    assert ids(until=date(2024, 1, 16)) == want("a1", "a2", "b1")
    assert ids(since=date(2024, 1, 16), until=date(2024, 1, 16)) == want("a2", "b1")
    assert ids(site="sitea", since=date(2024, 1, 2), until=date(2024, 1, 31)) == want("a2")
    assert ids(since=date(2024, 3, 1)) == []
    assert ids(until=date(2023, 12, 31)) == []
    by_id = {r.id: r for r in archive.iter_records()}
    for record in records.values():
        assert by_id[record.id] == record
    with pytest.raises(InvalidKey):
        list(archive.iter_records(site="../x"))


def test_record_lookups(archive, populated):
    records, texts, unfinished = populated
    a2 = records["a2"]
    assert archive.record_by_id(a2.id) == a2
    assert archive.record_by_id(records["b1"].id) == records["b1"]
    assert archive.record_by_id(article_id("https://a.example/never")) is None
    assert archive.record_by_id(unfinished.id) is None
    with pytest.raises(InvalidKey):
        archive.record_by_id("../../etc")

    assert archive.record_by_url(a2.canonical_url) == a2
    # Found through the URL index, under the canonical form of the URL asked for (the AMP
    # copy has no marker of its own: its canonical form is the article's).
    assert not archive.backend.exists(url_index_key("https://a.example/amp/2"))
    assert archive.record_by_url("https://a.example/amp/2") == a2
    assert archive.record_by_url("https://a.example/2?from=rss") == a2
    assert archive.record_by_url("https://a.example/never") is None
    assert archive.record_by_url(unfinished.canonical_url) is None

    assert archive.find(a2.id) == a2
    assert archive.find(a2.canonical_url) == a2
    assert archive.find("https://a.example/amp/2") == a2
    assert archive.find(records["a1"].id) == records["a1"]
    assert archive.find("https://a.example/never") is None
    assert archive.find(article_id("https://a.example/never")) is None

    for name, record in records.items():
        assert archive.read_text(record) == texts[name]
        assert archive.read_raw(record) == f"<html>{name}</html>".encode()


# -- the record -------------------------------------------------------------------------


def full_record(**overrides) -> Record:
    values = dict(
        id=article_id("https://example.com/r"),
        site="example",
        url="https://example.com/r?x=1",
        canonical_url="https://example.com/r",
        aliases=("https://example.com/r?x=1", "https://m.example.com/r"),
        title="Tëst headline",
        authors=("Ann", "Bo"),
        published=datetime(2024, 3, 10, 14, 5, 6, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        modified=datetime(2024, 3, 11, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=-8))),
        language="de",
        fetched_at=FETCHED,
        http_status=203,
        content_sha256=sha256("x"),
        near_duplicate_of=article_id("https://example.com/other"),
        extractor=EXTRACTOR,
        raw_key="articles/example/2024/03/10/x/raw.html.gz",
        text_key="articles/example/2024/03/10/x/text.txt",
        meta_key="articles/example/2024/03/10/x/meta.json",
    )
    values.update(overrides)
    return Record(**values)


def assert_same_instants_and_offsets(a: Record, b: Record) -> None:
    for name in ("published", "modified", "fetched_at"):
        x, y = getattr(a, name), getattr(b, name)
        assert x == y, name
        if x is not None:
            assert x.utcoffset() == y.utcoffset(), name


def test_record_round_trip_keeps_offsets():
    record = full_record()
    data = record.to_dict()
    assert data["published"] == "2024-03-10T14:05:06+05:30"
    assert data["modified"] == "2024-03-11T01:02:03.456789-08:00"
    assert data["fetched_at"] == "2024-05-17T09:30:15.123456+00:00"
    assert data["authors"] == ["Ann", "Bo"]
    assert data["aliases"] == ["https://example.com/r?x=1", "https://m.example.com/r"]
    assert data["extractor"] == {"name": "test", "version": "1"}
    assert data["schema_version"] == SCHEMA_VERSION
    assert json.loads(json.dumps(data)) == data

    back = Record.from_dict(data)
    assert back == record
    assert_same_instants_and_offsets(back, record)
    assert isinstance(back.authors, tuple) and isinstance(back.aliases, tuple)
    assert back.extractor == EXTRACTOR

    from_json = Record.from_json(record.to_json())
    assert from_json == record
    assert_same_instants_and_offsets(from_json, record)
    assert record.to_json() == from_json.to_json()  # deterministic bytes
    assert list(json.loads(record.to_json())) == sorted(data)


def test_record_nulls_round_trip():
    record = full_record(published=None, modified=None, title=None, language=None,
                         near_duplicate_of=None, authors=(), aliases=())
    data = record.to_dict()
    assert data["published"] is None and data["modified"] is None and data["title"] is None
    assert data["authors"] == [] and data["aliases"] == []
    assert Record.from_dict(data) == record
    assert Record.from_json(record.to_json()) == record


def test_record_keeps_unknown_keys():
    data = full_record().to_dict()
    data["future_field"] = {"nested": [1, 2]}
    data["word_count"] = 1234
    record = Record.from_dict(data)
    assert record.extra == {"future_field": {"nested": [1, 2]}, "word_count": 1234}
    assert record.to_dict() == data
    assert json.loads(Record.from_json(record.to_json()).to_json()) == data
    assert Record.from_json(record.to_json()).extra == record.extra


def test_record_fields_cover_the_contract():
    assert set(CONTRACT_FIELDS) <= set(RECORD_FIELDS)
    assert "extra" not in RECORD_FIELDS
    assert set(CONTRACT_FIELDS) <= set(full_record().to_dict())


# -- error mapping ------------------------------------------------------------------------


def test_missing_bucket_raises_archive_error(s3_archive):
    backend = S3Backend(f"missing-{uuid.uuid4().hex[:12]}", "news")
    operations = {
        "get": lambda: backend.get("a/b"),
        "put": lambda: backend.put("a/b", b"x"),
        "put_if_absent": lambda: backend.put_if_absent("a/b", b"x"),
        "iter_keys": lambda: list(backend.iter_keys("a/")),
        "is_archived": lambda: Archive(backend).is_archived("https://example.com/x"),
        "iter_records": lambda: list(Archive(backend).iter_records()),
    }
    for name, op in operations.items():
        with pytest.raises(ArchiveError) as excinfo:
            op()
        assert not isinstance(excinfo.value, (ClientError, BotoCoreError)), name
        # A missing bucket must not read as "no such article yet".
        assert not isinstance(excinfo.value, ObjectNotFound), name


def test_s3_clients_share_parsed_models_and_read_the_environment_afresh(s3_archive, monkeypatch):
    # Two clients of one process: botocore's parsed model files are read once and shared
    # (the second client costs 0.05 s of CPU, not 0.13), while what the environment says,
    # credentials, region and settings, is read again for each.
    first = make_s3_client()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-access-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    second = make_s3_client()
    assert second.meta.service_model._service_description is \
        first.meta.service_model._service_description
    assert first._request_signer._credentials.access_key == s3_archive.env["AWS_ACCESS_KEY_ID"]
    assert second._request_signer._credentials.access_key == "another-access-key"
    assert (first.meta.region_name, second.meta.region_name) == ("us-east-1", "eu-west-1")
    assert (first.meta.config.retries["total_max_attempts"],
            second.meta.config.retries["total_max_attempts"]) == (6, 2)  # 5 retries; 2 tries
    # And both still talk to the server.
    for client in (first, second):
        assert client.list_objects_v2(Bucket=s3_archive.bucket)["KeyCount"] == 0


def _backend_at(monkeypatch, port: int) -> S3Backend:
    """An S3 backend whose endpoint is 127.0.0.1:``port``, trying each request once."""
    for key, value in TEST_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return S3Backend("some-bucket", "news")


def test_unreachable_endpoint_raises_archive_unavailable(monkeypatch):
    backend = _backend_at(monkeypatch, closed_port())
    sent = []
    # Count the HTTP attempts: the standard AWS_MAX_ATTEMPTS variable must be honoured.
    backend._client.meta.events.register("before-send.s3", lambda **kw: sent.append(1))

    operations = {
        "get": lambda: backend.get("a/b"),
        "exists": lambda: backend.exists("a/b"),
        "put": lambda: backend.put("a/b", b"x"),
        "put_if_absent": lambda: backend.put_if_absent("a/b", b"x"),
        "iter_keys": lambda: list(backend.iter_keys("a/")),
        "is_archived": lambda: Archive(backend).is_archived("https://example.com/x"),
    }
    for name, op in operations.items():
        sent.clear()
        with pytest.raises(ArchiveUnavailable) as excinfo:
            op()
        assert not isinstance(excinfo.value, (ClientError, BotoCoreError)), name
        assert len(sent) == 1, (name, len(sent))



def test_an_endpoint_that_hangs_up_under_a_request_is_unavailable(monkeypatch):
    """A connection that closes after the request went out, before any answer (S3 gone
    away under a kept-alive connection): the archive is unavailable, so that the crawl
    keeps the page in its spool, not an error of the page's."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # to see ``stop`` between connections
    stop = threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)  # the request, unanswered

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    backend = _backend_at(monkeypatch, listener.getsockname()[1])
    try:
        for name, op in {"get": lambda: backend.get("a/b"),
                         "put": lambda: backend.put("a/b", b"x"),
                         "put_if_absent": lambda: backend.put_if_absent("a/b", b"x")}.items():
            with pytest.raises(ArchiveUnavailable) as excinfo:
                op()
            assert "unreachable" in str(excinfo.value), name
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()

def test_a_live_claim_of_another_run_is_left_to_it(archive):
    """A fresh claim without meta.json means another writer is at work: no object is
    written; the same claim by our own run (a retry) is completed."""
    record = make_record(archive, "https://example.com/live-claim")
    marker = {"id": record.id, "canonical_url": record.canonical_url, "raw_key": record.raw_key,
              "text_key": record.text_key, "meta_key": record.meta_key, "run_id": "other-run",
              "claimed_at": datetime.now(timezone.utc).isoformat()}
    assert archive.backend.put_if_absent(url_index_key(record.canonical_url),
                                         json.dumps(marker).encode())
    result = store(archive, record, run_id="this-run")
    assert result.outcome is StoreOutcome.IN_PROGRESS
    assert list(archive.backend.iter_keys("articles/")) == []
    assert not archive.is_archived(record.canonical_url)

    retry = store(archive, record, run_id="other-run")
    assert retry.outcome is StoreOutcome.WRITTEN and retry.completed_claim
    assert archive.is_archived(record.canonical_url)


def test_a_claim_of_a_killed_process_on_this_machine_is_completed_at_once(archive):
    """The lease of a claim whose process is gone from this machine ends with it: the next
    crawl need not wait two minutes to complete the article."""
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    record = make_record(archive, "https://example.com/killed")
    fresh = datetime.now(timezone.utc).isoformat()
    marker = {"id": record.id, "canonical_url": record.canonical_url, "raw_key": record.raw_key,
              "text_key": record.text_key, "meta_key": record.meta_key, "run_id": "killed-run",
              "claimed_at": fresh, "host": socket.gethostname(), "pid": int(gone.stdout)}
    assert archive.backend.put_if_absent(url_index_key(record.canonical_url),
                                         json.dumps(marker).encode())
    result = store(archive, record, run_id="next-run")
    assert result.outcome is StoreOutcome.WRITTEN and result.completed_claim

    # The same claim by a live process elsewhere is left alone.
    other = make_record(archive, "https://example.com/remote")
    remote = {**marker, "id": other.id, "canonical_url": other.canonical_url,
              "meta_key": other.meta_key, "host": "another-machine", "pid": os.getpid()}
    assert archive.backend.put_if_absent(url_index_key(other.canonical_url),
                                         json.dumps(remote).encode())
    assert store(archive, other, run_id="next-run").outcome is StoreOutcome.IN_PROGRESS


def test_local_backend_writes_again_after_its_folders_were_removed(tmp_path):
    """The local backend remembers folders it has checked; one removed meanwhile (by hand,
    by another program) is checked and made again, not reported as a failed write."""
    import shutil

    backend = LocalBackend(tmp_path / "archive")
    backend.put("articles/site/2025/01/02/abc/text.txt", b"one")
    shutil.rmtree(tmp_path / "archive" / "articles")
    backend.put("articles/site/2025/01/02/abc/text.txt", b"two")
    assert backend.get("articles/site/2025/01/02/abc/text.txt") == b"two"
    assert backend.put_if_absent("articles/site/2025/01/02/abc/meta.json", b"{}")


# -- one helper per concept: times, local writes, run manifests, archive URLs ---------------


@pytest.fixture
def machine_zone():
    """Run the test with the machine's local time zone at UTC+14 (the day a naive time
    would wrongly be read in is then another day), and put it back afterwards."""
    import time

    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_as_utc_takes_a_naive_time_as_utc_whatever_the_machine_zone(machine_zone):
    from storage.record import as_utc

    assert as_utc(datetime(2024, 5, 17, 5, 0)) == datetime(2024, 5, 17, 5, 0,
                                                           tzinfo=timezone.utc)
    eastern = datetime(2024, 5, 17, 23, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert as_utc(eastern) == datetime(2024, 5, 18, 3, 0, tzinfo=timezone.utc)
    assert as_utc(eastern).tzinfo is timezone.utc


def test_a_naive_time_places_records_and_manifests_on_its_utc_day(tmp_path, machine_zone):
    """The archive's convention (naive means UTC) holds for the article's folder and the run
    manifest's as it does for the catalog's date partition, whatever the machine's zone."""
    from storage.catalog import archive_date

    archive = Archive(LocalBackend(tmp_path / "archive"))
    naive = datetime(2024, 5, 17, 5, 0)  # 05-16 in the machine's zone, 05-17 in UTC
    record = replace(make_record(archive, "https://example.com/news/naive"),
                     raw_key="", text_key="", meta_key="", published=naive)
    placed = archive.place(record)
    assert placed.meta_key.startswith("articles/example/2024/05/17/")
    assert archive_date(placed) == archive_date(replace(placed, meta_key="")) == date(2024, 5, 17)
    key = archive.put_run_manifest({"site": "example", "run_id": "run-naive",
                                    "started_at": naive.isoformat()})
    assert key == "runs/example/2024/05/17/run-naive.json"


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB file system (tmpfs): a larger write fails with ENOSPC half-way."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path):
    from storage.localfiles import copy_atomic, create_exclusive, write_atomic

    target = tmp_path / "state.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two", fsync=True)
    assert target.read_bytes() == b"two"
    assert not create_exclusive(target, b"three")  # there already: left as it is
    assert target.read_bytes() == b"two"
    assert create_exclusive(tmp_path / "claim.json", b"{}")
    (tmp_path / "claim.json").unlink()
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 300_000)
    copy_atomic(source, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.bin", "source.bin",
                                                          "state.json"]
    with pytest.raises(OSError):
        write_atomic(tmp_path / "no-such-dir" / "x", b"data")
    with pytest.raises(OSError):  # a directory in the way: the rename fails
        (tmp_path / "dir").mkdir()
        (tmp_path / "dir" / "inside").write_bytes(b"")
        write_atomic(tmp_path / "dir", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.bin", "dir", "source.bin",
                                                          "state.json"]


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_no_temporary_one(small_fs,
                                                                             tmp_path):
    from storage.localfiles import copy_atomic, create_exclusive, write_atomic

    target = small_fs / "state.json"
    write_atomic(target, b"old")
    for fsync in (False, True):
        with pytest.raises(OSError) as info:
            write_atomic(target, b"x" * 1_000_000, fsync=fsync)
        assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        create_exclusive(small_fs / "claim.json", b"x" * 1_000_000)
    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * 1_000_000)
    with pytest.raises(OSError):
        copy_atomic(big, small_fs / "copy.bin")
    assert target.read_bytes() == b"old"
    assert [p.name for p in small_fs.iterdir()] == ["state.json"]


def test_local_backend_on_a_full_disk_is_unavailable_and_leaves_no_temporary_file(small_fs,
                                                                                  tmp_path):
    backend = LocalBackend(small_fs / "archive")
    backend.put("articles/a/meta.json", b"{}")
    big = b"z" * 1_000_000
    with pytest.raises(ArchiveUnavailable):
        backend.put("articles/a/raw.html.gz", big)
    with pytest.raises(ArchiveUnavailable):
        backend.put_if_absent("_index/urls/ab/claim.json", big)
    (tmp_path / "big").write_bytes(big)
    with pytest.raises(ArchiveUnavailable):
        backend.put_file("catalog/x.parquet", tmp_path / "big")
    with pytest.raises(ArchiveUnavailable):
        backend.put_if_match("articles/a/meta.json", big, backend.get_tagged(
            "articles/a/meta.json")[1])
    assert backend.get("articles/a/meta.json") == b"{}"
    files = sorted(str(p.relative_to(small_fs)) for p in small_fs.rglob("*") if p.is_file())
    assert files == ["archive/.newsarchive.lock", "archive/articles/a/meta.json"]


class _ListingBackend(LocalBackend):
    """A local backend that records the prefixes it is asked to list."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []

    def iter_keys(self, prefix: str = ""):
        self.listed.append(prefix)
        return super().iter_keys(prefix)


def test_run_manifests_by_site_and_date_list_only_their_folders(tmp_path):
    backend = _ListingBackend(tmp_path / "archive")
    archive = Archive(backend)
    started = {"r1": "2024-01-31T23:00:00-05:00",  # 2024-02-01 in UTC
               "r2": "2024-02-01T10:00:00+00:00", "r3": "2024-02-03T10:00:00+00:00",
               "r4": "2024-03-01T00:00:00+00:00"}
    for run_id, at in started.items():
        archive.put_run_manifest({"site": "alpha", "run_id": run_id, "started_at": at})
    archive.put_run_manifest({"site": "beta", "run_id": "b1",
                              "started_at": "2024-02-01T10:00:00+00:00"})
    # Not manifests: a stray file, and one that is not JSON (skipped with a warning).
    backend.put("runs/alpha/2024/02/01/notes.txt", b"x")
    backend.put("runs/alpha/2024/02/02/broken.json", b"{not json")
    backend.put("runs/alpha/README.json", b"{}")

    def runs(*args) -> list[str]:
        backend.listed.clear()
        return [m["run_id"] for m in archive.iter_run_manifests(*args)]

    assert runs("alpha") == ["r1", "r2", "r3", "r4"]
    assert backend.listed == ["runs/alpha/"]
    assert runs("alpha", date(2024, 2, 1), date(2024, 2, 2)) == ["r1", "r2"]
    assert backend.listed == ["runs/alpha/2024/02/01/", "runs/alpha/2024/02/02/"]
    assert runs("alpha", date(2024, 2, 1), date(2024, 2, 29)) == ["r1", "r2", "r3"]
    assert backend.listed == ["runs/alpha/2024/02/"]
    assert runs("alpha", date(2024, 2, 2)) == ["r3", "r4"]
    assert runs("alpha", None, date(2024, 2, 1)) == ["r1", "r2"]
    assert sorted(runs(None, date(2024, 2, 1), date(2024, 2, 1))) == ["b1", "r1", "r2"]
    assert backend.listed == ["runs/"]
    assert runs("alpha", date(2024, 3, 2), date(2024, 3, 1)) == []
    assert sorted(runs()) == ["b1", "r1", "r2", "r3", "r4"]
    with pytest.raises(InvalidKey):
        runs("../x")


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "directory"),
    [
        ("s3://bucket/a/b/", "bucket", "a/b", None),
        ("s3://bucket", "bucket", "", None),
        ("/srv/archive", None, "", Path("/srv/archive")),
        ("file:///srv/archive", None, "", Path("/srv/archive")),
        ("./archive", None, "", Path("archive")),
    ],
)
def test_archive_location_is_what_an_archive_url_means(url, bucket, prefix, directory):
    from storage.backends import archive_location

    location = archive_location(url)
    assert (location.bucket, location.prefix, location.directory) == (bucket, prefix, directory)


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "ftp://x/y", "",
                                 "s3://AKIAEXAMPLE:very-secret@bucket/news"])
def test_archive_location_refuses(url):
    from storage.backends import archive_location

    with pytest.raises(InvalidArchiveURL) as info:
        archive_location(url)
    assert "very-secret" not in str(info.value)
    with pytest.raises(InvalidKey):
        archive_location("s3://bucket/a/../b")
