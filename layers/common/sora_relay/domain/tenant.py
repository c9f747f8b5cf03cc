"""Tenants and their API keys: the records, how keys are made, presented and hashed, and who may pass.

A tenant owns tasks; an API key belongs to one tenant. Only the key's sha256 is stored (the key is
shown once, when it is issued), so a copy of the table lets nobody call the API. The key's first 8
characters are kept as its `prefix`, for the operator to tell keys apart in a listing.

Plain classes and the standard library only: the authorizer imports this on its cold start.
The items' layout (TenantsTable, key `pk`) is the one the engineers of issue 15 agreed on:
`tenant#<tenant_id>`, `key#<sha256 of the key>`, `usage#<tenant_id>#<YYYY-MM>`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TENANT_ID_PREFIX = "ten_"
KEY_ID_PREFIX = "key_"
API_KEY_PREFIX = "sr_"
KEY_LISTING_PREFIX_LENGTH = 8  # `prefix`: "sr_" and 5 characters, never enough to guess the rest
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix, not a secret)
# How long a rotated-out webhook secret keeps signing next to the new one.
ROTATION_OVERLAP_SECONDS = 24 * 3600

TENANT_ACTIVE, TENANT_DISABLED = "active", "disabled"
KEY_ACTIVE, KEY_REVOKED = "active", "revoked"

_URLSAFE = r"[A-Za-z0-9_-]"
API_KEY_PATTERN = re.compile(rf"^{API_KEY_PREFIX}{_URLSAFE}{{40}}$")
TENANT_ID_PATTERN = re.compile(rf"^{TENANT_ID_PREFIX}{_URLSAFE}{{20}}$")
KEY_ID_PATTERN = re.compile(rf"^{KEY_ID_PREFIX}{_URLSAFE}{{12}}$")
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


# -- making ids, keys and secrets ------------------------------------------------------------------


def new_tenant_id() -> str:
    return TENANT_ID_PREFIX + secrets.token_urlsafe(15)  # 15 bytes: 20 characters


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_urlsafe(9)  # 12 characters


def new_api_key() -> str:
    """`sr_` + 40 url-safe characters (240 random bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(30)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def hash_key(api_key: str) -> str:
    """The sha256 (hex) of the whole key: what is stored and looked up. A fast hash is enough here:
    the key has 240 random bits, so there is nothing to brute-force that a slow hash would protect."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def looks_like_key(value: str | None) -> bool:
    """Whether `value` has the shape of one of our keys (anything else needs no table read)."""
    return bool(value) and API_KEY_PATTERN.fullmatch(value or "") is not None


def presented_key(headers: Mapping[str, str | None] | None) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>` (header names
    in any case). None when there is none, or when the two headers name different keys (a client
    that sends two keys has a bug we should not guess around)."""
    by_name = {str(name).lower(): value for name, value in (headers or {}).items() if value}
    bearer = None
    if "authorization" in by_name:
        found = _BEARER.match(str(by_name["authorization"]))
        bearer = found.group(1) if found else None
    header_key = str(by_name["x-api-key"]).strip() if "x-api-key" in by_name else None
    if bearer and header_key and bearer != header_key:
        return None
    return bearer or header_key or None


# -- the records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant item (`pk = tenant#<tenant_id>`)."""

    tenant_id: str
    name: str
    status: str
    usage_identifier: str  # the value of its API Gateway API key (the usage plan meters it)
    usage_key_id: str  # that API key's id
    webhook_secret_id: str  # its Secrets Manager secret (<TENANT_SECRET_PREFIX><tenant_id>/webhook)
    created_at: int
    monthly_budget_microusd: int | None = None  # None: no limit
    models: tuple[str, ...] = ()  # empty: every catalogue model

    @property
    def pk(self) -> str:
        return tenant_pk(self.tenant_id)

    @property
    def is_active(self) -> bool:
        return self.status == TENANT_ACTIVE

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": self.pk,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "status": self.status,
            "usage_identifier": self.usage_identifier,
            "usage_key_id": self.usage_key_id,
            "webhook_secret_id": self.webhook_secret_id,
            "created_at": self.created_at,
        }
        if self.monthly_budget_microusd is not None:
            item["monthly_budget_microusd"] = self.monthly_budget_microusd
        if self.models:
            item["models"] = list(self.models)
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Tenant:
        budget = item.get("monthly_budget_microusd")
        return cls(
            tenant_id=str(item["tenant_id"]),
            name=str(item.get("name", "")),
            status=str(item.get("status", TENANT_DISABLED)),  # unknown: refuse
            usage_identifier=str(item.get("usage_identifier", "")),
            usage_key_id=str(item.get("usage_key_id", "")),
            webhook_secret_id=str(item.get("webhook_secret_id", "")),
            created_at=int(item.get("created_at", 0)),
            monthly_budget_microusd=int(budget) if budget is not None else None,
            models=tuple(str(model) for model in item.get("models") or ()),
        )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key item (`pk = key#<sha256 of the key>`); the key itself is never stored."""

    key_hash: str
    tenant_id: str
    key_id: str
    prefix: str
    created_at: int
    status: str = KEY_ACTIVE
    revoked_at: int | None = None

    @property
    def pk(self) -> str:
        return key_pk(self.key_hash)

    @property
    def is_active(self) -> bool:
        return self.status == KEY_ACTIVE

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": self.pk,
            "tenant_id": self.tenant_id,
            "key_id": self.key_id,
            "prefix": self.prefix,
            "status": self.status,
            "created_at": self.created_at,
        }
        if self.revoked_at is not None:
            item["revoked_at"] = self.revoked_at
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ApiKey:
        revoked = item.get("revoked_at")
        return cls(
            key_hash=str(item["pk"]).removeprefix("key#"),
            tenant_id=str(item["tenant_id"]),
            key_id=str(item["key_id"]),
            prefix=str(item.get("prefix", "")),
            created_at=int(item.get("created_at", 0)),
            status=str(item.get("status", KEY_REVOKED)),  # unknown: refuse
            revoked_at=int(revoked) if revoked is not None else None,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just issued: the record, and the key itself, which is shown once and then forgotten."""

    record: ApiKey
    api_key: str = field(repr=False)


