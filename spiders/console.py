"""What a crawl shows on its console, and where the rest of its log goes.

A crawl's console is its stderr, which ``newsarchive crawl``, ``backfill``, ``serve`` and
Prefect's workers pass through to theirs. At the default level (INFO) it gets, each line
stamped and naming the site:

- one line saying where the crawl's full log is (its file:
  :func:`spiders.interface.crawl_log_file`);
- at most one progress line every ``NEWSARCHIVE_PROGRESS_INTERVAL`` seconds
  (:class:`ProgressLog`): pages fetched, archived, duplicates, errors and the rate;
- each warning and error in one line (no traceback), the first
  :data:`CONSOLE_PROBLEM_LINES` of them; the rest are counted, and the count is said once
  the crawl is over.

Everything Scrapy logs (its banner, settings, components, stats dump, every dropped page)
goes to the crawl's log file, at INFO or at DEBUG. At DEBUG the console gets all of it too,
as Scrapy formats it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from scrapy import logformatter, signals
from scrapy.exceptions import NotConfigured

from spiders.stats import crawl_counts

logger = logging.getLogger(__name__)

CONSOLE_PROBLEM_LINES = 20
"""Warnings and errors a crawl shows on its console; the rest are in its log file only. A
site that fails every page would otherwise print thousands of lines."""

# Untrusted text (URLs and reasons from the sites crawled) must not steer the terminal, nor
# break a line in two.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def level_name(level: str) -> str:
    """A log level as logging and Scrapy name it (``debug`` -> ``DEBUG``)."""
    return str(level).strip().upper()


def log_to_file(settings, log_file: Path, level: str) -> None:
    """Have Scrapy's own log (every logger of the process) go to ``log_file``, at ``level``
    or INFO, whichever shows more, instead of the console."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_level = min(logging.getLevelName(level_name(level)), logging.INFO)
    settings.set("LOG_FILE", str(log_file), priority="cmdline")
    settings.set("LOG_LEVEL", logging.getLevelName(file_level), priority="cmdline")


class ConsoleHandler(logging.StreamHandler):
    """The crawl's console (stderr); see the module's docstring for what it shows."""

    def __init__(self, site: str, level: str, log_file: Path, log_format: str,
                 date_format: str) -> None:
        super().__init__()
        self.site = site
        self.log_file = log_file
        self.detailed = logging.getLevelName(level_name(level)) <= logging.DEBUG
        self.setLevel(level_name(level))
        if self.detailed:
            # Scrapy's detail, as Scrapy formats it (and as the log file has it).
            self.setFormatter(logging.Formatter(log_format, date_format))
        else:
            self.setFormatter(_OneLineFormatter(
                f"%(asctime)s %(levelname)s {_one_line(site)}: %(message)s"))
        self.problems = 0
        """Warnings and errors seen (shown or not)."""

    @property
    def not_shown(self) -> int:
        """Warnings and errors counted but not shown."""
        return 0 if self.detailed else max(0, self.problems - CONSOLE_PROBLEM_LINES)

    def emit(self, record: logging.LogRecord) -> None:
        if self.detailed:
            super().emit(record)
        elif record.levelno >= logging.WARNING:
            self.problems += 1
            if self.problems <= CONSOLE_PROBLEM_LINES:
                super().emit(record)
            if self.problems == CONSOLE_PROBLEM_LINES:
                super().emit(logging.makeLogRecord({
                    "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
                    "msg": "%d warnings and errors: more are counted, not shown here (all "
                           "are in %s)", "args": (CONSOLE_PROBLEM_LINES, self.log_file)}))
        elif record.name == __name__:  # the crawl's own console lines: where, progress
            super().emit(record)


class _OneLineFormatter(logging.Formatter):
    """A record in one line: its message's first line, and an exception's last line (its
    type and message) instead of the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        first, _, rest = message.partition("\n")
        if rest.strip():
            first += " [...]"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            first += f" ({error.__class__.__name__}: {error})"
        line = logging.makeLogRecord({**record.__dict__, "msg": _one_line(first), "args": None,
                                      "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(line)


def _one_line(text: str) -> str:
    return _CONTROL_CHARACTERS.sub(" ", text)


def attach_console(site: str, level: str, log_file: Path, settings) -> ConsoleHandler:
    """Add the crawl's console to the process's logging (after Scrapy has set up its own,
    to the log file) and say on it where the full log is."""
    handler = ConsoleHandler(site, level, log_file, settings.get("LOG_FORMAT"),
                             settings.get("LOG_DATEFORMAT"))
    logging.root.addHandler(handler)
    logger.info("the full log of this crawl is in %s", log_file)
    return handler


def finish_console(handler: ConsoleHandler) -> None:
    """Once the crawl is over: say how many warnings and errors its console left out."""
    if handler.not_shown:
        logger.info("%d more warnings and errors were not shown here: see %s",
                    handler.not_shown, handler.log_file)


class ProgressLog:
    """A Scrapy extension logging the crawl's progress at most once every
    ``NEWSARCHIVE_PROGRESS_INTERVAL`` seconds (a line only when something changed): pages
    discovered, fetched, archived, duplicates, errors, and pages fetched per second since
    the previous line. Each line is scheduled after the previous one, never closer."""

    def __init__(self, crawler, interval: float) -> None:
        self.crawler = crawler
        self.interval = interval
        self._call = None
        self._last: dict[str, int] = {}
        self._last_at = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler) -> ProgressLog:
        interval = crawler.settings.getfloat("NEWSARCHIVE_PROGRESS_INTERVAL")
        if interval <= 0:
            raise NotConfigured("no progress lines")
        progress = cls(crawler, interval)
        crawler.signals.connect(progress.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(progress.spider_closed, signal=signals.spider_closed)
        return progress

    def spider_opened(self, spider=None) -> None:
        self._last_at = time.monotonic()
        self._schedule()

    def spider_closed(self, spider=None) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        from twisted.internet import reactor

        self._call = reactor.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self._call = None
        counts = crawl_counts(self.crawler.stats.get_stats())
        now = time.monotonic()
        if counts != self._last:
            fetched = counts["fetched"] - self._last.get("fetched", 0)
            rate = fetched / max(now - self._last_at, 1e-9)
            logger.info("%d discovered, %d fetched, %d archived, %d duplicates, %d errors; "
                        "%.1f pages/s", counts["discovered"], counts["fetched"],
                        counts["archived"] + counts["versions"], counts["duplicates"],
                        counts["errors"], rate)
            self._last, self._last_at = counts, now
        self._schedule()


class OneLineLogFormatter(logformatter.LogFormatter):
    """Scrapy's messages about items, naming the page's URL instead of the item's repr
    (a page's whole record, over many lines); a dropped page (a duplicate, a page kept in
    the spool, one without text) is an outcome the stats count: DEBUG, not WARNING."""

    def scraped(self, item, response, spider):
        return {"level": logging.DEBUG, "msg": "Archived %(url)s",
                "args": {"url": _item_url(item)}}

    def dropped(self, item, exception, response, spider):
        return {"level": logging.DEBUG, "msg": "Dropped: %(exception)s",
                "args": {"exception": exception}}

    def item_error(self, item, exception, response, spider):
        return {"level": logging.ERROR, "msg": "Error processing %(url)s",
                "args": {"url": _item_url(item)}}


def _item_url(item) -> str:
    page = getattr(item, "page", item)  # the pipelines hand on a PageInWork, then the page
    return str(getattr(page, "url", type(item).__name__))
