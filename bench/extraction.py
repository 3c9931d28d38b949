"""Extraction quality and speed: ours against trafilatura, in the same run, over two corpora.

    .venv/bin/python bench/extraction.py [--corpus fundus|wcxb|both] [--limit N]
        [--extractors ours,trafilatura] [--dump FILE]

Fundus (``tests/data/fundus``, 132 news pages; see tests/data/README.md): text F1 over word
4-gram shingles (precision and recall averaged over pages, F1 of those averages).

WCXB (``../shared/corpus/wcxb``, 711 article pages of the benchmark's development split;
see its README there): the benchmark's own word-level score, over the bag (multiset) of
lowercase ``\\w+`` words: precision and recall per page, averaged, F1 of those averages
(``word_f1``) and the mean of the per-page F1 (``page_f1``, the figure the benchmark's
``evaluate.py`` prints); the ``with`` rate (share of a page's must-have snippets found in the
text) and the ``without`` rate (share of its boilerplate snippets found), averaged over
the pages that have such snippets.

On both: exact title (whitespace-normalised), publication date within a day (over pages
whose truth has one), invented dates (pages whose truth has no date but the extractor gives
one), exact authors, pages with an organisation among the authors, and milliseconds per
page. The two extractors run one after the other on each page, so that a busy machine
slows both alike.

``--dump FILE`` writes one JSON line per page and extractor with its scores and what was
found, to look for the worst pages: ``jq -s 'sort_by(.word_f1)[:20]' FILE``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import trafilatura

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from normalize import Article, extract_article, jsonld  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"  # beside the clone; benchmarks may read it
FUNDUS = ROOT / "tests" / "data" / "fundus"
if not FUNDUS.is_dir():
    FUNDUS = SHARED / "fundus"
WCXB = SHARED / "wcxb"
DEFAULT_CORPUS = FUNDUS  # what tests/test_extraction.py scores


@dataclass(frozen=True)
class Extracted:
    """What one extractor found on one page, in the shape both extractors can fill."""

    text: str
    """The article's text."""
    title: str | None
    """The headline."""
    authors: list[str]
    """The author names, in the page's order."""
    published: datetime | None
    """The publication time; naive when the extractor gives only a day (trafilatura)."""


@dataclass(frozen=True)
class Page:
    """One corpus page and its ground truth."""

    id: str
    """Its path or id within the corpus, for the dump."""
    url: str
    """The page's original URL."""
    html: bytes
    """The page as saved (gzipped)."""
    truth: dict
    """The corpus' ground-truth JSON for the page."""


def as_extracted(a: Article) -> Extracted:
    """Our extractor's article in the shape both extractors fill."""
    return Extracted(a.text, a.title, list(a.authors), a.published)


def ours(html: bytes, url: str) -> Extracted:
    return as_extracted(extract_article(html, url))


def plain_trafilatura(html: bytes, url: str) -> Extracted:
    doc = trafilatura.bare_extraction(html, url=url, include_comments=False, with_metadata=True)
    if doc is None:
        return Extracted("", None, [], None)
    published = None
    if doc.date:
        published = datetime.fromisoformat(doc.date)  # day only; placed in the truth's zone below
    authors = [a.strip() for a in (doc.author or "").split(";") if a.strip()]
    return Extracted(doc.text or "", doc.title, authors, published)


EXTRACTORS: dict[str, tuple[str, Callable[[bytes, str], Extracted]]] = {
    "trafilatura": ("trafilatura", plain_trafilatura),
    "ours": ("newsarchive", ours),
}
"""Command-line name -> (name in the tables, extractor)."""


# Loading

def load_fundus(corpus: Path = FUNDUS, limit: int | None = None) -> list[Page]:
    index = json.loads((corpus / "index.json").read_text())[:limit]
    return [Page(e["file"], e["url"], (corpus / e["file"]).read_bytes(),
                 json.loads((corpus / e["truth"]).read_text())) for e in index]


def load_wcxb(corpus: Path = WCXB, limit: int | None = None) -> list[Page]:
    index = json.loads((corpus / "index.json").read_text())[:limit]
    return [Page(e["id"], e["url"], (corpus / e["html"]).read_bytes(),
                 json.loads((corpus / e["truth"]).read_text())) for e in index]


