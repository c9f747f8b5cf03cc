"""The read side of a tenant's webhook signing secrets (the operator command writes them).

Each tenant has one Secrets Manager secret, `<TENANT_SECRET_PREFIX><tenant_id>/webhook`, whose
SecretString is `{"signing": [{"secret": "whsec_...", "created_at": s, "retire_at": null | s}, ...]}`,
newest first. A rotation puts the new secret first and gives the ones before it a `retire_at` 24 h
ahead, so for a day a webhook carries a signature by each (Standard Webhooks' `webhook-signature`
is a space-separated list) and a receiver may switch to the new secret at any moment of that day.

The value comes through the same 5-minute cache as every other secret (adapters/secrets.py), and
`retire_at` is compared with the clock at each delivery: a cached document stops signing with a
retired secret on time, and a rotation is picked up within the cache's lifetime (the old secret
still verifies meanwhile, for 24 h).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from sora_relay.domain.errors import ConfigurationError

# The contract's tenant ids: "ten_" and 20 url-safe characters. Other owners (an SQS queue, an API
# key id from before tenants) have no tenant secret, and no secret name is ever made from them.
TENANT_ID = re.compile(r"^ten_[A-Za-z0-9_-]{20}$")


def is_tenant_id(owner: str) -> bool:
    return bool(TENANT_ID.match(owner))


def secret_name(prefix: str, tenant_id: str) -> str:
    return f"{prefix}{tenant_id}/webhook"


def signing_secrets(document: str, *, now: float) -> list[str]:
    """The secrets that sign now, newest first: every entry not yet retired.

    A document that is not the contract's shape, or has no entry left that signs, is a deployment
    fault (ConfigurationError): signing with nothing, or with the service-wide secret instead, would
    send webhooks the tenant's receiver must refuse. Nothing of the values goes into the message.
    """
    try:
        entries = json.loads(document)["signing"]
        active = [
            str(entry["secret"])
            for entry in entries
            if entry.get("retire_at") is None or float(entry["retire_at"]) > now
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigurationError("A tenant's webhook signing secret is not in the expected format") from None
    if not active or not all(secret.startswith("whsec_") and len(secret) > 6 for secret in active):
        raise ConfigurationError("A tenant's webhook signing secret has no usable entry")
    return active


def tenant_signing_secrets(
    owner: str, *, prefix: str | None, read: Callable[[str], str], now: float
) -> list[str] | None:
    """The secrets that sign a webhook of `owner`'s task, or None when the owner is not a tenant.

    `read` is the cached secret read (name -> SecretString). A tenant whose secret is missing or
    cannot be read raises (botocore's error, retried by the webhook queue) rather than falling back:
    the service-wide secret is not the tenant's to verify with.
    """
    if not is_tenant_id(owner):
        return None
    if not prefix:
        raise ConfigurationError("TENANT_SECRET_PREFIX is not configured")
    return signing_secrets(read(secret_name(prefix, owner)), now=now)
