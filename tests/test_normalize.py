"""``normalize``: extraction is safe on any input and good on real pages; URLs canonicalise.

The corpus checks are regression guards with thresholds (measured values are printed; run
with ``-s`` to see them), not exact strings: a better extractor should pass them too.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from normalize import Article, decode_html, extract_article
from normalize.article import MAX_HTML_CHARS
from storage import canonicalize_url, choose_canonical_url

# -- hostile and odd input -----------------------------------------------------------------

_PARAGRAPHS = "".join(
    f"<p>Paragraph {i}: the council voted on Tuesday to approve harbour bridge number {i} "
    f"after a long debate about its cost and the traffic in the old town.</p>\n"
    for i in range(6)
)
_ARTICLE_PAGE = (
    "<html><head><title>Harbour bridge</title></head><body>"
    f"<article><h1>Harbour bridge</h1>{_PARAGRAPHS}</article></body></html>"
)


def _junk() -> bytes:
    rng = random.Random(20240501)
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(8192))


@pytest.mark.parametrize(
    "html",
    [
        "",
        b"",
        "   \n\t ",
        _junk(),
        "<html",
        b"\x00" * 1000,
        "\x00<html>\x00</html>",
        "<html><body>" + "<div>" * 20_000 + "</div>" * 20_000 + "</body></html>",
        "<html><body>" + "<div>" * 20_000 + "</body></html>",
    ],
    ids=["empty-str", "empty-bytes", "whitespace", "binary-junk", "unclosed-tag", "nul-bytes",
         "nul-in-markup", "nested-divs", "nested-divs-unclosed"],
)
def test_junk_gives_an_empty_article(html):
    article = extract_article(html, "https://example.com/a")
    assert isinstance(article, Article)
    assert article.text == ""
    assert article.published is None and article.authors == ()


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_nul_bytes_inside_an_article_are_dropped(as_bytes):
    html = _ARTICLE_PAGE.replace("council", "coun\x00cil").replace("<p>", "<p>\x00")
    article = extract_article(html.encode() if as_bytes else html)
    assert "\x00" not in article.text
    assert "Paragraph 5: the council voted" in article.text


def test_deep_nesting_after_the_article_keeps_the_article():
    html = _ARTICLE_PAGE.replace(
        "</article>", "</article>" + "<div>" * 20_000 + "deep" + "</div>" * 20_000
    )
    article = extract_article(html)
    assert "Paragraph 0: the council voted" in article.text
    assert "Paragraph 5: the council voted" in article.text


def test_page_bigger_than_the_limit_is_cut_not_refused():
    filler = "<div>" + "lorem ipsum " * 500_000 + "</div>"  # 6 MB of text after the story
    html = _ARTICLE_PAGE.replace("</body>", filler + "</body>")
    assert len(html) > MAX_HTML_CHARS
    article = extract_article(html)
    assert isinstance(article, Article)
    assert "Paragraph 5: the council voted" in article.text
    # Only the first MAX_HTML_CHARS were looked at, so the filler is cut short.
    assert 0 < len(article.text) <= MAX_HTML_CHARS


def test_windows_1252_page_is_decoded_by_its_meta_charset():
    html = (
        '<html><head><meta charset="windows-1252"><title>Caf\xe9 \u20ac</title></head><body>'
        "<article>"
        + "".join(
            f"<p>Paragraphe {i} : au café du port, l\u2019expresso coûte 3 \u20ac depuis lundi, "
            "dit le patron en servant les clients du matin.</p>"
            for i in range(4)
        )
        + "</article></body></html>"
    )
    body = html.encode("windows-1252")
    assert b"caf\xe9" in body and b"\x80" in body  # really not UTF-8
    article = extract_article(body)
    assert "café" in article.text
    assert "3 €" in article.text
    assert "l\u2019expresso" in article.text
    assert "\ufffd" not in article.text
    assert article.title == "Café €"


def test_utf8_bom_page():
    html = (
        "<html><head><title>Grüße</title></head><body><article>"
        + "".join(
            f"<p>Grüße {i} aus München: Die Straßenbahn fährt wieder pünktlich, sagt die "
            "Stadtverwaltung am Montag.</p>"
            for i in range(4)
        )
        + "</article></body></html>"
    )
    for body in (b"\xef\xbb\xbf" + html.encode("utf-8"), "\ufeff" + html):
        article = extract_article(body)
        assert "Grüße 3 aus München: Die Straßenbahn fährt" in article.text
        assert "\ufeff" not in article.text and "\ufffd" not in article.text
        assert article.title == "Grüße"


@pytest.mark.parametrize("declared", ["gb2312", "iso-8859-15", "windows-1252", "shift_jis"])
def test_valid_utf8_is_utf8_whatever_the_page_declares(declared):
    """Pages whose bytes are UTF-8 but whose template declares another charset: read by the
    declaration they came out garbled (issue 21, point 1); a browser reads them as UTF-8."""
    page = (f'<html><head><meta charset="{declared}"><title>Grüße aus Köln</title></head>'
            "<body><p>Die Straßenbahn fährt wieder pünktlich — 3 € günstiger.</p></body></html>")
    assert decode_html(page.encode("utf-8")) == page


def test_a_declared_latin1_is_read_as_windows_1252():
    """Browsers read a page labelled ISO-8859-1 (or ASCII) as windows-1252: its bytes
    0x80-0x9F are curly quotes and the euro sign, not control characters."""
    page = ('<html><head><meta http-equiv="Content-Type" content="text/html; '
            'charset=iso-8859-1"></head>'
            "<body><p>\u201cCafé\u201d costs 3 \u20ac.</p></body></html>")
    assert decode_html(page.encode("windows-1252")) == page


def test_a_declared_charset_reads_bytes_that_are_not_utf8():
    page = '<html><head><meta charset="koi8-r"></head><body><p>Привет, мир</p></body></html>'
    assert decode_html(page.encode("koi8-r")) == page


def test_a_page_that_is_not_utf8_and_declares_nothing_is_windows_1252():
    page = "<html><body><p>Caf\xe9 \u20ac</p></body></html>"
    assert decode_html(page.encode("windows-1252")) == page


def test_extraction_is_deterministic(corpus_articles):
    for page in corpus_articles.pages[:3]:
        html = page.html
        first = extract_article(html, page.original_url)
        assert first == extract_article(html, page.original_url)
        assert first == corpus_articles.articles[page.original_url]
    assert extract_article(_ARTICLE_PAGE) == extract_article(_ARTICLE_PAGE)


# -- the real pages of the corpus ----------------------------------------------------------


class _CorpusArticles:
    def __init__(self, pages, articles):
        self.pages = pages
        self.truth = {p.original_url: json.loads(p.truth.read_text(encoding="utf-8")) for p in pages}
        self.articles = articles


@pytest.fixture(scope="module")
def corpus_articles(corpus, corpus_extractions) -> _CorpusArticles:
    """Every corpus page extracted (once for the whole run: conftest)."""
    assert len(corpus) >= 100
    return _CorpusArticles(corpus, corpus_extractions)


def truth_text(truth: dict) -> str:
    """The article text of a truth file: summary, then each section's headline and paragraphs."""
    body = truth.get("body") or {}
    parts = list(body.get("summary") or [])
    for section in body.get("sections") or []:
        parts += list(section.get("headline") or []) + list(section.get("paragraphs") or [])
    return "\n".join(parts)


