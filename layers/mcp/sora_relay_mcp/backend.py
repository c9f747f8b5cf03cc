"""What the MCP tools need of the service, in the public API's terms (its JSON objects)."""

from __future__ import annotations

from typing import Any, Protocol


class BackendError(Exception):
    """The service refused or failed a call; `param` names the offending input, when there is one."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class Backend(Protocol):
    """The public API as one caller sees it: `POST /v1/videos`, `GET /v1/videos[/{id}]`,
    `GET /v1/models`. Every method is blocking; every refusal is a BackendError."""

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a video from a `POST /v1/videos` body; the video object."""
        ...

    def get(self, video_id: str) -> dict[str, Any]:
        """One of the caller's videos (with a download link once completed)."""
        ...

    def list(self, *, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the caller's videos, newest first (`data`, `has_more`, `last_id`)."""
        ...

    def models(self) -> list[dict[str, Any]]:
        """The catalogue as `GET /v1/models` lists it."""
        ...
