"""The provider interface: nothing outside `providers/` knows which provider runs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ProviderState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class GenerationRequest:
    """What we ask a provider for, in our own terms."""

    prompt: str
    model: str
    seconds: int
    size: str
    image_url: str | None = None


@dataclass(frozen=True)
class ProviderResult:
    """A provider's word on one task, from a callback or a query."""

    provider_task_id: str
    state: ProviderState
    video_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None


class VideoProvider(Protocol):
    name: str

    def submit(self, request: GenerationRequest, *, callback_url: str) -> str:
        """Start a generation; returns the provider's task id.

        Raises ProviderRejected (its 4xx about our input), ProviderAuthFailed (our key or quota),
        ProviderUnavailable (429, 5xx, timeouts: worth retrying) or ProviderProtocolError.
        """
        ...

    def parse_callback(self, body: bytes) -> ProviderResult:
        """Read a callback body; raises InvalidRequest when it is not the provider's shape."""
        ...

    def query(self, provider_task_ids: list[str]) -> list[ProviderResult]:
        """Look tasks up (for reconciling lost callbacks)."""
        ...
