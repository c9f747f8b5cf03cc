"""Per-tenant webhook signatures: several secrets sign at once during a rotation, each verifies on
its own with the receivers' libraries (standardwebhooks and, where installed, the openai SDK), and
another tenant's secret verifies nothing."""

from __future__ import annotations

import base64
import json
import secrets as random
import time

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from sora_relay.adapters import outbound_http
from sora_relay.adapters.outbound_http import SafeHttp
from sora_relay.adapters.tenant_secrets_reader import (
    is_tenant_id,
    secret_name,
    signing_secrets,
    tenant_signing_secrets,
)
from sora_relay.adapters.webhooks import WebhookSender, event_body, sign_all
from sora_relay.domain.errors import ConfigurationError

TENANT_A = "ten_" + "a" * 20
TENANT_B = "ten_" + "b" * 20


def new_secret() -> str:
    """As the operator command makes them: whsec_ and the base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()


def document(*entries: tuple[str, float | None]) -> str:
    return json.dumps(
        {"signing": [{"secret": s, "created_at": 1_800_000_000, "retire_at": r} for s, r in entries]}
    )


def signed(secrets: list[str], body: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    body = body or event_body("video.completed", "evt_1_completed", 1_800_000_000, {"id": "video_1"})
    now = int(time.time())
    headers = {
        "webhook-id": "evt_1_completed",
        "webhook-timestamp": str(now),
        "webhook-signature": sign_all(secrets, "evt_1_completed", now, body),
    }
    return body, headers


def openai_verifier():
    """The official SDK's receiver side; its client makes no request to verify."""
    openai = pytest.importorskip("openai")
    return openai, openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def test_every_secret_signs_and_each_verifies_alone():
    # Given two secrets (a rotation's overlap) and a third that is not one of them
    new, old, stranger = new_secret(), new_secret(), new_secret()
    body, headers = signed([new, old])

    # Then the header carries two v1 signatures, and either secret verifies
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2 and all(part.startswith("v1,") for part in parts)
    assert Webhook(new).verify(body, headers)["data"] == {"id": "video_1"}
    assert Webhook(old).verify(body, headers)["data"] == {"id": "video_1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)  # the body is what is signed


def test_the_openai_sdk_accepts_any_of_the_signatures():
    openai, client = openai_verifier()
    new, old, stranger = new_secret(), new_secret(), new_secret()
    body, headers = signed([new, old])
    client.webhooks.verify_signature(body, headers, secret=new)
    client.webhooks.verify_signature(body, headers, secret=old)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(body, headers, secret=stranger)


def test_no_secret_is_refused_rather_than_sending_unsigned():
    with pytest.raises(ValueError, match="at least one"):
        sign_all([], "evt", 1, b"{}")


def test_a_rotation_signs_with_both_until_the_old_one_retires():
    new, old = new_secret(), new_secret()
    now = 1_900_000_000.0
    rotated = document((new, None), (old, now + 24 * 3600))
    assert signing_secrets(rotated, now=now) == [new, old]  # newest first
    assert signing_secrets(rotated, now=now + 24 * 3600) == [new]  # retired at retire_at
    assert signing_secrets(document((new, None)), now=now) == [new]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"signing": "whsec_x"}),
        json.dumps({"other": []}),
        json.dumps({"signing": [{"created_at": 1}]}),
        json.dumps({"signing": [{"secret": "plain", "retire_at": None}]}),
        json.dumps({"signing": [{"secret": "whsec_abc", "retire_at": "soon"}]}),
        document(("whsec_" + "A" * 32, 1.0)),  # every entry retired
    ],
)
def test_a_document_that_cannot_sign_is_a_configuration_error_that_names_no_value(text):
    with pytest.raises(ConfigurationError) as raised:
        signing_secrets(text, now=1_900_000_000)
    assert "whsec_" not in raised.value.message


def test_only_tenant_owners_are_looked_up():
    reads: list[str] = []

    def read(name: str) -> str:
        reads.append(name)
        return document((new_secret(), None))

    prefix = "stack/tenants/"
    for owner in ("sqs:stack-SubmitQueue", "sample-api-key-id", "ten_short", "ten_" + "a" * 19 + "/"):
        assert not is_tenant_id(owner)
        assert tenant_signing_secrets(owner, prefix=prefix, read=read, now=time.time()) is None
    assert reads == []
    assert len(tenant_signing_secrets(TENANT_A, prefix=prefix, read=read, now=time.time()) or []) == 1
    assert reads == [secret_name(prefix, TENANT_A)] == [f"stack/tenants/{TENANT_A}/webhook"]
    with pytest.raises(ConfigurationError, match="TENANT_SECRET_PREFIX"):
        tenant_signing_secrets(TENANT_A, prefix=None, read=read, now=time.time())


def test_tenant_a_secret_does_not_verify_tenant_b_webhooks(monkeypatch):
    # Given each tenant's secrets, and a receiver behind the real sender
    keys = {TENANT_A: new_secret(), TENANT_B: new_secret()}
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(204)

    monkeypatch.setattr(outbound_http, "resolve_host", lambda host, port: ["93.184.215.14"])
    sender = WebhookSender(SafeHttp(httpx.Client(transport=httpx.MockTransport(receiver))), timeout_seconds=5)
    body = event_body("video.completed", "evt_b_completed", 1_800_000_000, {"id": "video_b"})

    # When tenant B's webhook is sent, signed with B's secrets
    secrets_b = tenant_signing_secrets(
        TENANT_B, prefix="p/", read=lambda name: document((keys[TENANT_B], None)), now=time.time()
    )
    assert secrets_b == [keys[TENANT_B]]
    assert sender.deliver(
        "https://hooks.example.com/b", secrets=secrets_b, event="evt_b_completed", body=body
    )

    # Then B's secret verifies it and A's does not, with either receiver library
    hook = seen[0]
    headers = dict(hook.headers)
    assert Webhook(keys[TENANT_B]).verify(hook.content, headers)["data"]["id"] == "video_b"
    with pytest.raises(WebhookVerificationError):
        Webhook(keys[TENANT_A]).verify(hook.content, headers)
    try:
        openai, client = openai_verifier()
    except pytest.skip.Exception:
        return
    client.webhooks.verify_signature(hook.content, headers, secret=keys[TENANT_B])
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(hook.content, headers, secret=keys[TENANT_A])
