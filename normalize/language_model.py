"""The language detector's model (py3langid's), loaded once per process.

The one place of ``normalize`` that touches files: it reads the model bundled with
py3langid and, when its caller names a cache directory, keeps a decompressed copy there.
The bundled model is LZMA-compressed: decompressing it is 0.65 of the 0.82 s of CPU that
loading it takes, and every crawl loads it once (in its extraction workers' forkserver);
the copy loads in 0.18 s (README, Throughput). A copy that cannot be read or written is
no error: the model then loads from the bundled file, as without a cache.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from array import array
from importlib.metadata import version
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

logger = logging.getLogger(__name__)

_COPY_PREFIX = "py3langid-"
# A temporary copy older than this was left by a process killed while writing it (writing
# takes about a second).
_TEMPORARY_KEPT_SECONDS = 3600.0
# What reading a copy raises when it is damaged, or was not made for this py3langid.
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, BadZipFile)
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
    """The copy's file name: a new py3langid, or another model file, makes another copy."""
    bundled = (MODEL_DIR / MODEL_FILE).stat()
    return f"{_COPY_PREFIX}{version('py3langid')}-{bundled.st_size}.npz"


def _from_copy(path: Path) -> LanguageIdentifier:
    with np.load(path, allow_pickle=False) as data:
        missing = set(_ARRAYS).difference(data.files)
        if missing:
            raise KeyError(f"missing {sorted(missing)}")
        nextmove, row = (_typed_array(data[name]) for name in ("tk_nextmove", "tk_row"))
        return LanguageIdentifier(data["nb_ptc"], data["nb_pc"], data["nb_classes"].tolist(),
                                  nextmove, data["tk_output"].tolist(), norm_probs=True,
                                  tk_row=row)


def _typed_array(values: np.ndarray) -> array:
    """The stdlib array py3langid walks its automaton with (faster to index than NumPy's)."""
    typed = array({2: "H", 4: "I", 8: "L"}[values.dtype.itemsize])
    typed.frombytes(np.ascontiguousarray(values).tobytes())
    return typed


def _keep_copy(identifier: LanguageIdentifier, path: Path) -> None:
    """Write the decompressed copy whole or not at all (crawls start side by side), and only
    one that loads: a py3langid whose identifier is laid out otherwise gets none, rather
    than one rewritten, and found unreadable, by every crawl."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, **{name: getattr(identifier, name) for name in _ARRAYS})
            _from_copy(Path(temporary))
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except _UNREADABLE as exc:
        logger.warning("cannot keep a copy of the language model in %s: %s", path.parent, exc)
        return
    _remove_stale_copies(path)


def _remove_stale_copies(kept: Path) -> None:
    """Remove the copies of other py3langid versions or models (68 MB each), and what a
    process killed while writing one left, once it is surely not being written any more."""
    now = time.time()
    for other in kept.parent.glob(f"*{_COPY_PREFIX}*.npz*"):
        temporary = other.name.startswith(".")
        if other == kept or (temporary and now - _mtime(other) < _TEMPORARY_KEPT_SECONDS):
            continue
        try:
            other.unlink()
        except OSError:
            pass  # removed by another crawl meanwhile, or not ours to remove


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
