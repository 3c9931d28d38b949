"""schema.org JSON-LD: a page's ``ld+json`` scripts, parsed, and the objects in them.

One reader for the metadata cascade (``normalize.metadata``: the article object, whether
the page declares an article) and the soft-block check (``normalize.softblock``: what the
page declares about its paywall and length), each with its own bounds.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from itertools import islice
from typing import Any

from lxml.html import HtmlElement

ENTITY_KEYS = ("@graph", "mainEntity", "itemListElement")
"""Keys under which a page's JSON-LD nests the objects it is about (``@graph`` lists,
a ``WebPage``'s ``mainEntity``, an ``ItemList``'s items)."""


def scripts(tree: HtmlElement, *, max_scripts: int | None = None) -> Iterator[str]:
    """The text of each JSON-LD script of the page (``type`` naming ``ld+json``, in any
    case), in document order; among its first ``max_scripts`` ``<script>`` elements only,
    when given."""
    for script in islice(tree.iter("script"), max_scripts):
        if "ld+json" in (script.get("type") or "").lower() and script.text:
            yield script.text


def parse(text: str) -> Any:
    """The JSON value of one script, or None when it is not JSON (or nests so deep that
    the parser gives up). Control characters are allowed in strings, as publishers write
    them."""
    try:
        return json.loads(text, strict=False)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        return None


def objects(data: Any, *, into: Collection[str] | None = ENTITY_KEYS, max_depth: int = 5,
            max_nodes: int | None = None, max_items: int | None = None) -> Iterator[dict[str, Any]]:
    """Every JSON object of ``data``, depth first in document order: ``data`` itself (the
    items of a list), then the objects found under the keys ``into`` (under every key when
    None), each subtree before the next.

    Bounded: ``max_depth`` levels of objects and lists below ``data``, ``max_nodes``
    objects and lists visited in all, and the first ``max_items`` of each list."""
    containers = (dict, list)
    stack: list[tuple[Any, int]] = [(data, 0)]
    visited = 0
    while stack and (max_nodes is None or visited < max_nodes):
        node, depth = stack.pop()
        visited += 1
        if isinstance(node, dict):
            yield node
            children = node.values() if into is None else [node[key] for key in into if key in node]
        elif isinstance(node, list):
            children = node[:max_items] if max_items is not None else node
        else:
            continue
        if depth < max_depth:
            # Reversed onto the stack, so that they come off it in document order.
            stack.extend((child, depth + 1) for child in reversed(children)
                         if isinstance(child, containers))
