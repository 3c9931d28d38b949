"""``normalize.jsonld``: the one reader of a page's JSON-LD, for the metadata cascade and the
soft-block check alike."""

from __future__ import annotations

import json

import lxml.html

from normalize import extract_article, is_article_page, jsonld
from normalize.softblock import PageKind, classify_page


def _page(*blocks: object, script_type: str = "application/ld+json") -> str:
    scripts = "".join(f'<script type="{script_type}">{json.dumps(b)}</script>' for b in blocks)
    return f"<html><head>{scripts}</head><body><p>Words.</p></body></html>"


def _tree(html: str):
    return lxml.html.document_fromstring(html)


def test_objects_are_walked_in_document_order_under_the_entity_keys():
    data = [{"@type": "WebPage", "@id": "a",
             "mainEntity": {"@type": "NewsArticle", "@id": "b", "author": {"@id": "hidden"}},
             "@graph": [{"@id": "c", "itemListElement": [{"@id": "d"}]}]},
            {"@id": "e"}]
    # @graph before mainEntity before itemListElement, each subtree before the next; not
    # into other keys (the author).
    assert [o["@id"] for o in jsonld.objects(data)] == ["a", "c", "d", "b", "e"]
    assert [o["@id"] for o in jsonld.objects(data, into=None)] == ["a", "b", "hidden", "c",
                                                                    "d", "e"]


def test_the_walk_is_bounded():
    deep: dict = {"@id": 0}
    node = deep
    for depth in range(1, 30):
        node["@graph"] = {"@id": depth}
        node = node["@graph"]
    assert [o["@id"] for o in jsonld.objects(deep)] == [0, 1, 2, 3, 4, 5]
    assert len(list(jsonld.objects(deep, max_depth=20))) == 21
    assert len(list(jsonld.objects(deep, max_depth=50, max_nodes=7))) == 7
    wide = {"@graph": [{"@id": i} for i in range(5_000)]}
    assert len(list(jsonld.objects(wide, max_items=1_000))) == 1 + 1_000


def test_scripts_that_are_not_json_are_none():
    assert jsonld.parse("{not json") is None
    assert jsonld.parse("[" * 100_000) is None  # too deep for the parser
    assert jsonld.parse('{"a": "line\nbreak"}') == {"a": "line\nbreak"}  # as publishers write


def test_scripts_are_found_by_their_type_in_any_spelling():
    html = ('<html><head><script type="application/ld+json">{"@id": 1}</script>'
            '<script type="text/javascript">var x = 1;</script>'
            '<script type="application/ld+json"></script>'
            '<script type="application/LD+JSON; charset=utf-8">{"@id": 2}</script>'
            "</head><body><p>Words.</p></body></html>")
    assert [json.loads(s)["@id"] for s in jsonld.scripts(_tree(html))] == [1, 2]
    assert len(list(jsonld.scripts(_tree(html), max_scripts=1))) == 1


def test_metadata_and_soft_blocks_read_the_same_scripts():
    """A JSON-LD script typed with a parameter: the soft-block check read it, the metadata
    cascade did not (it matched the type exactly)."""
    article = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "The headline",
               "datePublished": "2024-05-01T10:00:00Z", "isAccessibleForFree": False}
    html = _page(article, script_type="application/ld+json; charset=utf-8")
    assert extract_article(html).title == "The headline"
    assert is_article_page(html)
    assert classify_page(html, "Words.").kind is PageKind.PAYWALLED
