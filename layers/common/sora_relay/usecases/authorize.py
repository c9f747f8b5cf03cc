"""Who is calling: the API key a request presents, looked up by its hash, and its tenant.

The Lambda authorizer runs this on every request to a protected route (API Gateway's own cache of
authorizer answers is off: it needs identity sources, and with two of them, Bearer and x-api-key,
API Gateway would refuse every request that lacks either). So the lookups are cached here, per
authorizer instance, for `ttl_seconds`: a revoked key or a disabled tenant is refused at most that
long after the change (docs/security.md). Only keys that exist are cached, so a key issued a moment
ago works at once and random guesses cannot fill the memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from sora_relay.domain.tenant import (
    ApiKey,
    Refusal,
    Tenant,
    hash_key,
    looks_like_key,
    presented_key,
    refusal,
)


class TenantDirectory(Protocol):
    """What the authorizer reads (adapters/tenants.py's TenantStore)."""

    def find_key(self, key_hash: str) -> ApiKey | None: ...

    def get_tenant(self, tenant_id: str) -> Tenant | None: ...


class Grant:
    """A request that may pass: the tenant and the key it presented."""

    __slots__ = ("key", "tenant")

    def __init__(self, tenant: Tenant, key: ApiKey) -> None:
        self.tenant = tenant
        self.key = key


class CachedLookups:
    """Key and tenant lookups kept for `ttl_seconds` (0: not kept), at most `max_entries` keys."""

    def __init__(
        self,
        directory: TenantDirectory,
        ttl_seconds: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ApiKey, Tenant | None]] = {}

    def lookup(self, key_hash: str) -> tuple[ApiKey | None, Tenant | None]:
        now = self._clock()
        with self._lock:
            cached = self._entries.get(key_hash)
        if cached is not None and now < cached[0]:
            return cached[1], cached[2]
        key = self._directory.find_key(key_hash)
        tenant = self._directory.get_tenant(key.tenant_id) if key is not None and key.is_active else None
        if key is not None and self._ttl > 0:
            with self._lock:
                if len(self._entries) >= self._max:
                    self._entries.pop(next(iter(self._entries)))  # the oldest
                self._entries.pop(key_hash, None)
                self._entries[key_hash] = (now + self._ttl, key, tenant)
        return key, tenant

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def authorize(lookups: CachedLookups, headers: Mapping[str, str | None] | None) -> Grant | Refusal:
    """A Grant, or why the request is refused (401: no, malformed, unknown or revoked key;
    403: the key's tenant is disabled)."""
    api_key = presented_key(headers)
    if api_key is None:
        return Refusal(401, "no key (or two different ones)")
    if not looks_like_key(api_key):
        return Refusal(401, "not a key")
    key, tenant = lookups.lookup(hash_key(api_key))
    refused = refusal(key, tenant)
    if refused is not None:
        return refused
    assert key is not None and tenant is not None
    return Grant(tenant, key)
