"""Which charset a page's bytes are read in (issue 21, point 1): valid UTF-8 is UTF-8 whatever
the page or its HTTP header declares (templates declare GB2312 or ISO-8859-15 over UTF-8
text, which the declaration would garble); else the declaration; else a guess. Bytes in a
legacy charset that are not plain ASCII are almost never valid UTF-8, so those pages still
read by their declaration; pure-ASCII bytes keep it too (they read alike in UTF-8 and any
charset that writes ASCII as ASCII, and 7-bit charsets such as ISO-2022-JP are ASCII bytes).

Every page is built here: the same text encoded in UTF-8 under a false declaration, and in
the declared charset itself. Read by ``normalize`` (bytes alone), by the crawl's extraction
(bytes plus the charset Scrapy took from the header or ``<meta>``), by a real crawl of a local
site that sends ``Content-Type: text/html; charset=...``, and by a reprocess of a record an
older crawl stored with the declared charset.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timezone
from html import unescape
from html.entities import codepoint2name

import pytest

from normalize import decode_body, decode_html, extract_article
from spiders.extraction_pool import extract_page
from spiders.items import FetchedPage
from spiders.page import page_record
from spiders.reprocess import reprocess
from storage import Archive
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import SITEMAP_NS, XML_TYPE, NewsSite

_ZH_TITLE = "北京市政府发布新的公共交通计划"
_ZH_PARAGRAPHS = [
    f"第{i}段：北京市政府今天宣布，将在未来五年内投资建设新的地铁线路和公交专用道，"
    f"以缓解城市交通拥堵问题。市民对这一计划表示欢迎，许多人认为这将大大改善出行体验。"
    for i in range(1, 9)
]
_FR_TITLE = "Le prix du café augmente à Lyon"
_FR_PARAGRAPHS = [
    f"Paragraphe {i} : le café du coin facture désormais {i},50 € l'expresso, et les "
    f"habitués du quartier s'en étonnent à peine ; la file d'attente s'allonge chaque matin."
    for i in range(1, 9)
]
_JA_TITLE = "東京の新しい図書館が開館"
_JA_PARAGRAPHS = [
    f"第{i}章：東京都は本日、新しい図書館の開館を発表しました。"
    f"多くの市民が初日から訪れ、静かな読書の時間を楽しんでいました。"
    for i in range(1, 9)
]
_EN_TITLE = "Harbour bridge reopens after repairs"
_EN_PARAGRAPHS = [
    f"Paragraph {i}: the harbour bridge reopened on Tuesday after months of repairs, and "
    f"the council said traffic in the old town should ease before the summer season."
    for i in range(1, 9)
]


# Words every charset here can write (GB2312 the Chinese, ISO-8859-15 and windows-1252 the
# French, with the euro sign), for stories that share no sentences: the crawl test's pages
# must not be the same article (the archive would keep one).
_ZH_WORDS = ("北京", "上海", "政府", "市民", "交通", "地铁", "公园", "学校", "医院", "经济",
             "发展", "计划", "今天", "宣布", "建设", "城市", "问题", "改善", "生活", "新闻")
_FR_WORDS = ("café", "élève", "été", "marché", "rivière", "théâtre", "hôpital", "forêt",
             "château", "numéro", "fenêtre", "député", "année", "société", "météo", "côte",
             "pâtisserie", "déjà", "très", "où", "prix", "ville", "€", "maire", "école")


def _story(words: tuple[str, ...], seed: int, sep: str, end: str) -> list[str]:
    rng = random.Random(seed)
    return [sep.join(rng.choice(words) for _ in range(40)) + end for _ in range(8)]


def _page(title: str, paragraphs: list[str], declared: str | None) -> str:
    meta = f'<meta charset="{declared}">' if declared else ""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!doctype html><html><head>{meta}<title>{title}</title></head><body>"
            f"<article><h1>{title}</h1>{body}</article></body></html>")


def _text_of(paragraphs: list[str]) -> str:
    return "\n".join(paragraphs)


# (name, title, paragraphs, declared charset, the codec the bytes are really in)
_FALSE_DECLARATIONS = [
    ("utf8-under-gb2312", _ZH_TITLE, _ZH_PARAGRAPHS, "gb2312", "utf-8"),
    ("utf8-under-iso-8859-15", _FR_TITLE, _FR_PARAGRAPHS, "iso-8859-15", "utf-8"),
]
_TRUE_DECLARATIONS = [
    ("gb2312", _ZH_TITLE, _ZH_PARAGRAPHS, "gb2312", "gb2312"),
    ("iso-8859-15", _FR_TITLE, _FR_PARAGRAPHS, "iso-8859-15", "iso-8859-15"),
    ("windows-1252", _FR_TITLE, _FR_PARAGRAPHS, "windows-1252", "windows-1252"),
]
# What the record's charset says for each declaration: the codec the text was read with, by
# the labels' meaning in browsers (GB2312 is read as its superset GB18030).
_CODEC_NAME = {"utf-8": "utf-8", "gb2312": "gb18030", "iso-8859-15": "iso8859-15",
               "windows-1252": "cp1252"}


def _cases(cases):
    return pytest.mark.parametrize("title,paragraphs,declared,codec", [c[1:] for c in cases],
                                   ids=[c[0] for c in cases])


# -- normalize: the bytes alone ---------------------------------------------------------------


@_cases(_FALSE_DECLARATIONS + _TRUE_DECLARATIONS)
def test_extraction_from_bytes_reads_the_text_in_the_charset_it_is_in(
        title, paragraphs, declared, codec):
    body = _page(title, paragraphs, declared).encode(codec)
    article = extract_article(body, "https://example.com/news/story")
    assert article.title == title
    assert article.text == _text_of(paragraphs)


@_cases(_FALSE_DECLARATIONS + _TRUE_DECLARATIONS)
def test_decode_body_names_the_charset_it_read(title, paragraphs, declared, codec):
    page = _page(title, paragraphs, declared)
    # Declared in the page only, and by an HTTP header as well.
    assert decode_body(page.encode(codec)) == (_CODEC_NAME[codec], page)
    assert decode_body(page.encode(codec), declared) == (_CODEC_NAME[codec], page)


def test_a_header_declaration_of_a_legacy_charset_does_not_garble_utf8():
    """No ``<meta>``: the HTTP header alone says GB2312, over UTF-8 bytes."""
    page = _page(_ZH_TITLE, _ZH_PARAGRAPHS, None)
    assert decode_body(page.encode("utf-8"), "gb2312") == ("utf-8", page)


def test_an_undeclared_page_that_is_not_utf8_falls_back_to_windows_1252():
    page = _page(_FR_TITLE, _FR_PARAGRAPHS, None)
    assert decode_body(page.encode("windows-1252")) == ("cp1252", page)
    assert decode_html(page.encode("windows-1252")) == page


def test_a_declared_7bit_charset_stands_over_ascii_bytes():
    """ISO-2022-JP writes Japanese in ASCII bytes (escape sequences), which are valid UTF-8
    too: pure-ASCII bytes keep their declaration."""
    page = _page(_JA_TITLE, _JA_PARAGRAPHS, "iso-2022-jp")
    body = page.encode("iso-2022-jp")
    assert body.isascii()
    assert decode_body(body) == ("iso2022_jp", page)
    assert decode_body(body, "iso-2022-jp") == ("iso2022_jp", page)


def test_an_ascii_page_keeps_its_declared_charset():
    """Pure ASCII reads alike either way; the record says what the page declared."""
    page = _page(_EN_TITLE, _EN_PARAGRAPHS, "iso-8859-1")
    assert decode_body(page.encode("ascii")) == ("cp1252", page)
    assert decode_body(page.encode("ascii"), "iso-8859-1") == ("cp1252", page)
    assert decode_body(_page(_EN_TITLE, _EN_PARAGRAPHS, None).encode("ascii"))[0] == "utf-8"


def test_a_declaration_of_utf16_over_bytes_without_nul_is_read_as_utf8():
    """A ``<meta>`` saying UTF-16 is read in ASCII bytes, so the page is not UTF-16 (browsers
    read it as UTF-8); a crawl hands it over as declared, not saying where it was declared.
    A body truly in UTF-16, declared by the header, has NUL bytes in every tag."""
    page = _page(_FR_TITLE, _FR_PARAGRAPHS, "utf-16")
    assert decode_body(page.encode("ascii", errors="xmlcharrefreplace")) == (
        "utf-8", page.encode("ascii", errors="xmlcharrefreplace").decode())
    assert decode_body(page.encode("utf-8")) == ("utf-8", page)
    assert decode_body(page.encode("utf-8"), "utf-16") == ("utf-8", page)
    assert decode_body(page.encode("utf-16-le"), "utf-16le") == ("utf-16-le", page)


def test_an_unknown_declaration_is_no_declaration():
    page = _page(_FR_TITLE, _FR_PARAGRAPHS, None)
    assert decode_body(page.encode("windows-1252"), "no-such-charset") == ("cp1252", page)


# -- mojibake: UTF-8 read as windows-1252 and written out again, in the page's bytes ----------

_MOJIBAKE_PARAGRAPHS = [
    f"Paragraph {i}: the café’s owner said “we don’t close” — and the harbour’s "
    f"crêperie, at 5 € a plate, stayed open all winter, said the council."
    for i in range(1, 9)
]


def _double_encoded(text: str, codec: str) -> str:
    """``text`` as software that read its UTF-8 bytes in ``codec`` writes it: each byte as
    its windows-1252 character ("’", bytes E2 80 99, becomes "â€™"; latin-1's for the five
    bytes windows-1252 leaves undefined), or as its latin-1 character ("â\x80\x99")."""
    if codec == "latin-1":
        return text.encode("utf-8").decode("latin-1")
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b)
                   for b in text.encode("utf-8"))


def test_mojibake_in_the_pages_own_bytes_is_repaired():
    # The page's bytes are valid UTF-8 and say UTF-8: no charset reads them right, since
    # the text was garbled before it was encoded. Software garbles it either way.
    title = "The café’s winter — a harbour story"
    paragraphs = [_double_encoded(p, ("cp1252", "latin-1")[i % 2])
                  for i, p in enumerate(_MOJIBAKE_PARAGRAPHS)]
    page = _page(_double_encoded(title, "cp1252"), paragraphs, "utf-8")
    assert "â€™" in page and "â\x80\x99" in page
    for body in (page.encode("utf-8"), page):
        article = extract_article(body, "https://example.com/news/story")
        assert article.title == title
        assert article.text == _text_of(_MOJIBAKE_PARAGRAPHS)



def _escaped(text: str, named: bool) -> str:
    """``text`` with every non-ASCII character written as an entity, by name where HTML has
    one ("&acirc;&euro;&trade;") or by number ("&#226;&#8364;&#8482;")."""
    return "".join(c if c.isascii() else f"&{codepoint2name[ord(c)]};"
                   if named and ord(c) in codepoint2name else f"&#{ord(c)};" for c in text)


@pytest.mark.parametrize("named", [True, False], ids=["named", "numbered"])
def test_mojibake_written_as_entities_is_repaired(named):
    # Software that misread the text, then escaped each of its non-ASCII characters.
    paragraphs = [_escaped(_double_encoded(p, "cp1252"), named) for p in _MOJIBAKE_PARAGRAPHS]
    page = _page(_EN_TITLE, paragraphs, "utf-8")
    assert "&#226;&#8364;&#8482;" in page or "&acirc;&euro;&trade;" in page
    article = extract_article(page.encode("utf-8"), "https://example.com/news/story")
    assert article.text == _text_of(_MOJIBAKE_PARAGRAPHS)


def test_real_words_written_as_entities_are_left_as_they_are():
    # "Éé", "Ã©" of a language's own words, escaped: not runs of mojibake.
    paragraphs = [f"Paragraph {i}: l&#39;&Eacute;cole &Eacute;&eacute;tait ouverte, dit le "
                  f"conseil, et S&Atilde;O Paulo aussi, comme &Agrave;&agrave; Paris." for i in range(8)]
    article = extract_article(_page(_EN_TITLE, paragraphs, "utf-8").encode("utf-8"),
                              "https://example.com/news/story")
    assert article.text == _text_of([unescape(p) for p in paragraphs])

@pytest.mark.parametrize("paragraph", [
    # A word followed by a sign whose characters would read as UTF-8 for a letter of another
    # script: German "groß“" (NKo), a brand's "CAFÉ®" (IPA), Czech "é –" (Mongolian).
    "Der Hafen wird „groß“ ausgebaut, sagt der Rat; „groß“ sei auch das Budget, und „groß“ der Ärger.",
    "Our NESCAFÉ® blend, the NESCAFÉ® jar and the NESCAFÉ® mug are sold at the harbour café.",
    "Přístav je velký a staré\xa0– říká rada, mosty\xa0– a silnice jsou krásné\xa0– a drahé.",
    # One or two runs are as likely a real word's: "NÃO”" in Portuguese capitals.
    "O conselho disse “NÃO” ao projeto do porto, e a cidade discute a ponte desde o verão.",
], ids=["german-quotes", "brand-sign", "czech-dash", "few-runs"])
def test_text_that_only_looks_like_mojibake_is_left_as_it_is(paragraph):
    paragraphs = [f"{paragraph} ({i})" for i in range(1, 9)]
    article = extract_article(_page(_EN_TITLE, paragraphs, "utf-8").encode("utf-8"),
                              "https://example.com/news/story")
    # (trafilatura writes a no-break space as a space)
    assert article.text == _text_of(paragraphs).replace("\xa0", " ")


# -- the crawl's extraction: bytes plus the charset Scrapy determined --------------------------


@_cases(_FALSE_DECLARATIONS + _TRUE_DECLARATIONS)
def test_the_crawls_extraction_reads_valid_utf8_whatever_scrapy_determined(
        title, paragraphs, declared, codec):
    """A crawl hands the extraction the charset Scrapy took from the header or ``<meta>``
    (GB2312 resolved to GB18030, as Scrapy does); the extraction says what it read with."""
    body = _page(title, paragraphs, declared).encode(codec)
    extraction = extract_page(body, _CODEC_NAME[declared], "https://example.com/news/story", 200)
    assert extraction.article.title == title
    assert extraction.article.text == _text_of(paragraphs)
    assert extraction.charset == _CODEC_NAME[codec]


# -- a real crawl of a local site whose header declares the charset ---------------------------


def test_a_crawl_archives_pages_in_the_charset_their_bytes_are_in(tmp_path):
    """Pages served with ``Content-Type: text/html; charset=<declared>``: UTF-8 text under a
    false header, and text truly in the declared charset; plus a windows-1252 page that
    declares nothing. Each record has the right title and text, and says what it was read
    with."""
    served = {}
    for seed, (name, title, _paragraphs, declared, codec) in enumerate(
            [*_FALSE_DECLARATIONS, *_TRUE_DECLARATIONS]):
        words, sep, end = (_ZH_WORDS, "", "。") if title == _ZH_TITLE else (_FR_WORDS, " ", ".")
        served[f"/c/{name}"] = (f"{title} {seed}", _story(words, seed, sep, end), declared,
                                codec)
    # Undeclared, the crawl's charset is Scrapy's guess, as before: real prose (a guess on
    # a jumble of words can take it for another Latin charset).
    served["/c/undeclared-windows-1252"] = (_FR_TITLE, _FR_PARAGRAPHS, None, "windows-1252")
    with NewsSite([], feed_size=0) as site:
        base = site.base_url
        for path, (title, paragraphs, declared, codec) in served.items():
            content_type = f"text/html; charset={declared}" if declared else "text/html"
            site.add_route(path, _page(title, paragraphs, declared).encode(codec),
                           headers={"Content-Type": content_type})
        sitemap = (f'<?xml version="1.0"?><urlset xmlns="{SITEMAP_NS}">'
                   + "".join(f"<url><loc>{base}{path}</loc></url>" for path in served)
                   + "</urlset>")
        site.add_route("/c/sitemap.xml", sitemap.encode(), headers={"Content-Type": XML_TYPE})
        entry = local_site_config(site, feeds=[], sitemaps=[f"{base}/c/sitemap.xml"])
        crawl_site_subprocess(entry, str(tmp_path / "archive"),
                              {**os.environ, "PYTHONPATH": str(REPO_ROOT)}, tmp_path / "data",
                              "charset")
        archive = Archive.open(str(tmp_path / "archive"))
        records = {r.url.removeprefix(base): r for r in archive.iter_records()}
    assert set(records) == set(served)
    for path, (title, paragraphs, _declared, codec) in served.items():
        record = records[path]
        assert (record.title, record.charset) == (title, _CODEC_NAME[codec]), path
        assert archive.read_text(record) == _text_of(paragraphs), path


# -- reprocessing what an older crawl archived under the false declaration --------------------


def test_reprocess_reads_again_a_page_archived_under_a_false_declaration(tmp_path):
    """An older crawl read UTF-8 bytes by their GB2312 declaration and stored the garbled
    text, with ``charset`` GB18030: a reprocess reads them as UTF-8, and says so."""
    body = _page(_ZH_TITLE, _ZH_PARAGRAPHS, "gb2312").encode("utf-8")
    url = "https://example.com/news/story"
    page = FetchedPage(site="example", url=url, request_url=url, status=200, body=body,
                       encoding="gb18030", fetched_at=datetime(2024, 5, 1, tzinfo=timezone.utc),
                       discovered_via="sitemap")
    garbled = extract_article(body.decode("gb18030", errors="replace"), url)
    assert garbled.title != _ZH_TITLE  # what the older crawl made of it
    archive = Archive.open(str(tmp_path / "archive"))
    old = page_record(page, garbled, garbled.text, charset="gb18030")
    archive.store(old, raw_body=body, charset="gb18030", text=garbled.text)
    archive.flush()

    report = reprocess(archive, data_dir=tmp_path / "data")

    assert (report.rewritten, report.errors) == (1, [])
    (record,) = archive.iter_records()
    assert (record.title, record.charset) == (_ZH_TITLE, "utf-8")
    assert archive.read_text(record) == _text_of(_ZH_PARAGRAPHS)
