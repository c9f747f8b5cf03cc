"""The MCP function's cold start pays only for what the first call reaches (bench/mcp_cold_start.py
measures it against a bare SDK server): `sora_list_actions` answered in a fresh interpreter has
imported neither boto3, httpx nor any adapter. An init SnapStart snapshots (the MCP function's
and the REST API functions') still imports every adapter up front, builds no client and opens no
connection."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from sora_relay.runtime.container import ADAPTERS, Container
from sora_relay.settings import Settings
from sora_relay_mcp import lambda_endpoint
from sora_relay_mcp.in_process import USE_CASES, Caller, InProcessBackend
from sora_relay_mcp.server import build_server
from tests.conftest import EVENTS, ROOT, probe_json

_PROBE = r"""
import importlib.util, json, socket, sys

def refuse(*args, **kwargs):
    raise AssertionError("a socket was opened")

socket.socket.connect = refuse
socket.create_connection = refuse
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
at_init = after = sorted(sys.modules)

answer = None
if sys.argv[3] == "call":
    class Context:
        function_name = "probe"; memory_limit_in_mb = 512; aws_request_id = "probe"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:probe"
    event = json.load(open(sys.argv[2]))
    event["body"] = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                "params": {"name": "sora_list_actions", "arguments": {}}})
    answer = app.lambda_handler(event, Context())
after = sorted(sys.modules)

from sora_relay.adapters import aws
from sora_relay.runtime import container
clients = sum(getattr(aws, name).cache_info().currsize for name in dir(aws) if name.endswith("_client"))
print(json.dumps({"at_init": at_init, "after": after, "clients": clients,
                  "container": None if container.installed() is None else "made", "answer": answer}))
"""

HEAVY = ("boto3", "httpx", "standardwebhooks")
# Powertools imports botocore's package (its __init__ only) for its user agent; its submodules
# (the session, the clients, the service models) are boto3's cost.
HEAVY_PREFIXES = ("botocore.", "sora_relay.adapters.")


def _probe(phase: str, init_type: str, function: str = "mcp") -> dict:
    env_json = json.loads((EVENTS / "env.json").read_text())["McpFunction"]
    path = os.pathsep.join(str(ROOT / part) for part in ("layers/common", "layers/mcp", "."))
    environment = {
        **os.environ,
        **env_json,
        "PYTHONPATH": path,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
    }
    app = ROOT / "functions" / function / "app.py"
    return probe_json(_PROBE, str(app), str(EVENTS / "mcp-tools-call.json"), phase, env=environment)


def _heavy(modules: list[str]) -> list[str]:
    return [name for name in modules if name.split(".")[0] in HEAVY or name.startswith(HEAVY_PREFIXES)]


def test_the_first_sora_list_actions_imports_no_aws_sdk_no_http_client_no_adapter():
    # When a fresh on-demand instance answers sora_list_actions
    found = _probe("call", "on-demand")

    # Then the answer is the tools' list, and neither init nor the call imported boto3 or an adapter
    answer = found["answer"]
    assert answer["statusCode"] == 200, answer
    result = json.loads(answer["body"])["result"]
    assert result["isError"] is False, result
    assert len(json.loads(result["content"][0]["text"])["actions"]) == 14
    assert _heavy(found["after"]) == [], _heavy(found["after"])


@pytest.mark.parametrize("function", ["mcp", "submit", "callback", "status", "playground"])
def test_a_snapstart_init_imports_every_adapter_and_builds_nothing(function):
    # When the init phase of a SnapStart function is the one snapshotted
    found = _probe("init", "snap-start", function)

    # Then boto3, httpx and every adapter the container builds are in the snapshot (as when the
    # container imported them at its top), with the MCP tools' use cases; no client is built, no
    # container made, and no socket was opened (the probe refuses connections)
    at_init = set(found["at_init"])
    assert {"boto3", "httpx", "standardwebhooks", *ADAPTERS} <= at_init
    if function == "mcp":
        assert set(USE_CASES) <= at_init
    assert found["clients"] == 0
    assert found["container"] is None


@pytest.mark.parametrize("aliases", ["", "sora-2=veo-3.1-fast,sora-2-pro=veo-3.1"])
def test_the_server_is_built_from_the_catalogue_as_get_v1_models_lists_it(aliases):
    # Given a deployment with these aliases (and no provider keys: availability is not read)
    deps = Container(Settings(tasks_table_name="tasks", videos_bucket_name="videos", model_aliases=aliases))

    # When the server's catalogue is read from the catalogue itself, and from the API's list
    ours = lambda_endpoint.server_catalogue(deps)
    listed = InProcessBackend(deps, Caller(owner="", public_base_url="")).models()

    # Then each model says the same, in the same order, and the tools' schemas are the same
    keys = ("id", "status", "seconds", "sizes", "served_by")
    assert ours == [{key: entry[key] for key in keys} for entry in listed]
    assert any(entry["served_by"] for entry in ours) is bool(aliases)

    def schemas(models):
        server = build_server(lambda _ctx: None, models=models)
        return [tool.model_dump(mode="json") for tool in asyncio.run(server.list_tools())]

    assert schemas(ours) == schemas(listed)
