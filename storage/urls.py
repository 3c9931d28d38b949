"""URL canonicalisation: one article, one canonical URL, whatever link led to it.

Part of the archive's identity rules: an article's id and its URL markers derive from its
canonical URL (``storage.keys``), so writers and readers alike canonicalise here."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from publicsuffixlist import PublicSuffixList
from w3lib.url import canonicalize_url as _w3lib_canonicalize

from storage.lazy import once

# Query parameters that only say where a reader came from; dropping them never changes
# the page. Kept conservative: a parameter that might select content stays.
_TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|gclsrc|msclkid|yclid|mc_cid|mc_eid|_ga|_gl|igshid"
    r"|cmpid|ocid|wt_mc|wt_zmc|at_medium|at_campaign|ito|xtor|__twitter_impression)$",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_AMP_SUFFIX = re.compile(r"\.amp(\.html?)?$", re.IGNORECASE)
_AMP_SEGMENT_END = re.compile(r"/amp/?$", re.IGNORECASE)
_AMP_SEGMENT_START = re.compile(r"^/amp/", re.IGNORECASE)


def canonicalize_url(url: str) -> str:
    """Normalise ``url``: scheme and host case, default port, fragment, tracking parameters,
    AMP variants (``amp.`` hosts, ``/amp`` paths, ``?amp``, ``outputType=amp``), parameter
    order, percent-encoding and trailing slash. Returns ``url`` unchanged if it
    is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower().rstrip(".")
    # AMP copies live on amp. hosts; the article is the same.
    if host.startswith("amp.") and host.count(".") >= 2:
        host = host[len("amp."):]
    if ":" in host:  # an IPv6 literal keeps its brackets, or the netloc is unparseable
        host = f"[{host}]"
    port = parts.port if _port_ok(parts) else None
    netloc = host if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
         if not _TRACKING_PARAMS.match(k) and not _is_amp_param(k, v)]
    )
    path = _fold_amp_path(parts.path or "/")
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return _w3lib_canonicalize(urlunsplit((scheme, netloc, path, query, "")))


def _is_amp_param(key: str, value: str) -> bool:
    key, value = key.lower(), value.lower()
    return (key in ("amp", "_amp") and value in ("", "1", "true", "yes")) or (
        key == "outputtype" and value == "amp")


def _fold_amp_path(path: str) -> str:
    """``/story/amp``, ``/amp/story``, ``/story.amp`` and ``/story.amp.html`` → the story."""
    path = _AMP_SUFFIX.sub(r"\1", path)
    path = _AMP_SEGMENT_END.sub("", path) or "/"
    return _AMP_SEGMENT_START.sub("/", path)


def _port_ok(parts) -> bool:
    try:
        parts.port  # noqa: B018 - reading it raises ValueError for a malformed port
    except ValueError:
        return False
    return True


def same_site(url: str, other: str) -> bool:
    """Whether two URLs are on one site: one registrable domain (a public suffix and the
    label before it: ``edition.cnn.com`` and ``www.cnn.com``, not ``example.co.uk`` and
    ``other.co.uk``), by the Public Suffix List, its private part included (each
    ``*.blogspot.com`` blog its own site). IP addresses, and names under no registrable
    domain (``localhost``), compare exactly. Ports and schemes do not count."""
    site = _site(url)
    return site is not None and site == _site(other)


def _site(url: str) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The registrable domain of ``url``'s host (IDNA-encoded), its address, or None."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return None
    if not host:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:  # not a name IDNA can spell (a label over 63 characters, ...)
        pass
    return _public_suffixes().privatesuffix(host) or host


@once
def _public_suffixes() -> PublicSuffixList:
    """The list bundled with the package: nothing fetched, nothing cached on disk. Parsed
    once per process, on first use (0.05-0.08 s of CPU), by one thread: a crawl's storage
    threads all ask with their first pages (8 parses, 0.6 s of CPU, with functools.cache)."""
    return PublicSuffixList()


def choose_canonical_url(fetched_url: str, declared: str | None) -> str:
    """The canonical URL of a page fetched at ``fetched_url`` that declares ``declared``
    (``rel=canonical`` or ``og:url``). The declaration is trusted only when it stays on
    the same site (:func:`same_site`), so a page cannot claim another site's article."""
    if declared:
        try:
            absolute = urljoin(fetched_url, declared.strip())
        except ValueError:
            absolute = ""
        if absolute and same_site(absolute, fetched_url):
            return canonicalize_url(absolute)
    return canonicalize_url(fetched_url)
