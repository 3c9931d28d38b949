"""The archive's exceptions: one small hierarchy, with boto3 and OS errors mapped onto it
at the backend boundary so that callers never catch a botocore type."""

from __future__ import annotations


class ArchiveError(Exception):
    """Base class of every error raised by the storage package."""


class InvalidArchiveURL(ArchiveError, ValueError):
    """The archive URL is neither a local directory nor ``s3://bucket[/prefix]``."""


class InvalidKey(ArchiveError, ValueError):
    """A key or one of its parts (site name, id) is malformed and could escape its place."""


class ObjectNotFound(ArchiveError, KeyError):
    """The key does not exist in the archive."""


class ArchiveUnavailable(ArchiveError):
    """The storage could not be reached or answered with a server error; worth retrying later."""


class ArchiveAccessDenied(ArchiveUnavailable):
    """The storage refused the credentials or the operation (HTTP 403: expired or wrong
    credentials, a missing permission). Retrying at once will not help, but the archive
    takes the pages once an operator mends the credentials: a crawl keeps them meanwhile,
    like any page the archive cannot take now."""
