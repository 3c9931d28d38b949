"""``normalize.softblock``: CAPTCHA pages, consent walls and paywall teasers are recognised,
real articles (with comment-form CAPTCHAs, consent scripts, paywall markup) are not.

Fixtures are hand-written after real challenge, consent and paywall pages; the text passed
to ``classify_page`` is what ``extract_article`` makes of them, as in the crawler. The corpus
check prints its figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import random

import pytest

from normalize import PageKind, SoftBlock, classify_page, extract_article
from normalize.softblock import _CHALLENGE_MARKUP, TEASER_MAX_WORDS, count_words
from tests.test_normalize import truth_text

URL = "https://www.example-news.com/news/2024/05/03/harbour-bridge"


def classify(html: str | bytes, *, status: int = 200) -> SoftBlock:
    return classify_page(html, extract_article(html, URL).text, status=status)


# -- story text ------------------------------------------------------------------------------

_SENTENCES = [
    "The city council voted on Tuesday evening to approve the budget for the new harbour bridge.",
    "Supporters said the crossing would cut commuting times for thousands of residents.",
    "Opponents warned that the cost had doubled since the first estimate three years ago.",
    "The mayor told reporters that construction could begin as early as next spring.",
    "Local shop owners along the waterfront remain divided over the plans.",
    "An engineering firm from Rotterdam will oversee the design of the main span.",
    "The regional government has promised to cover a third of the total cost.",
    "Traffic planners expect the old ferry line to close once the bridge opens.",
    "Environmental groups have asked for a new study of the effects on the estuary.",
    "A public hearing on the final route is scheduled for the end of the month.",
]


def _paragraphs(count: int, offset: int = 0) -> str:
    """``count`` distinct paragraphs of about 45 words each."""
    out = []
    for i in range(count):
        k = offset + i
        a, b, c = (_SENTENCES[(k + j) % len(_SENTENCES)] for j in range(3))
        out.append(f"<p>Paragraph {k + 1}. {a} {b} {c}</p>")
    return "\n".join(out)


def _article_page(body: str, *, head: str = "", after: str = "", lang: str = "en",
                  title: str = "Council approves harbour bridge budget") -> str:
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8">
<title>{title} | The Daily Ledger</title>
<meta property="og:title" content="{title}">
{head}
</head><body>
<header class="site-header"><a href="/">The Daily Ledger</a>
<nav><ul><li><a href="/news">News</a></li><li><a href="/business">Business</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/culture">Culture</a></li></ul></nav></header>
<main><article class="story">
<h1>{title}</h1>
<p class="byline">By Jane Doe</p>
<div class="story-body">
{body}
</div>
</article>
{after}
</main>
<footer><p>&copy; 2024 The Daily Ledger</p><a href="/privacy">Privacy policy</a>
<a href="/terms">Terms of use</a></footer>
</body></html>"""


# -- CAPTCHA pages ---------------------------------------------------------------------------

