"""The operator's commands on tenants (scripts/tenants.py runs them with the operator's AWS
credentials; nothing of this is reachable through the public API).

A tenant is three things made in this order: its API Gateway key on the usage plan, its webhook
signing secret, then its item, which is what makes it exist for the authorizer. A failure part
way leaves at most a key and a secret named after a tenant id nobody can use; they are named by
that id, so an operator can find and delete them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sora_relay.domain.errors import InvalidRequest, NotFound
from sora_relay.domain.tenant import (
    TENANT_ACTIVE,
    ApiKey,
    IssuedKey,
    Tenant,
    budget_microusd,
    check_models,
    check_name,
    issue_key,
    new_tenant_id,
)


class Store(Protocol):
    def create_tenant(self, tenant: Tenant) -> None: ...
    def get_tenant(self, tenant_id: str, *, consistent: bool = False) -> Tenant | None: ...
    def list_tenants(self) -> list[Tenant]: ...
    def disable_tenant(self, tenant_id: str) -> Tenant: ...
    def add_key(self, key: ApiKey) -> None: ...
    def keys_of(self, tenant_id: str) -> list[ApiKey]: ...
    def revoke_key(self, key_id: str, now: int) -> ApiKey: ...


class Secrets(Protocol):
    def name(self, tenant_id: str) -> str: ...
    def create(self, tenant_id: str, now: int | None = None) -> str: ...
    def rotate(self, tenant_id: str, now: int) -> str: ...


class UsageKeys(Protocol):
    def create(self, tenant_id: str) -> tuple[str, str]: ...
    def disable(self, key_id: str) -> None: ...


@dataclass(frozen=True)
class CreatedTenant:
    """A new tenant with what is shown once: its first API key and its webhook signing secret."""

    tenant: Tenant
    key: IssuedKey
    webhook_secret: str = field(repr=False)


@dataclass
class TenantAdmin:
    store: Store
    secrets: Secrets
    usage_keys: UsageKeys
    model_ids: Iterable[str] = ()  # the catalogue's ids, for checking a tenant's models

    def create(
        self, name: str, *, budget_usd: str | None = None, models: Iterable[str] = (), now: int | None = None
    ) -> CreatedTenant:
        now = int(time.time()) if now is None else now
        try:
            checked_name = check_name(name)
            budget = budget_microusd(budget_usd)
            allowed = check_models(models, self.model_ids)
        except ValueError as error:
            field_name = str(error).split(":", 1)[0]
            raise InvalidRequest(str(error), param=field_name) from None
        tenant_id = new_tenant_id()
        usage_key_id, usage_identifier = self.usage_keys.create(tenant_id)
        webhook_secret = self.secrets.create(tenant_id, now)
        tenant = Tenant(
            tenant_id=tenant_id,
            name=checked_name,
            status=TENANT_ACTIVE,
            usage_identifier=usage_identifier,
            usage_key_id=usage_key_id,
            webhook_secret_id=self.secrets.name(tenant_id),
            created_at=now,
            monthly_budget_microusd=budget,
            models=allowed,
        )
        self.store.create_tenant(tenant)
        return CreatedTenant(tenant, self.issue_key(tenant_id, now=now), webhook_secret)

    def list(self) -> list[Tenant]:
        return self.store.list_tenants()

    def disable(self, tenant_id: str) -> Tenant:
        """Disabled in the table (the authorizer answers 403) and at the usage plan."""
        tenant = self.store.disable_tenant(tenant_id)
        if tenant.usage_key_id:
            self.usage_keys.disable(tenant.usage_key_id)
        return tenant

    def issue_key(self, tenant_id: str, *, now: int | None = None) -> IssuedKey:
        tenant = self._tenant(tenant_id)
        if not tenant.is_active:
            raise InvalidRequest(f"Tenant {tenant_id} is disabled", param="tenant_id")
        issued = issue_key(tenant_id, int(time.time()) if now is None else now)
        self.store.add_key(issued.record)
        return issued

    def revoke_key(self, key_id: str, *, now: int | None = None) -> ApiKey:
        return self.store.revoke_key(key_id, int(time.time()) if now is None else now)

    def keys(self, tenant_id: str) -> list[ApiKey]:
        self._tenant(tenant_id)
        return self.store.keys_of(tenant_id)

    def rotate_secret(self, tenant_id: str, *, now: int | None = None) -> str:
        self._tenant(tenant_id)
        return self.secrets.rotate(tenant_id, int(time.time()) if now is None else now)

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.store.get_tenant(tenant_id, consistent=True)
        if tenant is None:
            raise NotFound(f"No tenant {tenant_id}", param="tenant_id")
        return tenant
