"""The MCP function in process: events/mcp-*.json through functions/mcp/app.py, moto behind it,
the fake provider and receiver in front. Every test makes several invocations in one process, as
a warm Lambda instance would (the SDK's session manager runs once: each invocation needs its own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from standardwebhooks import Webhook

from sora_relay_mcp import lambda_endpoint
from tests.conftest import LambdaContext, load_event, load_handler
from tests.integration.conftest import CLIENT_HOST, Api, reload_settings

ALIASED = "sora-2=veo-3.1-fast"


@pytest.fixture(scope="module")
def mcp_app() -> Any:
    return load_handler("mcp")


@pytest.fixture
def mcp(mcp_app: Any, api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[McpCaller]:
    # An operator serving the seed's agents maps the retired model; no waiting on pending tasks.
    monkeypatch.setenv("MODEL_ALIASES", ALIASED)
    monkeypatch.setenv("MCP_PENDING_WAIT_SECONDS", "0")
    reload_settings(monkeypatch)
    lambda_endpoint.mcp_server.cache_clear()  # built per process: per test here
    yield McpCaller(mcp_app, api)
    lambda_endpoint.mcp_server.cache_clear()


class McpCaller:
    def __init__(self, app: Any, api: Api) -> None:
        self.app = app
        self.api = api
        self.next_id = 100

    def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        self.api.handlers["mcp"] = self.app
        return self.api.call("mcp", event)

    def rpc(self, method: str, params: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        event = load_event("mcp-tools-call")
        self.next_id += 1
        event["body"] = json.dumps(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        )
        for path, value in changes.items():
            section, _, key = path.partition("__")
            event[section][key] = value
        status, headers, body = self.invoke(event)
        assert status == 200, (status, body)
        assert headers["content-type"].startswith("application/json")
        return body  # type: ignore[no-any-return]

    def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.rpc("tools/call", {"name": name, "arguments": arguments})["result"]  # type: ignore[no-any-return]


def test_the_sample_events_answer_in_one_warm_instance(mcp):
    # When the sample events come one after another into the same process
    answers = [
        mcp.invoke(load_event(name)) for name in ("mcp-initialize", "mcp-tools-list", "mcp-tools-list")
    ]
    called = mcp.invoke(load_event("mcp-tools-call"))

    # Then each is answered (a session manager reused would fail from the second on)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[0][2]["result"]["serverInfo"]["name"] == "sora-relay"
    assert "mcp-session-id" not in answers[0][1]
    assert len(answers[1][2]["result"]["tools"]) == len(answers[2][2]["result"]["tools"]) == 14
    status, _, body = called
    assert status == 200
    result = body["result"]
    assert result["isError"] is False, result
    assert json.loads(result["content"][0]["text"])["mcp_async_submission"]["poll_tool"] == "sora_get_task"


def test_the_async_seed_tool_gets_the_seed_callback_signed(mcp, api, internet, downstream, webhook_secret):
    # Given a task made by the seed's v2 async tool
    submitted = json.loads(
        mcp.tool(
            "sora_generate_video_v2_async",
            {"prompt": "A paper boat", "callback_url": f"https://{CLIENT_HOST}/hooks", "duration": 8},
        )["structuredContent"]["result"]
    )
    call = internet.last_call()

    # When the provider finishes it and the webhook goes out
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump()

    # Then the receiver got the upstream callback body, with the Standard Webhooks headers
    (hook,) = internet.webhooks
    body = Webhook(webhook_secret).verify(hook.content, dict(hook.headers))
    assert body["success"] is True
    assert body["task_id"] == submitted["task_id"]
    assert body["trace_id"] == submitted["trace_id"]
    (item,) = body["data"]
    assert item["state"] == "succeeded" and item["video_url"].startswith("https://")
    # and sora_get_task answers the same body as its response, with the status hint
    record = json.loads(
        mcp.tool("sora_get_task", {"task_id": submitted["task_id"]})["structuredContent"]["result"]
    )
    assert record["state"] == "succeeded"
    assert record["response"]["data"][0]["id"] == submitted["task_id"]
    assert record["mcp_task_polling"] == {
        **record["mcp_task_polling"],
        "should_poll": False,
        "is_complete": True,
    }


def test_a_task_made_over_rest_keeps_the_documented_event(mcp, api, internet, downstream, webhook_secret):
    status, _, video = api.submit({"prompt": "A kite", "callback_url": f"https://{CLIENT_HOST}/hooks"})
    assert status == 202
    call = internet.last_call()
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump()

    (hook,) = internet.webhooks
    body = Webhook(webhook_secret).verify(hook.content, dict(hook.headers))
    assert (body["type"], body["data"]["id"]) == ("video.completed", video["id"])


def test_bad_input_is_a_tool_error_naming_the_parameter_and_no_task(mcp, internet, stack):
    # When tools are called with what the API refuses
    refused = {
        "duration": mcp.tool("sora_generate_video_v2", {"prompt": "x", "duration": 4}),  # veo: 8 s only
        "callback_url": mcp.tool(
            "sora_generate_video_v2_async",
            {"prompt": "x", "callback_url": "https://127.0.0.1/h", "duration": 8},
        ),
        "prompt": mcp.tool("sora_generate_video_v2", {"prompt": "x" * 4001, "duration": 8}),
        "image_url": mcp.tool("generate_video", {"prompt": "x", "image_url": "http://example.com/a.png"}),
        "task_id": mcp.tool("sora_get_task", {"task_id": "video_" + "0" * 32}),
    }

    # Then each is a tool error whose text starts with the parameter, and nothing reached the provider
    for param, result in refused.items():
        assert result["isError"] is True
        assert result["content"][0]["text"].split(": ", 2)[1] == param, result["content"][0]["text"]
    assert internet.provider_calls == []


def test_get_and_delete_answer_405_and_no_tenant_401(mcp):
    get = load_event("mcp-get")
    delete = {**load_event("mcp-get"), "httpMethod": "DELETE"}
    keyless = load_event("mcp-initialize")
    keyless["requestContext"].pop("authorizer")

    for event in (get, delete):
        status, headers, body = mcp.invoke(event)
        assert (status, headers["allow"], body["error"]["code"]) == (405, "POST", "method_not_allowed")
    status, _, body = mcp.invoke(keyless)
    assert status == 401 and body["error"]["code"] == "missing_api_key"


def test_a_host_other_than_the_one_api_gateway_received_is_refused(mcp):
    event = load_event("mcp-initialize")
    event["headers"]["Host"] = "attacker.example"
    event["multiValueHeaders"]["Host"] = ["attacker.example"]

    answer = mcp.app.lambda_handler(event, LambdaContext())

    assert answer["statusCode"] == 421


def test_a_provider_5xx_on_create_reports_the_failed_task_not_an_error(mcp, internet, stack):
    # Given a provider that fails while taking the create (it may have started the job)
    internet.create_failures.append(
        httpx.Response(500, json={"error": {"code": "api_error", "message": "x"}})
    )

    # When an agent calls the async tool
    result = mcp.tool(
        "sora_generate_video_v2_async",
        {"prompt": "A heron in the reeds", "callback_url": f"https://{CLIENT_HOST}/hooks", "duration": 8},
    )

    # Then it hears of the one task that was made (no tool error that would invite a second call),
    # and the lookup it is told to make shows that task failed with the reason
    assert result.get("isError") is not True, result
    task_id = json.loads(result["content"][0]["text"])["task_id"]
    looked_up = mcp.tool("sora_get_task", {"task_id": task_id})
    assert looked_up.get("isError") is not True, looked_up
    text = looked_up["content"][0]["text"]
    assert "provider_outcome_unknown" in text and "failed" in text, text
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])[
        "Items"
    ]
    assert [(item["task_id"]["S"], item["status"]["S"], item["error_code"]["S"]) for item in items] == [
        (task_id, "failed", "provider_outcome_unknown")
    ]
    assert internet.create_failures == [] and internet.provider_calls == []  # one create, not resent
