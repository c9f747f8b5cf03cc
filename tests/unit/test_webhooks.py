"""Outbound webhooks: signatures any Standard Webhooks library accepts, and delivery outcomes."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from sora_relay.adapters import outbound_http
from sora_relay.adapters.outbound_http import SafeHttp
from sora_relay.adapters.webhooks import WebhookSender, event_body, event_id, sign

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
RAW_SECRET = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj3k"  # 44 alphanumerics, as the template generates
UNPADDED_SECRET = SECRET.rstrip("=")  # what the reference library accepts, and so must we


@pytest.mark.parametrize("secret", [SECRET, RAW_SECRET, UNPADDED_SECRET])
def test_signatures_verify_with_the_reference_library(secret):
    body = event_body("video.completed", "evt_1", 1_800_000_000, {"id": "video_1"})
    import time

    now = int(time.time())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "evt_1", now, body),
    }
    assert Webhook(secret).verify(body, headers)["data"] == {"id": "video_1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_event_ids_are_stable_per_task_and_event():
    assert (
        event_id("video_abc", "video.completed")
        == event_id("video_abc", "video.completed")
        == "evt_abc_completed"
    )
    assert event_id("video_abc", "video.failed") != event_id("video_abc", "video.completed")


def _sender(handler, monkeypatch) -> WebhookSender:
    monkeypatch.setattr(outbound_http, "resolve_host", lambda host, port: ["93.184.215.14"])
    return WebhookSender(SafeHttp(httpx.Client(transport=httpx.MockTransport(handler))), timeout_seconds=5)


def test_delivery_sends_signed_headers(monkeypatch):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200)

    body = event_body("video.failed", "evt_x", 1, {"id": "video_x"})
    result = _sender(handler, monkeypatch).deliver(
        "https://hooks.example.com/in", secrets=[SECRET], event="evt_x", body=body
    )
    assert result.delivered and result.status_code == 200
    headers = seen[0].headers
    assert headers["webhook-id"] == "evt_x" and headers["content-type"] == "application/json"
    assert Webhook(SECRET).verify(seen[0].content, dict(headers))["type"] == "video.failed"
    assert seen[0].extensions["timeout"]["read"] == 5


@pytest.mark.parametrize("status", [301, 302, 400, 410, 500])
def test_non_2xx_is_not_delivered_and_redirects_are_not_followed(monkeypatch, status):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers={"location": "https://hooks.example.com/elsewhere"})

    result = _sender(handler, monkeypatch).deliver(
        "https://hooks.example.com/in", secrets=[SECRET], event="e", body=b"{}"
    )
    assert not result.delivered and result.status_code == status and len(calls) == 1


def test_network_errors_and_unsafe_urls_are_outcomes_not_exceptions(monkeypatch):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    sender = _sender(handler, monkeypatch)
    timed_out = sender.deliver("https://hooks.example.com/in", secrets=[SECRET], event="e", body=b"{}")
    assert not timed_out.delivered and "ConnectTimeout" in (timed_out.error or "")
    unsafe = sender.deliver("https://10.0.0.1/in", secrets=[SECRET], event="e", body=b"{}")
    assert not unsafe.delivered and "private" in (unsafe.error or "")
    assert json.loads(event_body("t", "e", 1, {}))["object"] == "event"
