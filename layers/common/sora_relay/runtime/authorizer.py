"""The Lambda authorizer's glue: the lookups it is built from, and API Gateway's answer shapes.

Not the container (runtime/container.py imports httpx, pydantic settings and every adapter): the
authorizer runs before every protected request, so its cold start is boto3, Powertools' Logger
and this package's domain only (bench/cold_start.py holds it to 1.5x of plain boto3+httpx making
the same calls; docs/performance.md section 1). It reads two variables, on its first
invocation: TENANTS_TABLE and AUTHORIZER_CACHE_SECONDS (template.yaml, events/env.json).

API Gateway's contract (REQUEST authorizer, REST API): raising an error whose message is exactly
"Unauthorized" makes it answer 401 (gateway response UNAUTHORIZED); a policy that denies answers
403 (ACCESS_DENIED); an allowing policy lets the request through with `usageIdentifierKey` as its
API key for the usage plan (ApiKeySourceType AUTHORIZER) and `context` as
`requestContext.authorizer` of the handler's event.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from sora_relay.adapters.aws import dynamodb_client
from sora_relay.adapters.tenants import TenantStore
from sora_relay.domain.errors import ConfigurationError
from sora_relay.domain.tenant import Refusal
from sora_relay.observability import logger
from sora_relay.usecases.authorize import CachedLookups, Grant, authorize

DEFAULT_CACHE_SECONDS = 60.0


class Unauthorized(Exception):
    """Raised to API Gateway: its message must be exactly "Unauthorized" for a 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


@functools.cache
def lookups() -> CachedLookups:
    """The process's lookups, made on the first invocation (nothing at import: SnapStart-safe)."""
    table = os.environ.get("TENANTS_TABLE", "")
    if not table:
        raise ConfigurationError("No tenants table is configured (TENANTS_TABLE)")
    ttl = float(os.environ.get("AUTHORIZER_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
    return CachedLookups(TenantStore(dynamodb_client(), table), ttl)


def api_wildcard(method_arn: str) -> str:
    """Every method and path of the stage: `arn:aws:execute-api:<region>:<account>:<api>/<stage>/*`.
    An answer for the whole API, so it holds on every route whichever one asked."""
    base, _, path = method_arn.partition("/")
    stage = path.split("/", 1)[0] or "*"
    return f"{base}/{stage}/*"


def _policy(effect: str, resource: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
    }


def answer(outcome: Grant | Refusal, method_arn: str) -> dict[str, Any]:
    """API Gateway's authorizer output for `outcome`; raises Unauthorized for a 401."""
    if isinstance(outcome, Refusal):
        logger.info("Request refused", extra={"reason": outcome.reason, "status": outcome.status})
        if outcome.status == 401:
            raise Unauthorized
        return {"principalId": "refused", "policyDocument": _policy("Deny", api_wildcard(method_arn))}
    tenant, key = outcome.tenant, outcome.key
    logger.append_keys(tenant_id=tenant.tenant_id, key_id=key.key_id)
    budget = tenant.monthly_budget_microusd
    return {
        "principalId": tenant.tenant_id,
        "policyDocument": _policy("Allow", api_wildcard(method_arn)),
        "usageIdentifierKey": tenant.usage_identifier,
        "context": {
            "tenant_id": tenant.tenant_id,
            "key_id": key.key_id,
            "budget_microusd": "" if budget is None else str(budget),
            "models": ",".join(tenant.models),
        },
    }


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """One REQUEST authorizer event: the policy answer, or Unauthorized."""
    headers = event.get("headers") or {}
    return answer(authorize(lookups(), headers), str(event.get("methodArn", "")))
