"""`POST /mcp` on Lambda behind API Gateway (REST): stateless Streamable HTTP, JSON responses.

Why it is built this way:
- The SDK's session manager runs once (`run()` can only be called once per instance), so one
  made at init fails every warm call. Each invocation asks the server for a fresh one through the
  public API (`streamable_http_app()` makes a new manager; `session_manager` hands it out), runs
  it for that one request and drops it. The tools stay registered for the process.
- Mangum turns the proxy event into the ASGI request and the answer back (lifespan off: the
  manager is run here, per request, not by an ASGI lifespan).
- The SDK's DNS-rebinding guard stays on; its allowed host is the one API Gateway received the
  request on (`requestContext.domainName`), so neither execute-api nor a custom domain gets 421.
  No browser origin is allowed.
- Nothing is built at import (SnapStart's snapshot holds the imports only): the server, with the
  random key the SDK makes for its request-state tokens, and Mangum's loop come on the first call.
- The first call pays only for what it reaches: the catalogue (the server's enums) and the SDK.
  boto3 and the use cases behind the task tools are imported by the first tool that calls them,
  except in an init SnapStart snapshots (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`): there
  they are imported at init, since a restored instance gets them for free.
- Only POST reaches the SDK: a GET (the standalone SSE stream) never ends in stateless mode, and
  there is no session to DELETE, so both answer 405 here.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from mangum import Mangum
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from sora_relay.domain.errors import SoraRelayError
from sora_relay.runtime.api import caller, error_body, public_base_url
from sora_relay.runtime.container import Container, current
from sora_relay_mcp.backend import Backend
from sora_relay_mcp.in_process import USE_CASES, Caller, InProcessBackend
from sora_relay_mcp.server import build_server

CALLER_SCOPE_KEY = "sora_relay.caller"


def import_tool_modules() -> None:
    """Import (only import: no client, no setting read) the use cases the task tools call; the
    container imports their adapters itself in a snap-start init."""
    for name in USE_CASES:
        importlib.import_module(name)


if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
    import_tool_modules()


def _backend_for(ctx: Context) -> Backend:
    request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    who = scope.get(CALLER_SCOPE_KEY)
    if not isinstance(who, Caller):
        raise RuntimeError("no caller on this request")  # only requests through handle() get here
    return InProcessBackend(current(), who)


def server_catalogue(deps: Container) -> list[dict[str, Any]]:
    """What `build_server` reads of `GET /v1/models`' list (each model's id, status, lengths and
    sizes, and the live model an alias maps it to), in its order (live first), from the catalogue
    and the aliases themselves: the API's model objects (domain/models.py, the task and video
    models with it) are not imported for it, so `sora_list_actions` never pays for them."""
    aliases = deps.model_aliases
    return [
        {
            "id": entry.id,
            "status": entry.status.value,
            "seconds": list(entry.seconds),
            "sizes": list(entry.sizes),
            "served_by": aliases.get(entry.id),
        }
        for entry in sorted(deps.catalogue.models, key=lambda entry: not entry.live)
    ]


@functools.cache
def mcp_server() -> MCPServer:
    """The server of this process, built on its first request (the catalogue as the caller's
    deployment lists it: aliases are read then)."""
    deps = current()
    return build_server(
        _backend_for,
        models=server_catalogue(deps),
        pending_wait_seconds=deps.settings.mcp_pending_wait_seconds,
    )


async def _serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
    event = APIGatewayProxyEvent(scope["aws.event"])
    who = Caller(owner=caller(event), public_base_url=public_base_url(event))
    server = mcp_server()
    guard = TransportSecuritySettings(allowed_hosts=[event.request_context.domain_name], allowed_origins=[])
    server.streamable_http_app(json_response=True, stateless_http=True, transport_security=guard)
    manager = server.session_manager  # the fresh one streamable_http_app() just made
    async with manager.run():
        await manager.handle_request({**scope, CALLER_SCOPE_KEY: who}, receive, send)


@functools.cache
def _adapter() -> Mangum:
    return Mangum(_serve, lifespan="off")


def _answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": error_body(code, message, status=status),
    }


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One API Gateway proxy event: 405 unless POST, 401 without an API key, else the SDK's answer."""
    if event.get("httpMethod") != "POST":
        return _answer(
            405,
            "method_not_allowed",
            "This MCP endpoint is stateless: POST JSON-RPC messages; there is no SSE stream or session",
            {"allow": "POST"},
        )
    try:
        caller(APIGatewayProxyEvent(event))
    except SoraRelayError as error:
        return _answer(error.status_code, error.code, error.message)
    return _adapter()(event, context)
