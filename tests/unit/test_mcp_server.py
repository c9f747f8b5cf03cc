"""The MCP server definition with the SDK's in-memory client and a backend that records calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
from mcp import Client

from sora_relay_mcp.backend import BackendError
from sora_relay_mcp.server import build_server
from tests.conftest import ROOT

# The seed server's input schemas (shared/reference/mcp.md; AceDataCloud's mcp-sora 2026.10.8.0):
# per tool, its parameters in order as (name, JSON type, enum, default); REQUIRED has no default.
REQUIRED = object()
V1 = [
    ("model", "string", ["sora-2", "sora-2-pro"], "sora-2"),
    ("size", "string", ["small", "large"], "large"),
    ("duration", "integer", [10, 15, 25], 15),
    ("orientation", "string", ["landscape", "portrait"], "landscape"),
]
V2 = [
    ("model", "string", ["sora-2", "sora-2-pro"], "sora-2"),
    ("duration", "integer", [4, 8, 12], 4),
    ("size", "string", ["720x1280", "1280x720", "1024x1792", "1792x1024"], "1280x720"),
    ("image_urls", "array|null", None, None),
]
PROMPT = ("prompt", "string", None, REQUIRED)
CALLBACK = ("callback_url", "string", None, REQUIRED)
SEED: dict[str, list[tuple[str, str, Any, Any]]] = {
    "sora_list_models": [],
    "sora_list_actions": [],
    "sora_get_task": [("task_id", "string", None, REQUIRED)],
    "sora_get_tasks_batch": [("task_ids", "array", None, REQUIRED)],
    "sora_generate_video": [PROMPT, *V1],
    "sora_generate_video_from_image": [PROMPT, ("image_urls", "array", None, REQUIRED), *V1],
    "sora_generate_video_with_character": [
        PROMPT,
        ("character_url", "string", None, REQUIRED),
        ("character_start", "number", None, 0),
        ("character_end", "number", None, 1),
        *V1,
    ],
    "sora_generate_video_async": [PROMPT, CALLBACK, *V1, ("image_urls", "array|null", None, None)],
    "sora_generate_video_v2": [PROMPT, *V2],
    "sora_generate_video_v2_async": [PROMPT, CALLBACK, *V2],
}

MODELS = [
    {
        "id": "veo-3.1-fast",
        "name": "Veo 3.1 Fast",
        "status": "live",
        "available": True,
        "seconds": [8],
        "default_seconds": 8,
        "sizes": ["1280x720", "720x1280", "1920x1080", "1080x1920"],
        "default_size": "1280x720",
        "image": True,
        "audio": True,
        "price_per_second_usd": 0.15,
        "replaced_by": [],
        "served_by": None,
    },
    {
        "id": "wan-2.6",
        "name": "Wan 2.6",
        "status": "live",
        "available": True,
        "seconds": [5, 10, 15],
        "default_seconds": 5,
        "sizes": ["1280x720", "720x1280"],
        "default_size": "1280x720",
        "image": False,
        "audio": False,
        "price_per_second_usd": 0.1,
        "replaced_by": [],
        "served_by": None,
    },
    {
        "id": "sora-2",
        "name": "Sora 2",
        "status": "retired",
        "available": True,
        "seconds": [4, 8, 12],
        "default_seconds": 4,
        "sizes": ["1280x720", "720x1280"],
        "default_size": "1280x720",
        "image": True,
        "audio": True,
        "price_per_second_usd": 0.1,
        "replaced_by": ["veo-3.1-fast"],
        "served_by": "veo-3.1-fast",
    },
]


class RecordingBackend:
    """The API as a dict of videos; records each create body."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.videos: dict[str, dict[str, Any]] = {}
        self.refuse: BackendError | None = None

    def models(self) -> list[dict[str, Any]]:
        return MODELS

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            raise self.refuse
        self.created.append(body)
        video_id = f"video_{len(self.created):032x}"
        self.videos[video_id] = {
            "id": video_id,
            "status": "queued",
            "progress": 0,
            "model": body.get("model") or "veo-3.1-fast",
            "served_model": "veo-3.1-fast",
            "prompt": body["prompt"],
            "seconds": str(body.get("duration") or body.get("seconds") or 8),
            "size": body.get("size") or "1280x720",
            "created_at": 1_700_000_000,
            "callback_url": body.get("callback_url"),
        }
        return self.videos[video_id]

    def complete(self, video_id: str) -> None:
        self.videos[video_id].update(
            status="completed",
            progress=100,
            completed_at=1_700_000_100,
            download_url=f"https://bucket.s3.amazonaws.com/videos/{video_id}.mp4?X-Amz-Signature=x",
            download_expires_at=1_700_003_700,
        )

    def get(self, video_id: str) -> dict[str, Any]:
        if video_id not in self.videos:
            raise BackendError(f"No video with id {video_id}", param="video_id", code="video_not_found")
        return self.videos[video_id]

    def list(self, *, limit: int, after: str | None) -> dict[str, Any]:
        return {"data": list(self.videos.values())[:limit], "has_more": False, "last_id": None}


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