CLOUDFLARE_CHALLENGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta http-equiv="X-UA-Compatible" content="IE=Edge"><meta name="robots" content="noindex,nofollow">
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>*{box-sizing:border-box;margin:0;padding:0}html{line-height:1.15}body{display:flex}</style>
<meta http-equiv="refresh" content="390"></head><body class="no-js">
<div class="main-wrapper" role="main"><div class="main-content">
<h1 class="zone-name-title h1">www.example-news.com</h1>
<h2 id="challenge-running" class="h2">Checking if the site connection is secure</h2>
<noscript><div id="challenge-error-title"><div class="h2"><span class="icon-wrapper">
<div class="heading-icon warning-icon"></div></span>
<span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></div></noscript>
<div id="challenge-body-text" class="core-msg spacer">www.example-news.com needs to review the
security of your connection before proceeding.</div>
<form id="challenge-form" action="/news/2024/05/03/harbour-bridge?__cf_chl_f_tk=kz1C3bX.Yb7wEoE2m1aU1kq0cSY4tP1l9ZkXyH6cM5A-1714723200-0.0.1.1-1234" method="POST" enctype="application/x-www-form-urlencoded">
<input type="hidden" name="md" value="q9Vd1bH2x8"></form></div></div>
<script>(function(){window._cf_chl_opt={cvId: '3',cZone: "www.example-news.com",cType: 'managed',
cNounce: '47118',cRay: '87f1d2c3a4b5c6d7',cHash: 'a1b2c3d4e5f6a7b',
cUPMDTk: "\\/news\\/2024\\/05\\/03\\/harbour-bridge?__cf_chl_tk=kz1C3bX.Yb7wEoE2m1aU1kq0cSY4tP1l9ZkXyH6cM5A-1714723200-0.0.1.1-1234",
cFPWv: 'g',cTTimeMs: '1000',cMTimeMs: '390000',cTplV: 5,cTplB: 'cf',cK: ""};
var cpo = document.createElement('script');
cpo.src = '/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=87f1d2c3a4b5c6d7';
document.getElementsByTagName('head')[0].appendChild(cpo);}());</script>
<div class="footer" role="contentinfo"><div class="footer-inner"><div class="clearfix diagnostic-wrapper">
<div class="ray-id">Ray ID: <code>87f1d2c3a4b5c6d7</code></div></div>
<div class="text-center" id="footer-text">Performance &amp; security by
<a rel="noopener noreferrer" href="https://www.cloudflare.com?utm_source=challenge&amp;utm_campaign=m" target="_blank">Cloudflare</a></div></div></div>
</body></html>"""

CLOUDFLARE_ATTENTION = """<!DOCTYPE html><html lang="en-US"><head>
<title>Attention Required! | Cloudflare</title><meta charset="UTF-8">
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/cf.errors.css"></head>
<body><div id="cf-wrapper"><div id="cf-error-details" class="cf-error-details-wrapper">
<div class="cf-wrapper cf-header cf-error-overview"><h1 data-translate="block_headline">Sorry, you have been blocked</h1>
<h2 class="cf-subheadline">You are unable to access example-news.com</h2></div>
<div class="cf-section cf-wrapper"><div class="cf-columns two"><div class="cf-column">
<h2 data-translate="blocked_why_headline">Why have I been blocked?</h2>
<p>This website is using a security service to protect itself from online attacks.</p></div>
<div class="cf-column"><h2>What can I do to resolve this?</h2>
<p>You can email the site owner to let them know you were blocked.</p></div></div></div>
<div class="cf-error-footer cf-wrapper"><p>Cloudflare Ray ID: <strong>87f1d2c3a4b5c6d7</strong></p></div>
</div></div></body></html>"""

RECAPTCHA_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Security check</title>
<script src="https://www.google.com/recaptcha/api.js" async defer></script>
<style>body{font-family:sans-serif;max-width:40em;margin:4em auto}</style></head>
<body><div class="container">
<h1>One more step</h1>
<p>Please complete the security check to access www.example-news.com</p>
<form action="/captcha/verify" method="post">
<div class="g-recaptcha" data-sitekey="6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI" data-callback="onSubmit"></div>
<input type="hidden" name="return" value="/news/2024/05/03/harbour-bridge">
<button type="submit">Continue</button></form>
<p class="small">Why do I have to complete a CAPTCHA? Completing the CAPTCHA proves you are a human
and gives you temporary access to the web property.</p>
</div></body></html>"""

# Nothing but the widget and a button: no challenge wording at all.
RECAPTCHA_WIDGET_ONLY = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>example-news.com</title>
<script src="https://www.google.com/recaptcha/api.js" async defer></script></head>
<body><form action="/" method="post">
<div class="g-recaptcha" data-sitekey="6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI"></div>
<button type="submit">Continue</button></form></body></html>"""

HCAPTCHA_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>example-news.com</title>
<script src="https://js.hcaptcha.com/1/api.js" async defer></script></head>
<body><main class="challenge">
<h1>Verify you are human</h1>
<p>We have received an unusually large number of requests from your network.
Please verify that you are a human to continue.</p>
<form method="post" action="/.well-known/captcha">
<div class="h-captcha" data-sitekey="10000000-ffff-ffff-ffff-000000000001"></div>
<button type="submit">Submit</button></form>
</main></body></html>"""

TURNSTILE_PAGE = """<!DOCTYPE html><html lang="de"><head><meta charset="utf-8">
<title>Einen Moment bitte …</title>
<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script></head>
<body><div class="box"><p>Bitte bestätigen Sie, dass Sie ein Mensch sind.</p>
<form action="/verify" method="POST"><div class="cf-turnstile" data-sitekey="0x4AAAAAAADnPIDROrmt1Wwj"></div>
<button>Weiter</button></form></div></body></html>"""

DATADOME_PAGE = """<html><head><title>example-news.com</title>
<style>#cmsg{animation: A 1.5s;}@keyframes A{0%{opacity:0;}99%{opacity:0;}100%{opacity:1;}}</style>
</head><body style="margin:0"><p id="cmsg">Please enable JS and disable any ad blocker</p>
<script data-cfasync="false">var dd={'rt':'c','cid':'AHrlqAAAAAMAx0m5xZ8eh3IAtQWLJw==','hsh':'2211F522B61E269B869FA6EAFFB5E1','t':'fe','s':43337,'e':'a7ae84ae2c0d26c23f0f7c8b5a5a0b2e','host':'geo.captcha-delivery.com'}</script>
<script data-cfasync="false" src="https://ct.captcha-delivery.com/c.js"></script>
</body></html>"""