# Scripts written without spaces between words: each character counts as a word.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+")


def shingles(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def shingle_f1(got: str, want: str) -> float:
    a, b = shingles(got), shingles(want)
    common = len(a & b)
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def test_shingle_f1_measures_what_it_should():
    story = "The council voted on Tuesday to approve the new harbour bridge after a long debate."
    assert shingle_f1(story, story) == 1.0
    assert shingle_f1(story, "Completely different words about the weather in spring and rain.") == 0.0
    assert 0.3 < shingle_f1(story + " Subscribe now to read more stories like this one.", story) < 1.0
    # Japanese has no spaces: the measure still sees its words, so near-equal texts score high.
    tokyo = "東京都は月曜日に新しい橋の建設を承認した"
    assert 0.8 < shingle_f1(tokyo, tokyo + "。市長は歓迎した") < 1.0


def test_every_corpus_page_gives_text(corpus_articles):
    empty = [url for url, a in corpus_articles.articles.items() if not a.text.strip()]
    assert empty == []
    # The client-rendered page needs the second look (its markup holds no article body).
    hankook = [u for u in corpus_articles.articles if "hankookilbo" in u.lower()]
    assert hankook and all(len(corpus_articles.articles[u].text) > 500 for u in hankook)


def test_trafilatura_metadata_fills_only_the_gaps_of_the_cascade(corpus_articles):
    """trafilatura's metadata (a third of the extraction's cost) is asked for only when the
    cascade has no title or author, and never gives the date (it guesses one for a page
    that states none): no corpus page takes its date from it, and no page whose cascade
    found a title and authors takes anything from it."""
    filled = {url: {field for field, source in article.sources.items() if source == "trafilatura"}
              for url, article in corpus_articles.articles.items()}
    for url, article in corpus_articles.articles.items():
        assert "published" not in filled[url], url
        if article.title and article.authors and not filled[url] & {"title", "authors"}:
            assert not filled[url], (url, filled[url])


def test_published_is_timezone_aware(corpus_articles):
    for url, article in corpus_articles.articles.items():
        for value in (article.published, article.modified):
            if value is not None:
                assert value.tzinfo is not None and value.utcoffset() is not None, url


def test_published_matches_the_truth(corpus_articles):
    checked = close = 0
    misses = []
    for url, article in corpus_articles.articles.items():
        truth = corpus_articles.truth[url].get("publishing_date")
        if not truth:
            continue
        want = datetime.fromisoformat(truth)
        if want.tzinfo is None:
            want = want.replace(tzinfo=timezone.utc)
        checked += 1
        if article.published is not None and abs(article.published - want) <= timedelta(days=1):
            close += 1
        else:
            misses.append((url, article.published, truth))
    share = close / checked
    print(f"\npublished within 1 day of the truth: {close}/{checked} = {share:.3f}; misses: {misses}")
    assert checked >= 100
    assert share >= 0.95, misses


def test_language_is_iso_639_1(corpus_articles):
    bad = {url: a.language for url, a in corpus_articles.articles.items()
           if not (isinstance(a.language, str) and re.fullmatch(r"[a-z]{2}", a.language))}
    assert bad == {}


def test_text_matches_the_truth_body(corpus_articles):
    scores = {url: shingle_f1(a.text, truth_text(corpus_articles.truth[url]))
              for url, a in corpus_articles.articles.items()}
    mean = sum(scores.values()) / len(scores)
    worst = sorted(scores.items(), key=lambda kv: kv[1])[:5]
    print(f"\nmean word 4-gram shingle F1 over {len(scores)} pages: {mean:.4f}; worst: {worst}")
    assert mean >= 0.95


def test_recommendation_boxes_are_pruned(corpus_articles):
    [url] = [u for u in corpus_articles.articles if "heise.de" in u and "Ionos" in u]
    page = next(p for p in corpus_articles.pages if p.original_url == url)
    assert "Lesen Sie auch" in page.html.decode("utf-8")  # the box is on the page
    text = corpus_articles.articles[url].text
    assert "Lesen Sie auch" not in text
    body = corpus_articles.truth[url]["body"]
    first_paragraph = body["sections"][0]["paragraphs"][0]
    assert first_paragraph in text
    assert body["summary"][0] in text


# -- canonical URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://WWW.Example.COM/Path/Story", "http://www.example.com/Path/Story"),
        ("HTTPS://EXAMPLE.COM./a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com/a?id=3#top", "https://example.com/a?id=3"),
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&id=3&fbclid=x&gclid=y"
            "&mc_cid=z&page=2&UTM_Campaign=w",
            "https://example.com/a?id=3&page=2",
        ),
        ("https://example.com/a?utm_source=rss", "https://example.com/a"),
        ("https://example.com/a?page=2&id=3", "https://example.com/a?id=3&page=2"),
        ("https://example.com/news/story/", "https://example.com/news/story"),
        ("https://example.com/news/story//", "https://example.com/news/story"),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/?utm_source=x", "https://example.com/"),
        ("http://[2001:DB8::1]:8080/a/?utm_source=x", "http://[2001:db8::1]:8080/a"),
        ("https://[::1]:443/a", "https://[::1]/a"),
        ("mailto:x@y", "mailto:x@y"),
        ("not a url", "not a url"),
        ("ftp://Example.com/a/", "ftp://Example.com/a/"),
        ("/relative/path/", "/relative/path/"),
        ("", ""),
    ],
)
def test_canonicalize_url(url, expected):
    assert canonicalize_url(url) == expected
    assert canonicalize_url(expected) == expected


