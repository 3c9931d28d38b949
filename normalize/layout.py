"""How a browser lays out HTML, as far as reading a page's text needs: which elements are
blocks. One definition for the text extraction's survey (:mod:`normalize.text`) and for the
metadata, which reads headings and bylines as a reader sees them (:mod:`normalize.metadata`)."""

from __future__ import annotations

BLOCK_TAGS = frozenset((
    "p", "div", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "dd", "dt", "section", "article", "tr", "ul", "ol", "table", "header", "footer", "aside",
    "nav", "main", "figure", "form",
))
"""The block-level elements a page's story is written in."""

TEXT_BLOCK_TAGS = BLOCK_TAGS | {
    "html", "body", "dl", "figcaption", "caption", "address", "details", "summary", "fieldset",
    "legend", "center", "hgroup",
}
"""Elements a browser lays out as blocks: each starts a text block of its own, and parts the
words before it from the words in it."""