# Text measures

def words(text: str | None) -> list[str]:
    return re.findall(r"\w+", (text or "").lower())


def shingles(text: str) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + 4]) for i in range(max(1, len(w) - 3))} if w else set()


def fundus_text(truth: dict) -> str:
    body = truth.get("body") or {}
    parts = list(body.get("summary", []))
    for section in body.get("sections", []):
        parts += section.get("headline", []) + section.get("paragraphs", [])
    return "\n".join(parts)



def shingle_scores(got: str, want: str) -> dict[str, float]:
    gold, mine = shingles(want), shingles(got)
    common = len(gold & mine)
    return {"precision": common / len(mine) if mine else 0.0,
            "recall": common / len(gold) if gold else 0.0}


def word_scores(got: str, want: str) -> dict[str, float]:
    """The benchmark's word-level precision, recall and F1 of one page (its ``word_f1``: an
    empty truth scores 1 when nothing is extracted, 0 otherwise)."""
    mine, gold = Counter(words(got)), Counter(words(want))
    if not gold:
        p = r = f = float(not mine)
    elif not mine:
        p = r = f = 0.0
    else:
        common = sum((mine & gold).values())
        p, r = common / sum(mine.values()), common / sum(gold.values())
        f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "page_f1": f}


def _norm(value: str | None) -> str:
    return re.sub(r"\s+", " ", value or "").strip()


def snippet_rate(text: str, snippets: list[str]) -> float | None:
    """The share of ``snippets`` found in ``text`` (the benchmark's case-insensitive substring
    test, with runs of whitespace made one space on both sides, since extractors differ in
    where they break lines); None when there are none to look for."""
    if not snippets:
        return None
    haystack = _norm(text).lower()
    return sum(_norm(s).lower() in haystack for s in snippets) / len(snippets)


# Metadata measures

def _within_a_day(have: datetime | None, want: str) -> bool:
    if have is None:
        return False
    want = want.strip()
    if len(want) < 10:  # a month or a year alone: the same month or year
        return have.date().isoformat()[:len(want)] == want
    if len(want) == 10:  # a day alone (WCXB): compare days, each in its own zone
        return abs(have.date() - date.fromisoformat(want)) <= timedelta(days=1)
    wanted = datetime.fromisoformat(want)
    if wanted.tzinfo is None:
        wanted = wanted.replace(tzinfo=timezone.utc)
    if have.tzinfo is None:  # a date alone: that day in the publisher's zone
        have = have.replace(tzinfo=wanted.tzinfo)
    return abs((have - wanted).total_seconds()) <= 86400


def _within_two_minutes(have: datetime | None, want: str) -> bool:
    if have is None:
        return False
    wanted = datetime.fromisoformat(want)
    if wanted.tzinfo is None:
        wanted = wanted.replace(tzinfo=timezone.utc)
    if have.tzinfo is None:
        have = have.replace(tzinfo=wanted.tzinfo)
    return abs((have - wanted).total_seconds()) <= 120


def _name_words(names: list[str]) -> Counter:
    # "A, B and C" and ["A", "B", "C"] name the same people.
    return Counter(w for n in names for w in words(n) if w not in ("and", "und", "by"))


def _squash(name: str | None) -> str:
    return "".join(words(name))


ORGANISATION_TYPES = re.compile(r"Organi[sz]ation$|^(Corporation|LocalBusiness|NGO|WebSite|Brand)$")


