"""TenantStore: tenants and their hashed API keys in TenantsTable (key `pk` only).

The authorizer's path is two GetItems (the key by its hash, then its tenant). Listing tenants and
keys, and finding a key by its public id to revoke it, scan the table: those are the operator's
rare commands, and a table of tenants and keys stays small (the usage counters share it, one item
per tenant and month), so no index is paid for on every write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.adapters.dynamodb_items import from_attrs, is_condition_failure, to_attrs
from sora_relay.domain.errors import Conflict, NotFound, StorageError
from sora_relay.domain.tenant import (
    KEY_ACTIVE,
    KEY_REVOKED,
    TENANT_DISABLED,
    ApiKey,
    Tenant,
    key_pk,
    tenant_pk,
)


class TenantStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # -- tenants --

    def create_tenant(self, tenant: Tenant) -> None:
        self._put(tenant.to_item(), f"Tenant {tenant.tenant_id} exists already")

    def get_tenant(self, tenant_id: str, *, consistent: bool = False) -> Tenant | None:
        item = self._get(tenant_pk(tenant_id), consistent)
        return Tenant.from_item(item) if item else None

    def list_tenants(self) -> list[Tenant]:
        tenants = [Tenant.from_item(item) for item in self._scan("tenant#")]
        return sorted(tenants, key=lambda tenant: (tenant.created_at, tenant.tenant_id))

    def disable_tenant(self, tenant_id: str) -> Tenant:
        """The tenant, now disabled (disabling a disabled tenant changes nothing)."""
        item = self._update(
            tenant_pk(tenant_id),
            "SET #status = :disabled",
            {"#status": "status"},
            {":disabled": TENANT_DISABLED},
            f"No tenant {tenant_id}",
        )
        return Tenant.from_item(item)

    # -- keys --

    def add_key(self, key: ApiKey) -> None:
        self._put(key.to_item(), f"Key {key.key_id} exists already")

    def find_key(self, key_hash: str, *, consistent: bool = False) -> ApiKey | None:
        """The key whose sha256 is `key_hash`, revoked or not; None when there is none."""
        item = self._get(key_pk(key_hash), consistent)
        return ApiKey.from_item(item) if item else None

    def keys_of(self, tenant_id: str) -> list[ApiKey]:
        keys = [ApiKey.from_item(item) for item in self._scan("key#") if item.get("tenant_id") == tenant_id]
        return sorted(keys, key=lambda key: (key.created_at, key.key_id))

    def key_by_id(self, key_id: str) -> ApiKey | None:
        return next(
            (ApiKey.from_item(item) for item in self._scan("key#") if item.get("key_id") == key_id), None
        )

    def revoke_key(self, key_id: str, now: int) -> ApiKey:
        """The key, now revoked (NotFound for an unknown id; revoking twice keeps the first date)."""
        key = self.key_by_id(key_id)
        if key is None:
            raise NotFound(f"No key {key_id}", param="key_id")
        if not key.is_active:
            return key
        try:
            item = self._update(
                key.pk,
                "SET #status = :revoked, revoked_at = :now",
                {"#status": "status"},
                {":revoked": KEY_REVOKED, ":now": now, ":active": KEY_ACTIVE},
                f"No key {key_id}",
                condition="#status = :active",
            )
        except Conflict:  # revoked meanwhile by someone else
            return self.find_key(key.key_hash, consistent=True) or key
        return ApiKey.from_item(item)

    # -- DynamoDB --

    def _put(self, item: dict[str, Any], exists: str) -> None:
        try:
            self._client.put_item(
                TableName=self._table, Item=to_attrs(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise Conflict(exists) from error
            raise StorageError("Could not write to the tenants table") from error
        except BotoCoreError as error:
            raise StorageError("Could not write to the tenants table") from error

    def _get(self, pk: str, consistent: bool) -> dict[str, Any] | None:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key=to_attrs({"pk": pk}), ConsistentRead=consistent
            )
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not read the tenants table") from error
        item = answer.get("Item")
        return from_attrs(item) if item else None

    def _update(
        self,
        pk: str,
        expression: str,
        names: dict[str, str],
        values: dict[str, Any],
        missing: str,
        *,
        condition: str | None = None,
    ) -> dict[str, Any]:
        condition = "attribute_exists(pk)" + (f" AND {condition}" if condition else "")
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=to_attrs({"pk": pk}),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attrs(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                if self._get(pk, True) is None:
                    raise NotFound(missing) from error
                raise Conflict(f"{missing.removeprefix('No ')} changed meanwhile") from error
            raise StorageError("Could not update the tenants table") from error
        except BotoCoreError as error:
            raise StorageError("Could not update the tenants table") from error
        return from_attrs(answer["Attributes"])

    def _scan(self, prefix: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": to_attrs({":prefix": prefix}),
            "ConsistentRead": True,
        }
        try:
            while True:
                answer = self._client.scan(**request)
                yield from (from_attrs(item) for item in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    return
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as error:
            raise StorageError("Could not scan the tenants table") from error
