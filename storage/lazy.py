"""Modules imported, and values made, on first use.

Some of storage's dependencies are heavy and needed by few of the processes that import
storage: pyarrow (some 90 MB of shared library) only to write or read the catalog, numpy only
to compute MinHash signatures. The ``newsarchive`` command, which lives as long as its crawls,
uses neither; a crawl needs pyarrow only once its run is over, after its extraction workers
have stopped, so that its peak memory is lower.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LazyModule:
    """A module, imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


def once(make: Callable[[], T]) -> Callable[[], T]:
    """``make()``, called on first use and kept for the process, like ``functools.cache`` on
    a function of no arguments, but made by one thread while the others wait: with
    ``functools.cache`` every thread that asks before the first call returns makes it too,
    and a crawl's storage threads all ask at once, with its first pages. ``cache_clear()``
    forgets it."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(make)
    def get() -> T:
        if not made:  # once made, no lock
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    def cache_clear() -> None:
        with lock:
            made.clear()

    get.cache_clear = cache_clear
    return get
