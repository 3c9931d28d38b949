"""The article body: trafilatura on a tree pruned of recommendation boxes, and a second look
for pages that ship their article inside a script or in JSON-LD only."""

from __future__ import annotations

import json
import re
from typing import Any

import lxml.etree
import trafilatura
from lxml.html import HtmlElement

# Shortest embedded HTML string worth treating as an article body in the second look.
_MIN_EMBEDDED_BODY = 400
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.){%d,})"' % _MIN_EMBEDDED_BODY, re.S)
# Containers named for recommendations; matched on class, id and data-component. "teaser"
# alone is not here: German sites call the lead paragraph the Teaser.
_RECOMMENDATION_PATTERN = (
    "recommend|related-?(articles|content|stories)|outbrain|taboola|read-?also|more-?stories"
)
_RECOMMENDATION_XPATH = lxml.etree.XPath(
    "//body//*[re:test(concat(@class, ' ', @id, ' ', @data-component), $pattern, 'i')]",
    namespaces={"re": "http://exslt.org/regular-expressions"},
)


def extract_body(tree: HtmlElement, url: str | None, article_body: str | None = None
                 ) -> tuple[str, Any]:
    """The article text of a parsed page (the tree is pruned in place), and trafilatura's
    document, whose metadata serves as the last resort of the metadata cascade.

    ``article_body`` is the JSON-LD ``articleBody``, if the page has one."""
    # The second look reads scripts, which trafilatura removes: collect them first.
    scripts = [s.text or "" for s in tree.iter("script")]
    headlines = _headlines(tree)
    _drop_recommendations(tree)
    doc = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, include_tables=True,
        deduplicate=False,
    )
    text = (getattr(doc, "text", None) or "").strip()
    text = _drop_leading_headlines(text, headlines)
    if not text:
        text = _second_look(scripts, article_body)
    return text, doc


def _drop_recommendations(tree: HtmlElement) -> None:
    """Remove "read also" boxes and recommendation widgets: lists of links to other
    articles that sit inside the article body, where trafilatura keeps them."""
    for el in _RECOMMENDATION_XPATH(tree, pattern=_RECOMMENDATION_PATTERN):
        parent = el.getparent()
        if parent is not None and el.tag not in ("html", "body"):
            parent.remove(el)


def _second_look(scripts: list[str], article_body: str | None) -> str:
    """Text for pages whose body is not in the markup: the JSON-LD ``articleBody``, else the
    longest HTML fragment embedded as a JSON string in a script (client-rendered pages)."""
    if article_body and len(article_body) >= _MIN_EMBEDDED_BODY:
        return article_body.strip()
    best = ""
    for source in scripts:
        if "\\u003cp" not in source and "<p" not in source:
            continue
        for match in _JSON_STRING.finditer(source):
            try:
                fragment = json.loads(f'"{match.group(1)}"')
            except ValueError:
                continue
            if "<p" in fragment and len(fragment) > len(best):
                best = fragment
    if not best:
        return ""
    doc = trafilatura.bare_extraction(
        f"<html><body><article>{best}</article></body></html>",
        include_comments=False, include_tables=True, deduplicate=False,
    )
    return (getattr(doc, "text", None) or "").strip()


_SPACE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACE.sub("", text).casefold()


def _headlines(tree: HtmlElement) -> set[str]:
    found = {h.text_content() for h in tree.iter("h1")}
    for el in tree.iter("meta"):
        if (el.get("property") or el.get("name") or "").lower() in ("og:title", "twitter:title"):
            found.add(el.get("content") or "")
    return {s for s in map(_squash, found) if s}


def _drop_leading_headlines(text: str, headlines: set[str], window: int = 5) -> str:
    lines = text.split("\n")
    head = [l for l in lines[:window] if _squash(l) not in headlines]
    return "\n".join(head + lines[window:]).strip()
