"""Outbound URL safety: only https to public addresses, checked again at connect time.

Client `callback_url`, `image_urls` and the provider's `video_url` are strangers' URLs that we
fetch or POST to. A URL is refused when it is not https or its host is (or resolves to) a
loopback, private, link-local, multicast, reserved or unique-local address, including IPv4
addresses mapped into IPv6. `SafeHttp` checks each URL (and each redirect hop) before sending,
so a refusal names the field. The pin happens at connect time, in the network backend of
`pinned_client()`: it resolves the name, checks every address again and connects to the checked
one, so a DNS answer that changes after the check is refused too. Request URLs keep their host
names, so connections are pooled per host and TLS verifies the real name: a connection made for
one tenant's host is never reused for another host that shares its address.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from sora_relay.errors import UnsafeUrl

MAX_URL_LENGTH = 2048
_REDIRECTS = (301, 302, 303, 307, 308)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# NAT64 embeds an IPv4 address in the last 32 bits; judge that address, not the wrapper.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class OutboundUrl:
    url: str
    scheme: str
    host: str  # without brackets for IPv6
    port: int
    target: str  # path and query


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public_address(address: IPAddress, *, allow_loopback: bool = False) -> bool:
    address = _unmapped(address)
    if allow_loopback and address.is_loopback:
        return True
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or not address.is_global
    )


def parse_outbound_url(url: str, *, field: str, allow_loopback: bool = False) -> OutboundUrl:
    """Check what can be checked without DNS; raise UnsafeUrl naming `field` otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"{field} must be an https URL of at most {MAX_URL_LENGTH} characters", param=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"{field} is not a valid URL", param=field) from error
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or parts.username or parts.password:
        raise UnsafeUrl(f"{field} must name a host and carry no credentials", param=field)
    literal = _ip_literal(host)
    loopback_ok = allow_loopback and (
        host == "localhost" or (literal is not None and _unmapped(literal).is_loopback)
    )
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback_ok):
        raise UnsafeUrl(f"{field} must use https", param=field)
    if host == "localhost" or host.endswith(".localhost"):
        if not loopback_ok:
            raise UnsafeUrl(f"{field} must not point at this machine", param=field)
    elif literal is not None and not is_public_address(literal, allow_loopback=allow_loopback):
        raise UnsafeUrl(f"{field} must not point at a private, loopback or link-local address", param=field)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    default_port = 443 if parts.scheme == "https" else 80
    return OutboundUrl(url=url, scheme=parts.scheme, host=host, port=port or default_port, target=target)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to now (tests replace this to avoid real DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_address(target: OutboundUrl, *, field: str, allow_loopback: bool = False) -> str:
    """The address to connect to: every address the name resolves to must be public."""
    return _checked_host(target.host, target.port, field=field, allow_loopback=allow_loopback)


def _checked_host(host: str, port: int, *, field: str, allow_loopback: bool) -> str:
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve_host(host, port)
        except OSError as error:
            raise UnsafeUrl(f"{field} host does not resolve", param=field) from error
    if not addresses:
        raise UnsafeUrl(f"{field} host does not resolve", param=field)
    for address in addresses:
        if not is_public_address(ipaddress.ip_address(address.split("%")[0]), allow_loopback=allow_loopback):
            raise UnsafeUrl(f"{field} resolves to a private, loopback or link-local address", param=field)
    return addresses[0]


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the address the name resolves to now, after checking it like any URL."""

    def __init__(self, *, allow_loopback: bool) -> None:
        self._allow_loopback = allow_loopback

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # `host` names what TLS verifies; only the socket goes to the checked address.
        address = _checked_host(host, port, field=host, allow_loopback=self._allow_loopback)
        return super().connect_tcp(address, port, timeout, local_address, socket_options)


class _PinnedTransport(httpx.HTTPTransport):
    # HTTPTransport takes no network_backend, so replace its pool with the one it would build
    # (same TLS context and limits, no proxy: a proxy would connect for us and defeat the pin)
    # plus the pinning backend.
    def __init__(self, *, allow_loopback: bool, verify: ssl.SSLContext | str | bool = True) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(allow_loopback=allow_loopback),
        )


def pinned_client(
    *, timeout: float, allow_loopback: bool, verify: ssl.SSLContext | str | bool = True
) -> httpx.Client:
    """An httpx client for strangers' URLs: every connection goes to an address checked as it opens."""
    return httpx.Client(
        transport=_PinnedTransport(allow_loopback=allow_loopback, verify=verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,  # no proxies or .netrc credentials for strangers' URLs
    )


class SafeHttp:
    """httpx requests to untrusted URLs, each URL and redirect hop checked before it is sent.

    Give it a `pinned_client()` so connections are checked (and pinned) as they open as well.
    """

    def __init__(self, client: httpx.Client, *, allow_loopback: bool = False, max_redirects: int = 3) -> None:
        self._client = client
        self._allow_loopback = allow_loopback
        self._max_redirects = max_redirects

    def _request(
        self,
        method: str,
        target: OutboundUrl,
        *,
        field: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float | None,
    ) -> httpx.Request:
        # Refuse before anything is sent (naming the field); pinned_client checks again at connect.
        checked_address(target, field=field, allow_loopback=self._allow_loopback)
        return self._client.build_request(
            method,
            target.url,
            headers=headers,
            content=content,
            timeout=timeout if timeout is not None else self._client.timeout,
        )

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        field: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        follow_redirects: bool = True,
        timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """Open a streamed response; the caller reads it inside the `with` block."""
        current = url
        for _ in range(self._max_redirects + 1):
            target = parse_outbound_url(current, field=field, allow_loopback=self._allow_loopback)
            request = self._request(
                method, target, field=field, headers=headers or {}, content=content, timeout=timeout
            )
            try:
                response = self._client.send(request, stream=True, follow_redirects=False)
            except UnsafeUrl as error:  # the name resolved differently when the connection opened
                raise UnsafeUrl(
                    f"{field} was refused at connect time: {error.message}", param=field
                ) from error
            location = response.headers.get("location")
            if follow_redirects and response.status_code in _REDIRECTS and location:
                response.close()
                current = str(httpx.URL(current).join(location))
                if response.status_code == 303:
                    method, content = "GET", None
                continue
            try:
                yield response
            finally:
                response.close()
            return
        raise UnsafeUrl(f"{field} redirected more than {self._max_redirects} times", param=field)
