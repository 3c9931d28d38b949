"""A body compressed once serves raw.html.gz and the WARC record alike."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from datetime import datetime, timezone

import pytest
from warcio.archiveiterator import ArchiveIterator

from storage.compress import DeflatedBody
from storage.errors import ArchiveError
from storage.warc import WarcWriter

BODIES = [
    b"",
    b"<html><body><p>short</p></body></html>",
    "<p>Grüße aus Köln – ünïcödé</p>".encode() * 5000,  # repetitive, ~180 KB
    os.urandom(300_000),  # incompressible: stored blocks
]


@pytest.mark.parametrize("body", BODIES, ids=["empty", "short", "repetitive", "random"])
def test_the_body_alone_is_a_gzip_file(body):
    deflated = DeflatedBody.of(body)
    data = deflated.gzip()
    assert gzip.decompress(data) == body
    # One member, read by zlib's streaming reader to its very end: nothing left over.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert inflater.decompress(data) == body and inflater.eof and not inflater.unused_data


@pytest.mark.parametrize("body", BODIES, ids=["empty", "short", "repetitive", "random"])
def test_one_member_around_the_same_blocks(body):
    deflated = DeflatedBody.of(body)
    head, tail = b"WARC/1.1\r\nWARC-Type: response\r\n\r\n", b"\r\n\r\n"
    member = deflated.gzip_between(head, tail, body)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert inflater.decompress(member) == head + body + tail
    assert inflater.eof and not inflater.unused_data
    # The body's blocks are in the member as they are: compressed once, not again.
    assert deflated.blocks in member


def test_another_body_of_the_same_size_is_refused():
    deflated = DeflatedBody.of(b"a" * 1000)
    with pytest.raises(ValueError, match="not the one that was deflated"):
        deflated.gzip_between(b"head", b"tail", b"b" * 1000)


def test_the_warc_record_reuses_the_compressed_body(tmp_path):
    from storage.backends import LocalBackend

    body = BODIES[2]
    deflated = DeflatedBody.of(body)
    backend = LocalBackend(tmp_path / "archive")
    writer = WarcWriter(backend, tmp_path / "pending", "site", "run-1")
    location = writer.write(
        url="https://example.com/a", fetched_at=datetime(2025, 1, 2, tzinfo=timezone.utc),
        status=200, reason="OK", request_headers=[("User-Agent", "t")],
        response_headers=[("Content-Type", "text/html")], body=body, deflated=deflated)
    with pytest.raises(ArchiveError, match="not the one that was deflated"):
        writer.write(
            url="https://example.com/b", fetched_at=datetime(2025, 1, 2, tzinfo=timezone.utc),
            status=200, reason="OK", request_headers=[], response_headers=[],
            body=body.upper(), deflated=deflated)
    (key,) = writer.close()
    data = backend.get(key)
    member = data[location.offset:location.offset + location.length]
    assert deflated.blocks in member
    # The record reads alone from its offset, and whole files read with warcio.
    record = next(iter(ArchiveIterator(io.BytesIO(member))))
    assert record.rec_headers.get_header("WARC-Type") == "response"
    assert record.content_stream().read() == body
    with open(backend.root / key, "rb") as fh:
        types = [r.rec_type for r in ArchiveIterator(fh)]
    assert types == ["warcinfo", "request", "response"]
