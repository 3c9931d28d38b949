"""A crawl's local workspace: what it fetched but has not yet put in the archive.

``<data_dir>/pending/<site>/<run_id>/`` holds the run's WARC files until they are uploaded,
its catalog rows until they become Parquet, its near-duplicate index entries until they are
written, its manifest until it is stored, pages that
could not be stored while the archive was unreachable (the spool), and Scrapy's job
directory and discovery's listings. A run that ends well leaves nothing behind; a run that
dies (SIGKILL, a lost machine, a container recreated under another host name) leaves its
workspace to the next crawl of the same site with the same data directory, which finishes
its work.

Ownership is a lock, not a name: the owning process holds an exclusive ``flock`` on the
workspace's ``owner.lock`` for as long as it lives, and the kernel drops it when the process
dies, however it dies. So a live crawl's workspace is never taken over, whatever the host
name says (``owner.json`` only tells a person whose it was), and a dead crawl's workspace is
recovered whatever host name the next crawl runs under. A workspace appears under its name
with its lock already held (it is made under a hidden name and renamed into place), so a
crawl that is still setting up is never mistaken for a dead one, and the crawl that
recovers a workspace holds its lock meanwhile, so two crawls never recover the same one.

A data directory belongs to one machine: ``flock`` is reliable on local file systems, not
across machines on a network file system. Machines share the archive, never a data
directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

from spiders.items import FetchedPage
from storage.keys import validate_run_id, validate_site_name
from storage.localfiles import write_atomic

logger = logging.getLogger(__name__)

_OWNER = "owner.json"
_LOCK = "owner.lock"
_MANIFEST = "manifest.json"
_CLAIMING = ".claiming-"


class WorkspaceBusy(RuntimeError):
    """The workspace belongs to a process that is still running."""


class Workspace:
    """The local workspace of one run of one site. A workspace from :meth:`create` or
    :meth:`abandoned` is held (its lock) until :meth:`release`, or until the process ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool_dir = root / "spool"
        self.warc_dir = root / "warc"
        self.catalog_dir = root / "catalog"
        # The near-duplicate index entries not written yet and the links being corrected
        # (the archive's journal: storage.Archive.keep_journal).
        self.near_dir = root / "near"
        self._lock_fd: int | None = None

    @property
    def _waiting_dirs(self) -> tuple[Path, ...]:
        """The folders of what waits for the archive."""
        return self.spool_dir, self.warc_dir, self.catalog_dir, self.near_dir

    @classmethod
    def create(cls, data_dir: Path, site: str, run_id: str) -> Workspace:
        """Claim the workspace of this process's run, before anything is written in it.
        A workspace of the same run left by a dead process (a retried crawl) is taken over;
        WorkspaceBusy if a live process holds it."""
        workspace = cls(workspace_root(data_dir, site, run_id))
        workspace.root.parent.mkdir(parents=True, exist_ok=True)
        if not workspace.root.exists():
            # Made whole under a hidden name, its lock held, then renamed into place: no
            # other crawl ever sees it unowned.
            staging = workspace.root.with_name(f"{_CLAIMING}{run_id}-{uuid.uuid4().hex[:8]}")
            staging.mkdir()
            held = cls(staging)
            held._lock()
            try:
                os.rename(staging, workspace.root)
            except OSError:  # made meanwhile by a crawl of the same run id: as below
                held.release()
                shutil.rmtree(staging, ignore_errors=True)
            else:
                workspace._lock_fd, held._lock_fd = held._lock_fd, None
        if workspace._lock_fd is None and not workspace._try_lock():
            raise WorkspaceBusy(f"{workspace.root} belongs to a crawl that is still running")
        for directory in workspace._waiting_dirs:
            directory.mkdir(parents=True, exist_ok=True)
        owner = {"run_id": run_id, "site": site, "host": socket.gethostname(),
                 "pid": os.getpid(), "started_at": datetime.now(timezone.utc).isoformat()}
        _write_atomic(workspace.root / _OWNER, json.dumps(owner).encode())
        return workspace

    @classmethod
    def abandoned(cls, data_dir: Path, site: str) -> Iterator[Workspace]:
        """Workspaces of this site whose owner is gone, each held while the caller works on
        it (the caller releases it, or removes it when done)."""
        directory = _site_dir(data_dir, site)
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            if not path.is_dir():
                continue
            workspace = cls(path)
            if not workspace._try_lock():
                continue  # its owner runs, or another crawl is recovering it
            if path.name.startswith(_CLAIMING):
                # A claim whose maker died before renaming it: nothing was written in it.
                shutil.rmtree(path, ignore_errors=True)
                workspace.release()
                continue
            yield workspace

    @property
    def run_id(self) -> str:
        return self.root.name

    def _lock(self) -> None:
        if not self._try_lock():
            raise WorkspaceBusy(f"{self.root} is held by another process")

    def _try_lock(self) -> bool:
        """Take the workspace's lock if no live process holds it; True if taken."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(self.root / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            return False  # removed meanwhile by the crawl that recovered it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if not self.root.is_dir():  # removed between our open and our lock
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def release(self) -> None:
        """Let the workspace go (another crawl may recover it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the spool --------------------------------------------------------------------

    def spool(self, page: FetchedPage) -> Path:
        """Keep a fetched page until the archive takes it. The body is written before the
        description that names it, so a crash leaves no description without its body."""
        name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        body = self.spool_dir / f"{name}.body"
        _write_atomic(body, page.body)
        description = {f.name: getattr(page, f.name) for f in fields(page) if f.name != "body"}
        try:
            _write_atomic(self.spool_dir / f"{name}.json",
                          json.dumps(description, default=_jsonable).encode())
        except BaseException:
            body.unlink(missing_ok=True)  # no body without its description either
            raise
        return self.spool_dir / f"{name}.json"

    def spooled(self) -> Iterator[tuple[Path, FetchedPage]]:
        """The spooled pages, oldest first; an unreadable one is logged and skipped."""
        if not self.spool_dir.is_dir():
            return
        for path in sorted(self.spool_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                for name in ("fetched_at", "date_hint"):
                    if data.get(name):
                        data[name] = datetime.fromisoformat(data[name])
                for name in ("request_headers", "response_headers"):
                    data[name] = [tuple(pair) for pair in data.get(name) or ()]
                data["discovered_urls"] = tuple(data.get("discovered_urls") or ())
                if data.get("warc") is not None:
                    data["warc"] = tuple(data["warc"])
                page = FetchedPage(**data, body=path.with_suffix(".body").read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                logger.error("cannot read spooled page %s: %s", path, exc)
                continue
            yield path, page

    def unspool(self, path: Path) -> None:
        """Forget a spooled page once the archive holds it."""
        path.with_suffix(".body").unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def spool_size(self) -> int:
        """How many pages wait in the spool."""
        return len(list(self.spool_dir.glob("*.json"))) if self.spool_dir.is_dir() else 0

    # -- the manifest -------------------------------------------------------------------

    def keep_manifest(self, manifest: dict) -> None:
        """Keep a run manifest the archive could not take, for the next crawl to store."""
        _write_atomic(self.root / _MANIFEST, json.dumps(manifest, default=_jsonable).encode())

    def kept_manifest(self) -> dict | None:
        try:
            return json.loads((self.root / _MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def forget_manifest(self) -> None:
        (self.root / _MANIFEST).unlink(missing_ok=True)

    # -- the end ------------------------------------------------------------------------

    def upload_leftovers(self, archive) -> None:
        """Upload what the run that died left here: its WARC files, catalog rows,
        near-duplicate index entries and run manifest (a :class:`storage.Archive`'s). Raises
        ArchiveError while the archive cannot take them; what is left stays for the next
        try."""
        from storage.catalog import recover_pending as catalog_recover
        from storage.warc import recover_pending as warc_recover

        # Only abandoned workspaces are recovered: every run in them is over.
        warc_recover(archive.backend, self.warc_dir, is_alive=lambda _run_id: False)
        catalog_recover(archive.backend, self.catalog_dir, is_alive=lambda _run_id: False)
        archive.recover_journal(self.near_dir, self.run_id)
        manifest = self.kept_manifest()
        if manifest is not None:
            archive.put_run_manifest(manifest)
            self.forget_manifest()

    def is_empty(self) -> bool:
        """Whether nothing in the workspace still waits for the archive."""
        waiting = [p for d in self._waiting_dirs if d.is_dir() for p in d.iterdir()]
        return not waiting and not (self.root / _MANIFEST).exists()

    def remove_if_done(self) -> bool:
        """Delete the workspace if nothing in it waits any more; True if it was deleted.
        The lock goes with it."""
        if not self.is_empty():
            return False
        shutil.rmtree(self.root, ignore_errors=True)
        self.release()
        return True


def workspace_root(data_dir: Path, site: str, run_id: str) -> Path:
    """Where a run's workspace lives."""
    return _site_dir(data_dir, site) / validate_run_id(run_id)


def _site_dir(data_dir: Path, site: str) -> Path:
    return Path(data_dir) / "pending" / validate_site_name(site)


def _write_atomic(path: Path, data: bytes) -> None:
    # A crawl's own state: on disk before it counts (fsync), whole or not at all.
    write_atomic(path, data, fsync=True)


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
