"""The MCP server as remote and local clients reach it, with the SDK's own client: streamable HTTP
against the local gateway's `/mcp` (the Lambda behind it), and stdio against `sora-relay mcp` (a
subprocess speaking the public HTTP API).

The shared e2e stack maps the retired `sora-2` to a live model (ModelAliases), as a deployment
serving the seed's agents would (tests/e2e/conftest.py). These tests call as a tenant of their own
made on it, so what they list is theirs alone, whatever the other e2e tests made before them.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from devstack.__main__ import cli_command
from devstack.processes import eventually
from devstack.receiver import WebhookReceiver
from devstack.stack import DevStack

pytestmark = pytest.mark.e2e

ALIASES = "sora-2=seedance-1.5-pro"  # the shared stack's (tests/e2e/conftest.py MCP_ALIASES)
DEADLINE = 30.0
SEED_TOOLS = [
    "sora_list_models",
    "sora_list_actions",
    "sora_get_task",
    "sora_get_tasks_batch",
    "sora_generate_video",
    "sora_generate_video_from_image",
    "sora_generate_video_with_character",
    "sora_generate_video_async",
    "sora_generate_video_v2",
    "sora_generate_video_v2_async",
]


@dataclass(frozen=True)
class McpCaller:
    """Where and as whom these tests call: the shared stack's API, as a tenant made for them."""

    api_url: str
    api_key: str
    webhook_secret: str  # the tenant's own: its webhooks are signed with it


@pytest.fixture(scope="module")
def mcp_stack(stack: DevStack) -> McpCaller:
    assert stack.parameters.get("ModelAliases") == ALIASES, "tests/e2e/conftest.py maps sora-2"
    tenant = stack.tenant_admin().create("mcp tests")
    return McpCaller(stack.api_url, tenant.key.api_key, tenant.webhook_secret)


@asynccontextmanager
async def over_http(url: str, api_key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"x-api-key": api_key} if api_key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30, trust_env=False) as http,
        streamable_http_client(url, http_client=http, terminate_on_close=False) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def over_stdio(stack: McpCaller) -> AsyncIterator[ClientSession]:
    command, *args = cli_command()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "SORA_RELAY_API_URL": stack.api_url,
        "SORA_RELAY_API_KEY": stack.api_key,
        # A worktree's checkout rather than the one the editable install points at.
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    parameters = StdioServerParameters(
        command=command, args=[*args, "mcp", "--pending-wait", "0.2"], env=environment
    )
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def seed_json(result: Any) -> dict[str, Any]:
    """A seed tool's answer: one text block of JSON, the same string as structuredContent.result."""
    assert not result.is_error, result.content
    (block,) = result.content
    assert result.structured_content == {"result": block.text}
    return json.loads(block.text)  # type: ignore[no-any-return]


async def poll_until_done(session: ClientSession, task_id: str) -> dict[str, Any]:
    with anyio.fail_after(DEADLINE):
        while True:
            record = seed_json(await session.call_tool("sora_get_task", {"task_id": task_id}))
            if not record["mcp_task_polling"]["should_poll"]:
                return record


def test_a_remote_client_generates_with_the_seed_tool_and_hears_the_signed_seed_callback(mcp_stack):
    async def scenario(receiver: WebhookReceiver) -> tuple[list[str], dict, dict, dict]:
        async with over_http(f"{mcp_stack.api_url}/mcp", mcp_stack.api_key) as session:
            listed = await session.list_tools()
            submitted = seed_json(
                await session.call_tool(
                    "sora_generate_video_v2_async",
                    {"prompt": "A paper boat on a rainy street", "callback_url": receiver.url},
                )
            )
            record = await poll_until_done(session, submitted["task_id"])
            batch = seed_json(
                await session.call_tool(
                    "sora_get_tasks_batch", {"task_ids": [submitted["task_id"], "video_" + "0" * 32]}
                )
            )
            return [tool.name for tool in listed.tools], submitted, record, batch

    # Given a webhook receiver on 127.0.0.1
    with WebhookReceiver(mcp_stack.webhook_secret) as receiver:  # the key's tenant signs
        # When an MCP client initializes over streamable HTTP, lists the tools, submits with the
        # seed tool and polls sora_get_task, then asks the batch tool
        names, submitted, record, batch = anyio.run(scenario, receiver)

        # Then the seed's tools are all there, first and in its order
        assert names[: len(SEED_TOOLS)] == SEED_TOOLS
        # and the answers are the seed's: a task id and a polling hint, then the completed record
        assert submitted["success"] is True
        assert submitted["mcp_async_submission"]["poll_tool"] == "sora_get_task"
        assert record["state"] == "succeeded"
        assert record["mcp_task_polling"]["is_complete"] is True
        video_url = record["response"]["data"][0]["video_url"]
        assert record["request"]["served_model"] == "seedance-1.5-pro"
        # and the batch tool answers the task and names the unknown id
        assert batch["count"] == 2
        assert batch["items"][0]["id"] == submitted["task_id"]
        assert batch["items"][1]["error"]["code"] == "video_not_found"

        # And the callback_url heard the upstream callback body, signed with Standard Webhooks
        delivery = eventually(
            lambda: next(
                (d for d in receiver.deliveries if d.json().get("task_id") == submitted["task_id"]), None
            ),
            timeout=DEADLINE,
            what="the seed callback",
        )
        receiver.verify(delivery)
        body = delivery.json()
        assert body["success"] is True
        assert body["trace_id"] == submitted["trace_id"]
        assert body["data"][0]["state"] == "succeeded"
        assert body["data"][0]["id"] == submitted["task_id"]

    # And the link is our own copy of a real MP4
    with httpx2.Client(trust_env=False) as plain:
        video = plain.get(video_url)
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp"