PERIMETERX_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Access to this page has been denied</title></head>
<body><section class="center-wrapper"><div class="page-title-wrapper"><div class="page-title">
<h1>Before we continue...</h1></div></div>
<div class="content-wrapper"><div class="content">
<p>Press &amp; Hold to confirm you are<br>a human (and not a bot).</p>
<div id="px-captcha"></div></div></div>
<div class="page-footer-wrapper"><div class="page-footer">
<p>Reference ID 4b2a5e11-0a6c-11ef-9a3c-2d5f5a6e4c11</p></div></div></section>
<script>window._pxAppId='PXu6b0qd2S';window._pxJsClientSrc='/u6b0qd2S/init.js';
window._pxHostUrl='/u6b0qd2S/xhr';window._pxreCaptchaTheme='light';</script>
<script src="/u6b0qd2S/captcha/captcha.js?a=c&u=4b2a5e11-0a6c-11ef-9a3c-2d5f5a6e4c11&v=&m=0"></script>
</body></html>"""

AKAMAI_DENIED = """<HTML><HEAD>
<TITLE>Access Denied</TITLE>
</HEAD><BODY>
<H1>Access Denied</H1>

You don't have permission to access "http&#58;&#47;&#47;www&#46;example&#45;news&#46;com&#47;news&#47;" on this server.<P>
Reference&#32;&#35;18&#46;5c3e1002&#46;1714723200&#46;2a1b3c4d
<P>https&#58;&#47;&#47;errors&#46;edgesuite&#46;net&#47;18&#46;5c3e1002&#46;1714723200&#46;2a1b3c4d</P>
</BODY>
</HTML>
"""


@pytest.mark.parametrize(
    ("html", "status", "reason"),
    [
        (CLOUDFLARE_CHALLENGE, 403, "Cloudflare challenge"),
        (CLOUDFLARE_CHALLENGE, 200, "Cloudflare challenge"),
        (CLOUDFLARE_ATTENTION, 403, "Cloudflare challenge"),
        (RECAPTCHA_PAGE, 200, "reCAPTCHA challenge"),
        (RECAPTCHA_WIDGET_ONLY, 200, "reCAPTCHA challenge"),
        (HCAPTCHA_PAGE, 429, "hCaptcha challenge"),
        (TURNSTILE_PAGE, 200, "Cloudflare Turnstile challenge"),
        (DATADOME_PAGE, 403, "DataDome challenge"),
        (PERIMETERX_PAGE, 403, "PerimeterX challenge"),
        (AKAMAI_DENIED, 403, "Akamai access denied"),
    ],
    ids=["cloudflare-403", "cloudflare-200", "cloudflare-attention", "recaptcha",
         "recaptcha-widget-only", "hcaptcha", "turnstile", "datadome", "perimeterx", "akamai"],
)
def test_challenge_pages_are_captcha(html, status, reason):
    verdict = classify(html, status=status)
    assert verdict.kind is PageKind.CAPTCHA, verdict
    assert verdict.reason.startswith(reason), verdict
    assert verdict.blocked
    # Bytes as received are read the same way.
    assert classify_page(html.encode("utf-8"), "", status=status).kind is PageKind.CAPTCHA


def test_a_blocking_status_strengthens_a_captcha_widget():
    # A widget and a paragraph that names no challenge: not enough on a 200 ...
    html = RECAPTCHA_WIDGET_ONLY.replace(
        "<form", f"<div class=\"notice\">{_paragraphs(2)}</div><form")
    text = extract_article(html, URL).text
    assert 50 <= count_words(text) < 150
    assert classify_page(html, text, status=200).kind is PageKind.ARTICLE
    # ... but the same page answered with 429 is a challenge.
    verdict = classify_page(html, text, status=429)
    assert verdict.kind is PageKind.CAPTCHA
    assert verdict.reason == "reCAPTCHA challenge, HTTP 429"


# -- consent walls ---------------------------------------------------------------------------

GOOGLE_CONSENT = """<!DOCTYPE html><html lang="en" dir="ltr"><head><meta charset="utf-8">
<title>Before you continue to Google</title>
<meta name="viewport" content="initial-scale=1, width=device-width"></head>
<body><div class="KxvlWc"><div class="NIoIEf">
<h1 class="I90TVb" id="S3BnEe">Before you continue to Google</h1>
<div class="qqtRac"><div class="VP4fnf">We use <a href="https://policies.google.com/technologies/cookies?hl=en">cookies</a> and data to</div>
<ul class="dbXO9"><li class="gowsYd">Deliver and maintain Google services</li>
<li class="gowsYd">Track outages and protect against spam, fraud, and abuse</li>
<li class="gowsYd">Measure audience engagement and site statistics to understand how our services are used and enhance the quality of those services</li></ul>
<div class="VP4fnf">If you choose to “Accept all,” we will also use cookies and data to</div>
<ul class="dbXO9"><li class="gowsYd">Develop and improve new services</li>
<li class="gowsYd">Deliver and measure the effectiveness of ads</li>
<li class="gowsYd">Show personalized content, depending on your settings</li>
<li class="gowsYd">Show personalized ads, depending on your settings</li></ul>
<div class="VP4fnf">If you choose to “Reject all,” we will not use cookies for these additional purposes.</div>
<div class="VP4fnf">Non-personalized content is influenced by things like the content you’re currently viewing,
activity in your active Search session, and your location. Select “More options” to see additional
information, including details about managing your privacy settings.</div></div>
<div class="spoKVd">
<form action="https://consent.google.com/save" method="POST" style="display:inline">
<input type="hidden" name="gl" value="DE"><input type="hidden" name="m" value="0">
<input type="hidden" name="app" value="0"><input type="hidden" name="pc" value="n">
<input type="hidden" name="continue" value="https://news.google.com/"><input type="hidden" name="hl" value="en">
<input type="hidden" name="set_eom" value="true">
<button class="VfPpkd-LgbsSe" jsname="tWT92d" aria-label="Reject all">Reject all</button></form>
<form action="https://consent.google.com/save" method="POST" style="display:inline">
<input type="hidden" name="gl" value="DE"><input type="hidden" name="continue" value="https://news.google.com/">
<input type="hidden" name="set_eom" value="false">
<button class="VfPpkd-LgbsSe" jsname="b3VHJd" aria-label="Accept all">Accept all</button></form>
<a class="VfPpkd-RLmnJb" href="https://consent.google.com/dl?continue=https://news.google.com/&amp;gl=DE&amp;hl=en&amp;pc=n">More options</a>
</div></div></div>
<div class="footer"><a href="https://policies.google.com/privacy?hl=en">Privacy Policy</a> ·
<a href="https://policies.google.com/terms?hl=en">Terms of Service</a></div>
</body></html>"""

YAHOO_CONSENT = """<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">
<title>Yahoo is part of the Yahoo family of brands</title></head>
<body class="consent-body"><div class="con-wizard"><div class="wizard-body">
<h2 class="wizard-title">Yahoo is part of the Yahoo family of brands</h2>
<p class="wizard-paragraph">The sites and apps that we own and operate, including Yahoo and AOL, and our digital
advertising service, Yahoo Advertising. When you use our sites and apps, we use cookies to provide
our sites and apps to you, authenticate users, apply security measures, and prevent spam and abuse.</p>
<p class="wizard-paragraph">If you click '<strong>Accept all</strong>', we and our partners, including 237 who
are part of the IAB Transparency &amp; Consent Framework, will also store and/or access information
on a device to use precise geolocation data and for personalised advertising and content.</p>
<form method="post" class="consent-form" action="https://consent.yahoo.com/v2/collectConsent?sessionId=3_cc-session_0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e">
<input type="hidden" name="csrfToken" value="abc123"><input type="hidden" name="originalDoneUrl" value="https://news.yahoo.com/">
<button type="submit" class="btn secondary reject-all" name="reject" value="reject">Reject all</button>
<button type="submit" class="btn secondary accept-all" name="agree" value="agree">Accept all</button>
<a class="btn secondary manage-settings" href="/v2/partners?sessionId=3_cc-session">Manage privacy settings</a>
</form></div></div></body></html>"""

ONETRUST_WALL = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>The Daily Ledger</title>
<script src="https://cdn.cookielaw.org/scripttemplates/otSDKStub.js" data-domain-script="0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" charset="UTF-8"></script>
<script>function OptanonWrapper() { }</script></head>
<body><div id="onetrust-consent-sdk"><div class="onetrust-pc-dark-filter ot-fade-in"></div>
<div id="onetrust-banner-sdk" class="otCenterRounded" role="region" aria-label="Cookie banner">
<div role="dialog" aria-modal="true" aria-label="We value your privacy"><div class="ot-sdk-container">
<div class="ot-sdk-row"><div id="onetrust-group-container" class="ot-sdk-twelve ot-sdk-columns">
<div id="onetrust-policy"><h2 id="onetrust-policy-title">We value your privacy</h2>
<div id="onetrust-policy-text">We and our partners store and/or access information on a device, such as
cookies, and process personal data, such as unique identifiers and standard information sent by a
device for personalised advertising and content, advertising and content measurement, audience
research and services development. With your permission we and our partners may use precise
geolocation data and identification through device scanning. You may click to consent to our and
our 1432 partners’ processing as described above. Alternatively you may access more detailed
information and change your preferences before consenting or to refuse consenting.</div></div></div>
<div id="onetrust-button-group-parent" class="ot-sdk-three ot-sdk-columns"><div id="onetrust-button-group">
<button id="onetrust-pc-btn-handler">Manage preferences</button>
<button id="onetrust-reject-all-handler">Reject all</button>
<button id="onetrust-accept-btn-handler">Accept all cookies</button></div></div></div></div></div></div></div>
</body></html>"""