def organisation_names(html: bytes, url: str) -> set[str]:
    """Names by which the page calls its publisher or site, squashed to letters and digits:
    JSON-LD objects of an organisation or website type, ``og:site_name`` and
    ``application-name``, and the first label of the host past ``www.``. Persons the
    JSON-LD names are taken out again: a personal site's name is its author's."""
    try:
        tree = lxml.html.fromstring(gzip.decompress(html))
    except (ValueError, lxml.etree.ParserError):
        return set()
    names, persons = set(), set()
    for script in jsonld.scripts(tree):
        for node in jsonld.objects(jsonld.parse(script), into=None):
            types = node.get("@type")
            types = types if isinstance(types, list) else [types]
            name = node.get("name")
            if not isinstance(name, str):
                continue
            if any(isinstance(t, str) and ORGANISATION_TYPES.search(t) for t in types):
                names.add(_squash(name))
            if "Person" in types:
                persons.add(_squash(name))
    for meta in tree.iter("meta"):
        kind = (meta.get("property") or meta.get("name") or "").lower()
        if kind in ("og:site_name", "application-name"):
            names.add(_squash(meta.get("content")))
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    if host:
        names.add(_squash(host.split(".")[0]))
    return {n for n in names if len(n) >= 2} - persons


def organisations_among(authors: list[str], orgs: set[str], truth_authors: list[str]) -> list[str]:
    """The ``authors`` that name the page's publisher or site (equal to one of ``orgs``, or
    one of them followed by a word such as "online" or "staff"), unless the truth names
    them as authors too."""
    truth = {_squash(a) for a in truth_authors} | {"".join(words(" ".join(truth_authors)))}
    found = []
    for author in authors:
        squashed = _squash(author)
        if squashed in truth:
            continue
        if squashed in orgs or any(len(o) >= 4 and squashed.startswith(o) for o in orgs):
            found.append(author)
    return found


# Scoring

def page_scores(kind: str, page: Page, got: Extracted, orgs: set[str]) -> dict:
    """Every measure of one page for one extractor, with what was found and wanted."""
    truth = page.truth
    if kind == "fundus":
        text = shingle_scores(got.text, fundus_text(truth))
        want_authors = list(truth.get("authors") or [])
        want_date = truth.get("publishing_date")
    else:
        text = word_scores(got.text, truth.get("main_content") or "")
        text["with"] = snippet_rate(got.text, truth.get("with") or [])
        text["without"] = snippet_rate(got.text, truth.get("without") or [])
        want_authors = [truth["author"]] if truth.get("author") else []
        want_date = truth.get("publish_date")
    row = {
        **text,
        "title": _norm(got.title) == _norm(truth.get("title")),
        # Fundus lists its authors; WCXB writes them in one string ("A, B and C").
        "authors": ({_norm(a) for a in got.authors} == {_norm(a) for a in want_authors}
                    if kind == "fundus" else _name_words(got.authors) == _name_words(want_authors)),
        "date_1d": _within_a_day(got.published, want_date) if want_date else None,
        "invented_date": got.published is not None and not want_date,
        "org_authors": organisations_among(got.authors, orgs, want_authors),
        "got": {"title": got.title, "authors": got.authors,
                "published": got.published.isoformat() if got.published else None,
                "chars": len(got.text)},
        "want": {"title": truth.get("title"), "authors": want_authors, "published": want_date},
    }
    if kind == "fundus":
        row["date_2min"] = _within_two_minutes(got.published, want_date) if want_date else None
    return row


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r[key] is not None]
    return sum(values) / len(values) if values else 0.0


def summarise(kind: str, name: str, rows: list[dict], seconds: float) -> dict:
    """One table row: the per-page measures averaged (dates over the dated pages, snippet
    rates over the pages that have snippets); counts for invented dates and organisations."""
    p, r = _mean(rows, "precision"), _mean(rows, "recall")
    summary: dict = {"extractor": name}
    if kind == "fundus":
        summary.update(text_f1=2 * p * r / (p + r) if p + r else 0.0, precision=p, recall=r)
    else:
        summary.update(word_f1=2 * p * r / (p + r) if p + r else 0.0,
                       page_f1=_mean(rows, "page_f1"), precision=p, recall=r,
                       with_=_mean(rows, "with"), without=_mean(rows, "without"))
    summary.update(title=_mean(rows, "title"), date_1d=_mean(rows, "date_1d"))
    if kind == "fundus":
        summary["date_2min"] = _mean(rows, "date_2min")
    summary.update(
        invented_dates=sum(r["invented_date"] for r in rows),
        authors=_mean(rows, "authors"),
        org_authors=sum(bool(r["org_authors"]) for r in rows),
        ms_per_page=seconds / len(rows) * 1000 if rows else 0.0,
    )
    return summary


