"""Extraction quality and speed: ours against trafilatura, in the same run, over the corpus.

    .venv/bin/python bench/extraction.py [--corpus DIR]

Scores per extractor, averaged over pages: text F1 over word 4-gram shingles (precision
and recall averaged over pages, F1 of those averages), exact title, publication date within
a day and within two minutes, exact author set, and milliseconds per page. The ground truth
is the corpus' JSON (see tests/data/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import trafilatura

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from normalize import extract_article  # noqa: E402

DEFAULT_CORPUS = ROOT / "tests" / "data" / "fundus"


@dataclass
class Extracted:
    text: str
    title: str | None
    authors: list[str]
    published: datetime | None


def ours(html: bytes, url: str) -> Extracted:
    a = extract_article(html, url)
    return Extracted(a.text, a.title, list(a.authors), a.published)


def plain_trafilatura(html: bytes, url: str) -> Extracted:
    doc = trafilatura.bare_extraction(html, url=url, with_metadata=True)
    if doc is None:
        return Extracted("", None, [], None)
    published = None
    if doc.date:
        published = datetime.fromisoformat(doc.date)  # day only; placed in the truth's zone below
    authors = [a.strip() for a in (doc.author or "").split(";") if a.strip()]
    return Extracted(doc.text or "", doc.title, authors, published)


def shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 4]) for i in range(max(1, len(words) - 3))} if words else set()


def truth_text(truth: dict) -> str:
    body = truth.get("body") or {}
    parts = list(body.get("summary", []))
    for section in body.get("sections", []):
        parts += section.get("headline", []) + section.get("paragraphs", [])
    return "\n".join(parts)


def _norm(value: str | None) -> str:
    return re.sub(r"\s+", " ", value or "").strip()


def score(name, extract, pages) -> dict[str, float]:
    precision = recall = title = day = two_min = authors = dated = 0.0
    elapsed = 0.0
    for page in pages:
        html = gzip.decompress(page["html"])
        started = time.perf_counter()
        got = extract(html, page["url"])
        elapsed += time.perf_counter() - started
        truth = page["truth"]
        gold, mine = shingles(truth_text(truth)), shingles(got.text)
        common = len(gold & mine)
        precision += common / len(mine) if mine else 0.0
        recall += common / len(gold) if gold else 0.0
        title += _norm(got.title) == _norm(truth.get("title"))
        authors += {_norm(a) for a in got.authors} == {_norm(a) for a in truth.get("authors") or []}
        if truth.get("publishing_date"):
            dated += 1
            want = datetime.fromisoformat(truth["publishing_date"])
            if want.tzinfo is None:
                want = want.replace(tzinfo=timezone.utc)
            have = got.published
            if have is not None:
                if have.tzinfo is None:  # a date alone: that day in the publisher's zone
                    have = have.replace(tzinfo=want.tzinfo)
                delta = abs((have - want).total_seconds())
                day += delta <= 86400
                two_min += delta <= 120
    n = len(pages)
    p, r = precision / n, recall / n
    return {
        "extractor": name,
        "text_f1": 2 * p * r / (p + r) if p + r else 0.0,
        "precision": p,
        "recall": r,
        "title": title / n,
        "date_1d": day / dated if dated else 0.0,
        "date_2min": two_min / dated if dated else 0.0,
        "authors": authors / n,
        "ms_per_page": elapsed / n * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    index = json.loads((args.corpus / "index.json").read_text())
    pages = [
        {"url": e["url"], "html": (args.corpus / e["file"]).read_bytes(),
         "truth": json.loads((args.corpus / e["truth"]).read_text())}
        for e in index
    ]
    rows = [score("trafilatura", plain_trafilatura, pages), score("newsarchive", ours, pages)]
    columns = list(rows[0])
    print(f"{len(pages)} pages from {args.corpus}")
    print("  ".join(f"{c:>12}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]:>12.3f}" if isinstance(row[c], float) else f"{row[c]:>12}"
                        for c in columns))
    base, mine = rows
    print(f"ms/page ratio newsarchive/trafilatura: {mine['ms_per_page'] / base['ms_per_page']:.2f}")


if __name__ == "__main__":
    main()