SOURCEPOINT_WALL = """<!DOCTYPE html><html lang="de"><head><meta charset="utf-8"><title>Zustimmung</title>
<script>window._sp_queue = [];window._sp_ = {config: {accountId: 1234, baseEndpoint: 'https://cdn.privacy-mgmt.com',
gdpr: {}, events: {onMessageReady: function() {}}}};</script>
<script src="https://cdn.privacy-mgmt.com/unified/wrapperMessagingWithoutDetection.js" async></script></head>
<body class="sp-message-open"><div id="sp_message_container_812345" class="sp_veil">
<iframe id="sp_message_iframe_812345" src="https://cdn.privacy-mgmt.com/index.html?message_id=812345&amp;consentUUID=null&amp;consent_origin=https%3A%2F%2Fcdn.privacy-mgmt.com%2Fconsent%2Ftcfv2" title="SP Consent Message" style="width:100%;height:100%;border:0"></iframe>
</div></body></html>"""

# A German "consent or pay" wall, server-rendered: no consent manager's markup at all.
PUR_WALL = """<!DOCTYPE html><html lang="de"><head><meta charset="utf-8">
<title>Tagesblatt – Lesen Sie mit Werbung oder im Pur-Abo</title></head>
<body><div class="wall"><img src="/logo.svg" alt="Tagesblatt">
<h1>Mit Werbung weiterlesen</h1>
<p>Wir verwenden Cookies und ähnliche Technologien. Mit Ihrer Einwilligung speichern wir und unsere
Partner Informationen auf Ihrem Gerät und verarbeiten personenbezogene Daten für personalisierte
Werbung und Inhalte, Werbe- und Inhaltsmessung sowie Zielgruppenforschung.</p>
<p>Ihre Einwilligung können Sie jederzeit über den Link Datenschutzeinstellungen am Ende jeder Seite widerrufen.</p>
<button class="btn">Zustimmen und weiter</button>
<h2>Werbefrei lesen mit dem Pur-Abo</h2><p>Ohne Werbung und ohne Tracking für 2,99 € im Monat.</p>
<a href="/abo/pur">Jetzt Pur-Abo abschließen</a>
<p><a href="/impressum">Impressum</a> · <a href="/datenschutz">Datenschutz</a> ·
<a href="/datenschutzeinstellungen">Datenschutzeinstellungen</a></p></div></body></html>"""


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        (GOOGLE_CONSENT, "Google consent interstitial"),
        (YAHOO_CONSENT, "Yahoo consent wall"),
        (ONETRUST_WALL, "OneTrust consent dialog"),
        (SOURCEPOINT_WALL, "Sourcepoint consent dialog"),
        (PUR_WALL, "consent wording"),
    ],
    ids=["google", "yahoo", "onetrust", "sourcepoint", "pur-wall"],
)
def test_consent_walls_are_consent(html, reason):
    verdict = classify(html)
    assert verdict.kind is PageKind.CONSENT, verdict
    assert verdict.reason.startswith(reason), verdict
    assert verdict.blocked


