"""What the archive asks of S3, counted at a proxy in front of moto's server
(tests/s3counter.py): requests and round trips are the archive's cost and its latency."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from storage import S3Backend
from storage.backends import make_s3_client
from tests.s3counter import S3Counter


@pytest.fixture
def counted_backend(s3_archive, monkeypatch):
    host, port = urlsplit(s3_archive.endpoint).netloc.split(":")
    counter = S3Counter((host, int(port)), s3_archive.bucket, s3_archive.prefix).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", counter.url)
    yield counter, S3Backend(s3_archive.bucket, s3_archive.prefix, make_s3_client())
    counter.stop()


def test_a_write_is_one_round_trip(counted_backend):
    """No write waits for a go-ahead (``Expect: 100-continue``) before sending its body."""
    counter, backend = counted_backend
    backend.put("articles/a.txt", b"text" * 1000)
    assert backend.put_if_absent("_index/urls/x.json", b"{}")
    data, tag = backend.get_tagged("articles/a.txt")
    assert backend.put_if_match("articles/a.txt", b"new", tag)
    assert counter.count("PUT") == 3
    assert counter.expect_continue == 0


def test_a_write_carries_no_checksum_besides_its_signature(counted_backend, monkeypatch):
    """botocore's default CRC32 of every body is CPU for each request of the crawl's one
    process; the signature (HTTP) or TLS (HTTPS) covers the body already. The standard
    variable still turns it on."""
    counter, backend = counted_backend
    backend.put("articles/a.txt", b"text" * 1000)
    assert backend.put_if_absent("_index/urls/x.json", b"{}")
    assert counter.count("PUT") == 2
    assert counter.checksummed == 0
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
    client = make_s3_client()
    client.put_object(Bucket=backend.bucket, Key=backend.locate("articles/b.txt"), Body=b"b")
    assert counter.checksummed == 1
