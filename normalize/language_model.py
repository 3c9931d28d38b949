"""The language detector's model (py3langid's), loaded once per process.

The one place of ``normalize`` that touches files: it reads the model bundled with
py3langid and, when its caller names a cache directory, keeps a decompressed copy there.
The bundled model is LZMA-compressed: decompressing it is 0.65 of the 0.82 s of CPU that
loading it takes, and every crawl loads it once (in its extraction workers' forkserver).
The copy is a directory of one ``.npy`` file per array, which the identifier *maps* rather
than reads: loading it costs 0.01 s of CPU, not the 0.14-0.27 s of reading and converting
68 MB, and the pages are the page cache's, shared by every crawl that runs at the same time
instead of 68 MB of each crawl's own memory (README, Throughput). A copy that cannot be
read or written is no error: the model then loads from the bundled file, as without a cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

logger = logging.getLogger(__name__)

_COPY_PREFIX = "py3langid-"
# A temporary copy older than this was left by a process killed while writing it (writing
# takes about a second).
_TEMPORARY_KEPT_SECONDS = 3600.0
# What reading a copy raises when it is damaged, or was not made for this py3langid.
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError)
# The arrays of the copy, named as LanguageIdentifier's attributes that hold them.
_ARRAYS = ("nb_ptc", "nb_pc", "nb_classes", "tk_nextmove", "tk_row", "tk_output")


def load_identifier(cache_dir: Path | None = None) -> LanguageIdentifier:
    """py3langid's identifier with its bundled model, probabilities normalised; from the
    decompressed copy in ``cache_dir`` when there is one, else from the bundled file, then
    kept there for the next process."""
    if cache_dir is None:
        return _from_bundled_model()
    copy = cache_dir / _copy_name()
    try:
        return _from_copy(copy)
    except FileNotFoundError:
        pass
    except _UNREADABLE as exc:  # damaged (cut short, overwritten): made again below
        logger.warning("the language model's copy %s is unreadable (%s): loading the "
                       "bundled model", copy, exc)
    identifier = _from_bundled_model()
    _keep_copy(identifier, copy)
    return identifier


def _from_bundled_model() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _copy_name() -> str:
    """The copy's directory name: a new py3langid, or another model file, makes another
    copy (and an earlier copy was a single ``.npz`` file, read whole: see
    :func:`_remove_stale_copies`)."""
    bundled = (MODEL_DIR / MODEL_FILE).stat()
    return f"{_COPY_PREFIX}{version('py3langid')}-{bundled.st_size}"


def _from_copy(directory: Path) -> LanguageIdentifier:
    arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
              for name in _ARRAYS}
    if any(arrays[name].ndim != 1 for name in ("tk_nextmove", "tk_row")):
        raise ValueError("the automaton's arrays are not flat")
    # py3langid walks its automaton by indexing one number at a time: a memoryview of the
    # mapped array indexes as fast as the stdlib array it builds itself, without a copy.
    return LanguageIdentifier(arrays["nb_ptc"], np.asarray(arrays["nb_pc"]),
                              arrays["nb_classes"].tolist(), memoryview(arrays["tk_nextmove"]),
                              arrays["tk_output"].tolist(), norm_probs=True,
                              tk_row=memoryview(arrays["tk_row"]))


def _keep_copy(identifier: LanguageIdentifier, path: Path) -> None:
    """Write the copy whole or not at all (crawls start side by side: it is written in a
    temporary directory, then renamed), and only one that loads: a py3langid whose
    identifier is laid out otherwise gets none, rather than one rewritten, and found
    unreadable, by every crawl. A damaged copy at ``path`` is replaced."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            for name in _ARRAYS:
                np.save(temporary / f"{name}.npy", np.asarray(getattr(identifier, name)),
                        allow_pickle=False)
            _from_copy(temporary)
            _put_in_place(temporary, path)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)  # gone when it was put in place
    except _UNREADABLE as exc:
        logger.warning("cannot keep a copy of the language model in %s: %s", path.parent, exc)
        return
    _remove_stale_copies(path)


def _put_in_place(made: Path, path: Path) -> None:
    """Rename the directory ``made`` to ``path``; a damaged copy there is moved aside first
    and removed. Another crawl that put its own copy in place meanwhile wins: both are
    whole."""
    try:
        os.rename(made, path)
        return
    except OSError:
        if not path.exists():
            raise
    try:
        _from_copy(path)
        return  # whole: another crawl's
    except _UNREADABLE:
        pass
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.damaged."))
    os.rename(path, aside / "copy")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(made, path)


def _remove_stale_copies(kept: Path) -> None:
    """Remove the copies of other py3langid versions or models (68 MB each; earlier
    versions of newsarchive kept a single ``.npz`` file), and what a process killed while
    writing one left, once it is surely not being written any more."""
    now = time.time()
    for other in kept.parent.glob(f"*{_COPY_PREFIX}*"):
        temporary = other.name.startswith(".")
        if other == kept or (temporary and now - _mtime(other) < _TEMPORARY_KEPT_SECONDS):
            continue
        try:
            if other.is_dir() and not other.is_symlink():
                shutil.rmtree(other)
            else:
                other.unlink()
        except OSError:
            pass  # removed by another crawl meanwhile, or not ours to remove


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