def test_consent_dialog_text_passed_off_as_the_article_is_consent():
    # An extractor that took the dialog for the article: the text is consent language.
    text = ("We value your privacy\nWe and our partners store and/or access information on a device, "
            "such as cookies, and process personal data for personalised advertising and content.\n"
            "You may click to consent to our and our 1432 partners' processing as described above.\n"
            "Manage preferences\nReject all\nAccept all cookies")
    verdict = classify_page(ONETRUST_WALL, text)
    assert verdict.kind is PageKind.CONSENT
    assert "consent language" in verdict.reason


# -- paywall teasers -------------------------------------------------------------------------

_LD_NOT_FREE = """<script type="application/ld+json">{"@context": "https://schema.org",
"@type": "NewsArticle", "headline": "Council approves harbour bridge budget",
"datePublished": "2024-05-03T08:00:00+01:00", "author": {"@type": "Person", "name": "Jane Doe"},
"isAccessibleForFree": false,
"hasPart": {"@type": "WebPageElement", "isAccessibleForFree": false, "cssSelector": ".paywalled-content"}}
</script>"""

_SUBSCRIBE_BOX = """<div class="subscription-prompt">
<h2>Subscribe to continue reading</h2>
<p>Get unlimited digital access to The Daily Ledger for $1 a week. Cancel anytime.</p>
<a class="button" href="/subscribe">Subscribe now</a>
<p>Already a subscriber? <a href="/login">Log in</a></p></div>"""

PAYWALL_TEASER = _article_page(_paragraphs(2), head=_LD_NOT_FREE, after=_SUBSCRIBE_BOX)

# The string form some publishers write, and a declared length far above the teaser's.
PAYWALL_TEASER_DECLARED_LENGTH = _article_page(
    _paragraphs(5),
    head=_LD_NOT_FREE.replace("false", '"False"').replace(
        '"headline"', '"wordCount": "1400", "headline"'),
    after=_SUBSCRIBE_BOX,
)