def run(backend: RecordingBackend, steps: Any) -> Any:
    server = build_server(lambda _ctx: backend, models=MODELS, pending_wait_seconds=0)

    async def go() -> Any:
        async with Client(server) as client:
            return await steps(client)

    return anyio.run(go)


def seed_answer(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    (block,) = result.content
    assert result.structured_content == {"result": block.text}
    return json.loads(block.text)  # type: ignore[no-any-return]


def error_text(result: Any) -> str:
    assert result.is_error
    return result.content[0].text  # type: ignore[no-any-return]


def _json_type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return "|".join(item["type"] for item in schema["anyOf"])
    return schema["type"]  # type: ignore[no-any-return]


def test_the_seed_tools_have_the_seeds_names_order_and_input_schemas(backend):
    tools = run(backend, lambda client: client.list_tools()).tools
    assert [tool.name for tool in tools][: len(SEED)] == list(SEED)
    for tool in tools[: len(SEED)]:
        schema = tool.input_schema
        expected = SEED[tool.name]
        assert schema["title"] == f"{tool.name}Arguments"
        assert list(schema.get("properties", {})) == [name for name, *_ in expected], tool.name
        assert schema.get("required", []) == [name for name, _, _, default in expected if default is REQUIRED]
        for name, kind, enum, default in expected:
            prop = schema["properties"][name]
            assert _json_type(prop) == kind, (tool.name, name)
            assert prop.get("enum") == enum, (tool.name, name)
            assert prop.get("title") == name.replace("_", " ").title()
            assert prop.get("description")
            if default is not REQUIRED:
                assert prop["default"] == default, (tool.name, name)
        assert tool.output_schema["properties"] == {"result": {"title": "Result", "type": "string"}}
        assert tool.output_schema["required"] == ["result"]


def test_every_tool_is_annotated(backend):
    tools = run(backend, lambda client: client.list_tools()).tools
    for tool in tools:
        hints = tool.annotations
        assert hints is not None, tool.name
        if "generate" in tool.name:
            assert (hints.read_only_hint, hints.idempotent_hint, hints.destructive_hint) == (
                False,
                False,
                False,
            )
        else:
            assert hints.read_only_hint is True, tool.name


def test_our_generate_tool_takes_its_enums_from_the_catalogue(backend):
    tools = run(backend, lambda client: client.list_tools()).tools
    props = next(tool for tool in tools if tool.name == "generate_video").input_schema["properties"]
    assert props["model"]["anyOf"][0]["enum"] == ["veo-3.1-fast", "wan-2.6", "sora-2"]
    assert props["seconds"]["anyOf"][0]["enum"] == [5, 8, 10, 15]
    assert "1920x1080" in props["size"]["anyOf"][0]["enum"]


def test_v2_passes_the_model_through_for_the_aliases_and_async_asks_for_the_seed_callback(backend):
    async def steps(client):
        plain = await client.call_tool("sora_generate_video_v2", {"prompt": "a", "duration": 8})
        later = await client.call_tool(
            "sora_generate_video_v2_async",
            {"prompt": "b", "callback_url": "https://hooks.example/x", "duration": 8},
        )
        return plain, later

    plain, later = run(backend, steps)
    assert seed_answer(plain)["mcp_async_submission"]["should_poll"] is True
    assert seed_answer(later)["success"] is True
    assert backend.created == [
        {"prompt": "a", "model": "sora-2", "duration": 8, "size": "1280x720"},
        {
            "prompt": "b",
            "model": "sora-2",
            "duration": 8,
            "size": "1280x720",
            "callback_url": "https://hooks.example/x",
            "webhook_format": "acedata_sora",
        },
    ]


@pytest.mark.parametrize(
    ("arguments", "model", "size"),
    [
        ({"duration": 10, "size": "small"}, "wan-2.6", "1280x720"),
        ({"duration": 15, "size": "small", "orientation": "portrait"}, "wan-2.6", "720x1280"),
    ],
)
def test_v1_options_map_to_a_live_model_that_offers_them(backend, arguments, model, size):
    result = run(
        backend, lambda client: client.call_tool("sora_generate_video", {"prompt": "a", **arguments})
    )
    assert seed_answer(result)["model"] == "veo-3.1-fast"  # what the (fake) API says served it
    assert (backend.created[0]["model"], backend.created[0]["size"]) == (model, size)


@pytest.mark.parametrize(
    ("tool", "arguments", "param"),
    [
        ("sora_generate_video", {"duration": 25}, "duration"),
        ("sora_generate_video", {"duration": 15}, "size"),  # wan-2.6 makes 15 s, but not at 1080p
        (
            "sora_generate_video_from_image",
            {"duration": 10, "size": "small", "image_urls": ["https://i/a.png"]},
            "image_urls",
        ),
        ("sora_generate_video_with_character", {"character_url": "https://c/v.mp4"}, "character_url"),
        ("sora_generate_video_v2", {"duration": 5}, "duration"),  # the schema's enum
        ("sora_get_tasks_batch", {"task_ids": [f"video_{i:032x}" for i in range(51)]}, "task_ids"),
    ],
)
def test_what_no_live_model_offers_is_a_tool_error_naming_the_parameter_and_nothing_is_made(
    backend, tool, arguments, param
):
    result = run(backend, lambda client: client.call_tool(tool, {"prompt": "a", **arguments}))
    text = error_text(result)
    assert text.startswith(f"Error executing tool {tool}: ")
    detail = text.removeprefix(f"Error executing tool {tool}: ")
    # Ours start with the parameter; the schema's validation names it on a line of its own.
    assert detail.startswith(f"{param}: ") or f"\n{param}\n" in detail, detail
    assert backend.created == []


def test_the_apis_refusal_names_the_tools_parameter(backend):
    backend.refuse = BackendError("callback_url: must be https", param="callback_url", code="unsafe_url")
    result = run(
        backend,
        lambda client: client.call_tool(
            "sora_generate_video_v2_async", {"prompt": "a", "callback_url": "http://x"}
        ),
    )
    assert (
        error_text(result) == "Error executing tool sora_generate_video_v2_async: callback_url: must be https"
    )

    missing = run(backend, lambda client: client.call_tool("sora_get_task", {"task_id": "nope"}))
    assert error_text(missing) == "Error executing tool sora_get_task: task_id: No video with id nope"


def test_get_task_is_the_seed_record_and_once_complete_our_video_carries_a_resource_link(backend):
    async def steps(client):
        created = await client.call_tool(
            "generate_video", {"prompt": "a lighthouse", "model": "wan-2.6", "seconds": 5}
        )
        video_id = created.structured_content["id"]
        pending = seed_answer(await client.call_tool("sora_get_task", {"task_id": video_id}))
        backend.complete(video_id)
        done = seed_answer(await client.call_tool("sora_get_task", {"task_id": video_id}))
        got = await client.call_tool("get_video", {"video_id": video_id})
        batch = seed_answer(
            await client.call_tool("sora_get_tasks_batch", {"task_ids": [video_id, "video_x"]})
        )
        return created, pending, done, got, batch

    created, pending, done, got, batch = run(backend, steps)
    assert [block.type for block in created.content] == ["text"]  # not done: no link yet
    assert backend.created == [{"prompt": "a lighthouse", "model": "wan-2.6", "seconds": "5"}]
    assert (pending["state"], pending["mcp_task_polling"]["should_poll"]) == ("pending", True)
    assert "response" not in pending
    assert (done["state"], done["mcp_task_polling"]["is_complete"]) == ("succeeded", True)
    assert (
        done["response"]["data"][0]["video_url"]
        == backend.videos[created.structured_content["id"]]["download_url"]
    )
    text, link = got.content
    assert json.loads(text.text) == got.structured_content
    assert (link.type, link.mime_type, str(link.uri)) == (
        "resource_link",
        "video/mp4",
        got.structured_content["download_url"],
    )
    assert batch["count"] == 2 and batch["items"][1]["error"]["code"] == "video_not_found"


def test_importing_the_mcp_function_builds_no_server_and_reads_no_setting():
    probe = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('app', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "from sora_relay.runtime import container\n"
        "from sora_relay_mcp import lambda_endpoint\n"
        "print(json.dumps([lambda_endpoint.mcp_server.cache_info().currsize,"
        " lambda_endpoint._adapter.cache_info().currsize, container.installed() is None]))\n"
    )
    path = os.pathsep.join(str(ROOT / part) for part in ("layers/common", "layers/mcp", "."))
    answer = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "functions" / "mcp" / "app.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout.strip().splitlines()[-1]) == [0, 0, True]
