"""API Gateway API keys on the usage plan: one per tenant, so the plan throttles and meters tenants.

The API reads its key from the authorizer (`ApiKeySourceType: AUTHORIZER`): the authorizer hands
back the tenant's key VALUE as `usageIdentifierKey`, and the usage plan counts it. Clients never see
these keys; theirs are the hashed `sr_` keys of the tenants table.
"""

from __future__ import annotations

from typing import Any


class UsagePlanKeys:
    def __init__(self, client: Any, usage_plan_id: str) -> None:
        self._client = client
        self._plan = usage_plan_id

    def create(self, tenant_id: str) -> tuple[str, str]:
        """A new enabled API key named after the tenant, on the plan: (its id, its value)."""
        key = self._client.create_api_key(
            name=f"tenant-{tenant_id}", description=f"usage identifier of tenant {tenant_id}", enabled=True
        )
        self._client.create_usage_plan_key(usagePlanId=self._plan, keyId=key["id"], keyType="API_KEY")
        return str(key["id"]), str(key["value"])

    def disable(self, key_id: str) -> None:
        """Disabled at API Gateway too: a disabled tenant's requests stop at the usage plan even while
        an authorizer instance still holds its earlier answer."""
        self._client.update_api_key(
            apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
        )
