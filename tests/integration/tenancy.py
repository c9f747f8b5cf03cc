"""Requests as API Gateway passes them on behind the Lambda authorizer (issue 15's contract):
`requestContext.authorizer` carries tenant_id, key_id, budget_microusd ("" = none) and models
("" = all); the owner of what the request makes is the tenant."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import load_event


def authorized(event: dict[str, Any], tenant: str, *, budget: int | None, models: str = "") -> dict:
    """The event as API Gateway passes it on behind the Lambda authorizer."""
    event["requestContext"]["authorizer"] = {
        "principalId": tenant,
        "tenant_id": tenant,
        "key_id": "key_000000000000",
        "budget_microusd": "" if budget is None else str(budget),
        "models": models,
        "integrationLatency": 3,
    }
    event["requestContext"]["identity"]["apiKeyId"] = "usage-plan-key-id"
    return event


def submit_event(
    body: dict[str, Any],
    *,
    tenant: str,
    budget: int | None,
    models: str = "",
    key: str | None = None,
) -> dict:
    event = load_event("submit")
    event["body"] = json.dumps(body)
    if key is not None:
        event["headers"]["idempotency-key"] = key
        event["multiValueHeaders"]["idempotency-key"] = [key]
    return authorized(event, tenant, budget=budget, models=models)