# No declaration and no wording: the paywall's markup and script, and a short text.
MARKUP_ONLY_TEASER = _article_page(
    _paragraphs(2),
    head='<script src="https://cdn.tinypass.com/api/tinypass.min.js"></script>',
    after='<div class="article-paywall" id="piano-paywall"><div class="tp-container-inner"></div></div>',
)

GERMAN_PLUS_TEASER = _article_page(
    """<p class="article__intro">Auf der Friedrichstraße sollen bis zum Herbst neue geschützte Radwege
entstehen. Der Bezirk hat die Pläne am Montag vorgestellt, Anwohner und Händler sind gespalten.</p>
<p>Nach monatelangem Streit um die Verkehrsführung in Mitte hat das Bezirksamt einen Kompromiss
vorgelegt. Die Fahrspuren für Autos werden schmaler, Parkplätze fallen weg.</p>
<div class="plus-offer"><span class="badge">BT+</span><p>Plus-Artikel</p>
<h3>Jetzt weiterlesen mit BT+</h3>
<p>Alle Artikel auf tagblatt.de lesen – 4 Wochen für 0,99 €, danach monatlich kündbar.</p>
<a href="/abo">Jetzt testen</a>
<p>Sie sind bereits Abonnent? <a href="/login">Hier anmelden</a></p></div>""",
    lang="de", title="Neue Radwege in Mitte: Was sich jetzt ändert",
)

FRENCH_TEASER = _article_page(
    """<p class="article__desc">Le gouvernement a présenté mercredi son projet de réforme des
retraites, qui prévoit un relèvement progressif de l'âge légal de départ.</p>
<p>Le texte sera examiné à l'Assemblée nationale dès le mois prochain. Les syndicats ont déjà
appelé à une journée de mobilisation.</p>
<section class="article__restricted"><p>Il vous reste 86% de cet article à lire. La suite est
réservée aux abonnés.</p><a href="/abonnement">S'abonner</a>
<p>Déjà abonné ? <a href="/login">Se connecter</a></p></section>""",
    lang="fr", title="Retraites : le gouvernement présente sa réforme",
)


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        (PAYWALL_TEASER, "schema.org isAccessibleForFree=false"),
        (PAYWALL_TEASER_DECLARED_LENGTH, "schema.org isAccessibleForFree=false"),
        (MARKUP_ONLY_TEASER, "paywall markup"),
        (GERMAN_PLUS_TEASER, "paywall text"),
        (FRENCH_TEASER, "paywall text"),
    ],
    ids=["isaccessibleforfree-false", "declared-length", "markup-only", "german-plus",
         "french-abonnes"],
)
def test_paywall_teasers_are_paywalled(html, reason):
    verdict = classify(html)
    assert verdict.kind is PageKind.PAYWALLED, verdict
    assert verdict.reason.startswith(reason), verdict
    assert not verdict.blocked


def test_the_declared_length_catches_a_teaser_above_the_word_limit():
    text = extract_article(PAYWALL_TEASER_DECLARED_LENGTH, URL).text
    words = count_words(text)
    assert TEASER_MAX_WORDS <= words < 0.4 * 1400
    verdict = classify_page(PAYWALL_TEASER_DECLARED_LENGTH, text)
    assert verdict.reason == (f'schema.org isAccessibleForFree=false (paywalled part '
                              f'".paywalled-content") and {words} of 1400 declared words')


# -- real articles that carry the markers ----------------------------------------------------

_COMMENT_FORM = """<section id="comments"><h2>Leave a comment</h2>
<form id="commentform" action="/wp-comments-post.php" method="post">
<textarea name="comment" rows="6"></textarea><input name="author" placeholder="Name">
<div class="g-recaptcha" data-sitekey="6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI"></div>
<script src="https://www.google.com/recaptcha/api.js" async defer></script>
<button type="submit">Post comment</button></form></section>"""

_CONSENT_SCRIPTS = """<script src="https://cdn.cookielaw.org/scripttemplates/otSDKStub.js" data-domain-script="0a1b2c3d"></script>
<script>window._sp_queue = [];window._sp_ = {config: {accountId: 1234, baseEndpoint: 'https://cdn.privacy-mgmt.com'}};</script>
<script src="https://cdn.privacy-mgmt.com/unified/wrapperMessagingWithoutDetection.js" async></script>
<script src="https://sdk.privacy-center.org/loader.js" async></script>"""

# The banner as a saved, rendered page has it.
_ONETRUST_BANNER = ONETRUST_WALL[ONETRUST_WALL.index('<div id="onetrust-consent-sdk">'):ONETRUST_WALL.index("</body>")]