def test_our_own_tools_over_stdio_answer_structured_content_and_a_resource_link(mcp_stack):
    async def scenario() -> tuple[Any, Any, Any, list[str]]:
        async with over_stdio(mcp_stack) as session:
            models = await session.call_tool("list_models", {})
            created = await session.call_tool(
                "generate_video",
                {"prompt": "A lighthouse at dawn", "model": "seedance-1.5-pro", "seconds": 5},
            )
            assert not created.is_error, created.content
            video_id = created.structured_content["id"]
            with anyio.fail_after(DEADLINE):
                while True:
                    done = await session.call_tool("get_video", {"video_id": video_id})
                    if done.structured_content["status"] in ("completed", "failed"):
                        break
                    await anyio.sleep(0.2)
            listed = await session.call_tool("list_videos", {"limit": 100})
            return models, created, done, [item["id"] for item in listed.structured_content["data"]]

    # When a local client starts `sora-relay mcp` and uses our own tools
    models, created, done, listed = anyio.run(scenario)

    # Then each answers structured content, and the completed video a video/mp4 resource link
    assert "seedance-1.5-pro" in [model["id"] for model in models.structured_content["data"]]
    assert created.structured_content["status"] in ("queued", "in_progress", "completed")
    assert done.structured_content["status"] == "completed"
    links = [block for block in done.content if block.type == "resource_link"]
    assert [link.mime_type for link in links] == ["video/mp4"]
    assert str(links[0].uri) == done.structured_content["download_url"]
    assert created.structured_content["id"] in listed


def test_bad_input_is_a_tool_error_naming_the_parameter_and_nothing_is_made(mcp_stack):
    async def scenario() -> list[Any]:
        async with over_http(f"{mcp_stack.api_url}/mcp", mcp_stack.api_key) as session:
            before = (await session.call_tool("list_videos", {"limit": 100})).structured_content["data"]
            calls = [
                ("sora_generate_video_v2", {"prompt": "x", "duration": 5}, "duration"),
                ("sora_generate_video_v2", {"prompt": "x", "model": "sora-2-pro"}, "model"),
                ("sora_generate_video_v2", {"prompt": "x" * 4001}, "prompt"),
                (
                    "sora_generate_video_v2_async",
                    {"prompt": "x", "callback_url": "https://10.0.0.1/h"},
                    "callback_url",
                ),
                ("sora_generate_video", {"prompt": "x", "duration": 25}, "duration"),
                ("generate_video", {"prompt": "x", "model": "no-such-model"}, "model"),
            ]
            results = [(await session.call_tool(name, args), param) for name, args, param in calls]
            after = (await session.call_tool("list_videos", {"limit": 100})).structured_content["data"]
            return [results, before, after]

    results, before, after = anyio.run(scenario)
    for result, param in results:
        assert result.is_error
        assert param in result.content[0].text, result.content[0].text
    assert after == before


def test_the_endpoint_wants_the_api_key_and_answers_405_to_get_and_delete(mcp_stack):
    url = f"{mcp_stack.api_url}/mcp"
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with httpx2.Client(trust_env=False, timeout=30) as http:
        keyless = http.post(url, json=initialize, headers=headers)
        wrong = http.post(url, json=initialize, headers={**headers, "x-api-key": "not-a-key"})
        get = http.get(url, headers={"x-api-key": mcp_stack.api_key, "accept": "text/event-stream"})
        delete = http.delete(url, headers={"x-api-key": mcp_stack.api_key})
        ok = http.post(url, json=initialize, headers={**headers, "x-api-key": mcp_stack.api_key})

    # The authorizer refuses both: no key, and a value that is no key of any tenant
    assert keyless.status_code == wrong.status_code == 401
    assert keyless.json()["error"]["code"] == wrong.json()["error"]["code"] == "UNAUTHORIZED"
    assert (get.status_code, get.headers["allow"]) == (405, "POST")
    assert delete.status_code == 405
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/json")
    assert ok.json()["result"]["serverInfo"]["name"] == "sora-relay"
    assert "mcp-session-id" not in ok.headers  # stateless
