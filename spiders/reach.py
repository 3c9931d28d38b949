"""Where the crawler may connect: never to a loopback, private, link-local or otherwise
non-public address, unless the site lists the host in ``allow_private_hosts``.

A crawled site is untrusted: its sitemaps, links and redirects, or the DNS of a domain it
controls, can point the crawler at the machine's own services or at the cloud's metadata
endpoint (``169.254.169.254``), whose answers would then be archived where anyone with the
archive can read them. ``allowed_domains`` alone does not stop that: a name within it can
resolve to any address. So the rule is applied where the address is known, twice:

- :class:`PrivateAddressMiddleware` (a downloader middleware, before robots.txt) checks
  every request, redirects and the URLs sitemaps list included: an IP literal as it is,
  a name through the crawl's resolver. A refused request is recorded as a
  ``private_address`` error naming the URL, and nothing is sent anywhere.
- :class:`GuardedResolver` (``TWISTED_DNS_RESOLVER``) is the resolver every connection
  uses, and it refuses the same addresses: a name that answers differently when the
  connection is made (DNS rebinding, an evicted cache entry) still cannot reach them.

IPv4 addresses in other notations (``2130706433``, ``0177.0.0.1``, ``127.1``) are names
to :mod:`ipaddress` but addresses to the C resolver, so they are resolved, and refused, like
any name; IPv6 forms that embed an IPv4 address (``::ffff:127.0.0.1``, 6to4, Teredo,
NAT64) are judged by the address they embed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy.resolver import CachingThreadedResolver
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IResolverSimple
from zope.interface import implementer

from spiders.middlewares import RequestRefused
from spiders.stats import record_error

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

ALLOW_SETTING = "NEWSARCHIVE_ALLOW_PRIVATE_HOSTS"
"""Scrapy setting: the hosts the crawl may reach at non-public addresses (the site's
``allow_private_hosts``)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class PrivateAddressError(DNSLookupError):
    """The resolver refused a name whose address is not public. A DNSLookupError, so that
    Twisted drops the address quietly and the connection fails as "host not found"."""


class AddressRefused(RequestRefused):
    """A request to a non-public address was refused; recorded already (``private_address``)."""


def normalize_host(host: str) -> str:
    """A host as the rules compare it: lower case, without brackets or a trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells in standard notation (dotted quad, IPv6), else None."""
    try:
        return ipaddress.ip_address(normalize_host(host))
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, Teredo,
    NAT64), or None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or int(ip) >> 32 == 0:  # NAT64, or the deprecated ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is off limits (``loopback``, ``link-local``, ``private``, ...), or None
    for a public (globally routable, unicast) address."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return address_kind(embedded)
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:  # shared address space (100.64.0.0/10), reserved ranges
        return "reserved"
    return None


def address_refusal(host: str, addresses: Iterable[str | IPAddress],
                    allowed_hosts: Iterable[str] = ()) -> str | None:
    """Why the crawler must not connect to ``host`` at ``addresses`` (every one is checked),
    or None if it may: all are public, or the host is one of ``allowed_hosts``."""
    host = normalize_host(host)
    if host in {normalize_host(h) for h in allowed_hosts}:
        return None
    for address in addresses:
        ip = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) \
            else ipaddress.ip_address(address)
        kind = address_kind(ip)
        if kind is not None:
            spelled = host if ip_literal(host) == ip else f"{host} is {ip}, which"
            return (f"{spelled} is a {kind} address; list the host in allow_private_hosts "
                    "to crawl it")
    return None


@implementer(IResolverSimple)
class GuardedResolver(CachingThreadedResolver):
    """Scrapy's caching resolver (IPv4, the address every connection uses), refusing
    names that resolve to a non-public address unless they are allowed. Cached answers are
    checked too."""

    def __init__(self, reactor, cache_size: int, timeout: float,
                 allowed_hosts: Iterable[str] = ()) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.allowed_hosts = frozenset(normalize_host(h) for h in allowed_hosts)

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor) -> GuardedResolver:
        settings = crawler.settings
        cache_size = settings.getint("DNSCACHE_SIZE") if settings.getbool("DNSCACHE_ENABLED") else 0
        return cls(reactor, cache_size, settings.getfloat("DNS_TIMEOUT"),
                   [*settings.getlist(ALLOW_SETTING),
                    *(proxy_hosts() if settings.getbool("HTTPPROXY_ENABLED") else ())])

    def getHostByName(self, name: str, timeout=()):  # noqa: N802 (Twisted's interface)
        resolved = super().getHostByName(name, timeout)
        resolved.addCallback(self._checked, name)
        return resolved

    def _checked(self, address: str, name: str) -> str:
        why = address_refusal(name, [address], self.allowed_hosts)
        if why is not None:
            raise PrivateAddressError(why)
        return address


def proxy_hosts() -> list[str]:
    """The hosts of the proxies the environment configures (``http_proxy`` and kin, as
    Scrapy's ``HttpProxyMiddleware`` reads them): the operator's own, often on a private
    address, so the crawl may connect to them. What is sent through them is checked by
    ``spiders.download.ProxyTargetMiddleware``."""
    from urllib.request import getproxies

    hosts = []
    for url in getproxies().values():
        try:
            host = urlsplit(url if "://" in url else f"http://{url}").hostname
        except ValueError:
            continue
        if host:
            hosts.append(host)
    return hosts


class PrivateAddressMiddleware:
    """Refuse a request whose host is, or resolves to, a non-public address, unless the
    site allows the host. Its priority must be below ``RobotsTxtMiddleware``'s (100), so
    that not even robots.txt is fetched there, and above ``OffsiteMiddleware``'s (50), so
    that hosts off the site are dropped before they are looked up."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.allowed_hosts = frozenset(
            normalize_host(h) for h in crawler.settings.getlist(ALLOW_SETTING))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PrivateAddressMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https"):
            return  # no handler of ours fetches anything else (see DOWNLOAD_HANDLERS)
        host = normalize_host(parts.hostname or "")
        if host in self.allowed_hosts:
            return
        why = "no host" if not host else await self._refusal(host)
        if why is None:
            return
        listed = request.meta.get("redirect_urls", [request.url])[0]
        reason = why if listed == request.url else f"redirect to {request.url}: {why}"
        record_error(self.crawler.stats, listed, "private_address", reason)
        logger.warning("refused %s: %s", request.url, why)
        raise AddressRefused(f"{request.url}: {why}")

    async def _refusal(self, host: str) -> str | None:
        literal = ip_literal(host)
        if literal is not None:
            return address_refusal(host, [literal], self.allowed_hosts)
        from twisted.internet import reactor  # the crawl's reactor, installed by now

        try:
            address = await maybe_deferred_to_future(reactor.resolve(host))
        except PrivateAddressError as exc:
            return str(exc)
        except Exception:  # noqa: BLE001 - not found, timeout: the download says so ("dns")
            return None
        # Checked here as well, in case the crawl runs with another resolver.
        return address_refusal(host, [address], self.allowed_hosts)