def test_canonicalize_url_keeps_distinct_articles_distinct():
    assert (canonicalize_url("https://example.com/a?id=3")
            != canonicalize_url("https://example.com/a?id=4"))
    assert canonicalize_url("https://example.com/a") != canonicalize_url("https://example.com/b")
    assert canonicalize_url("http://example.com/a") != canonicalize_url("https://example.com/a")


def test_canonicalize_url_is_idempotent_over_the_corpus(corpus_articles):
    changed = 0
    for page in corpus_articles.pages:
        once = canonicalize_url(page.original_url)
        assert canonicalize_url(once) == once, page.original_url
        assert once.startswith(("http://", "https://"))
        assert "#" not in once and "utm_" not in once
        changed += once != page.original_url
    assert changed > 0  # the corpus has URLs to normalise (tracking parameters, order, ...)


# -- choosing the canonical URL ----------------------------------------------------------------

FETCHED = "https://www.example.com/news/story-1?utm_source=rss&id=7"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("https://www.example.com/news/story-1-canonical",
         "https://www.example.com/news/story-1-canonical"),
        ("/news/story-1-canonical/", "https://www.example.com/news/story-1-canonical"),
        ("story-1-canonical", "https://www.example.com/news/story-1-canonical"),
        ("https://example.com/news/story-1-canonical", "https://example.com/news/story-1-canonical"),
        ("HTTPS://EXAMPLE.COM/news/s#x", "https://example.com/news/s"),
        ("//www.example.com/news/s?utm_medium=x", "https://www.example.com/news/s"),
        ("  https://www.example.com/news/s  ", "https://www.example.com/news/s"),
    ],
)
def test_same_site_declared_canonical_wins(declared, expected):
    assert choose_canonical_url(FETCHED, declared) == expected


