"""The dedup index under ``_index/``: what lets any number of writers, on any number of
machines, share one archive without a database.

- **URL markers** (``_index/urls/``): one per canonical URL and per alias, taken with
  create-if-absent; the first names the article's keys and so claims its place.
- **Content claims** (``_index/content/``): one per text fingerprint; the owner is the article
  other pages with the same text become aliases of.
- **The near-duplicate index** (``_index/near/``) is written per run, not per article: see
  :mod:`storage.near_index`.

Every object here that changes after it is created (a content claim whose writer died, or
that passes to an earlier-published copy) and every ``meta.json`` that gains a URL or a version changes by
:func:`compare_and_swap`: read with its tag, change, write only if the tag still holds, and
try again otherwise. A claim names its writer (:func:`lease`): one whose writer is gone
(:func:`is_stale`) may be taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from storage.backends import Backend
from storage.errors import ArchiveError, ObjectNotFound
from storage.keys import content_index_key, url_index_key
from storage.record import as_utc

T = TypeVar("T")

UPDATE_ATTEMPTS = 20
"""Compare-and-swap attempts on one object before giving up: each retry means another
writer changed it in between, which takes many writers on one object."""

_HOST = socket.gethostname()


def compare_and_swap(backend: Backend, key: str, change: Callable[[T | None], T | None], *,
                     decode: Callable[[bytes], T], encode: Callable[[T], bytes],
                     content_type: str, absent_first: bool = False) -> T | None:
    """Apply ``change`` to the object at ``key`` and write the result only if nobody wrote
    the object in between; returns the object as it then stands (None: absent).

    ``change`` gets the current value (None when the object does not exist) and returns the
    new one, or None when nothing needs writing. With ``absent_first`` the object is
    expected not to exist yet, and created without being read first (one request where a
    read would be a wasted one). ArchiveError if the object keeps changing."""
    current: T | None = None
    tag: str | None = None
    known = absent_first
    for _ in range(UPDATE_ATTEMPTS):
        if not known:
            try:
                data, tag = backend.get_tagged(key)
                current = decode(data)
            except ObjectNotFound:
                current, tag = None, None
        known = False
        new = change(current)
        if new is None:
            return current
        if tag is None:
            written = backend.put_if_absent(key, encode(new), content_type=content_type)
        else:
            written = backend.put_if_match(key, encode(new), tag, content_type=content_type)
        if written:
            return new
    raise ArchiveError(f"{key} kept changing under us; gave up after {UPDATE_ATTEMPTS} attempts")


def lease() -> dict:
    """Who claims, and when: see :func:`is_stale`."""
    return {"claimed_at": datetime.now(timezone.utc).isoformat(), "host": _HOST,
            "pid": os.getpid()}


def is_stale(claim: dict, after: timedelta) -> bool:
    """Whether a claim's writer is gone: its process on this machine no longer runs, or the
    claim is older than ``after`` (an unreadable time counts as stale)."""
    if claim.get("host") == _HOST and isinstance(claim.get("pid"), int):
        if claim["pid"] == os.getpid():
            # Our own process: a claim left by an attempt that failed half-way (storage
            # went away); the thread locks keep us from racing ourselves.
            return True
        if not process_alive(claim["pid"]):
            return True  # a crawl killed on this machine: no need to wait out the lease
    try:
        claimed_at = as_utc(datetime.fromisoformat(claim.get("claimed_at", "")))
    except (TypeError, ValueError):
        return True
    return datetime.now(timezone.utc) - claimed_at >= after


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class KeyLocks:
    """In-process locks by name, so that this process's threads never race each other on
    one article or one text; other processes are kept apart by the index's claims."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}

    @contextmanager
    def hold(self, *names: str) -> Iterator[None]:
        # Always taken in the caller's fixed order (text, then URL): no lock cycles.
        taken = []
        try:
            for name in names:
                with self._guard:
                    entry = self._locks.setdefault(name, [threading.Lock(), 0])
                    entry[1] += 1
                entry[0].acquire()
                taken.append(name)
            yield
        finally:
            for name in reversed(taken):
                with self._guard:
                    entry = self._locks[name]
                    entry[0].release()
                    entry[1] -= 1
                    if not entry[1]:
                        del self._locks[name]


class DedupIndex:
    """The URL markers and content claims of one archive."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- URL markers ----------------------------------------------------------------------

    def read_marker(self, url: str) -> dict | None:
        """The marker of a canonical URL or alias, or None."""
        try:
            return json.loads(self.backend.get(url_index_key(url)))
        except ObjectNotFound:
            return None

    def claim_url(self, marker: dict) -> bool:
        """Take the marker of ``marker["canonical_url"]`` for an article; False if another
        writer holds it."""
        return self.backend.put_if_absent(url_index_key(marker["canonical_url"]),
                                          json.dumps(marker).encode(),
                                          content_type="application/json")

    def mark_urls(self, marker: dict, urls: Iterable[str]) -> None:
        """Point each of ``urls`` at the article ``marker`` names. Create-if-absent: a URL
        already marked keeps its first owner, and a re-run that finds every marker in place
        writes nothing."""
        for url in sorted(set(urls) - {marker["canonical_url"]}):
            self.backend.put_if_absent(url_index_key(url), json.dumps({**marker, "alias": url})
                                       .encode(), content_type="application/json")

    # -- content claims -------------------------------------------------------------------

    def claim_text(self, fingerprint: str, member: dict,
                   owner_if_complete: Callable[[dict], T | None],
                   stale_after: timedelta) -> T | None:
        """Enter ``member`` as the owner of a text fingerprint, unless another article owns
        it: then return what ``owner_if_complete`` makes of the owner's claim (its record,
        when the owner is complete). A claim whose writer died is taken over; one whose
        writer may still finish is left to it (None: this article stands on its own)."""
        owner: list[T] = []
        claim = {**member, **lease()}

        def take(current: dict | None) -> dict | None:
            owner.clear()
            if current is None or current.get("id") == member["id"]:
                return claim if current is None else None
            complete = owner_if_complete(current)
            if complete is not None:
                owner.append(complete)
                return None
            # Its writer may still finish it: archive this page in its own right rather than
            # wait; the two then share the text without knowing it. Dead: the text is ours.
            return claim if is_stale(current, stale_after) else None

        compare_and_swap(self.backend, content_index_key(fingerprint), take,
                         decode=json.loads, encode=lambda v: json.dumps(v).encode(),
                         content_type="application/json", absent_first=True)
        return owner[0] if owner else None
