"""The Lambda authorizer's handler in process against moto: events/authorizer.json with the keys of
tenants made as the operator command makes them."""

from __future__ import annotations

from typing import Any

import pytest

from sora_relay.runtime import authorizer as runtime_authorizer
from tests.conftest import LambdaContext, load_event, load_handler
from tests.integration.conftest import aws as client

API = "arn:aws:execute-api:us-east-1:123456789012:abc123"


@pytest.fixture
def handler(stack) -> Any:
    runtime_authorizer.lookups.cache_clear()  # the process's lookups are made from this stack's env
    yield load_handler("authorizer")
    runtime_authorizer.lookups.cache_clear()


def event_with(headers: dict[str, str]) -> dict[str, Any]:
    event = load_event("authorizer")
    event["headers"] = {k: v for k, v in event["headers"].items() if k.lower() != "authorization"}
    event["headers"] |= headers
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    return event


def authorize(handler: Any, headers: dict[str, str]) -> dict[str, Any]:
    return handler.lambda_handler(event_with(headers), LambdaContext())


def refused_as_unauthorized(handler: Any, headers: dict[str, str]) -> bool:
    with pytest.raises(Exception) as raised:
        authorize(handler, headers)
    return str(raised.value) == "Unauthorized"


def test_a_bearer_key_is_allowed_on_the_whole_api_with_the_tenants_usage_key_and_context(
    handler, tenant_admin
):
    # Given a tenant with a budget and two models
    created = tenant_admin.create("Acme", budget_usd="12.5", models=["veo-3.1-fast", "seedance-1.5-pro"])

    # When the sample event presents its key as a Bearer token
    answer = authorize(handler, {"Authorization": f"Bearer {created.key.api_key}"})

    # Then API Gateway gets the tenant as principal, its usage plan key and the agreed context
    assert answer["principalId"] == created.tenant.tenant_id
    assert answer["usageIdentifierKey"] == created.tenant.usage_identifier
    assert answer["context"] == {
        "tenant_id": created.tenant.tenant_id,
        "key_id": created.key.record.key_id,
        "budget_microusd": "12500000",
        "models": "veo-3.1-fast,seedance-1.5-pro",
    }
    # and a policy for every method and path of the stage, so a cached answer fits every route
    assert answer["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": f"{API}/live/*"}
    ]
    # The usage identifier is the value of the tenant's API Gateway key, on the usage plan
    key = client("apigateway").get_api_key(apiKey=created.tenant.usage_key_id, includeValue=True)
    assert key["value"] == created.tenant.usage_identifier and key["enabled"] is True


def test_x_api_key_works_too_and_a_tenant_without_limits_has_empty_context_values(handler, tenant_admin):
    created = tenant_admin.create("Plain")

    answer = authorize(handler, {"X-API-Key": created.key.api_key})

    assert answer["context"]["budget_microusd"] == "" and answer["context"]["models"] == ""
    assert answer["principalId"] == created.tenant.tenant_id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "not-a-key"},
        {"Authorization": "Bearer sr_" + "Z" * 40},
        {"Authorization": "Basic abc"},
    ],
)
def test_a_missing_malformed_or_unknown_key_is_a_401(handler, tenant_admin, headers):
    tenant_admin.create("Someone")
    assert refused_as_unauthorized(handler, headers)


def test_a_revoked_key_is_a_401_once_the_cache_has_let_go_of_it(handler, tenant_admin, monkeypatch):
    # Given a tenant with two keys, one of them revoked
    created = tenant_admin.create("Acme")
    second = tenant_admin.issue_key(created.tenant.tenant_id)
    assert authorize(handler, {"x-api-key": second.api_key})["principalId"] == created.tenant.tenant_id
    tenant_admin.revoke_key(second.record.key_id)

    # Then within the cache lifetime (60 s here, as deployed) the instance still lets it through
    assert authorize(handler, {"x-api-key": second.api_key})["principalId"] == created.tenant.tenant_id
    # and after it (a new instance, or the lifetime passed) it is refused, while the first key works
    runtime_authorizer.lookups().clear()
    assert refused_as_unauthorized(handler, {"x-api-key": second.api_key})
    assert authorize(handler, {"x-api-key": created.key.api_key})["principalId"] == created.tenant.tenant_id


def test_with_no_cache_a_revocation_is_seen_at_once(handler, tenant_admin, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_CACHE_SECONDS", "0")
    runtime_authorizer.lookups.cache_clear()
    created = tenant_admin.create("Acme")
    assert authorize(handler, {"x-api-key": created.key.api_key})
    tenant_admin.revoke_key(created.key.record.key_id)
    assert refused_as_unauthorized(handler, {"x-api-key": created.key.api_key})


def test_a_disabled_tenant_gets_a_deny_policy_which_api_gateway_answers_403(
    handler, tenant_admin, monkeypatch
):
    monkeypatch.setenv("AUTHORIZER_CACHE_SECONDS", "0")
    runtime_authorizer.lookups.cache_clear()
    created = tenant_admin.create("Acme")
    tenant_admin.disable(created.tenant.tenant_id)

    answer = authorize(handler, {"Authorization": f"Bearer {created.key.api_key}"})

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "usageIdentifierKey" not in answer and "context" not in answer
    # Its API Gateway key is disabled too, so the usage plan refuses it even from a cached answer
    key = client("apigateway").get_api_key(apiKey=created.tenant.usage_key_id)
    assert key["enabled"] is False


def test_keys_never_reach_the_logs(handler, tenant_admin, service_logs):
    created = tenant_admin.create("Acme")
    authorize(handler, {"x-api-key": created.key.api_key})
    with pytest.raises(Exception):  # noqa: B017
        authorize(handler, {"x-api-key": "sr_" + "Q" * 40})
    logs = service_logs.getvalue()
    assert created.key.api_key not in logs and "sr_" + "Q" * 40 not in logs
    assert created.tenant.usage_identifier not in logs
    assert "unknown key" in logs  # the refusal is logged, by reason


def test_without_a_table_the_authorizer_fails_closed(handler, monkeypatch):
    monkeypatch.delenv("TENANTS_TABLE")
    runtime_authorizer.lookups.cache_clear()
    with pytest.raises(Exception) as raised:
        authorize(handler, {"x-api-key": "sr_" + "A" * 40})
    assert str(raised.value) != "Unauthorized"  # API Gateway answers 500, never lets it through
