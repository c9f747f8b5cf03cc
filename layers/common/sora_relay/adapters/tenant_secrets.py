"""Per-tenant webhook signing secrets in Secrets Manager: made when a tenant is, rotated on demand.

Secret name `<TENANT_SECRET_PREFIX><tenant_id>/webhook`; its SecretString is the JSON document the
engineers of issue 15 agreed on (domain/tenant.py builds it):
`{"signing": [{"secret": "whsec_...", "created_at": <unix s>, "retire_at": null | <unix s>}, ...]}`,
newest first. Every entry whose retire_at is null or in the future signs, so after a rotation the
old secret keeps signing beside the new one for 24 h. This module writes the secrets (the
operator's side); the webhook sender reads them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from sora_relay.domain.errors import ConfigurationError, Conflict, NotFound
from sora_relay.domain.tenant import first_signing_document, new_webhook_secret, rotated_document


def secret_name(prefix: str, tenant_id: str) -> str:
    return f"{prefix}{tenant_id}/webhook"


class TenantSecrets:
    """`create(tenant_id)` and `rotate(tenant_id, now)` return the new signing secret, to be shown
    once; it is never logged or read back here."""

    def __init__(self, client: Any, prefix: str) -> None:
        if not prefix:
            raise ConfigurationError("No tenant secret prefix is configured (TENANT_SECRET_PREFIX)")
        self._client = client
        self._prefix = prefix

    def name(self, tenant_id: str) -> str:
        return secret_name(self._prefix, tenant_id)

    def create(self, tenant_id: str, now: int | None = None) -> str:
        secret = new_webhook_secret()
        document = first_signing_document(secret, int(time.time()) if now is None else now)
        try:
            self._client.create_secret(
                Name=self.name(tenant_id),
                Description=f"sora-relay - webhook signing secrets of tenant {tenant_id}",
                SecretString=json.dumps(document),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceExistsException":
                raise Conflict(f"Tenant {tenant_id} has a webhook secret already") from error
            raise
        return secret

    def rotate(self, tenant_id: str, now: int) -> str:
        """A new secret first; the ones before it retire 24 h from `now`."""
        name = self.name(tenant_id)
        try:
            current = json.loads(self._client.get_secret_value(SecretId=name)["SecretString"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise NotFound(f"Tenant {tenant_id} has no webhook secret") from error
            raise
        secret = new_webhook_secret()
        self._client.put_secret_value(
            SecretId=name, SecretString=json.dumps(rotated_document(current, secret, now))
        )
        return secret
