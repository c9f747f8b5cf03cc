"""Tenants' keys through the local gateway and the real authorizer: Bearer or x-api-key, unknown,
revoked and disabled, and one tenant never reaching another's task, over REST and over MCP.

The stack's authorizer caches lookups for 1 s (AUTHORIZER_CACHE_SECONDS in FAST_FUNCTION_ENV; 60 s
deployed) and API Gateway's own cache is off (the template's ReauthorizeEvery 0), so a revocation
shows within about a second: the tests poll for it against a deadline rather than sleep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from devstack import processes

pytestmark = pytest.mark.e2e

MISSING = "video_" + "0" * 32


def bearer(stack, api_key: str) -> Any:
    return processes.local_http(stack.api_url, headers={"Authorization": f"Bearer {api_key}"})


def x_api_key(stack, api_key: str) -> Any:
    return processes.local_http(stack.api_url, headers={"x-api-key": api_key})


def test_a_key_works_as_bearer_and_as_x_api_key_for_the_same_tenant(stack, unique):
    with bearer(stack, stack.api_key) as by_bearer, x_api_key(stack, stack.api_key) as by_header:
        # When a video is made with the key as a Bearer token
        created = by_bearer.post("/v1/videos", json={"prompt": unique("A bearer's boat")})
        assert created.status_code == 202, created.text

        # Then the same key in x-api-key is the same tenant, which owns it
        assert by_header.get(f"/v1/videos/{created.json()['id']}").status_code == 200
        assert created.json()["id"] in [v["id"] for v in by_header.get("/v1/videos?limit=100").json()["data"]]
        assert stack.task_item(created.json()["id"])["owner"] == stack.tenant_id
        # and the header names are any case, as HTTP says
        with processes.local_http(stack.api_url, headers={"AUTHORIZATION": f"bearer {stack.api_key}"}) as odd:
            assert odd.get("/v1/models").status_code == 200


def test_an_unknown_key_is_401_in_either_header(stack, anonymous):
    for headers in ({"Authorization": "Bearer sr_" + "x" * 40}, {"x-api-key": "sr_" + "x" * 40}):
        response = anonymous.get("/v1/videos", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["x-amzn-errortype"] == "UnauthorizedException"


def test_a_revoked_key_is_refused_within_the_cache_lifetime_and_the_tenants_other_keys_still_work(
    stack, eventually
):
    # Given a second key of the first tenant, in use
    admin = stack.tenant_admin()
    issued = admin.issue_key(stack.tenant_id)
    with bearer(stack, issued.api_key) as client:
        assert client.get("/v1/videos").status_code == 200

        # When the operator revokes it
        admin.revoke_key(issued.record.key_id)

        # Then it is refused with a 401 once the authorizer's cache lets go (1 s here)
        refused = eventually(
            lambda: response if (response := client.get("/v1/videos")).status_code != 200 else None,
            what="the revoked key to be refused",
        )
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
    # And the tenant's first key still works
    with bearer(stack, stack.api_key) as client:
        assert client.get("/v1/videos").status_code == 200


def test_a_disabled_tenant_is_refused_with_a_403(stack, eventually, unique):
    # Given a third tenant that has made a video
    created = stack.tenant_admin().create("to be disabled")
    with x_api_key(stack, created.key.api_key) as client:
        assert client.post("/v1/videos", json={"prompt": unique("A last video")}).status_code == 202

        # When the operator disables it
        stack.tenant_admin().disable(created.tenant.tenant_id)

        # Then its key is refused: 403, from the authorizer's Deny once its cache lets go (the
        # usage plan's key, disabled too, may refuse it first: also 403)
        def denied() -> Any:
            response = client.get("/v1/videos")
            assert response.status_code in (200, 403), response.text
            return response if response.json().get("error", {}).get("code") == "ACCESS_DENIED" else None

        refused = eventually(denied, what="the disabled tenant to be denied")
    assert refused.status_code == 403
    assert refused.headers["x-amzn-errortype"] == "AccessDeniedException"


@asynccontextmanager
async def mcp_as(url: str, api_key: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30, trust_env=False) as http,
        streamable_http_client(url, http_client=http, terminate_on_close=False) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_over_mcp_a_tenant_cannot_reach_another_tenants_video(stack, videos, unique):
    # Given a video of the first tenant
    mine = videos.create(unique("An MCP secret"))

    async def as_the_other_tenant() -> tuple[Any, Any, Any, Any]:
        async with mcp_as(f"{stack.api_url}/mcp", stack.other_api_key) as session:
            answers = {}
            for name, video_id in (("mine", mine["id"]), ("missing", MISSING)):
                answers[name] = [
                    await session.call_tool("get_video", {"video_id": video_id}),
                    await session.call_tool("sora_get_task", {"task_id": video_id}),
                ]
            batch = await session.call_tool("sora_get_tasks_batch", {"task_ids": [mine["id"]]})
            listed = await session.call_tool("list_videos", {"limit": 100})
            return answers["mine"], answers["missing"], batch, listed

    async def as_the_owner() -> Any:
        async with mcp_as(f"{stack.api_url}/mcp", stack.api_key) as session:
            return await session.call_tool("get_video", {"video_id": mine["id"]})

    # When the second tenant asks for it with every MCP tool that reads videos
    theirs, missing, batch, listed = anyio.run(as_the_other_tenant)

    # Then each answers exactly what it answers for a video that does not exist, and it is not listed
    for answer, nothing in zip(theirs, missing, strict=True):
        assert answer.is_error and nothing.is_error
        assert answer.content[0].text.replace(mine["id"], "?") == nothing.content[0].text.replace(
            MISSING, "?"
        )
    assert json.loads(batch.content[0].text)["items"][0]["error"]["code"] == "video_not_found"
    assert mine["id"] not in [video["id"] for video in listed.structured_content["data"]]
    # While its owner, over the same endpoint with a Bearer key, reads it
    owner = anyio.run(as_the_owner)
    assert not owner.is_error and owner.structured_content["id"] == mine["id"]
