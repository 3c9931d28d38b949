"""The crawl's HTTP download handler: Scrapy's HTTP/1.1 handler with two guards it lacks.

- **Bounded response headers.** Twisted reads a response's header section line by line and
  keeps every line: a server that sends header lines for as long as it likes (8 KB lines
  for 25 s took a crawl to 1.9 GB) or one endless folded header grows the crawl without
  bound. Here a response whose header section passes :data:`MAX_HEADER_BYTES` or
  :data:`MAX_HEADER_LINES` is cut off and fails as :class:`HeadersTooLarge` (recorded as a
  ``too_large`` error). Chromium accepts 256 KiB of response headers; real news sites send
  a few KiB.
- **Requests through a proxy go to the address that was checked.** Without a proxy, every
  connection is made to an address ``spiders.reach.GuardedResolver`` checked. Through a
  proxy the proxy resolves the name, so the name is resolved and checked here first
  (:class:`ProxyTargetMiddleware`, which refuses a name it cannot resolve: a name only the
  proxy knows could lead anywhere), and the request is sent to the proxy with that address
  as its target: ``GET http://<address>/path`` with the ``Host`` header of the name, or
  ``CONNECT <address>:443`` with TLS still speaking to the name (SNI). A name that answers
  differently when the proxy asks (DNS rebinding) changes nothing.

Both hook into Scrapy's and Twisted's private classes (``scrapy.core.downloader.handlers.
http11``, ``twisted.web._newclient``), as Scrapy itself does to swap its parser in: they are
kept to this one module, and ``tests/test_hostile_limits.py`` checks each against a real
server and a real proxy, so a Scrapy or Twisted upgrade that moves them fails there.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from scrapy.core.downloader.handlers.http11 import (
    HTTP11DownloadHandler,
    _LenientHTTP11ClientFactory,
    _LenientHTTP11ClientProtocol,
    _LenientHTTPClientParser,
    _ScrapyAgent,
    _ScrapyProxyAgent,
    _tunnel_request_data,
    _TunnelingAgent,
    _TunnelingTCP4ClientEndpoint,
)
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.web.http_headers import Headers as TxHeaders

from spiders.middlewares import RequestRefused
from spiders.reach import address_refusal, ip_literal, normalize_host
from spiders.stats import record_error

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 256 * 1024
"""Most bytes of one response's status line and header section."""
MAX_HEADER_LINES = 1000
"""Most lines (headers and their continuation lines) in one response's header section."""

PINNED_ADDRESS = "newsarchive_address"
"""Request meta key: the checked address a proxied request is sent to."""


class HeadersTooLarge(Exception):
    """A response's header section passed :data:`MAX_HEADER_BYTES` or
    :data:`MAX_HEADER_LINES`; the connection was dropped."""


