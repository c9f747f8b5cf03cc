"""The Lambda's backend: the use cases called in process for one caller (an API key's owner).

The same checks as the REST routes: the create body is parsed by `parse_create_request` (each
problem an InvalidRequest naming its field), then `submit_video`; lookups are the caller's own.

Each method imports the use cases it calls: the catalogue's needs no adapter, so the first
request (the server is built from the catalogue) pays for boto3 and the task store only once a
tool reaches them (lambda_endpoint.py imports them all at init where SnapStart snapshots it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sora_relay.domain.errors import SoraRelayError
from sora_relay_mcp.backend import BackendError

if TYPE_CHECKING:
    from sora_relay.runtime.container import Container

USE_CASES = (
    "sora_relay.domain.create_request",
    "sora_relay.domain.models",
    "sora_relay.usecases.read",
    "sora_relay.usecases.submit",
)

T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """Who calls (the API key's id API Gateway checked) and our own URL for provider callbacks."""

    owner: str
    public_base_url: str


def _refused(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except SoraRelayError as error:
        raise BackendError(error.message, param=error.param, code=error.code) from None


class InProcessBackend:
    def __init__(self, deps: Container, caller: Caller) -> None:
        self._deps = deps
        self._caller = caller

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        from sora_relay.domain.create_request import parse_create_request
        from sora_relay.usecases.submit import submit_video

        deps = self._deps

        def run() -> dict[str, Any]:
            request = parse_create_request(json.dumps(body), allow_loopback=deps.settings.allow_loopback_urls)
            video = submit_video(
                deps, request, owner=self._caller.owner, public_base_url=self._caller.public_base_url
            )
            return video.model_dump(mode="json")

        return _refused(run)

    def get(self, video_id: str) -> dict[str, Any]:
        from sora_relay.usecases.read import get_video

        return _refused(lambda: get_video(self._deps, self._caller.owner, video_id).model_dump(mode="json"))

    def list(self, *, limit: int, after: str | None) -> dict[str, Any]:
        from sora_relay.usecases.read import list_videos

        return _refused(
            lambda: list_videos(self._deps, self._caller.owner, limit=limit, after=after).model_dump(
                mode="json"
            )
        )

    def models(self) -> list[dict[str, Any]]:
        from sora_relay.usecases.models import list_models

        return [entry.model_dump(mode="json") for entry in list_models(self._deps).data]