def test_threads_that_first_ask_at_once_parse_the_public_suffix_list_once(monkeypatch):
    # A crawl's storage threads take their first pages together: the list (0.05 s of CPU)
    # is parsed by one of them while the others wait, not by each.
    from storage import urls

    parsed = []

    class SlowList(urls.PublicSuffixList):
        def __init__(self):
            parsed.append(1)
            time.sleep(0.2)  # long enough for every thread to find no list yet
            super().__init__()

    monkeypatch.setattr(urls, "PublicSuffixList", SlowList)
    urls._public_suffixes.cache_clear()
    start = threading.Barrier(8)

    def canonical():
        start.wait()
        return choose_canonical_url(FETCHED, "https://example.com/news/story-1-canonical")

    try:
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda _: canonical(), range(8)))
    finally:
        urls._public_suffixes.cache_clear()  # the next test parses the real list again
    assert found == ["https://example.com/news/story-1-canonical"] * 8
    assert len(parsed) == 1


def test_bare_host_fetch_accepts_www_canonical():
    assert (choose_canonical_url("https://example.com/a?utm_source=x", "https://www.example.com/b")
            == "https://www.example.com/b")


@pytest.mark.parametrize(
    "declared",
    [
        "https://other.org/news/story-1",
        "https://evil-example.com/news/story-1",
        "https://example.com.evil.org/news/story-1",
        "//other.org/news/story-1",
        None,
        "",
        "   ",
        "javascript:alert(1)",
        "http://[broken",
    ],
)
def test_foreign_or_missing_canonical_falls_back_to_the_fetched_url(declared):
    assert choose_canonical_url(FETCHED, declared) == "https://www.example.com/news/story-1?id=7"


