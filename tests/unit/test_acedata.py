"""The AceDataCloud adapter against faked HTTP: what it sends and how each answer maps."""

from __future__ import annotations

import json

import httpx
import pytest

from sora_relay.adapters.providers.acedata import AceDataSora
from sora_relay.domain.errors import (
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)
from sora_relay.domain.provider import GenerationRequest, ProviderState

REQUEST = GenerationRequest(
    prompt="a fox", model="sora-2-pro", seconds=12, size="1024x1792", image_url="https://i/x.png"
)


def adapter(handler) -> AceDataSora:
    return AceDataSora(
        httpx.Client(transport=httpx.MockTransport(handler)),
        base_url="https://api.acedata.cloud/",
        api_key=lambda: "tok",
        timeout=3,
    )


def test_submit_sends_the_v2_body_with_bearer_auth():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "task_id": "t-1"})

    assert adapter(handler).submit(REQUEST, callback_url="https://us/cb?token=x") == "t-1"
    request = seen[0]
    assert str(request.url) == "https://api.acedata.cloud/sora/videos"
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content) == {
        "prompt": "a fox",
        "model": "sora-2-pro",
        "version": "2.0",
        "duration": 12,
        "size": "1024x1792",
        "callback_url": "https://us/cb?token=x",
        "image_urls": ["https://i/x.png"],
    }
    assert request.extensions["timeout"]["read"] == 3


@pytest.mark.parametrize(
    ("status", "code", "error", "headers"),
    [
        (400, "bad_request", ProviderRejected, {}),
        (400, "no_token", ProviderAuthFailed, {}),
        (400, "token_mismatched", ProviderAuthFailed, {}),
        (401, "invalid_token", ProviderAuthFailed, {}),
        (401, "token_expired", ProviderAuthFailed, {}),
        (403, "used_up", ProviderAuthFailed, {}),
        (403, "forbidden", ProviderRejected, {}),
        (404, "no_api", ProviderProtocolError, {}),
        (429, "too_many_requests", ProviderUnavailable, {"retry-after": "7"}),
        (500, "api_error", ProviderUnavailable, {}),
        (504, "timeout", ProviderUnavailable, {}),
    ],
)
def test_error_answers_map_to_domain_errors(status, code, error, headers):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, headers=headers, json={"error": {"code": code, "message": "m"}, "trace_id": "x"}
        )

    with pytest.raises(error) as caught:
        adapter(handler).submit(REQUEST, callback_url="https://us/cb")
    if status == 429:
        assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_transport_failures_are_retryable(exc):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("x", request=request)

    with pytest.raises(ProviderUnavailable):
        adapter(handler).submit(REQUEST, callback_url="https://us/cb")


@pytest.mark.parametrize("answer", [b"<html>", b"[1]", b'{"success": true}'])
def test_answers_off_contract_are_protocol_errors(answer):
    with pytest.raises(ProviderProtocolError):
        adapter(lambda request: httpx.Response(200, content=answer)).submit(
            REQUEST, callback_url="https://us/cb"
        )


def test_parse_success_and_failure_callbacks():
    parse = adapter(lambda r: httpx.Response(500)).parse_callback
    ok = parse(
        json.dumps(
            {
                "success": True,
                "task_id": "t",
                "trace_id": "r",
                "data": [{"id": "v", "video_url": "https://v/1.mp4", "state": "succeeded"}],
            }
        ).encode()
    )
    assert (ok.provider_task_id, ok.state, ok.video_url) == ("t", ProviderState.SUCCEEDED, "https://v/1.mp4")
    bad = parse(b'{"success": false, "task_id": "t", "error": {"code": "api_error", "message": "nope"}}')
    assert (bad.state, bad.error_code, bad.error_message) == (ProviderState.FAILED, "api_error", "nope")
    empty = parse(b'{"success": true, "task_id": "t", "data": []}')
    assert empty.state is ProviderState.FAILED and empty.error_code == "no_video"


def test_the_http_client_is_built_only_for_a_request_to_the_provider():
    # A callback only parses a body: its function must not build the provider's client (a TLS
    # context and a connection pool: tens of ms of its cold start, bench/cold_start.py).
    built = []

    def client() -> httpx.Client:
        built.append(1)
        return httpx.Client(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"task_id": "t"}))
        )

    provider = AceDataSora(client, base_url="https://api.acedata.cloud", api_key=lambda: "tok", timeout=3)
    provider.parse_callback(b'{"success": false, "task_id": "t", "error": {"code": "x", "message": "y"}}')
    assert built == []
    assert provider.submit(REQUEST, callback_url="https://cb/1") == "t"
    assert built == [1]


@pytest.mark.parametrize(
    "body", [b"", b"nope", b"[]", b'{"success": true}', b'{"task_id": 5, "success": "maybe"}']
)
def test_malformed_callbacks_are_invalid_requests(body):
    with pytest.raises(InvalidRequest):
        adapter(lambda r: httpx.Response(500)).parse_callback(body)


def test_query_batches_50_ids_and_derives_states():
    batches = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["action"] == "retrieve_batch"
        batches.append(body["ids"])
        items = []
        for task_id in body["ids"]:
            number = int(task_id)
            response = [
                None,
                {"task_id": task_id},
                {"success": True, "task_id": task_id, "data": [{"video_url": "https://v"}]},
                {"success": False, "task_id": task_id, "error": {"code": "c", "message": "m"}},
            ][number % 4]
            items.append({"id": task_id, "created_at": 1.0, **({"response": response} if response else {})})
        return httpx.Response(200, json={"items": items, "count": len(items)})

    results = adapter(handler).query([str(n) for n in range(120)])
    assert [len(batch) for batch in batches] == [50, 50, 20]
    assert [r.state for r in results[:4]] == [
        ProviderState.PENDING,
        ProviderState.RUNNING,
        ProviderState.SUCCEEDED,
        ProviderState.FAILED,
    ]
