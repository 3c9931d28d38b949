"""A crawl's local workspace: what it fetched but has not yet put in the archive.

``<data_dir>/pending/<site>/<run_id>/`` holds the run's WARC files until they are uploaded,
its catalog rows until they become Parquet, its manifest until it is stored, and pages that
could not be stored while the archive was unreachable (the spool). A run that ends well
leaves nothing behind; a run that dies (SIGKILL, a lost machine) leaves its workspace to the
next crawl of the same site on this machine, which finishes its work. ``owner.json`` says
which process owns a workspace, so a live crawl's workspace is never taken over.
"""

from __future__ import annotations

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
from storage.archive import process_alive
from storage.keys import validate_run_id, validate_site_name

logger = logging.getLogger(__name__)

_OWNER = "owner.json"
_MANIFEST = "manifest.json"


class Workspace:
    """The local workspace of one run of one site."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool_dir = root / "spool"
        self.warc_dir = root / "warc"
        self.catalog_dir = root / "catalog"

    @classmethod
    def create(cls, data_dir: Path, site: str, run_id: str) -> Workspace:
        """The workspace of this process's run, owned by this process."""
        workspace = cls(_site_dir(data_dir, site) / validate_run_id(run_id))
        for directory in (workspace.spool_dir, workspace.warc_dir, workspace.catalog_dir):
            directory.mkdir(parents=True, exist_ok=True)
        owner = {"run_id": run_id, "site": site, "host": socket.gethostname(),
                 "pid": os.getpid(), "started_at": datetime.now(timezone.utc).isoformat()}
        _write_atomic(workspace.root / _OWNER, json.dumps(owner).encode())
        return workspace

    @classmethod
    def abandoned(cls, data_dir: Path, site: str) -> list[Workspace]:
        """Workspaces of this site whose owning process no longer runs on this machine."""
        directory = _site_dir(data_dir, site)
        if not directory.is_dir():
            return []
        return [cls(path) for path in sorted(directory.iterdir())
                if path.is_dir() and not cls(path).owner_alive()]

    @property
    def run_id(self) -> str:
        return self.root.name

    def owner_alive(self) -> bool:
        """Whether the process that owns this workspace still runs."""
        try:
            owner = json.loads((self.root / _OWNER).read_text())
        except (OSError, ValueError):
            return False  # never finished being created: nobody owns it
        if owner.get("host") != socket.gethostname():
            return True  # a shared data directory: not ours to judge
        return owner.get("pid") == os.getpid() or process_alive(int(owner.get("pid", 0)))

    # -- the spool --------------------------------------------------------------------

    def spool(self, page: FetchedPage) -> Path:
        """Keep a fetched page until the archive takes it. The body is written before the
        description that names it, so a crash leaves no description without its body."""
        name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        _write_atomic(self.spool_dir / f"{name}.body", page.body)
        description = {f.name: getattr(page, f.name) for f in fields(page) if f.name != "body"}
        _write_atomic(self.spool_dir / f"{name}.json",
                      json.dumps(description, default=_jsonable).encode())
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

    def is_empty(self) -> bool:
        """Whether nothing in the workspace still waits for the archive."""
        waiting = [p for d in (self.spool_dir, self.warc_dir, self.catalog_dir) if d.is_dir()
                   for p in d.iterdir()]
        return not waiting and not (self.root / _MANIFEST).exists()

    def remove_if_done(self) -> bool:
        """Delete the workspace if nothing in it waits any more; True if it was deleted."""
        if not self.is_empty():
            return False
        shutil.rmtree(self.root, ignore_errors=True)
        return True


def workspace_root(data_dir: Path, site: str, run_id: str) -> Path:
    """Where a run's workspace lives."""
    return _site_dir(data_dir, site) / validate_run_id(run_id)


def _site_dir(data_dir: Path, site: str) -> Path:
    return Path(data_dir) / "pending" / validate_site_name(site)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