LONG_ARTICLE_WITH_COMMENT_CAPTCHA = _article_page(_paragraphs(12), after=_COMMENT_FORM)
SHORT_ARTICLE_WITH_COMMENT_CAPTCHA = _article_page(_paragraphs(3), after=_COMMENT_FORM)
LONG_ARTICLE_WITH_CONSENT_BANNER = _article_page(
    _paragraphs(12), head=_CONSENT_SCRIPTS, after=_ONETRUST_BANNER)
PAYWALLED_ARTICLE_WITH_FULL_TEXT = _article_page(
    f'<div class="paywalled-content paywall">{_paragraphs(12)}</div>',
    head=_LD_NOT_FREE + '<meta property="article:content_tier" content="locked">'
    + '<script src="https://experience.tinypass.com/xbuilder/experience/load?aid=AbCdEf"></script>',
    after=_SUBSCRIBE_BOX.replace('class="subscription-prompt"', 'class="tp-modal paywall-prompt"'),
)
SHORT_FREE_ARTICLE_ON_A_PIANO_SITE = _article_page(
    '<div class="login">Already a subscriber? Log in</div>' + _paragraphs(2),
    head='<script type="application/ld+json">{"@type": "NewsArticle", "isAccessibleForFree": true}</script>'
    + '<script src="https://cdn.tinypass.com/api/tinypass.min.js"></script>',
    after='<div id="piano-inline-footer" class="piano-container"></div>',
)
SHORT_ARTICLE_WITH_NEWSLETTER_ROBOT_CHECK = _article_page(
    _paragraphs(3),
    after="""<aside class="signup"><h3>Get the morning briefing</h3>
<form action="/newsletter"><input type="email" name="email" placeholder="Email address">
<label><input type="checkbox" name="human"> Please confirm you are not a robot</label>
<button>Sign up</button></form></aside>""",
)
COOKIE_LAW_STORY_WITH_BANNER = _article_page(
    """<p>Regulators in Brussels fined the search company on Thursday over its cookie banners.</p>
<p>The watchdog found that rejecting cookies took several clicks while accepting them took one.</p>
<p>Under the EU privacy rules, consent to tracking cookies must be as easy to refuse as to give.</p>
<p>Consumer groups welcomed the decision on cookie consent and asked for more checks of banners.</p>
<p>The company said it would appeal against the fine and change its consent dialog next year.</p>
<p>Privacy lawyers said the ruling would force many publishers to redesign their cookie notices.</p>""",
    head=_CONSENT_SCRIPTS, after=_ONETRUST_BANNER, title="Brussels fines search giant over cookie banners",
)


@pytest.mark.parametrize(
    ("html", "overruled"),
    [
        (LONG_ARTICLE_WITH_COMMENT_CAPTCHA, "reCAPTCHA widget, but"),
        (SHORT_ARTICLE_WITH_COMMENT_CAPTCHA, "reCAPTCHA widget, but"),
        (SHORT_ARTICLE_WITH_NEWSLETTER_ROBOT_CHECK, '"not a robot", but'),
        (LONG_ARTICLE_WITH_CONSENT_BANNER, "OneTrust consent dialog, but"),
        (PAYWALLED_ARTICLE_WITH_FULL_TEXT, "schema.org isAccessibleForFree=false"),
        (SHORT_FREE_ARTICLE_ON_A_PIANO_SITE, ""),
        (COOKIE_LAW_STORY_WITH_BANNER, "OneTrust consent dialog, but"),
    ],
    ids=["comment-recaptcha", "short-with-comment-recaptcha", "short-with-robot-checkbox",
         "consent-banner",
         "paywall-marked-full-text", "short-free-on-piano-site", "cookie-law-story"],
)
def test_articles_with_markers_stay_articles(html, overruled):
    text = extract_article(html, URL).text
    assert count_words(text) >= 80  # the story is there
    verdict = classify_page(html, text)
    assert verdict.kind is PageKind.ARTICLE, verdict
    assert verdict.reason.startswith(overruled), verdict
    assert not verdict.blocked


def test_a_plain_article_has_no_reason():
    html = _article_page(_paragraphs(8))
    assert classify(html) == SoftBlock(PageKind.ARTICLE, "")


# -- the API ---------------------------------------------------------------------------------


def test_api_shape():
    assert [k.value for k in PageKind] == ["article", "captcha", "consent", "paywalled"]
    assert PageKind("paywalled") is PageKind.PAYWALLED and PageKind.CAPTCHA == "captcha"
    verdict = classify(CLOUDFLARE_CHALLENGE, status=403)
    with pytest.raises(AttributeError):
        verdict.kind = PageKind.ARTICLE  # frozen
    assert json.dumps(verdict.kind) == '"captcha"'
    # Deterministic.
    assert all(classify(h) == classify(h) for h in (PAYWALL_TEASER, GOOGLE_CONSENT, RECAPTCHA_PAGE))


