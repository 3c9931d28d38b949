"""An archived page as the web UI serves it, from ``/articles/<id>/original``: the page
without its ``<link>`` elements, re-encoded as UTF-8 (and declaring it, if it declared an
encoding).

The Content-Security-Policy the page is served with stops every fetch it could make, but
not resource hints: ``<link rel=preconnect>`` and ``rel=dns-prefetch`` (whatever the case,
the order of the attributes or the other words of ``rel``) make the browser contact the
publisher when the page is only shown, and a ``prefetch``, ``preload``, ``prerender`` or
``modulepreload`` is one policy away from doing the same. In a page that fetches nothing
no ``<link>`` does anything else (stylesheets and icons are not loaded either), so all of
them go.

The page is parsed with lxml (libxml2's HTML5 tokenizer), its ``<link>`` elements are
removed and the tree is written out as UTF-8, which the response declares: the browser
then reads exactly what was checked, whatever encoding the page claims. A parser reads
some markup differently from a browser (inside ``<svg>``, ``<style>`` holds markup for the
browser and text for libxml2), so whatever lxml kept as text or comment is checked too: a
``<link`` left anywhere is written ``&lt;link``, which no tokenizer reads as a tag.

The page's stylesheets, fonts and images were not archived (only the HTML was), and a
page that fetches nothing could not load them anyway. Shown as bare HTML, a publisher's
menus are long lists of links before the article; so the UI gives the page
:data:`READING_STYLE`, a small stylesheet of its own, put first in the ``<head>`` so that
the page's inline styles still win over it.

The stored raw page is never changed: ``newsarchive cat --raw`` gives it as received.
"""

from __future__ import annotations

import codecs
import re

import lxml.etree
import lxml.html

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))

# A "<link" tag start as an HTML tokenizer reads it: a tag name ends at white space, "/"
# or ">", and tag names are ASCII, matched without regard to case.
_LINK_TAG = re.compile(rb"<(?=link[\t\n\f\r />])", re.IGNORECASE)

READING_STYLE = """
html { background: #fff; }
body { font: 16px/1.5 system-ui, sans-serif; color: #222; max-width: 46em;
       margin: 1.5em auto; padding: 0 1.2em; }
a { color: #1f4f8f; }
h1 { font-size: 1.6em; line-height: 1.25; }
/* Menus: their link lists as wrapped rows of small text, not a column of bullets. */
nav ul, nav ol, header ul, header ol, footer ul, footer ol, aside ul, menu,
[role=navigation] ul, [role=menubar], [role=menu] {
  display: flex; flex-wrap: wrap; gap: .1em 1em; list-style: none; padding: 0; margin: .3em 0; }
nav, header, footer, aside, [role=navigation], [role=banner], [role=contentinfo],
[role=complementary] { font-size: .85em; color: #555; }
nav li, header li, footer li, aside li { margin: 0; }
/* Images could not load (nothing is fetched): no empty frames of broken images. */
img:not([src^="data:"]), picture, video, audio, iframe, object, embed { display: none; }
svg { max-width: 2em; max-height: 2em; }
table { border-collapse: collapse; max-width: 100%; }
pre { white-space: pre-wrap; }
"""
"""The UI's stylesheet for an archived page, whose own were not archived (and would not
load): readable text, menus as wrapped rows, no frames of images that cannot load."""


def page_for_display(raw: bytes, charset: str | None = None, *,
                     style: str | None = None) -> bytes:
    """``raw`` (an archived HTML page, in ``charset`` if known) without any ``<link>``
    element, as UTF-8, with ``style`` (CSS, ours) as the first element of its head when
    given; empty when it holds no HTML at all."""
    document = _parse(raw, charset)
    if document is None:
        return b""
    for link in list(document.iter("link")):
        link.drop_tree()  # its tail (the text after it) stays
    _declare_utf8(document)
    if style is not None:
        _add_style(document, style)
    tree = document.getroottree()
    # The page's own doctype, if it had one (lxml adds none): it sets the rendering mode.
    doctype = tree.docinfo.doctype
    out = lxml.html.tostring(document, encoding="utf-8", method="html")
    if doctype:
        out = doctype.encode("utf-8") + b"\n" + out
    return _LINK_TAG.sub(b"&lt;", out)


def _add_style(document: lxml.html.HtmlElement, style: str) -> None:
    """``style`` as a ``<style>`` element at the start of the page's head (made if it has
    none), after its encoding declaration: the page's own styles come after it, and win."""
    head = document.find("head")
    if head is None:
        head = lxml.html.Element("head")
        document.insert(0, head)
    element = lxml.html.Element("style")
    element.text = style
    charset = next((n for n, child in enumerate(head)
                    if child.tag == "meta" and child.get("charset")), -1)
    head.insert(charset + 1, element)


def _declare_utf8(document: lxml.html.HtmlElement) -> None:
    """Make the page's own encoding declarations, if any, say UTF-8 (as the response does),
    so that the page read on its own reads the same."""
    declarations = [meta for meta in document.iter("meta")
                    if meta.get("charset") is not None
                    or (meta.get("http-equiv") or "").strip().lower() == "content-type"]
    for n, meta in enumerate(declarations):
        if n == 0:
            meta.attrib.clear()
            meta.set("charset", "utf-8")
        else:
            meta.drop_tree()


def _parse(raw: bytes, charset: str | None) -> lxml.html.HtmlElement | None:
    """The page's tree, decoded as a browser would: by its byte order mark, else the
    charset it was fetched with, else as UTF-8 if it is, else by its own declaration."""
    text = None
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            text = raw[len(bom):].decode(encoding, "replace")
            break
    else:
        if charset:
            try:
                text = raw.decode(charset, "replace")
            except LookupError:
                pass  # a charset Python does not know
        if text is None:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                pass  # lxml reads the page's own <meta charset>
    if text is None:
        source, parser = raw, lxml.html.HTMLParser(default_doctype=False)
    else:
        # Bytes and their encoding, rather than a str: lxml refuses a str that starts
        # with an XML declaration naming an encoding.
        source = text.encode("utf-8", "surrogatepass")
        parser = lxml.html.HTMLParser(encoding="utf-8", default_doctype=False)
    try:
        return lxml.html.document_fromstring(source, parser=parser)
    except lxml.etree.ParserError:
        return None  # nothing but white space
