"""Local files written whole or not at all: the one way this project replaces a local file.

A file is written under a temporary name beside its target and renamed over it: rename is
atomic within a directory, so a reader, or a crash, sees the old file or the new one, never
half of one. A write that fails (a full disk, a quota, a read-only file system) removes its
temporary file before the OSError reaches the caller, so nothing is left behind. Temporary
names start with a dot (``.<name>.tmp-<random>``): listings of the archive skip them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary name in ``path``'s directory (``.<name>.tmp-<random>``): unique,
    so concurrent writers of one target never write into each other's file."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


def write_temp(path: Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` and return its name, for the
    caller to rename (or link) into place. ``fsync``: the bytes reach the disk before this
    returns. Raises OSError, having removed the temporary file."""
    tmp = temporary_sibling(Path(path))
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        remove_quietly(tmp)  # half a file (a full disk) must not stay behind
        raise
    return tmp


def write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data``, whole or not at all (see the module's docstring).

    ``fsync``: the bytes reach the disk before the rename, so that after a power cut the
    file holds the old bytes or the new ones, never an empty file (what a crawl's own state
    needs; an archive object can be written again). The directory must exist. Raises
    OSError, having removed the temporary file."""
    path = Path(path)
    tmp = write_temp(path, data, fsync=fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists (False then, nothing written): the
    create-if-absent of a complete file, the name never showing a partial one. Raises
    OSError, having removed what it wrote."""
    path = Path(path)
    tmp = write_temp(path, data)
    try:
        # link(2) is the O_CREAT|O_EXCL of a complete file: it fails if the name exists,
        # and the winner's content is in place the moment the name appears.
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        # File systems without hard links: fall back to O_EXCL and write in place.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            remove_quietly(path)  # whole or absent
            raise
        return True
    finally:
        remove_quietly(tmp)


def copy_atomic(source: Path, path: Path) -> None:
    """Replace ``path`` with a copy of the file ``source``, whole or not at all, streamed
    (never read whole into memory). Raises OSError (of either file), having removed the
    temporary file."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path: Path) -> None:
    """Remove a file if it is there; a directory that has become unusable (removed, or
    read-only) has none to remove, and its error is not the one worth reporting."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass
