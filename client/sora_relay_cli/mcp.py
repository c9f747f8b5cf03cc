"""`sora-relay mcp`: the MCP server over stdio, speaking only the public HTTP API with your key.

The same server definition as `POST /mcp` (sora_relay_mcp.server); here its backend is the CLI's
HTTP client, so every tool call is a request to the API as you: nothing else is reached.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sora_relay_cli import __version__
from sora_relay_cli.api import ApiClient, ApiConnectionError, ApiError
from sora_relay_mcp.backend import BackendError
from sora_relay_mcp.server import build_server

T = TypeVar("T")


def _refused(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ApiError as error:
        raise BackendError(error.message, param=error.param, code=error.code) from None
    except (ApiConnectionError, ValueError) as error:
        raise BackendError(str(error)) from None


class HttpBackend:
    """The public API as the CLI's user (one API key)."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        # A fresh Idempotency-Key per tool call: the client's retries never make a second task.
        key = str(uuid.uuid4())
        return _refused(lambda: dict(self._client.create_from(body, idempotency_key=key)))

    def get(self, video_id: str) -> dict[str, Any]:
        return _refused(lambda: dict(self._client.get(video_id)))

    def list(self, *, limit: int, after: str | None) -> dict[str, Any]:
        return _refused(lambda: dict(self._client.list(limit=limit, after=after)))

    def models(self) -> list[dict[str, Any]]:
        return _refused(self._client.models)


def serve_stdio(client: ApiClient, *, pending_wait_seconds: float) -> None:
    """Serve MCP on stdin/stdout until the client closes it."""
    backend = HttpBackend(client)
    # The enums of generate_video come from the deployment's catalogue, read once at start.
    models = backend.models()
    server = build_server(
        lambda _ctx: backend, models=models, pending_wait_seconds=pending_wait_seconds, version=__version__
    )
    server.run("stdio")
