"""Site-level boilerplate: lines that recur across many pages of one site.

Extraction works page by page and cannot know that "Sign up for our daily briefing" ends
every article of a site. ``SiteBoilerplate`` learns such lines from the texts of a site's
pages (counting each line once per page) and strips them. It is pure: the caller decides
where its state lives (``to_json``/``from_json``) and which pages it sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SPACE = re.compile(r"\s+")


def normalize_line(line: str) -> str:
    """A line as the learner compares it: whitespace collapsed, stripped, casefolded."""
    return _SPACE.sub(" ", line).strip().casefold()


def _is_learned(line: str, threshold: float, counts: dict[str, int], known: frozenset[str]) -> bool:
    return bool(line) and (line in known or counts.get(line, 0) >= threshold)


class SiteBoilerplate:
    """Learns lines that recur across many pages of one site and strips them."""

    MAX_LINE_CHARS = 300
    """Longer lines are never learned: they are story paragraphs, even when syndicated."""

    MAX_TRACKED_LINES = 50_000
    """At most this many distinct lines are counted; when over, the rarest are dropped."""

    def __init__(self, min_pages: int = 5, min_share: float = 0.3, known: Iterable[str] = ()) -> None:
        """``min_pages``: how many pages a line must be seen on to be learned; ``min_share``:
        the share of observed pages it must be seen on; ``known``: lines to strip from the
        start (e.g. carried over from configuration)."""
        self.min_pages = max(1, int(min_pages))
        self.min_share = float(min_share)
        self._known = frozenset(n for n in map(normalize_line, known) if n)
        self._counts: dict[str, int] = {}
        self._pages = 0

    @property
    def pages(self) -> int:
        """How many pages (with at least one non-empty line) have been observed."""
        return self._pages

    def observe(self, text: str) -> None:
        """Count each distinct normalised line of one page's text once."""
        if isinstance(text, str):
            self._count(map(normalize_line, text.split("\n")))

    def observe_and_strip(self, text: str) -> str:
        """:meth:`observe` then :meth:`strip`, normalising each line of the text once."""
        if not isinstance(text, str):
            return ""
        lines = text.split("\n")
        normalized = [normalize_line(line) for line in lines]
        self._count(normalized)
        return self._strip(lines, normalized)

    def _count(self, normalized: Iterable[str]) -> None:
        lines = {n for n in normalized if n}
        if not lines:
            return
        self._pages += 1
        lines = {n for n in lines if len(n) <= self.MAX_LINE_CHARS}
        # Sorted, so which lines enter first (and survive ties when pruning) does not
        # depend on set iteration order.
        for line in sorted(lines):
            self._counts[line] = self._counts.get(line, 0) + 1
        if len(self._counts) > self.MAX_TRACKED_LINES:
            self._drop_rarest()

    def _threshold(self) -> float:
        return max(self.min_pages, self.min_share * self._pages)

    def learned(self) -> frozenset[str]:
        """Normalised lines seen on at least ``min_pages`` pages and on at least
        ``min_share`` of the observed pages, plus the ``known`` lines."""
        threshold = self._threshold()
        return self._known | frozenset(line for line, n in self._counts.items() if n >= threshold)

    def strip(self, text: str) -> str:
        """``text`` without the lines whose normalised form is learned; the other lines are
        kept as they are, in their order."""
        if not isinstance(text, str):
            return ""
        lines = text.split("\n")
        return self._strip(lines, [normalize_line(line) for line in lines])

    def _strip(self, lines: list[str], normalized: list[str]) -> str:
        # Each of the page's lines is looked up, rather than building the learned set: that
        # set is rebuilt from every counted line, and a long crawl counts tens of thousands.
        threshold, counts, known = self._threshold(), self._counts, self._known
        kept = [line for line, key in zip(lines, normalized)
                if not _is_learned(key, threshold, counts, known)]
        return "\n".join(kept)

    def to_json(self) -> dict[str, Any]:
        """The learner's state as JSON-serialisable data (see ``from_json``)."""
        return {
            "version": 1,
            "min_pages": self.min_pages,
            "min_share": self.min_share,
            "pages": self._pages,
            "counts": dict(self._counts),
            "known": sorted(self._known),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteBoilerplate:
        """A learner with the state ``to_json`` produced. Malformed parts are ignored, so
        a damaged state file gives a (partly) fresh learner rather than an error."""
        data = data if isinstance(data, dict) else {}
        try:
            learner = cls(min_pages=data.get("min_pages", 5), min_share=data.get("min_share", 0.3),
                          known=[k for k in data.get("known") or () if isinstance(k, str)])
        except (TypeError, ValueError):
            learner = cls()
        pages = data.get("pages")
        learner._pages = pages if isinstance(pages, int) and pages >= 0 else 0
        counts = data.get("counts")
        if isinstance(counts, dict):
            for line, n in counts.items():
                if isinstance(line, str) and isinstance(n, int) and n > 0:
                    key = normalize_line(line)
                    if key and len(key) <= cls.MAX_LINE_CHARS:
                        learner._counts[key] = learner._counts.get(key, 0) + n
        if len(learner._counts) > cls.MAX_TRACKED_LINES:
            learner._drop_rarest()
        return learner

    def _drop_rarest(self) -> None:
        """Bring the number of counted lines down to 90% of the limit, dropping the rarest
        (and, among equally rare ones, those counted first: they had longer to recur).
        Going below the limit spreads the cost of sorting over many observations."""
        keep = self.MAX_TRACKED_LINES * 9 // 10
        ranked = sorted(self._counts.items(), key=lambda item: item[1])  # stable: oldest first
        self._counts = dict(ranked[len(ranked) - keep:])