@pytest.mark.parametrize(("fetched", "declared"), [
    # One registrable domain (public suffix + one label): one site, whatever the subdomain.
    ("https://edition.cnn.com/2024/05/01/world/story", "https://www.cnn.com/2024/05/01/world/story"),
    ("https://www.bbc.co.uk/news/world-1", "https://news.bbc.co.uk/news/world-1"),
    ("https://m.example.com/a", "https://example.com/b"),
    ("https://bücher.de/a", "https://www.xn--bcher-kva.de/b"),  # one name, two spellings
    ("http://127.0.0.1:8000/a", "http://127.0.0.1:9000/b"),  # an address: the same one
])
def test_a_canonical_on_the_same_registrable_domain_is_trusted(fetched, declared):
    assert choose_canonical_url(fetched, declared) == canonicalize_url(declared)


@pytest.mark.parametrize(("fetched", "declared"), [
    # Under a public suffix of two labels, the next label is the owner.
    ("https://example.co.uk/a", "https://other.co.uk/a"),
    ("https://example.co.uk/a", "https://co.uk/a"),
    # Private suffixes of the list count: each blog its own site.
    ("https://alice.blogspot.com/a", "https://bob.blogspot.com/a"),
    # Addresses compare exactly: no "registrable part" of an IP address.
    ("http://127.0.0.1/a", "http://10.0.0.1/a"),
    ("http://192.168.1.5/a", "http://10.168.1.5/a"),
    ("http://[::1]/a", "http://[::2]/a"),
    # A name that is not under any registrable domain compares exactly too.
    ("http://localhost/a", "http://otherhost/a"),
])
def test_a_canonical_on_another_registrable_domain_is_refused(fetched, declared):
    assert choose_canonical_url(fetched, declared) == canonicalize_url(fetched)


@pytest.mark.parametrize("amp_url, plain", [
    ("https://amp.example.com/world/story", "https://example.com/world/story"),
    ("https://www.example.com/news/story-123/amp/", "https://www.example.com/news/story-123"),
    ("https://www.example.com/amp/news/story-123", "https://www.example.com/news/story-123"),
    ("https://www.example.com/news/uk-123.amp", "https://www.example.com/news/uk-123"),
    ("https://www.example.com/a/story.amp.html", "https://www.example.com/a/story.html"),
    ("https://www.example.com/a/story?amp", "https://www.example.com/a/story"),
    ("https://www.example.com/a/story?amp=1&id=3", "https://www.example.com/a/story?id=3"),
    ("https://www.example.com/a/story?outputType=amp", "https://www.example.com/a/story"),
])
def test_amp_variants_fold_into_the_article(amp_url, plain):
    assert canonicalize_url(amp_url) == canonicalize_url(plain)


@pytest.mark.parametrize("url", [
    "https://www.example.com/a/ampersand-story",
    "https://amp.com/story",  # a site called amp.com is not an AMP copy
    "https://www.example.com/a/story?amp=football",
])
def test_words_that_merely_contain_amp_are_kept(url):
    assert canonicalize_url(url) == url


def test_a_date_in_a_zone_rfc_822_does_not_define_is_not_guessed():
    """Python's RFC 822 parser reads an unknown zone ("CEST") as UTC: two hours off for a
    German page, which then loses to no better source. Such a date is no date here, and the
    next source in the cascade (a <time> element) gives it."""
    from normalize.metadata import parse_datetime

    assert parse_datetime("Fri Apr 28 19:20:36 CEST 2023") is None
    assert parse_datetime("Fri, 28 Apr 2023 19:20:36 CEST") is None
    assert parse_datetime("Fri, 28 Apr 2023 19:20:36 +0200").utcoffset().total_seconds() == 7200
    assert parse_datetime("Fri, 28 Apr 2023 17:20:36 GMT").utcoffset().total_seconds() == 0
