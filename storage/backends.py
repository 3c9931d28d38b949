"""Archive backends: an S3-compatible bucket (boto3) and a local directory, with the same keys.

Both offer the same small surface, including an atomic create-if-absent that dedup markers
rely on: S3 conditional writes (``IfNoneMatch="*"``, the second writer gets 412) and, locally,
a hard link that fails with EEXIST. Every third-party error is translated here into
``storage.errors``.

Large objects (WARC files of up to a few hundred MiB) go to S3 as multipart uploads: a
single PUT of that size is one long request that restarts from zero on any failure, while
parts are retried one by one and sent in parallel.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from storage.errors import (
    ArchiveAccessDenied,
    ArchiveError,
    ArchiveUnavailable,
    InvalidArchiveURL,
    InvalidKey,
    ObjectNotFound,
)
from storage.lazy import once
from storage.localfiles import copy_atomic, create_exclusive, write_atomic

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Backend(Protocol):
    """What the archive needs from a storage system. Keys are archive-relative, ``/``-separated."""

    url: str
    """The archive URL this backend was opened from (no credentials in it)."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> None:
        """Write ``data`` at ``key``, replacing any object there; readers see all or nothing."""

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        """Write the bytes of the local file ``path`` at ``key``, replacing any object there;
        readers see all or nothing. The file is streamed, never read whole into memory."""

    def put_if_absent(self, key: str, data: bytes, *, content_type: str | None = None) -> bool:
        """Create ``key`` atomically; False (and nothing written) if it already exists."""

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound if there is none."""

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and a tag (its ETag) for :meth:`put_if_match`."""

    def put_if_match(self, key: str, data: bytes, tag: str, *,
                     content_type: str | None = None) -> bool:
        """Replace ``key`` only if it still has ``tag``; False (nothing written) if another
        writer replaced it since it was read."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""

    def delete(self, key: str) -> None:
        """Remove the object at ``key``; nothing happens if there is none."""

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, in lexicographic order for S3 (any order locally)."""

    def locate(self, key: str) -> str:
        """The key as users see it: from the bucket's root, or from the archive directory."""

    def relative(self, located: str) -> str:
        """Inverse of :meth:`locate`."""


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: str) -> str:
    """Reject keys that could escape the archive root or alias another key: absolute,
    ``.``/``..`` or empty segments, backslashes, and control characters (NUL, newlines)."""
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or "\\" in key
        or _CONTROL_CHARACTER.search(key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise InvalidKey(f"invalid archive key {key!r}")
    return key


def open_backend(url: str) -> Backend:
    """A backend for ``url``: ``s3://bucket[/prefix]`` or a local directory path (``file://`` ok)."""
    location = archive_location(url)
    if location.bucket is not None:
        return S3Backend(location.bucket, location.prefix)
    return LocalBackend(location.directory)


@dataclass(frozen=True)
class ArchiveLocation:
    """Where an archive URL points: an S3 bucket and prefix, or a local directory."""

    bucket: str | None
    """The S3 bucket, or None for a local archive."""
    prefix: str = ""
    """The key prefix in the bucket, without a slash at either end (``""``: its root)."""
    directory: Path | None = None
    """The local archive's directory as given (not yet resolved), or None for S3."""


def archive_location(url: str) -> ArchiveLocation:
    """What an archive URL means (the one place that says so): ``s3://bucket[/prefix]``, or
    a directory path (``file://`` ok). InvalidArchiveURL for what
    :func:`check_archive_url` refuses and for an ``s3://`` URL without a bucket; InvalidKey
    for a prefix that could escape its place (``a/../b``)."""
    parts = check_archive_url(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidArchiveURL("s3 archive URL needs a bucket: s3://bucket/prefix")
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
        return ArchiveLocation(bucket=parts.netloc, prefix=prefix)
    return ArchiveLocation(bucket=None,
                           directory=Path(parts.path if parts.scheme == "file" else url))


def check_archive_url(url: str):
    """``url`` split (``urllib.parse.SplitResult``) if it can name an archive: a directory
    path, ``file://`` or ``s3://bucket[/prefix]``; InvalidArchiveURL otherwise. An archive URL
    travels into logs, run manifests, Prefect's database, process lists and the web UI, so
    one that carries credentials (``s3://KEY:SECRET@bucket``) is refused, and the message
    never repeats it: S3 credentials come from boto3's own chain (``AWS_*``)."""
    if not url:
        raise InvalidArchiveURL("empty archive URL")
    parts = urlsplit(url)
    if parts.scheme and len(parts.scheme) > 1 and "@" in parts.netloc:
        raise InvalidArchiveURL(
            f"the {parts.scheme}:// archive URL carries credentials (user:secret@); remove "
            f"them and give S3 credentials as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if parts.scheme in ("s3", "file"):
        return parts
    if parts.scheme and len(parts.scheme) > 1:
        raise InvalidArchiveURL(  # no credentials in it (above): it can be repeated
            f"unsupported archive URL {url!r}: use a directory path or s3://bucket/prefix")
    return parts


# A local archive that cannot take more bytes now but may later (space freed, quota raised,
# the file system remounted read-write) is unavailable, not broken: pages wait in the
# crawl's spool instead of being dropped.
_UNAVAILABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _write_error(what: str, exc: OSError) -> ArchiveError:
    """The archive error for a local write that failed with ``exc``."""
    if exc.errno in _UNAVAILABLE_ERRNOS:
        return ArchiveUnavailable(f"{what}: {exc.strerror or exc}")
    return ArchiveError(f"{what}: {exc}")


_MAX_CHECKED_DIRS = 10_000
"""Directories a local backend remembers having checked (see ``LocalBackend._checked_dirs``)."""


class LocalBackend:
    """An archive in a local directory; keys map to relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.url = str(self.root)
        # Directories found to resolve inside the root, and to exist: a page is about fifteen
        # objects in a handful of directories, and resolving every component of every key
        # again (a system call each) cost more than writing the objects. Each article has a
        # directory of its own: past _MAX_CHECKED_DIRS the set starts again (re-checking is
        # safe), so that a long crawl's memory does not grow with it.
        self._checked_dirs: set[str] = set()

    def _path(self, key: str) -> Path:
        path = os.path.join(self.url, check_key(key))
        # A symlink planted inside the archive must not lead a write (or a read) outside it:
        # the directories are resolved once per process, the object itself every time.
        directory = os.path.dirname(path)
        if directory not in self._checked_dirs:
            self._check_inside(key, directory)
            if os.path.isdir(directory):
                self._remember(directory)
        if os.path.islink(path):
            self._check_inside(key, path)
        return Path(path)

    def _remember(self, directory: str) -> None:
        if len(self._checked_dirs) >= _MAX_CHECKED_DIRS:
            self._checked_dirs.clear()
        self._checked_dirs.add(directory)

    def _check_inside(self, key: str, path: str) -> None:
        try:
            resolved = Path(os.path.realpath(path, strict=False))
        except (RuntimeError, OSError) as exc:  # a symlink loop
            raise InvalidKey(f"archive key {key!r} cannot be resolved: {exc}") from exc
        if not resolved.is_relative_to(self.root):
            raise InvalidKey(f"archive key {key!r} resolves outside {self.root}")

    def _inside(self, key: str) -> bool:
        try:
            self._path(key)
        except InvalidKey:
            return False
        return True

    def _in_its_directory(self, path: Path, write: Callable[[], T]) -> T:
        """Make ``path``'s directory, then ``write`` (a write beside ``path``, see
        :mod:`storage.localfiles`); raises its OSError."""
        directory = str(path.parent)
        if directory not in self._checked_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            # _path checked where it leads before it existed; made now, it is a directory.
            self._remember(directory)
        try:
            return write()
        except FileNotFoundError:
            # Removed since it was made (by hand, or by another program): check and make
            # again.
            self._checked_dirs.discard(directory)
            self._path(str(path.relative_to(self.root)))
            path.parent.mkdir(parents=True, exist_ok=True)
            return write()

    def _replace_with(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically (:func:`storage.localfiles.write_atomic`):
        a reader (or a crash) never sees half an object. Raises OSError, having removed the
        temporary file."""
        self._in_its_directory(path, lambda: write_atomic(path, data))

    def put(self, key, data, *, content_type=None, content_encoding=None) -> None:
        path = self._path(key)
        try:
            self._replace_with(path, data)
        except OSError as exc:
            raise _write_error(f"cannot write {path}", exc) from exc

    def put_file(self, key, path, *, content_type=None) -> None:
        target = self._path(key)
        try:
            # As in put: a reader (or a crash mid-copy) never sees a partial file under the key.
            self._in_its_directory(target, lambda: copy_atomic(path, target))
        except OSError as exc:
            raise _write_error(f"cannot copy {path} to {target}", exc) from exc

    def put_if_absent(self, key, data, *, content_type=None) -> bool:
        path = self._path(key)
        try:
            return self._in_its_directory(path, lambda: create_exclusive(path, data))
        except OSError as exc:
            raise _write_error(f"cannot write {path}", exc) from exc

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, hashlib.md5(data, usedforsecurity=False).hexdigest()

    def put_if_match(self, key, data, tag, *, content_type=None) -> bool:
        path = self._path(key)
        # Compare-and-swap under an exclusive lock on one lock file of the archive: replacing
        # a record is rare (a new alias, a new version), so one lock for all keys is enough,
        # and flock holds across the processes of every crawl on this machine.
        lock_path = self.root / ".newsarchive.lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    current = path.read_bytes()
                except FileNotFoundError:
                    return False
                if hashlib.md5(current, usedforsecurity=False).hexdigest() != tag:
                    return False
                self._replace_with(path, data)
                return True
        except OSError as exc:
            raise _write_error(f"cannot write {path}", exc) from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ArchiveError(f"cannot read {path}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise _write_error(f"cannot remove {path}", exc) from exc

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        # Same meaning as S3's Prefix: a string prefix, not a directory. Walk the deepest
        # directory the prefix names and filter by the rest.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if directory:
            check_key(directory)
        base = self.root / directory if directory else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue  # temp files of writes in progress
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                if os.path.islink(os.path.join(dirpath, name)) and not self._inside(key):
                    # Planted, not written by us: listing it would only fail the reader.
                    logger.warning("skipping %s: a symlink that leads outside %s", key, self.root)
                    continue
                yield key

    def locate(self, key: str) -> str:
        return key

    def relative(self, located: str) -> str:
        return check_key(located)


class S3Backend:
    """An archive in an S3-compatible bucket, optionally under a prefix.

    Endpoint, region and credentials come from boto3's own chain (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, profiles, instance roles), so AWS, MinIO, Ceph and R2 need no
    code changes.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None) -> None:
        if not bucket:
            raise InvalidArchiveURL("s3 archive URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        if self.prefix:
            check_key(prefix)
        self.url = f"s3://{bucket}/{self.prefix}"
        self._client = client or make_s3_client()

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key, data, *, content_type=None, content_encoding=None) -> None:
        extra = {}
        if content_type:
            extra["ContentType"] = content_type
        if content_encoding:
            extra["ContentEncoding"] = content_encoding
        if len(data) > MULTIPART_THRESHOLD:
            with _unconditional(key), _translated(key):
                self._client.upload_fileobj(io.BytesIO(data), self.bucket, self._k(key),
                                            ExtraArgs=extra, Config=_transfer_config())
            return
        with _translated(key):
            self._client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **extra)

    def put_file(self, key, path, *, content_type=None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        s3_key = self._k(key)
        try:
            with _unconditional(key), _translated(key):
                # upload_file sends one PUT below the threshold and a multipart upload above
                # it, reading the file part by part.
                self._client.upload_file(str(path), self.bucket, s3_key, ExtraArgs=extra,
                                         Config=_transfer_config())
        except OSError as exc:  # the local file (boto's own errors are translated above)
            raise ArchiveError(f"cannot read {path}: {exc}") from exc

    def put_if_absent(self, key, data, *, content_type=None) -> bool:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            with _translated(key):
                self._client.put_object(
                    Bucket=self.bucket, Key=self._k(key), Body=data, IfNoneMatch="*", **extra
                )
        except _ConditionFailed:
            return False
        return True

    def get(self, key: str) -> bytes:
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        with _translated(key):
            response = self._client.get_object(Bucket=self.bucket, Key=self._k(key))
            return response["Body"].read(), response["ETag"]

    def put_if_match(self, key, data, tag, *, content_type=None) -> bool:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            with _translated(key):
                self._client.put_object(
                    Bucket=self.bucket, Key=self._k(key), Body=data, IfMatch=tag, **extra
                )
        except (_ConditionFailed, ObjectNotFound):
            return False
        return True

    def exists(self, key: str) -> bool:
        try:
            with _translated(key):
                self._client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with _translated(key):
            self._client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        cut = len(self.prefix)
        with _translated(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", ()):
                    yield obj["Key"][cut:]

    def locate(self, key: str) -> str:
        return self.prefix + key

    def relative(self, located: str) -> str:
        if not located.startswith(self.prefix):
            raise InvalidKey(f"key {located!r} is not under {self.url}")
        return check_key(located[len(self.prefix) :])


def make_s3_client():
    """A boto3 S3 client with standard retries; path-style addressing for custom endpoints.

    MinIO, Ceph and local test servers are reached by address, where virtual-hosted
    bucket names cannot resolve; AWS itself keeps boto3's default.
    """
    import boto3
    from botocore.config import Config

    custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # Our retry defaults yield to the standard AWS_RETRY_MODE / AWS_MAX_ATTEMPTS variables:
    # botocore lets an explicit Config value win over them.
    retries = {}
    if not os.environ.get("AWS_RETRY_MODE"):
        retries["mode"] = "standard"
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["max_attempts"] = 5
    # A CRC32 of every body sent and received is botocore's default since 1.36, on top of
    # the signature's SHA-256 of the body (over plain HTTP) or TLS (over HTTPS): CPU for
    # each of an article's requests, in the crawl's one process. Ours: only where the
    # operation requires one, unless the standard variables say otherwise.
    checksums = {}
    if not os.environ.get("AWS_REQUEST_CHECKSUM_CALCULATION"):
        checksums["request_checksum_calculation"] = "when_required"
    if not os.environ.get("AWS_RESPONSE_CHECKSUM_VALIDATION"):
        checksums["response_checksum_validation"] = "when_required"
    config = Config(
        retries=retries,
        # A crawl asks from up to 32 storage threads, 8 threads writing an article's
        # objects at once, 16 look-up threads and 8 readers of the index at once: with a
        # smaller pool, connections are discarded and opened again (urllib3 says
        # "Connection pool is full"), a new socket for a request now and then. Idle
        # connections cost a file descriptor each.
        max_pool_connections=64,
        **checksums,
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if custom_endpoint else {},
    )
    client = boto3.session.Session(botocore_session=_botocore_session()).client("s3", config=config)
    # botocore sends "Expect: 100-continue" with every PUT and waits for the server's go-ahead
    # before the body: a second round trip per write, for bodies a few kilobytes long. Large
    # files go as multipart uploads in 16 MB parts, where one more round trip is nothing.
    from botocore.handlers import add_expect_header

    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


@once
def _model_loader():
    """botocore's loader of its model files (S3's operations, the endpoint rules, the
    partitions), which keeps what it parsed: one for the process, shared by its S3 clients.
    Each new session otherwise reads and parses them again, 0.08 s of CPU of the 0.13 s a
    client costs (a process that opens several archives makes a client for each; the tests
    make hundreds). Only the loader is shared: credentials, region and settings are read
    afresh by each session, from the environment as it is then."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def _botocore_session():
    """A new botocore session that reads model files through the process's one loader."""
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", _model_loader())
    return session


MULTIPART_THRESHOLD = 16 * 1024 * 1024
"""Bodies larger than this go to S3 as multipart uploads, in parts of this size."""


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                          multipart_chunksize=MULTIPART_THRESHOLD)


class _unconditional:
    """Context manager around :class:`_translated` for unconditional (multipart) writes:
    there a 409/412 is no lost race of ours but a conflicting operation on the bucket, and a
    404 is a multipart upload that vanished (``NoSuchUpload``), not a missing object. Both
    reach the caller as a plain ArchiveError, never as ``_ConditionFailed`` (internal) or
    ObjectNotFound (which callers read as "no such object yet")."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, (_ConditionFailed, ObjectNotFound)):
            cause = exc.__cause__ or exc
            raise ArchiveError(f"S3 refused the write of {self.key!r}: {cause}") from exc
        return False


class _ConditionFailed(Exception):
    """Internal: a conditional write lost the race (412, or 409 while another write is in flight)."""


# Error codes of refused credentials: wrong, expired (temporary credentials expire within
# hours, and S3 says so with a 400), or a clock too far off to sign with.
_REFUSED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                            "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
                            "RequestTimeTooSkewed"})


class _translated:
    """Context manager mapping botocore exceptions onto ``storage.errors``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        if isinstance(exc, S3UploadFailedError):
            # boto3's transfer manager wraps the ClientError of a failed part or PUT (raised
            # while handling it, so it is the context rather than the cause): judge by it.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                return self.__exit__(type(cause), cause, cause.__traceback__)
            if isinstance(cause, (ConnectionError, TimeoutError)):
                raise ArchiveUnavailable(f"S3 upload failed: {exc}") from exc
            raise ArchiveError(f"S3 upload failed: {exc}") from exc
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (412, 409):
                raise _ConditionFailed(code) from exc
            if code in ("NoSuchKey", "404", "NotFound") or status == 404 and code != "NoSuchBucket":
                raise ObjectNotFound(self.key) from exc
            if code in _REFUSED_CODES or status == 403:
                raise ArchiveAccessDenied(f"S3 refused access ({code})") from exc
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise ArchiveUnavailable(f"S3 error {code} (HTTP {status})") from exc
            raise ArchiveError(f"S3 error {code} (HTTP {status}): {error.get('Message', '')}") from exc
        if isinstance(exc, NoCredentialsError):
            raise ArchiveAccessDenied("no S3 credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from exc
        if isinstance(exc, BotoConnectionError):
            raise ArchiveUnavailable(f"S3 endpoint unreachable: {exc.__class__.__name__}") from exc
        if isinstance(exc, HTTPClientError):
            # The connection failed under a request already sent (closed before the answer,
            # timed out reading it), after botocore's retries: the endpoint went away, as above.
            # A kept-alive connection fails this way when S3 goes away between two requests.
            raise ArchiveUnavailable(f"S3 endpoint unreachable: {exc.__class__.__name__}") from exc
        if isinstance(exc, BotoCoreError):
            raise ArchiveError(f"S3 client error: {exc}") from exc
        return False
