"""Modules imported on first use.

Some of storage's dependencies are heavy and needed by few of the processes that import
storage: pyarrow (some 90 MB of shared library) only to write or read the catalog, numpy only
to compute MinHash signatures. The ``newsarchive`` command, which lives as long as its crawls,
uses neither; a crawl needs pyarrow only once its run is over, after its extraction workers
have stopped, so that its peak memory is lower.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module, imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)
