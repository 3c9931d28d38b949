"""Soft blocks: pages that answer 200 (or 403/429/503) but hold no article.

``classify_page(html, text, status=...)`` tells a real article from

- a **CAPTCHA** or bot challenge (Cloudflare "Just a moment...", reCAPTCHA, hCaptcha and
  Turnstile widgets, DataDome, PerimeterX, Imperva, AWS WAF, Akamai "Access Denied");
- a **CONSENT** wall: the page is only a cookie/consent dialog (Google's and Yahoo's consent
  interstitials, "Before you continue", a OneTrust/Sourcepoint/Didomi/Quantcast/... dialog);
- a **PAYWALLED** teaser: the page says its content is not free (schema.org
  ``isAccessibleForFree`` false, ``content_tier`` locked) or shows paywall markup or prompts
  ("Subscribe to continue reading", "Jetzt weiterlesen mit", "réservé aux abonnés"), and the
  extracted text is only a teaser.

The markers alone decide nothing: consent-manager scripts, comment-form reCAPTCHAs and
paywall markup sit on most news pages, free or not. What decides is the extracted text
(``text``, normally ``normalize.extract_article(html).text``): a block has little of it, or
(for consent walls) only consent language; a teaser has few words, or well under the length
the page declares for its article. A page whose full text is there is an ``ARTICLE``.

Pure and deterministic, never raises (bad input gives ``ARTICLE`` with an empty reason), and
bounded: only the first ``MAX_SCAN_CHARS`` of the page are parsed, only ``MAX_ELEMENTS``
elements are looked at one by one, and only the first ``MAX_PAGE_TEXT_CHARS`` of the page's
visible text are searched.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from normalize import jsonld

logger = logging.getLogger(__name__)

# -- bounds ----------------------------------------------------------------------------------

# Challenge pages and consent walls are a few kB; real articles well under 2 MB (the corpus'
# largest is 1.7 MB). Beyond this only the head of the page is parsed.
MAX_SCAN_CHARS = 3_000_000
# Elements looked at one by one (classes, ids, URLs, visible text), in document order.
MAX_ELEMENTS = 20_000
# Visible text of the page kept for phrase searches.
MAX_PAGE_TEXT_CHARS = 200_000
# JSON-LD blocks read (among the first scripts of the page), and the largest one parsed;
# objects and lists walked in one, how deep, and the items of a list.
_MAX_SCRIPTS = 2_000
_MAX_JSONLD_BLOCKS = 50
_MAX_JSONLD_CHARS = 2_000_000
_MAX_JSON_NODES = 50_000
_MAX_JSON_DEPTH = 20
_MAX_JSON_ITEMS = 1_000
# Words are counted up to here: enough for every threshold below.
_MAX_COUNTED_WORDS = 100_000
_MAX_TEXT_CHARS = 2_000_000

# -- thresholds ------------------------------------------------------------------------------

# A challenge page's extracted text is a line or two; an article is longer than this.
CAPTCHA_MAX_WORDS = 150
# With a blocking status (403, 429, 503) the page is not an article anyway.
CAPTCHA_MAX_WORDS_BLOCKING_STATUS = 300
BLOCKING_STATUSES = frozenset((403, 429, 503))
# A captcha widget or challenge wording elsewhere on the page (not in its title or text),
# with status 200, counts only with nearly no article text, and on a page that is little
# more than the widget (or has both the widget and the wording).
WIDGET_ONLY_MAX_PAGE_WORDS = 150
WIDGET_ONLY_MAX_WORDS = 50

# Consent walls: a wall-specific signal (consent.google.com form, "Before you continue")
# with at most this many words of text, or text that is mostly consent language.
CONSENT_MAX_WORDS = 300
# A consent dialog in the markup or consent phrases on the page (which many articles carry
# too): only when the text is (nearly) empty, or is consent language and not long.
CONSENT_DIALOG_MAX_WORDS = 50
CONSENT_LANGUAGE_MAX_WORDS = 600
CONSENT_LANGUAGE_SHARE = 0.6
# ... and with (nearly) no text, the page itself must be mostly consent language, or show
# next to nothing besides a consent manager's dialog container.
CONSENT_PAGE_SHARE = 0.4
CONSENT_EMPTY_PAGE_WORDS = 50

# A paywall teaser: fewer words than this, or less than this share of the article length
# the page declares (JSON-LD articleBody or wordCount, when at least TEASER_MAX_WORDS).
TEASER_MAX_WORDS = 150
TEASER_MAX_SHARE = 0.4


class PageKind(str, enum.Enum):  # noqa: UP042 - str() of a member must stay "PageKind.X"
    """What a fetched page is."""

    ARTICLE = "article"
    """An article (or a page with no soft-block signal that holds its text)."""
    CAPTCHA = "captcha"
    """A bot challenge or block page: CAPTCHA widget, Cloudflare/DataDome/... challenge."""
    CONSENT = "consent"
    """A cookie/consent wall standing in for the page."""
    PAYWALLED = "paywalled"
    """A paywalled article of which only the teaser was served."""


@dataclass(frozen=True)
class SoftBlock:
    """The verdict of :func:`classify_page`."""

    kind: PageKind
    """What the page is; anything but ``ARTICLE`` must not be passed off as a full article
    (``CAPTCHA`` and ``CONSENT`` are blocks, ``PAYWALLED`` is a teaser that may be archived
    flagged as such)."""
    reason: str = ""
    """Short human reason, e.g. ``"reCAPTCHA challenge"`` or ``"schema.org
    isAccessibleForFree=false and 80 words of text"``. Empty for an ``ARTICLE`` without any
    soft-block signal; for an ``ARTICLE`` with signals, why they were overruled."""

    @property
    def blocked(self) -> bool:
        """True for CAPTCHA and CONSENT: the page holds no article at all."""
        return self.kind in (PageKind.CAPTCHA, PageKind.CONSENT)


_ARTICLE = SoftBlock(PageKind.ARTICLE, "")


def classify_page(html: str | bytes, text: str, *, status: int = 200) -> SoftBlock:
    """Say whether a fetched page is an article, a CAPTCHA/bot challenge, a consent wall or a
    paywall teaser. ``html`` is the page as received (bytes are decoded like
    :func:`normalize.decode_html`), ``text`` the article text extracted from it, ``status``
    the HTTP status. Pure, deterministic, bounded in time; never raises."""
    try:
        return _classify(html, text, status)
    except Exception:  # the contract: any input, no exception
        logger.warning("soft-block classification failed", exc_info=True)
        return _ARTICLE


# -- words -----------------------------------------------------------------------------------

# Scripts written without spaces between words: each character counts as a word (the same
# measure as the corpus tests), so a 400-character Japanese story is not "short".
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+")
_SPACE = re.compile(r"\s+")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def count_words(text: str) -> int:
    """Words in ``text`` (each CJK/Hangul character counts as one), counted up to 100,000."""
    if not text:
        return 0
    return sum(1 for _ in islice(_WORD.finditer(text[:_MAX_TEXT_CHARS]), _MAX_COUNTED_WORDS))


# -- what the page shows ---------------------------------------------------------------------


@dataclass
class _Page:
    raw: str
    """The scanned head of the page, lowercased."""
    title: str = ""
    """``<title>``, lowercased, whitespace collapsed."""
    visible: str = ""
    """Visible text (no scripts or styles), lowercased, whitespace collapsed, bounded."""
    visible_words: int = 0
    pieces: list[str] = field(default_factory=list)
    """The visible text nodes, in document order (bounded like ``visible``)."""
    tokens: set[str] = field(default_factory=set)
    """Class names and ids, lowercased."""
    urls: list[str] = field(default_factory=list)
    """script/iframe src and form action URLs, lowercased."""
    sitekey: str | None = None
    """The kind of CAPTCHA whose key some element carries in ``data-sitekey``."""
    metas: dict[str, str] = field(default_factory=dict)
    """``<meta>`` name/property/itemprop → content, lowercased."""
    microdata_free: list[str] = field(default_factory=list)
    """Values of ``itemprop=isAccessibleForFree`` elements."""
    jsonld: list[str] = field(default_factory=list)
    """Texts of the ``application/ld+json`` scripts."""


_SKIP_TEXT_TAGS = frozenset(("script", "style", "template", "svg", "math", "head", "title"))


def _read_page(html: str) -> _Page | None:
    from normalize.article import parse_html  # here: see normalize/__init__.py

    tree = parse_html(html)
    if tree is None:
        return None
    page = _Page(raw=html.lower())
    title = tree.find(".//title")
    if title is not None:
        page.title = _SPACE.sub(" ", title.text_content()).strip().lower()[:500]
    pieces: list[str] = []
    size = 0
    for el in islice(tree.iter(), MAX_ELEMENTS):
        tag = el.tag
        if isinstance(tag, str):
            tag = tag.lower()
            attrib = el.attrib
            classes = attrib.get("class")
            if classes:
                page.tokens.update(classes.lower().split())
            ident = attrib.get("id")
            if ident:
                page.tokens.add(ident.strip().lower())
            if "data-sitekey" in attrib and page.sitekey is None:
                page.sitekey = _sitekey_kind(attrib["data-sitekey"])
            if tag in ("script", "iframe") and attrib.get("src"):
                page.urls.append(attrib["src"].strip().lower())
            elif tag == "form" and attrib.get("action"):
                page.urls.append(attrib["action"].strip().lower())
            elif tag == "meta":
                key = attrib.get("property") or attrib.get("name") or attrib.get("itemprop")
                content = attrib.get("content")
                if key and content is not None:
                    page.metas.setdefault(key.strip().lower(), content.strip().lower())
                if (attrib.get("http-equiv") or "").lower() == "refresh" and content:
                    page.urls.append(content.strip().lower())
            if attrib.get("itemprop", "").strip().lower() == "isaccessibleforfree":
                value = attrib.get("content") or attrib.get("href") or el.text or ""
                page.microdata_free.append(value.strip().lower())
            if tag not in _SKIP_TEXT_TAGS and el.text and size < MAX_PAGE_TEXT_CHARS:
                pieces.append(el.text)
                size += len(el.text)
        if el.tail and size < MAX_PAGE_TEXT_CHARS:
            pieces.append(el.tail)
            size += len(el.tail)
    page.pieces = pieces
    page.visible = _SPACE.sub(" ", " ".join(pieces)).strip().lower()[:MAX_PAGE_TEXT_CHARS]
    page.visible_words = count_words(page.visible)
    page.jsonld = [text[:_MAX_JSONLD_CHARS] for text in islice(
        jsonld.scripts(tree, max_scripts=_MAX_SCRIPTS), _MAX_JSONLD_BLOCKS)]
    return page


# -- CAPTCHA ---------------------------------------------------------------------------------

# Markup and scripts only challenge and block pages carry (not the bot-detection scripts
# that providers add to every page, such as Cloudflare's /cdn-cgi/challenge-platform/ jsd).
# Each pattern comes with words one of which every match contains: looking for those in a
# page is ten times cheaper than running the pattern over it (300 KB of markup, lowercased),
# and a page has none of them nearly always (tests/test_softblock.py checks every branch of
# every pattern has one).
_CHALLENGE_MARKUP = (
    ("Cloudflare challenge",
     ("_cf_chl", "challenge", "cf-browser-verification", "cf_captcha_kind",
      "cf-captcha-container"),
     re.compile(
        r"_cf_chl_opt|__cf_chl_\w{0,20}tk|/cdn-cgi/challenge-platform/[^\"'\s]{0,200}orchestrate/"
        r"|cf-browser-verification|cf-challenge-form|id=[\"']?challenge-(?:form|stage|running)"
        r"|cf_captcha_kind|cf-captcha-container|/cdn-cgi/styles/challenges\.css")),
    ("PerimeterX challenge", ("captcha",),
     re.compile(r"px-captcha|captcha\.px-cdn\.net|_pxcaptcha")),
    ("DataDome challenge", ("captcha-delivery",), re.compile(r"captcha-delivery\.com")),
    ("Imperva/Incapsula challenge", ("incapsula",),
     re.compile(r"_incapsula_resource|incapsula incident id")),
    ("AWS WAF challenge", ("awswaf", "gokuprops"),
     re.compile(r"awswafcookiedomainlist|gokuprops|captcha\.awswaf\.com")),
    ("Sucuri firewall block", ("sucuri",),
     re.compile(r"sucuri website firewall - access denied|cloudproxy@sucuri")),
)
_CHALLENGE_TITLES = (
    ("Cloudflare challenge", re.compile(
        r"^(?:just a moment|un instant|einen moment|un momento|één moment)\W*$"
        r"|^attention required!? \| cloudflare|^please wait\W*\| cloudflare")),
    ("PerimeterX challenge", re.compile(r"^access to this page has been denied")),
    ("Imperva challenge", re.compile(r"^pardon our interruption")),
    ("DDoS-Guard challenge", re.compile(r"^ddos-guard")),
    ("bot check", re.compile(
        r"^(?:are you a robot|human verification|verify you are human|bot verification"
        r"|security check|one more step)\W*$")),
)
# Names that say less than the widget on the page would.
_GENERIC_BLOCKS = frozenset(("bot check", "access denied"))
# Akamai's block page: "Access Denied ... Reference #18.7d3e1002.1700000000.1a2b3c".
_AKAMAI_REFERENCE = re.compile(r"reference\s*#\s*\d+\.[0-9a-f]+\.\d+\.[0-9a-f]+")
_ACCESS_DENIED = re.compile(r"^access denied\b|you don't have permission to access")

_WIDGETS = (
    # name, class names, iframe sources (as a rendered page has them)
    ("reCAPTCHA", ("g-recaptcha",),
     ("google.com/recaptcha/api2/anchor", "recaptcha.net/recaptcha/api2/anchor")),
    ("hCaptcha", ("h-captcha",), ("hcaptcha.com/captcha/",)),
    ("Cloudflare Turnstile", ("cf-turnstile",),
     ("challenges.cloudflare.com/cdn-cgi/challenge-platform",)),
)
_WIDGET_SCRIPTS = (
    ("reCAPTCHA", ("recaptcha/api.js", "recaptcha/enterprise.js")),
    ("hCaptcha", ("hcaptcha.com/1/api.js",)),
    ("Cloudflare Turnstile", ("challenges.cloudflare.com/turnstile",)),
)
# Site keys by their shape: reCAPTCHA "6L" + 38, hCaptcha a UUID, Turnstile "0x4AAAA...".
# (Other data-sitekey attributes exist: a Norwegian paper names its site with one.)
_SITEKEYS = (
    ("reCAPTCHA", re.compile(r"^6L[\w-]{38}$")),
    ("hCaptcha", re.compile(r"^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$", re.I)),
    ("Cloudflare Turnstile", re.compile(r"^[0-3]x[0-9A-Za-z_-]{20,}$")),
)


def _sitekey_kind(key: str) -> str | None:
    key = key.strip()
    return _first(name for name, rx in _SITEKEYS if rx.match(key))


_CAPTCHA_PHRASES = re.compile("|".join((
    r"verify(?:ing)? (?:that )?you are (?:a )?human", r"confirm (?:that )?you are (?:a )?human",
    r"prove (?:that )?you(?:'re| are) (?:a )?human", r"(?:i'?m|i am) not a robot",
    r"are you a robot", r"not a robot", r"checking your browser",
    r"checking if the site connection is secure", r"enable javascript and cookies to continue",
    r"unusual traffic from your (?:computer )?network", r"complete the security check",
    r"(?:complete|solve) the captcha", r"press (?:&|and) hold", r"human verification",
    r"sind sie ein roboter", r"kein roboter", r"dass sie ein mensch sind",
    r"je ne suis pas un robot", r"vous êtes (?:un )?humain", r"no soy un robot",
    r"eres (?:un )?humano", r"non sono un robot",
)))


def _captcha(page: _Page, text: str, words: int, status: int) -> SoftBlock | None:
    blocking = status in BLOCKING_STATUSES
    limit = CAPTCHA_MAX_WORDS_BLOCKING_STATUS if blocking else CAPTCHA_MAX_WORDS
    suffix = f", HTTP {status}" if blocking else ""

    strong = _first(name for name, words, rx in _CHALLENGE_MARKUP
                    if any(word in page.raw for word in words) and rx.search(page.raw))
    strong = strong or _first(name for name, rx in _CHALLENGE_TITLES if rx.search(page.title))
    akamai = _AKAMAI_REFERENCE.search(page.visible) or "errors.edgesuite.net" in page.raw
    if not strong and akamai:
        if _ACCESS_DENIED.search(page.title) or _ACCESS_DENIED.search(page.visible):
            strong = "Akamai access denied"
    if not strong and blocking and _ACCESS_DENIED.search(page.title):
        strong = "access denied"
    # Challenge wording counts most in the title or the extracted text; anywhere on the page
    # it may be a sign-up form's "confirm you are not a robot" beside a short story.
    said = (_CAPTCHA_PHRASES.search(page.title)
            or _CAPTCHA_PHRASES.search(text[:_MAX_TEXT_CHARS].lower()))
    phrase = said or _CAPTCHA_PHRASES.search(page.visible)
    widget = _first(
        name for name, classes, frames in _WIDGETS
        if any(c in page.tokens for c in classes) or any(f in u for u in page.urls for f in frames)
    )
    if widget is None and page.sitekey:
        widget = _first(name for name, scripts in _WIDGET_SCRIPTS
                        if any(s in u for u in page.urls for s in scripts)) or page.sitekey

    if strong in _GENERIC_BLOCKS and widget:
        strong = f"{widget} challenge"
    if strong:
        if words < limit:
            return SoftBlock(PageKind.CAPTCHA, f"{strong}{suffix}")
        return SoftBlock(PageKind.ARTICLE, f"{strong} markers, but {_n_words(words)} of text")
    if widget or phrase:
        what = f"{widget} challenge" if widget else f'"{phrase.group(0)}"'
        if words < limit and (blocking or said):
            return SoftBlock(PageKind.CAPTCHA, f"{what}{suffix}")
        if words < WIDGET_ONLY_MAX_WORDS and (
                (widget and phrase) or page.visible_words < WIDGET_ONLY_MAX_PAGE_WORDS):
            return SoftBlock(PageKind.CAPTCHA,
                             f"{what} on a page of {_n_words(page.visible_words)}")
        seen = f"{widget} widget" if widget else what
        return SoftBlock(PageKind.ARTICLE, f"{seen}, but {_n_words(words)} of text")
    return None


# -- CONSENT ---------------------------------------------------------------------------------

_CONSENT_HOSTS = (
    ("Google consent interstitial", re.compile(r"//consent\.(?:google|youtube)\.[a-z.]+/")),
    ("Yahoo consent wall",
     re.compile(r"//(?:consent\.yahoo\.com|guce\.(?:yahoo|aol)\.com|consent\.aol\.com)/")),
)
_CONSENT_TITLES = re.compile(
    r"^(?:before you continue|bevor sie (?:zu google weitergehen|fortfahren)|avant d'accéder à"
    r"|antes de ir a|prima di continuare|voordat je verdergaat|zanim przejdziesz"
    r"|yahoo is part of the yahoo family of brands|yahoo fait partie de la famille de marques"
    r"|yahoo ist teil der yahoo markenfamilie)"
)
# Consent dialogs as rendered into the page (class names and ids). Consent managers' scripts
# are not here: nearly every news page loads one.
_CONSENT_DIALOGS = (
    ("OneTrust consent dialog", re.compile(
        r"^(?:onetrust-(?:consent-sdk|banner-sdk|pc-sdk|policy)|optanon-alert-box-wrapper)$")),
    ("Sourcepoint consent dialog", re.compile(r"^sp_message_(?:container|iframe)(?:_\d+)?$")),
    ("Didomi consent dialog", re.compile(r"^didomi-(?:host|popup|notice|consent-popup)$")),
    ("Quantcast consent dialog", re.compile(r"^qc-cmp2-(?:container|ui|main)$")),
    ("Cookiebot consent dialog", re.compile(r"^cybotcookiebotdialog$")),
    ("Usercentrics consent dialog", re.compile(r"^usercentrics-root$")),
    ("TrustArc consent dialog", re.compile(
        r"^(?:truste-consent-track|truste_box_overlay|truste-consent-content)$")),
    ("consentmanager consent dialog", re.compile(r"^(?:cmpbox|cmpwrapper)$")),
    ("Google Funding Choices consent dialog", re.compile(r"^fc-consent-root$")),
    ("cookie wall", re.compile(
        r"^(?:cookie|consent|gdpr|privacy|cmp)[-_]?wall$|^cookie[-_]?consent[-_]?wall$")),
    ("cookie banner", re.compile(
        r"^(?:cookie|consent|gdpr)[-_](?:banner|dialog|modal|overlay|popup|notice)$")),
)
_CONSENT_PHRASES = re.compile("|".join((
    r"we value your privacy", r"we care about your privacy", r"your privacy choices",
    r"before you continue", r"we use cookies", r"(?:this|our) (?:web)?site uses cookies",
    r"cookies and (?:similar|other) technologies", r"store and/or access information on a device",
    r"accept all(?: cookies)?", r"reject all(?: cookies)?",
    r"manage (?:your )?(?:preferences|options|settings|choices)",
    r"cookie (?:settings|preferences)", r"legitimate interest", r"iab transparency",
    r"personali[sz]ed (?:ads|advertising|content)", r"we and our (?:\d+ )?partners",
    # German, French, Spanish, Italian, Dutch, Nordic, Polish
    r"wir (?:verwenden|nutzen) cookies", r"alle akzeptieren", r"alle ablehnen",
    r"akzeptieren und weiter", r"zustimmen und weiter", r"datenschutzeinstellungen",
    r"mit werbung weiterlesen", r"cookie-einstellungen", r"ihre einwilligung",
    r"nous utilisons des cookies", r"tout accepter", r"tout refuser",
    r"accepter et (?:continuer|fermer)", r"continuer sans accepter", r"paramétrer les cookies",
    r"utilizamos cookies", r"aceptar todo", r"aceptar todas", r"rechazar todo",
    r"configurar cookies", r"utilizziamo (?:i )?cookie", r"accetta tutt[oi]", r"rifiuta tutt[oi]",
    r"wij gebruiken cookies", r"alles accepteren", r"alle cookies accepteren",
    r"godkänn alla", r"accepter alle", r"tillad alle", r"godta alle", r"akceptuję",
)))
# A line of text is consent language when it speaks of any of these.
_CONSENT_VOCABULARY = re.compile(r"\b(?:%s)" % "|".join((
    r"cookies?\b", r"consent", r"privacy\b", r"partners?\b", r"vendors?\b",
    r"personali[sz](?:ed|e|ation)\b", r"personalisiert", r"advertis", r"ads\b",
    r"accept(?: all)?\b", r"reject(?: all)?\b", r"preferences\b", r"legitimate interest",
    r"devices?\b", r"tracking\b",
    r"gdpr\b", r"personal data\b", r"datenschutz", r"einwillig", r"zustimm", r"akzeptier",
    r"ablehn", r"werbung\b", r"partnern?\b", r"consentement", r"accepter\b", r"refuser\b",
    r"données\b", r"partenaires\b", r"publicit", r"consentimiento", r"aceptar\b", r"rechazar\b",
    r"socios\b", r"privacidad\b", r"consenso\b", r"accett", r"rifiut", r"toestemming",
    r"accepteren\b", r"samtycke", r"godkänn", r"samtykke", r"zgod", r"prywatno", r"akceptuj",
)), re.I)


def consent_share(text: str) -> float:
    """Share of the words of ``text`` (its first 300 lines) on lines about cookies and consent."""
    return _consent_share(islice(text[:_MAX_TEXT_CHARS].splitlines(), 300))


def _consent_share(lines: Iterable[str]) -> float:
    total = consent = 0
    for line in lines:
        n = count_words(line)
        total += n
        if n and _CONSENT_VOCABULARY.search(line):
            consent += n
    return consent / total if total else 0.0


def _consent(page: _Page, text: str, words: int) -> SoftBlock | None:
    wall = _first(name for name, rx in _CONSENT_HOSTS if any(rx.search(u) for u in page.urls))
    if wall is None and _CONSENT_TITLES.search(page.title):
        wall = f'consent interstitial ("{page.title[:60]}")'
    dialog = _first(name for name, rx in _CONSENT_DIALOGS if any(rx.search(t) for t in page.tokens))
    found = islice(_CONSENT_PHRASES.finditer(page.visible), 50)
    phrases = list(dict.fromkeys(m.group(0) for m in found))
    if not (wall or dialog or len(phrases) >= 2):
        return None
    what = wall or dialog or f'consent wording ("{phrases[0]}", "{phrases[1]}")'
    if wall and words < CONSENT_MAX_WORDS:
        return SoftBlock(PageKind.CONSENT, f"{what} and {_n_words(words)} of text")
    # Text made of consent language: most of its lines speak of cookies and consent, and it
    # says what a dialog says ("accept all", "we and our partners"), which a story about
    # cookie law would only quote.
    share = 0.0
    lowered = text[:_MAX_TEXT_CHARS].lower()
    said = {m.group(0) for m in islice(_CONSENT_PHRASES.finditer(lowered), 50)}
    if words and len(said) >= 2:
        share = consent_share(text)
    if share >= CONSENT_LANGUAGE_SHARE and (wall or words < CONSENT_LANGUAGE_MAX_WORDS):
        return SoftBlock(PageKind.CONSENT, f"{what} and text that is {share:.0%} consent language")
    if words < CONSENT_DIALOG_MAX_WORDS:
        # No article text: a wall if the page shows little but the dialog (an article page
        # whose extraction failed may carry a cookie banner too).
        if dialog and page.visible_words < CONSENT_EMPTY_PAGE_WORDS:
            return SoftBlock(PageKind.CONSENT,
                             f"{what} on a page of {_n_words(page.visible_words)}")
        page_share = _consent_share(page.pieces)
        if page_share >= CONSENT_PAGE_SHARE:
            return SoftBlock(PageKind.CONSENT, f"{what}, {page_share:.0%} of the page consent "
                                               f"language and {_n_words(words)} of text")
    return SoftBlock(PageKind.ARTICLE, f"{what}, but {_n_words(words)} of text")


# -- PAYWALLED -------------------------------------------------------------------------------

# What a teaser page says where the story stops.
_PAYWALL_PHRASES = re.compile("|".join((
    r"subscribe (?:now )?to (?:continue|keep) reading",
    r"subscribe to read (?:the full|this|more)",
    r"to continue reading,? (?:please )?(?:subscribe|sign in|log in|register)",
    r"this (?:article|story|content) is (?:only )?(?:available )?(?:for|to) "
    r"(?:paying )?subscribers",
    r"this (?:article|story|content) is (?:exclusive|reserved) (?:for|to) subscribers",
    r"exclusive to subscribers", r"the rest of this article is for subscribers",
    r"you have reached your (?:limit|maximum) of free articles",
    r"you(?:'ve| have) (?:read|used) (?:all )?(?:your|\d+ of \d+) free articles",
    r"create a free account to (?:continue|keep) reading",
    r"(?:sign in|log in|register) to (?:continue|keep) reading", r"unlock this article",
    # German
    r"jetzt weiterlesen mit", r"weiterlesen mit (?:\w+\s?)?(?:plus|\+)", r"plus-artikel",
    r"\+-artikel", r"abo abschließen und weiterlesen", r"nur für abonnenten",
    r"dieser (?:artikel|beitrag|inhalt) ist (?:nur |exklusiv )?für "
    r"(?:abonnenten|abonnent\*innen|abonnentinnen)",
    r"exklusiv für (?:abonnenten|abonnent\*innen|abonnentinnen|plus-leser)",
    r"um (?:diesen|den) (?:artikel|beitrag) (?:vollständig |weiter )?zu lesen",
    # French
    r"réservée? aux abonnés", r"abonnez-vous pour (?:lire|continuer)",
    r"il vous reste \d+\s?% de cet article à lire",
    # Spanish, Italian, Dutch, Nordic, Polish, Japanese
    r"exclusivo para suscriptores", r"suscríbete para (?:seguir|continuar) leyendo",
    r"riservato agli abbonati", r"abbonati per (?:continuare|leggere)",
    r"alleen voor abonnees", r"kun for abonnenter", r"endast för prenumeranter",
    r"tylko dla (?:subskrybentów|prenumeratorów)", r"dostęp do (?:artykułu|treści) tylko dla",
    r"この記事は有料会員限定です", r"有料会員限定記事", r"続きは有料会員",
)))
# Log-in and subscription prompts that many sites show on every page, free or not: they
# count like paywall markup.
_SUBSCRIBER_PROMPTS = re.compile("|".join((
    r"already a subscriber\??\s*(?:log|sign) in", r"(?:for )?subscribers only",
    r"unlock full access", r"sie sind bereits abonnent",
    r"bereits abonnent\??\s*(?:hier )?(?:anmelden|einloggen)",
    # Possessive: the two runs of spaces around the "?" would split a long run every way.
    r"déjà abonné\s*+\??\s*+(?:se connecter|connectez)", r"ya soy suscriptor",
)))
_PAYWALL_TOKEN = re.compile(
    r"paywall|pay-wall|regwall|reg-wall|registration-wall|^tp-(?:modal|backdrop|container-inner)$"
    r"|^piano-(?:paywall|offer|inline|container)|premium-(?:wall|barrier|gate)|subscriber-wall"
    r"|subscription-wall|abo-wall|plus-teaser|plus-wall|article-locked|locked-content"
    r"|content-locked|metered-wall|meter-wall|^offer-wall$"
)
_PAYWALL_SCRIPTS = ("tinypass.com", "piano.io/", "cdn.tinypass", "poool.fr", "pelcro.com", "zephr")
_FALSE = frozenset(("false", "no", "0", "http://schema.org/false", "https://schema.org/false"))
_TRUE = frozenset(("true", "yes", "1", "http://schema.org/true", "https://schema.org/true"))
_LOOSE_FREE = re.compile(
    r'"?isaccessibleforfree"?\s*:\s*"?(?:https?://schema\.org/)?(true|false)\b')


@dataclass
class _Declared:
    not_free: str | None = None
    """Why the page declares itself not free, if it does."""
    free: bool = False
    """The page declares itself free (and nowhere not free)."""
    length: int = 0
    """Article length the page declares, in words (articleBody, else wordCount)."""


def _declared(page: _Page) -> _Declared:
    found = _Declared()
    frees: list[str] = []
    bodies: list[int] = []
    counts: list[int] = []
    selectors: list[str] = []
    for block in page.jsonld:
        data = jsonld.parse(block)
        if data is None:
            # Broken JSON-LD still says what it says.
            frees += [m.group(1) for m in islice(_LOOSE_FREE.finditer(block.lower()), 20)]
            continue
        for key, value, node in _walk(data):
            if key == "isAccessibleForFree":
                frees.append(_flag(value))
                if _flag(value) == "false" and isinstance(node.get("cssSelector"), (str, list)):
                    sel = node["cssSelector"]
                    selectors.append(sel if isinstance(sel, str) else ", ".join(map(str, sel[:3])))
            elif key == "articleBody" and isinstance(value, str):
                bodies.append(count_words(value))
            elif key == "wordCount":
                try:
                    counts.append(int(str(value).strip()))
                except ValueError:
                    pass
    frees += [_flag(v) for v in page.microdata_free]
    tier = page.metas.get("article:content_tier") or page.metas.get("og:article:content_tier")
    if "false" in frees:
        found.not_free = "schema.org isAccessibleForFree=false"
        if selectors:
            found.not_free += f' (paywalled part "{selectors[0][:40]}")'
    elif tier == "locked":
        found.not_free = "article:content_tier=locked"
    found.free = found.not_free is None and ("true" in frees or tier == "free")
    found.length = max(bodies) if bodies and max(bodies) else max(counts, default=0)
    return found


def _flag(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    return "false" if text in _FALSE else "true" if text in _TRUE else text


def _walk(data: Any) -> Iterator[tuple[str, Any, dict]]:
    """(key, value, its object) for every key of every JSON object, bounded in nodes and depth."""
    for node in jsonld.objects(data, into=None, max_depth=_MAX_JSON_DEPTH,
                               max_nodes=_MAX_JSON_NODES, max_items=_MAX_JSON_ITEMS):
        for key, value in node.items():
            yield key, value, node


def _paywall(page: _Page, text: str, words: int) -> SoftBlock | None:
    declared = _declared(page)
    phrase = (_PAYWALL_PHRASES.search(page.visible)
              or _PAYWALL_PHRASES.search(text[:_MAX_TEXT_CHARS].lower()))
    strong = declared.not_free or (f'paywall text "{phrase.group(0)}"' if phrase else None)
    # Paywall markup and scripts sit on a metered site's free pages as well: they count
    # only when the page does not declare itself free.
    weak = None
    if not strong and not declared.free:
        token = _first(t for t in sorted(page.tokens) if _PAYWALL_TOKEN.search(t))
        script = _first(s for s in _PAYWALL_SCRIPTS if any(s in u for u in page.urls))
        prompt = _SUBSCRIBER_PROMPTS.search(page.visible)
        if token:
            weak = f'paywall markup (class/id "{token}")'
        elif prompt:
            weak = f'subscriber prompt "{prompt.group(0)}"'
        elif script:
            weak = f"paywall script ({script})"
        elif page.metas.get("article:content_tier") == "metered":
            weak = "article:content_tier=metered"
    what = strong or weak
    if not what:
        return None
    if words < TEASER_MAX_WORDS:
        return SoftBlock(PageKind.PAYWALLED, f"{what} and {_n_words(words)} of text")
    if (strong and declared.length >= TEASER_MAX_WORDS
            and words < TEASER_MAX_SHARE * declared.length):
        return SoftBlock(PageKind.PAYWALLED,
                         f"{what} and {words} of {declared.length} declared words")
    return SoftBlock(PageKind.ARTICLE, f"{what}, but {_n_words(words)} of text")


# -- the verdict -----------------------------------------------------------------------------


def _classify(html: Any, text: Any, status: Any) -> SoftBlock:
    if isinstance(html, (bytes, bytearray)):
        from normalize.article import decode_html

        html = decode_html(bytes(html))  # whole: a cut through a UTF-8 sequence would garble it
    if not isinstance(html, str) or not html.strip():
        return _ARTICLE
    html = _CONTROL_CHARS.sub("", html[:MAX_SCAN_CHARS])
    text = text if isinstance(text, str) else ""
    status = status if isinstance(status, int) and not isinstance(status, bool) else 200
    page = _read_page(html)
    if page is None:
        return _ARTICLE
    words = count_words(text)
    overruled: list[SoftBlock] = []
    checks = (lambda: _captcha(page, text, words, status), lambda: _consent(page, text, words),
              lambda: _paywall(page, text, words))
    for check in checks:
        verdict = check()
        if verdict is None:
            continue
        if verdict.kind is not PageKind.ARTICLE:
            return verdict
        overruled.append(verdict)
    return overruled[0] if overruled else _ARTICLE


def _n_words(n: int) -> str:
    return "1 word" if n == 1 else f"{n} words"


def _first(items: Iterator[str] | Any) -> str | None:
    return next(iter(items), None)
