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

import httpcore
import httpx

from sora_relay.domain.errors import UnsafeUrl
from sora_relay.domain.outbound_url import OutboundUrl, _ip_literal, is_public_address, parse_outbound_url

_REDIRECTS = (301, 302, 303, 307, 308)


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
