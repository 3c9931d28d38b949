"""The WARC writer: files read back with warcio from the archive (a local directory and a
moto S3 bucket), rolling, concurrency, recovery after a killed run, and the backends'
``put_file`` (multipart above 16 MiB on S3)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from warcio.archiveiterator import ArchiveIterator

from storage import (
    ArchiveAccessDenied,
    ArchiveError,
    ArchiveUnavailable,
    InvalidKey,
    LocalBackend,
    ObjectNotFound,
    S3Backend,
)
from storage.backends import MULTIPART_THRESHOLD, _translated, _unconditional
from storage.keys import warc_key
from storage.warc import WarcLocation, WarcWriter, recover_pending

STARTED = datetime(2025, 3, 7, 23, 30, tzinfo=timezone.utc)
SITE = "localnews"


def exchange(i: int, *, size: int = 200, **overrides) -> dict:
    """Arguments of one write(); bodies differ per ``i`` and do not compress (random), so
    that file sizes, and thus rolling, are predictable."""
    body = f"<p>page {i}</p>".encode() + os.urandom(size)
    return {
        "url": f"https://news.example.com/2025/03/{i}/story?id={i}",
        "fetched_at": STARTED + timedelta(seconds=i, microseconds=123457),
        "status": 200,
        "reason": "OK",
        "request_headers": [("User-Agent", "newsarchive-test"), ("Accept", "text/html")],
        "response_headers": [("Content-Type", "text/html; charset=utf-8")],
        "body": body,
        **overrides,
    }


def payload_digest(body: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()


def fetch(backend, located_key: str) -> bytes:
    return backend.get(backend.relative(located_key))


def record_at(data: bytes, location: WarcLocation):
    """The one record at ``location`` of a file's bytes, read as a replay tool does: seek to
    the offset and read one gzip member. Returns (record, its content)."""
    member = data[location.offset: location.offset + location.length]
    # Exactly one whole gzip member: the length is right and nothing else is needed.
    assert gzip.decompress(member).startswith(b"WARC/1.1\r\n")
    stream = io.BytesIO(data)
    stream.seek(location.offset)
    record = next(iter(ArchiveIterator(stream)))
    return record, record.content_stream().read()


def check_response(data: bytes, location: WarcLocation, sent: dict) -> None:
    record, content = record_at(data, location)
    assert record.rec_type == "response"
    assert record.rec_headers.get_header("WARC-Target-URI") == sent["url"]
    assert record.http_headers.get_statuscode() == str(sent["status"])
    assert content == sent["body"]
    assert record.rec_headers.get_header("WARC-Payload-Digest") == payload_digest(sent["body"])
    assert record.rec_headers.get_header("WARC-Block-Digest").startswith("sha1:")


def records_of(data: bytes) -> list:
    """Every record of a file: (type, WARC headers as a dict, HTTP headers, content)."""
    out = []
    for record in ArchiveIterator(io.BytesIO(data)):
        out.append((record.rec_type, dict(record.rec_headers.headers), record.http_headers,
                    record.content_stream().read()))
    return out


def pending_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


# -- keys ---------------------------------------------------------------------------------


def test_warc_key_layout_and_validation():
    assert (warc_key("globe", date(2025, 3, 7), "run-1", 3)
            == "warc/globe/2025/03/07/run-1-00003.warc.gz")
    for site, run_id, sequence in [("Bad Site", "run", 0), ("../x", "run", 0),
                                   ("site", "a/b", 0), ("site", "", 0), ("site", "run", -1),
                                   ("site", "run", True), ("site", "run", "1")]:
        with pytest.raises(InvalidKey):
            warc_key(site, date(2025, 3, 7), run_id, sequence)


# -- writing and reading back -------------------------------------------------------------


def test_written_exchanges_read_back_from_the_archive(backend, tmp_path):
    pending = tmp_path / "pending"
    writer = WarcWriter(backend, pending, SITE, "run-a", started=STARTED)
    sent = [exchange(i) for i in range(5)]
    locations = [writer.write(**s) for s in sent]
    key = backend.locate("warc/localnews/2025/03/07/run-a-00000.warc.gz")
    assert {loc.key for loc in locations} == {key}
    assert not backend.exists(backend.relative(key))  # uploaded at close, not before

    assert writer.close() == [key]
    assert writer.uploaded == (key,)
    assert pending_files(pending) == []
    data = fetch(backend, key)

    records = records_of(data)
    assert [r[0] for r in records] == ["warcinfo"] + ["request", "response"] * 5
    info = records[0][3].decode()
    assert "software: newsarchive" in info and "run-id: run-a" in info
    assert f"site: {SITE}" in info
    assert records[0][1]["WARC-Filename"] == "run-a-00000.warc.gz"
    for (_, request, _, _), (_, response, _, _) in zip(records[1::2], records[2::2]):
        assert request["WARC-Concurrent-To"] == response["WARC-Record-ID"]
        assert response["WARC-Concurrent-To"] == request["WARC-Record-ID"]
        assert request["WARC-Target-URI"] == response["WARC-Target-URI"]
        for headers in (request, response):
            assert headers["WARC-Block-Digest"].startswith("sha1:")
            assert headers["WARC-Payload-Digest"].startswith("sha1:")
    for i, (s, location) in enumerate(zip(sent, locations)):
        check_response(data, location, s)
        # WARC/1.1 dates carry the microseconds of fetched_at.
        assert records[2 + 2 * i][1]["WARC-Date"] == f"2025-03-07T23:30:{i:02d}.123457Z"
    # Offsets grow, records do not overlap, and the last ends the file.
    ends = [loc.offset + loc.length for loc in locations]
    assert all(a < b.offset for a, b in zip(ends, locations[1:]))
    assert ends[-1] == len(data)


def test_the_day_is_the_start_of_the_run_in_utc(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    eastern = timezone(timedelta(hours=-5))
    writer = WarcWriter(backend, tmp_path / "pending", SITE, "run-b",
                        started=datetime(2025, 3, 7, 21, 0, tzinfo=eastern))
    location = writer.write(**exchange(1, fetched_at=datetime(2025, 3, 9, 1, 2, 3,
                                                              tzinfo=eastern)))
    assert location.key == "warc/localnews/2025/03/08/run-b-00000.warc.gz"
    writer.close()
    record, _ = record_at(fetch(backend, location.key), location)
    assert record.rec_headers.get_header("WARC-Date") == "2025-03-09T06:02:03.000000Z"


def test_stored_headers_describe_the_stored_body(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    writer = WarcWriter(backend, tmp_path / "pending", SITE, "run-c", started=STARTED)
    body = "<p>Café crème</p>".encode()
    location = writer.write(**exchange(
        1, body=body, status=404, reason="",
        url="https://user:pw@news.example.com:8443/a/b?x=1&y=%20#frag",
        request_headers=[("User-Agent", "ua"), ("X-Bad", "a\r\nX-Forged: 1")],
        response_headers=[
            ("Content-Type", "text/html; charset=utf-8"),
            ("content-encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "17"),
            ("X-Title", "caf\xe9"),  # latin-1, as decoded from the wire bytes
            ("Bad Name", "dropped"),
        ],
    ))
    writer.close()
    data = fetch(backend, location.key)
    response, content = record_at(data, location)
    assert content == body
    http = response.http_headers
    assert http.statusline == "404 Not Found"
    assert http.get_header("Content-Encoding") is None
    assert http.get_header("Transfer-Encoding") is None
    assert http.get_header("X-Archive-Orig-Content-Encoding") == "gzip"
    assert http.get_header("X-Archive-Orig-Transfer-Encoding") == "chunked"
    assert http.get_header("X-Archive-Orig-Content-Length") == "17"
    assert [v for k, v in http.headers if k.lower() == "content-length"] == [str(len(body))]
    assert http.get_header("Bad Name") is None
    # The header block holds the wire bytes: latin-1, not percent-encoded.
    assert b"X-Title: caf\xe9\r\n" in gzip.decompress(data[location.offset:])

    request_record = [r for r in records_of(data) if r[0] == "request"][0]
    request_http = request_record[2]
    assert request_http.protocol == "GET"
    assert request_http.statusline == "/a/b?x=1&y=%20 HTTP/1.1"
    assert request_http.get_header("Host") == "news.example.com:8443"  # no credentials
    assert request_http.get_header("X-Forged") is None  # a line break cannot add a header
    assert request_http.get_header("X-Bad") == "a  X-Forged: 1"


def test_bad_input_is_refused_with_archive_errors(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    with pytest.raises(InvalidKey):
        WarcWriter(backend, tmp_path / "p", "Not A Site", "run")
    with pytest.raises(InvalidKey):
        WarcWriter(backend, tmp_path / "p", SITE, "../run")
    with pytest.raises(ArchiveError):
        WarcWriter(backend, tmp_path / "p", SITE, "run", roll_bytes=0)
    writer = WarcWriter(backend, tmp_path / "p", SITE, "run")
    for bad in ({"url": "https://example.com/a\r\nWARC-Type: x"}, {"url": "ftp://example.com/"},
                {"url": "/relative"}, {"status": 42}, {"method": "get"}, {"body": "text"}):
        with pytest.raises(ArchiveError):
            writer.write(**exchange(1, **bad))
    assert writer.close() == []  # nothing was written, so no file at all
    with pytest.raises(ArchiveError):
        writer.write(**exchange(2))


# -- rolling ------------------------------------------------------------------------------


def test_rolling_uploads_each_full_file_at_once(backend, tmp_path):
    pending = tmp_path / "pending"
    writer = WarcWriter(backend, pending, SITE, "run-r", roll_bytes=4000, started=STARTED)
    sent = [exchange(i, size=1500) for i in range(10)]
    locations = []
    for s in sent:
        locations.append(writer.write(**s))
        # Only the file being written is still local: full ones went up when they filled.
        assert len([n for n in pending_files(pending) if n.endswith(".warc.gz")]) <= 1
    rolled = writer.uploaded
    assert len(rolled) >= 3
    for key in rolled:
        assert backend.exists(backend.relative(key))
    last = writer.close()
    keys = list(rolled) + last
    assert list(writer.uploaded) == keys
    assert keys == [backend.locate(f"warc/localnews/2025/03/07/run-r-{n:05d}.warc.gz")
                    for n in range(len(keys))]
    assert {loc.key for loc in locations} == set(keys)
    assert pending_files(pending) == []
    files = {key: fetch(backend, key) for key in keys}
    for key, data in files.items():
        kinds = [r[0] for r in records_of(data)]
        assert kinds[0] == "warcinfo" and kinds.count("warcinfo") == 1, key
    for s, location in zip(sent, locations):
        check_response(files[location.key], location, s)


def test_a_new_writer_of_the_same_run_never_replaces_its_files(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    first = WarcWriter(backend, tmp_path / "pending", SITE, "run-again", started=STARTED)
    kept = first.write(**exchange(1))
    first.close()
    before = fetch(backend, kept.key)
    second = WarcWriter(backend, tmp_path / "pending", SITE, "run-again", started=STARTED)
    later = second.write(**exchange(2))
    assert later.key.endswith("run-again-00001.warc.gz")
    second.close()
    assert fetch(backend, kept.key) == before
    # Another run whose id merely starts the same way is not counted.
    other = WarcWriter(backend, tmp_path / "pending", SITE, "run", started=STARTED)
    assert other.write(**exchange(3)).key.endswith("/run-00000.warc.gz")
    other.close()


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_writes_all_resolve(backend, tmp_path):
    writer = WarcWriter(backend, tmp_path / "pending", SITE, "run-t", roll_bytes=16_000,
                        started=STARTED)
    threads, per_thread = 8, 15
    results: dict[int, tuple[dict, WarcLocation]] = {}
    errors = []
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for j in range(per_thread):
                s = exchange(t * 100 + j, size=600)
                results[t * 100 + j] = (s, writer.write(**s))
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    keys = list(writer.uploaded) + writer.close()
    assert len(keys) > 2 and len(set(keys)) == len(keys)
    files = {key: fetch(backend, key) for key in keys}
    assert len(results) == threads * per_thread
    for s, location in results.values():
        check_response(files[location.key], location, s)
    responses = sum(kind == "response" for data in files.values() for kind, *_ in records_of(data))
    assert responses == threads * per_thread
    assert pending_files(tmp_path / "pending") == []


# -- upload failures and recovery ---------------------------------------------------------


def test_a_failed_upload_is_kept_and_sent_by_close(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    blocker = tmp_path / "archive" / "warc"
    blocker.parent.mkdir()
    blocker.write_bytes(b"not a directory")  # every upload fails while this is here
    pending = tmp_path / "pending"
    writer = WarcWriter(backend, pending, SITE, "run-f", roll_bytes=3000, started=STARTED)
    sent = [exchange(i, size=1500) for i in range(6)]
    locations = [writer.write(**s) for s in sent]  # rolling goes on despite the failures
    assert writer.uploaded == ()
    stuck = [n for n in pending_files(pending) if n.endswith(".warc.gz")]
    assert len(stuck) >= 3

    with pytest.raises(ArchiveError, match="could not be uploaded"):
        writer.close()
    assert [n for n in pending_files(pending) if n.endswith(".warc.gz")] == stuck

    blocker.unlink()
    keys = writer.close()  # a second close retries
    assert len(keys) == len(stuck) and pending_files(pending) == []
    for s, location in zip(sent, locations):
        check_response(fetch(backend, location.key), location, s)


@pytest.mark.parametrize("tear", ["half a record appended", "last record cut short"])
def test_recover_pending_uploads_dead_runs_and_cuts_torn_tails(backend, tmp_path, tear):
    pending = tmp_path / "pending"
    dead = WarcWriter(backend, pending, SITE, "dead-run", started=STARTED)
    # Bodies that do not compress, so that a torn gzip member still inflates to a
    # plausible record: only its missing trailer tells.
    sent = [exchange(i, size=5000) for i in range(3)]
    locations = [dead.write(**s) for s in sent]
    live = WarcWriter(backend, pending, SITE, "live-run", started=STARTED)
    live_location = live.write(**exchange(9))
    path = pending / "dead-run-00000.warc.gz"
    whole = path.read_bytes()
    last = locations[-1]
    if tear == "half a record appended":
        # Killed while writing a fourth exchange.
        with open(path, "ab") as fh:
            fh.write(whole[last.offset: last.offset + last.length // 2])
        expected, resolving = whole, locations
    else:
        # Killed while writing the third response: its request record is whole.
        os.truncate(path, last.offset + last.length - 1)
        expected, resolving = whole[: last.offset], locations[:-1]

    uploaded = recover_pending(backend, pending, is_alive=lambda run_id: run_id == "live-run")
    assert uploaded == [locations[0].key]
    data = fetch(backend, locations[0].key)
    assert data == expected
    for s, location in zip(sent, resolving):
        check_response(data, location, s)
    last_kind = "response" if tear == "half a record appended" else "request"
    assert [r[0] for r in records_of(data)][-1] == last_kind
    assert pending_files(pending) == ["live-run-00000.json", "live-run-00000.warc.gz"]

    assert recover_pending(backend, pending, is_alive=lambda run_id: True) == []
    assert live.close() == [live_location.key]
    assert recover_pending(backend, pending, is_alive=lambda run_id: False) == []


def test_recover_pending_never_stops_at_a_bad_file(tmp_path, caplog):
    backend = LocalBackend(tmp_path / "archive")
    pending = tmp_path / "pending"
    good = WarcWriter(backend, pending, SITE, "good-run", started=STARTED)
    good_location = good.write(**exchange(1))
    cursed = WarcWriter(backend, pending, SITE, "cursed-run", started=STARTED)
    cursed.write(**exchange(2))
    (pending / "broken-00000.json").write_text("{not json")
    (pending / "broken-00000.warc.gz").write_bytes(b"x")
    (pending / "escape-00000.json").write_text(json.dumps(
        {"key": "../outside/escape-00000.warc.gz", "run_id": "escape"}))
    (pending / "escape-00000.warc.gz").write_bytes(b"x")
    (pending / "orphan-00000.json").write_text(json.dumps(
        {"key": "warc/localnews/2025/03/07/orphan-00000.warc.gz", "run_id": "orphan"}))
    (pending / "junk-00000.json").write_text(json.dumps(
        {"key": "warc/localnews/2025/03/07/junk-00000.warc.gz", "run_id": "junk"}))
    (pending / "junk-00000.warc.gz").write_bytes(os.urandom(500))

    def is_alive(run_id: str) -> bool:
        if run_id == "cursed-run":
            raise RuntimeError("cannot tell")
        return False

    with caplog.at_level(logging.WARNING, logger="storage.warc"):
        uploaded = recover_pending(backend, pending, is_alive=is_alive)
    assert uploaded == [good_location.key]
    left = pending_files(pending)
    # Unreadable sidecars and the run that could not be judged stay; the orphan sidecar and
    # the file without one whole record are gone.
    assert left == ["broken-00000.json", "broken-00000.warc.gz", "cursed-run-00000.json",
                    "cursed-run-00000.warc.gz", "escape-00000.json", "escape-00000.warc.gz"]
    logged = caplog.text
    assert "broken-00000.json" in logged and "escape-00000.json" in logged
    assert "cursed-run-00000.json" in logged and "junk-00000.warc.gz" in logged
    assert not (tmp_path / "outside").exists()


def test_recover_pending_on_a_missing_directory(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    assert recover_pending(backend, tmp_path / "nowhere", is_alive=lambda run_id: False) == []


# -- put_file -----------------------------------------------------------------------------


def test_put_file_round_trip(backend, tmp_path, request):
    source = tmp_path / "source.bin"
    source.write_bytes(b"first")
    backend.put_file("warc/x/one.warc.gz", source, content_type="application/warc")
    source.write_bytes(b"second version")
    backend.put_file("warc/x/one.warc.gz", source, content_type="application/warc")
    assert backend.get("warc/x/one.warc.gz") == b"second version"
    assert list(backend.iter_keys("warc/")) == ["warc/x/one.warc.gz"]
    if isinstance(backend, S3Backend):
        s3 = request.getfixturevalue("s3_archive")
        head = s3.client.head_object(Bucket=s3.bucket, Key=backend.locate("warc/x/one.warc.gz"))
        assert head["ContentType"] == "application/warc"
    else:
        leftovers = [p.name for p in (backend.root / "warc" / "x").iterdir()]
        assert leftovers == ["one.warc.gz"]  # no temporary file left behind
    with pytest.raises(ArchiveError) as excinfo:
        backend.put_file("warc/x/two.warc.gz", tmp_path / "missing.bin")
    assert not isinstance(excinfo.value, ObjectNotFound)
    with pytest.raises(InvalidKey):
        backend.put_file("../escape", source)


def test_large_objects_go_up_in_parts_on_s3(s3_archive, tmp_path):
    backend = S3Backend(s3_archive.bucket, s3_archive.prefix)
    big = os.urandom(MULTIPART_THRESHOLD + 1024 * 1024)
    source = tmp_path / "big.warc.gz"
    source.write_bytes(big)
    backend.put_file("warc/big.warc.gz", source, content_type="application/warc")
    backend.put("raw/big.html.gz", big, content_type="text/html; charset=utf-8",
                content_encoding="gzip")
    for key, content_type in [("warc/big.warc.gz", "application/warc"),
                              ("raw/big.html.gz", "text/html; charset=utf-8")]:
        head = s3_archive.client.head_object(Bucket=s3_archive.bucket, Key=backend.locate(key))
        # A multipart object's ETag is the MD5 of its parts' MD5s, then "-<parts>".
        assert re.fullmatch(r'"[0-9a-f]{32}-2"', head["ETag"]), head["ETag"]
        assert head["ContentType"] == content_type
        assert head["ContentLength"] == len(big)
        assert backend.get(key) == big
    head = s3_archive.client.head_object(Bucket=s3_archive.bucket,
                                         Key=backend.locate("raw/big.html.gz"))
    assert head["ContentEncoding"] == "gzip"
    # Small bodies stay single PUTs.
    backend.put("raw/small", b"x")
    head = s3_archive.client.head_object(Bucket=s3_archive.bucket, Key=backend.locate("raw/small"))
    assert "-" not in head["ETag"]


def test_put_file_errors_are_archive_errors(s3_archive, tmp_path, monkeypatch):
    source = tmp_path / "f.bin"
    source.write_bytes(b"data")
    missing = S3Backend("missing-bucket-" + os.urandom(4).hex(), "news")
    with pytest.raises(ArchiveError) as excinfo:
        missing.put_file("warc/a.warc.gz", source)
    assert not isinstance(excinfo.value, (ObjectNotFound, ClientError, BotoCoreError))

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    unreachable = S3Backend("some-bucket", "news")
    with pytest.raises(ArchiveUnavailable):
        unreachable.put_file("warc/a.warc.gz", source)


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "UploadPart")


@pytest.mark.parametrize("cause, expected", [
    (_client_error(503, "SlowDown"), ArchiveUnavailable),
    (_client_error(500, "InternalError"), ArchiveUnavailable),
    (_client_error(400, "EntityTooSmall"), ArchiveError),
    (_client_error(404, "NoSuchUpload"), ArchiveError),  # a write never reads as "not found"
    (_client_error(409, "OperationAborted"), ArchiveError),
    (_client_error(403, "AccessDenied"), ArchiveAccessDenied),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ArchiveUnavailable),
    (ConnectionResetError("reset"), ArchiveUnavailable),
    (ValueError("odd"), ArchiveError),
])
def test_upload_failures_map_onto_archive_errors(cause, expected):
    """boto3's transfer manager raises S3UploadFailedError while handling the real error;
    put_file and large puts judge it by that error."""
    key = "warc/a.warc.gz"
    with pytest.raises(ArchiveError) as excinfo:
        with _unconditional(key), _translated(key):
            try:
                raise cause
            except Exception as exc:
                raise S3UploadFailedError(f"Failed to upload: {exc}")  # noqa: B904
    assert type(excinfo.value) is expected


def test_warc_writer_on_an_s3_prefix_gives_keys_from_the_bucket_root(s3_archive, tmp_path):
    backend = S3Backend(s3_archive.bucket, s3_archive.prefix)
    writer = WarcWriter(backend, tmp_path / "pending", SITE, "run-p", started=STARTED)
    sent = exchange(1)
    location = writer.write(**sent)
    assert location.key == "news/warc/localnews/2025/03/07/run-p-00000.warc.gz"
    writer.close()
    data = s3_archive.get(location.key)  # straight from the bucket, by the located key
    check_response(data, location, sent)
    head = s3_archive.client.head_object(Bucket=s3_archive.bucket, Key=location.key)
    assert head["ContentType"] == "application/warc"