def run(kind: str, pages: list[Page], extractors: dict[str, Callable[[bytes, str], Extracted]]
        ) -> tuple[list[dict], Iterator[dict]]:
    """Each extractor over ``pages``, taking turns page by page: a summary per extractor
    and the per-page rows (for ``--dump``)."""
    for extract in extractors.values():  # load models and caches before the clock runs
        extract(gzip.decompress(pages[0].html), pages[0].url)
    rows: dict[str, list[dict]] = {name: [] for name in extractors}
    seconds = dict.fromkeys(extractors, 0.0)
    for page in pages:
        html = gzip.decompress(page.html)
        orgs = organisation_names(page.html, page.url)
        for name, extract in extractors.items():
            started = time.perf_counter()
            got = extract(html, page.url)
            seconds[name] += time.perf_counter() - started
            row = page_scores(kind, page, got, orgs)
            rows[name].append({"corpus": kind, "id": page.id, "url": page.url, "extractor": name,
                               **row})
    summaries = [summarise(kind, name, rows[name], seconds[name]) for name in extractors]
    return summaries, (row for name in extractors for row in rows[name])


def score(name: str, extract: Callable[[bytes, str], Extracted], pages: list[Page],
          kind: str = "fundus") -> dict:
    """One extractor's summary over ``pages`` of corpus ``kind`` (for the golden tests)."""
    summaries, _ = run(kind, pages, {name: extract})
    return summaries[0]


def print_table(kind: str, corpus: Path, n: int, summaries: list[dict]) -> None:
    print(f"\n{kind}: {n} pages from {corpus}")
    columns = [c for c in summaries[0] if c != "extractor"]
    print(f"{'':>16}" + "".join(f"{c.rstrip('_'):>15}" for c in columns))
    for s in summaries:
        print(f"{s['extractor']:>16}" + "".join(
            f"{s[c]:>15.3f}" if isinstance(s[c], float) else f"{s[c]:>15}" for c in columns))
    if len(summaries) == 2:
        base, mine = summaries
        diffs = "".join(f"{mine[c] - base[c]:>+15.3f}" if isinstance(mine[c], float)
                        else f"{mine[c] - base[c]:>+15d}" for c in columns[:-1])
        ratio = mine["ms_per_page"] / base["ms_per_page"] if base["ms_per_page"] else float("nan")
        print(f"{'difference':>16}" + diffs + f"{ratio:>14.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=("fundus", "wcxb", "both"), default="both")
    parser.add_argument("--fundus-dir", type=Path, default=FUNDUS)
    parser.add_argument("--wcxb-dir", type=Path, default=WCXB)
    parser.add_argument("--limit", type=int, default=None, help="the first N pages of each corpus")
    parser.add_argument("--extractors", default="trafilatura,ours",
                        help="comma-separated, of: " + ", ".join(EXTRACTORS))
    parser.add_argument("--dump", type=Path, help="write per-page scores here, one JSON line each")
    args = parser.parse_args()
    chosen = [e.strip() for e in args.extractors.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in EXTRACTORS]
    if unknown or not chosen:
        parser.error(f"unknown extractor {', '.join(unknown) or '(none)'}; "
                     f"choose from {', '.join(EXTRACTORS)}")
    # trafilatura first, so that the difference row reads ours minus trafilatura.
    extractors = dict(EXTRACTORS[e] for e in EXTRACTORS if e in chosen)
    kinds = ["fundus", "wcxb"] if args.corpus == "both" else [args.corpus]
    dump = args.dump.open("w") if args.dump else None
    try:
        for kind in kinds:
            corpus = args.fundus_dir if kind == "fundus" else args.wcxb_dir
            pages = (load_fundus if kind == "fundus" else load_wcxb)(corpus, args.limit)
            summaries, rows = run(kind, pages, extractors)
            print_table(kind, corpus, len(pages), summaries)
            if dump:
                for row in rows:
                    dump.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if dump:
            dump.close()
    print("\nms/page is the least steady column: compare rows of one run. "
          "Counts: invented_dates, org_authors (pages).")


if __name__ == "__main__":
    main()