def test_cjk_characters_count_as_words():
    story = "気象庁は13日、日向灘で震度5弱の地震があったと発表した。" * 10
    assert count_words(story) > 150
    assert count_words("The council voted.") == 3


# -- hostile input ---------------------------------------------------------------------------


def _junk_bytes(size: int) -> bytes:
    return random.Random(20240503).randbytes(size)


def _junk_page(size: int) -> str:
    rng = random.Random(7)
    words = ["harbour", "bridge", "council", "vote", "lorem", "ipsum", "traffic", "ferry", "span"]
    block = "".join(
        f"<div class=\"c{i % 50}\"><p>{' '.join(rng.choice(words) for _ in range(40))}</p>"
        f"<a href=\"/x/{i}\">link {i}</a></div>\n" for i in range(200)
    )
    html = "<html><head><title>junk</title></head><body>"
    return html + block * (size // len(block) + 1) + "</body></html>"


@pytest.mark.parametrize(
    ("html", "text", "status"),
    [
        ("", "", 200),
        (b"", "", 200),
        ("   \n ", "", 200),
        (None, None, 200),
        (12345, "text", 200),
        ("<html", "", 200),
        (b"\x00" * 1000, "", 200),
        (_junk_bytes(65_536), "", 200),
        (_junk_bytes(20_000_000), "", 403),
        (_junk_page(20_000_000), "word " * 500, 200),
        ("<html><body>" + "<div>" * 100_000 + "</body></html>", "", 200),
        ('<html><script type="application/ld+json">' + "[" * 50_000 + "</script></html>", "", 200),
        ('<html><script type="application/ld+json">{"isAccessibleForFree": "maybe", "wordCount": "many"}'
         "</script></html>", "x " * 300, "200"),
    ],
    ids=["empty", "empty-bytes", "whitespace", "none", "int", "unclosed", "nul-bytes",
         "binary-64k", "binary-20mb", "junk-page-20mb", "nested-divs", "deep-json", "odd-values"],
)
def test_bad_input_is_an_article_without_exception(html, text, status):
    verdict = classify_page(html, text, status=status)
    assert verdict.kind is PageKind.ARTICLE


# -- the corpus ------------------------------------------------------------------------------


def test_no_corpus_page_is_a_soft_block(corpus, corpus_extractions):
    """The 132 real articles: none is a CAPTCHA or a consent wall, and a page may only be
    PAYWALLED when its ground-truth body is itself a teaser."""
    assert len(corpus) >= 100
    kinds: dict[PageKind, int] = dict.fromkeys(PageKind, 0)
    without_text: dict[PageKind, int] = dict.fromkeys(PageKind, 0)
    overruled = 0
    wrong = []
    paywalled = []
    for page in corpus:
        html = page.html
        # Were extraction to fail, the page would still be no block: its markers are an
        # article page's (a cookie banner, a comment form's CAPTCHA), not a wall's.
        empty = classify_page(html, "")
        without_text[empty.kind] += 1
        if empty.blocked:
            wrong.append((page.original_url, "without text", empty))
        text = corpus_extractions[page.original_url].text
        verdict = classify_page(html, text)
        kinds[verdict.kind] += 1
        overruled += verdict.kind is PageKind.ARTICLE and bool(verdict.reason)
        if verdict.kind in (PageKind.CAPTCHA, PageKind.CONSENT):
            wrong.append((page.original_url, verdict))
        elif verdict.kind is PageKind.PAYWALLED:
            truth = count_words(truth_text(json.loads(page.truth.read_text(encoding="utf-8"))))
            paywalled.append((page.original_url, truth, count_words(text), verdict.reason))
            if truth >= TEASER_MAX_WORDS:
                wrong.append((page.original_url, verdict))
    print(f"\ncorpus: {len(corpus)} pages; " + ", ".join(f"{k.value} {n}" for k, n in kinds.items())
          + f"; articles with overruled signals {overruled}; with empty text: "
          + ", ".join(f"{k.value} {n}" for k, n in without_text.items()))
    for url, truth, got, reason in paywalled:
        print(f"  paywalled: {url}: truth {truth} words, extracted {got}; {reason}")
    assert wrong == []


def _branches(pattern: str) -> list[str]:
    """The top-level alternatives of a regular expression."""
    branches, depth, start, escaped = [], 0, 0, False
    for i, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(pattern[start:i])
            start = i + 1
    return [*branches, pattern[start:]]


def test_every_challenge_pattern_branch_has_one_of_the_words_looked_for_first():
    """The markup patterns only run on pages that contain one of their words: a branch
    without one would never be looked for."""
    for name, words, rx in _CHALLENGE_MARKUP:
        for branch in _branches(rx.pattern):
            literal = branch.replace("\\.", ".")
            assert any(word in literal for word in words), (name, branch)
        assert all(word == word.lower() for word in words)  # the page is lowercased
