"""Whether a host is one of a site's ``allowed_domains``: the one such check, for
discovery (which URLs to fetch), the redirect guards (where a redirect may go), the
screenshot renderer (which subresources load) and CC-NEWS backfills (which captures are the
site's). No imports: the renderer's process and the scanner load it alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def host_matcher(allowed_domains: Iterable[str]) -> Callable[[str], bool]:
    """A predicate on a host: one of ``allowed_domains`` or a subdomain of one (no
    domains: every host, as with Scrapy's ``OffsiteMiddleware``). The domains are
    normalised once, for checks on every URL a crawl or a scan meets.

    Not Scrapy's ``url_is_from_any_domain``: it compares a URL's whole network location,
    port and user info included, so ``http://127.0.0.1:8080/`` is not from ``127.0.0.1``
    there. This compares the host, as Scrapy's ``OffsiteMiddleware`` does."""
    domains = tuple(d.lower().strip(".") for d in allowed_domains if d)
    suffixes = tuple("." + d for d in domains)
    if not domains:
        return lambda host: True

    def allowed(host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in domains or host.endswith(suffixes)

    return allowed


def host_allowed(host: str, allowed_domains: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``allowed_domains`` or a subdomain of one (see
    :func:`host_matcher`)."""
    return host_matcher(allowed_domains)(host)
