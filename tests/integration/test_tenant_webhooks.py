"""Per-tenant webhook signatures through the real path: a tenant's task completes, the table's
stream queues the event, WebhookFunction reads the tenant's secrets from Secrets Manager (moto)
and signs with each; receivers verify with standardwebhooks and the openai SDK.

The secrets are written in the contract's shape, as the operator command writes them:
`<TENANT_SECRET_PREFIX><tenant_id>/webhook` = {"signing": [{"secret", "created_at", "retire_at"}, ...]}.
"""

from __future__ import annotations

import base64
import json
import secrets as random
import time
from typing import Any

import boto3
import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from sora_relay.adapters import secrets as secrets_cache
from sora_relay.runtime.container import current
from tests.integration.conftest import VALID, Api, Downstream, FakeInternet
from tests.integration.tenancy import submit_event

TENANT_A = "ten_" + "WebhookTenant000000A"
TENANT_B = "ten_" + "WebhookTenant000000B"
TENANT_WITHOUT_SECRET = "ten_" + "WebhookTenant000000C"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()


def store_secrets(tenant: str, *entries: tuple[str, float | None]) -> None:
    """Write (or rotate) the tenant's secret document; newest first."""
    name = f"{current().settings.tenant_secret_prefix}{tenant}/webhook"
    document = json.dumps(
        {"signing": [{"secret": s, "created_at": int(time.time()), "retire_at": r} for s, r in entries]}
    )
    client = boto3.client("secretsmanager", region_name="us-east-1")
    try:
        client.put_secret_value(SecretId=name, SecretString=document)
    except client.exceptions.ResourceNotFoundException:
        client.create_secret(Name=name, SecretString=document)


def completed_webhook(api: Api, internet: FakeInternet, downstream: Downstream, tenant: str) -> httpx.Request:
    """Submit as `tenant`, complete it at the provider, run the stream and the webhook queue."""
    status, _, video = api.call("submit", submit_event(VALID, tenant=tenant, budget=None))
    assert status == 202, video
    call = internet.last_call()
    assert api.callback(call["body"]["callback_url"], internet.success_body(call))[0] == 200
    downstream.pump()
    event = f"evt_{video['id'].removeprefix('video_')}_completed"
    hooks = [hook for hook in internet.webhooks if hook.headers["webhook-id"] == event]
    assert len(hooks) == 1, f"{len(hooks)} webhooks for {event}"
    return hooks[0]


def verifies(secret: str, hook: httpx.Request) -> bool:
    """standardwebhooks' answer, checked against the openai SDK's (they must agree)."""
    headers = dict(hook.headers)
    try:
        Webhook(secret).verify(hook.content, headers)
        reference = True
    except WebhookVerificationError:
        reference = False
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    try:
        client.webhooks.verify_signature(hook.content, headers, secret=secret)
        sdk = True
    except openai.InvalidWebhookSignatureError:
        sdk = False
    assert reference == sdk, f"standardwebhooks says {reference}, the openai SDK {sdk}"
    return reference


@pytest.fixture
def tenants(stack) -> dict[str, str]:
    keys = {TENANT_A: new_secret(), TENANT_B: new_secret()}
    for tenant, secret in keys.items():
        store_secrets(tenant, (secret, None))
    return keys


def test_each_tenant_webhook_verifies_only_with_its_own_secret(
    api, internet, downstream, tenants, webhook_secret
):
    hook_a = completed_webhook(api, internet, downstream, TENANT_A)
    hook_b = completed_webhook(api, internet, downstream, TENANT_B)

    assert verifies(tenants[TENANT_A], hook_a) and not verifies(tenants[TENANT_B], hook_a)
    assert verifies(tenants[TENANT_B], hook_b) and not verifies(tenants[TENANT_A], hook_b)
    # The service-wide secret signs no tenant's webhook: whoever knows it forges nothing for them.
    assert not verifies(webhook_secret, hook_a) and not verifies(webhook_secret, hook_b)
    assert len(hook_a.headers["webhook-signature"].split(" ")) == 1


def test_a_rotation_signs_with_both_secrets_for_the_overlap_then_only_the_new_one(
    api, internet, downstream, tenants
):
    # Given a tenant whose webhooks are signed by its one secret (read, and so cached)
    old, new = tenants[TENANT_A], new_secret()
    assert verifies(old, completed_webhook(api, internet, downstream, TENANT_A))
    now = time.time()

    # When the operator rotates: the new secret first, the old one retiring in 24 h
    store_secrets(TENANT_A, (new, None), (old, now + 24 * 3600))
    # Then within the cache's lifetime webhooks are still signed by the old one alone (which the
    # receiver still accepts for a day) ...
    cached = completed_webhook(api, internet, downstream, TENANT_A)
    assert verifies(old, cached) and not verifies(new, cached)
    # ... and once the cache has lapsed, each webhook carries both signatures, and either verifies
    secrets_cache.clear_cache()
    overlap = completed_webhook(api, internet, downstream, TENANT_A)
    assert len(overlap.headers["webhook-signature"].split(" ")) == 2
    assert verifies(new, overlap) and verifies(old, overlap)
    assert not verifies(tenants[TENANT_B], overlap)

    # When the old secret's retire_at has passed
    store_secrets(TENANT_A, (new, None), (old, now - 1))
    secrets_cache.clear_cache()
    retired = completed_webhook(api, internet, downstream, TENANT_A)

    # Then only the new secret verifies
    assert len(retired.headers["webhook-signature"].split(" ")) == 1
    assert verifies(new, retired) and not verifies(old, retired)


def test_a_tenant_without_its_secret_gets_no_webhook_signed_with_another(
    api, internet, downstream, tenants, stack
):
    # Given a tenant whose secret is missing (a deployment fault: the operator command makes it)
    status, _, video = api.call("submit", submit_event(VALID, tenant=TENANT_WITHOUT_SECRET, budget=None))
    assert status == 202, video
    call = internet.last_call()
    assert api.callback(call["body"]["callback_url"], internet.success_body(call))[0] == 200

    # When the event is delivered
    assert downstream.pump_stream() == {"batchItemFailures": []}
    answers: list[dict[str, Any]] = downstream.pump_webhooks(rounds=1)

    # Then nothing is sent (no fallback to the service-wide secret), no attempt is spent, and the
    # message stays on the queue to be tried again
    assert internet.webhooks == []
    assert len(answers) == 1 and len(answers[0]["batchItemFailures"]) == 1
    task = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=stack.refs["TasksTable"], Key={"task_id": {"S": video["id"]}}
    )["Item"]
    assert "webhook" not in task