class _BoundedHeadersParser(_LenientHTTPClientParser):
    """Scrapy's lenient response parser, counting what the header section holds.
    Exceptions raised here reach ``HTTP11ClientProtocol.dataReceived``, which drops the
    connection and fails the request with them."""

    # Also bounds a single line Twisted buffers while waiting for its end (LineReceiver).
    MAX_LENGTH = 64 * 1024

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted's interface)
        counted = self.__dict__.setdefault("_newsarchive_counted", [0, 0])
        counted[0] += len(line) + 1
        counted[1] += 1
        if counted[0] > MAX_HEADER_BYTES or counted[1] > MAX_HEADER_LINES:
            raise HeadersTooLarge(
                f"response headers over {MAX_HEADER_BYTES // 1024} KiB or "
                f"{MAX_HEADER_LINES} lines; the response was dropped")
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 (Twisted's interface)
        raise HeadersTooLarge(f"a response header line over {self.MAX_LENGTH // 1024} KiB; "
                              "the response was dropped")


class _BoundedHeadersProtocol(_LenientHTTP11ClientProtocol):
    def request(self, request):
        deferred = super().request(request)
        # As Scrapy swaps its own parser in (HTTP11ClientProtocol.request hard-codes the
        # class): ours adds no state but a counter that starts afresh with each parser.
        self._parser.__class__ = _BoundedHeadersParser
        return deferred


class _BoundedHeadersFactory(_LenientHTTP11ClientFactory):
    def buildProtocol(self, addr):  # noqa: N802 (Twisted's interface)
        return _BoundedHeadersProtocol(self._quiescentCallback)


class _PinnedProxyAgent(_ScrapyProxyAgent):
    """A plain-HTTP request through a proxy, naming the checked address in its target so
    the proxy resolves nothing; the ``Host`` header still names the site."""

    def __init__(self, *args: Any, address: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = address

    def request(self, method, uri, headers=None, bodyProducer=None):  # noqa: N803
        parts = urlsplit(uri.decode("ascii"))
        headers = headers.copy() if headers is not None else TxHeaders()
        if not headers.hasHeader(b"host"):
            headers.setRawHeaders(b"host", [parts.netloc.rsplit("@", 1)[-1].encode("ascii")])
        host = f"[{self._address}]" if ":" in self._address else self._address
        netloc = f"{host}:{parts.port}" if parts.port else host
        pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        return super().request(method, pinned.encode("ascii"), headers, bodyProducer)


class _PinnedTunnelEndpoint(_TunnelingTCP4ClientEndpoint):
    """``CONNECT <checked address>:<port>`` to the proxy; TLS then names the site."""

    def __init__(self, *args: Any, address: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = address

    def requestTunnel(self, protocol):  # noqa: N802 (Scrapy's name)
        host = f"[{self._address}]" if ":" in self._address else self._address
        protocol.transport.write(
            _tunnel_request_data(host, self._tunneledPort, self._proxyAuthHeader))
        self._protocolDataReceived = protocol.dataReceived
        protocol.dataReceived = self.processProxyResponse
        self._protocol = protocol
        return protocol


class _PinnedTunnelingAgent(_TunnelingAgent):
    def __init__(self, *, address: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._address = address

    def _getEndpoint(self, uri):  # noqa: N802 (Twisted's name)
        return _PinnedTunnelEndpoint(
            reactor=self._reactor, host=uri.host, port=uri.port, proxyConf=self._proxyConf,
            contextFactory=self._contextFactory,
            timeout=self._endpointFactory._connectTimeout,
            bindAddress=self._endpointFactory._bindAddress, address=self._address)

    def _requestWithEndpoint(self, key, endpoint, *args, **kwargs):
        # A pooled tunnel is reused only for the same checked address.
        return super()._requestWithEndpoint(key + (self._address,), endpoint, *args, **kwargs)


class _GuardedScrapyAgent(_ScrapyAgent):
    def _get_agent(self, request: Request, timeout: float):
        agent = super()._get_agent(request, timeout)
        address = request.meta.get(PINNED_ADDRESS)
        if address is None or not request.meta.get("proxy"):
            return agent
        from twisted.internet import reactor

        bind_address = agent._endpointFactory._bindAddress
        if isinstance(agent, _TunnelingAgent):
            return _PinnedTunnelingAgent(
                address=address, reactor=reactor, proxyConf=agent._proxyConf,
                contextFactory=self._contextFactory, connectTimeout=timeout,
                bindAddress=bind_address, pool=self._pool)
        if isinstance(agent, _ScrapyProxyAgent):
            return _PinnedProxyAgent(
                reactor, agent._proxyURI.toBytes(), self._contextFactory, timeout,
                bind_address, self._pool, address=address)
        return agent


class GuardedHTTP11DownloadHandler(HTTP11DownloadHandler):
    """Scrapy's HTTP/1.1 handler with bounded response headers, sending proxied requests
    to their checked address (see the module's docstring). Set for http and https in
    ``DOWNLOAD_HANDLERS``."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self._pool._factory = _BoundedHeadersFactory

    async def download_request(self, request: Request) -> Response:
        if request.meta.get(PINNED_ADDRESS) is None or not request.meta.get("proxy"):
            return await super().download_request(request)
        # Scrapy builds its agent inside this method: the same, with ours.
        from scrapy.utils._download_handlers import wrap_twisted_exceptions

        agent = _GuardedScrapyAgent(
            contextFactory=self._contextFactory, bindAddress=self._bind_address,
            pool=self._pool, maxsize=self._default_maxsize, warnsize=self._default_warnsize,
            fail_on_dataloss=self._fail_on_dataloss, crawler=self._crawler,
            tls_verbose_logging=self._tls_verbose_logging)
        with wrap_twisted_exceptions():
            return await maybe_deferred_to_future(agent.download_request(request))


class ProxyTargetMiddleware:
    """For a request that goes through a proxy (``HttpProxyMiddleware``, 750, has set its
    ``proxy``), resolve its host here, refuse it unless every rule of ``spiders.reach``
    allows the address, and pin the request to that address. A host that does not resolve
    here is refused: behind a proxy with its own DNS it could be anything. Its priority must
    be above ``HttpProxyMiddleware``'s."""

    def __init__(self, crawler: Crawler) -> None:
        from spiders.reach import ALLOW_SETTING

        self.crawler = crawler
        self.allowed_hosts = frozenset(
            normalize_host(h) for h in crawler.settings.getlist(ALLOW_SETTING))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProxyTargetMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if not request.meta.get("proxy") or PINNED_ADDRESS in request.meta:
            return
        host = normalize_host(urlsplit(request.url).hostname or "")
        literal = ip_literal(host)
        if literal is not None:
            address, why = str(literal), address_refusal(host, [literal], self.allowed_hosts)
        else:
            address, why = await self._resolve(host)
        if why is None:
            request.meta[PINNED_ADDRESS] = address
            return
        listed = request.meta.get("redirect_urls", [request.url])[0]
        record_error(self.crawler.stats, listed, "private_address", why)
        logger.warning("refused %s through the proxy: %s", request.url, why)
        raise RequestRefused(f"{request.url}: {why}")

    async def _resolve(self, host: str) -> tuple[str, str | None]:
        """The address ``host`` resolves to here, and why it may not be reached (None if
        it may)."""
        from twisted.internet import reactor

        from spiders.reach import PrivateAddressError

        try:
            address = await maybe_deferred_to_future(reactor.resolve(host))
        except PrivateAddressError as exc:
            return "", str(exc)
        except Exception as exc:  # noqa: BLE001 - not found, timeout
            return "", (f"{host} does not resolve here ({exc.__class__.__name__}); through a "
                        "proxy it could lead anywhere, so it is not fetched")
        ipaddress.ip_address(address)  # the resolver answers addresses; anything else is a bug
        return address, address_refusal(host, [address], self.allowed_hosts)