def issue_key(tenant_id: str, now: int) -> IssuedKey:
    api_key = new_api_key()
    record = ApiKey(
        key_hash=hash_key(api_key),
        tenant_id=tenant_id,
        key_id=new_key_id(),
        prefix=api_key[:KEY_LISTING_PREFIX_LENGTH],
        created_at=now,
    )
    return IssuedKey(record, api_key)


def tenant_pk(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


def key_pk(key_hash: str) -> str:
    return f"key#{key_hash}"


def usage_pk(tenant_id: str, month: str) -> str:
    """The tenant's usage counter of one UTC month (`YYYY-MM`)."""
    return f"usage#{tenant_id}#{month}"


# -- who may pass ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused. `status` is what API Gateway answers: 401 for a credential that is
    missing, unknown or revoked (the caller must get another key); 403 for a genuine key of a tenant
    that is disabled (the key is fine, its tenant may not use the API)."""

    status: int
    reason: str  # for the logs, never for the caller


def refusal(key: ApiKey | None, tenant: Tenant | None) -> Refusal | None:
    """None when `key` (found by its hash) and its `tenant` may call the API."""
    if key is None:
        return Refusal(401, "unknown key")
    if not key.is_active:
        return Refusal(401, "revoked key")
    if tenant is None or tenant.tenant_id != key.tenant_id:
        return Refusal(401, "key of no tenant")
    if not tenant.is_active:
        return Refusal(403, "disabled tenant")
    if not tenant.usage_identifier:
        return Refusal(403, "tenant without a usage plan key")
    return None


# -- the operator's inputs ---------------------------------------------------------------------------


def budget_microusd(usd: str | float | None) -> int | None:
    """A monthly budget in USD (as typed by the operator) in micro-USD; None for no limit."""
    if usd is None or usd == "":
        return None
    try:
        value = float(usd)
    except ValueError:
        raise ValueError(f"budget: {usd!r} is not a number of USD") from None
    if not 0 <= value <= 10_000_000 or value != value:
        raise ValueError("budget: from 0 to 10,000,000 USD")
    return round(value * 1_000_000)


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise ValueError("name: 1 to 100 printable characters")
    return name


def check_models(models: Iterable[str], known: Iterable[str]) -> tuple[str, ...]:
    """The tenant's allowed models, each a catalogue id; empty: every model."""
    wanted = tuple(dict.fromkeys(model.strip() for model in models if model.strip()))
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"models: not in the catalogue: {', '.join(unknown)}")
    return wanted


# -- the webhook signing secrets document (Secrets Manager, one per tenant) ---------------------------


def signing_document(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"signing": entries}


def first_signing_document(secret: str, now: int) -> dict[str, Any]:
    return signing_document([{"secret": secret, "created_at": now, "retire_at": None}])


def rotated_document(document: Mapping[str, Any], secret: str, now: int) -> dict[str, Any]:
    """The document after a rotation: `secret` first; every older entry still signing retires
    24 h from now (one already retiring keeps its earlier date); entries already retired go."""
    kept = []
    for entry in document.get("signing") or []:
        retire_at = entry.get("retire_at")
        if retire_at is not None and int(retire_at) <= now:
            continue
        until = now + ROTATION_OVERLAP_SECONDS
        kept.append({**entry, "retire_at": until if retire_at is None else min(int(retire_at), until)})
    return signing_document([{"secret": secret, "created_at": now, "retire_at": None}, *kept])
