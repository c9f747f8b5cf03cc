"""What an outbound URL may be, judged without the network: https, a host, no credentials, and
never a loopback, private, link-local, multicast, reserved or unique-local address literal
(including IPv4 addresses mapped into IPv6). The connect-time checks that resolve the name live in
adapters/outbound_http.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from sora_relay.domain.errors import UnsafeUrl

MAX_URL_LENGTH = 2048

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
